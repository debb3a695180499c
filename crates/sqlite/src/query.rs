//! Running one read-only query and streaming its rows as JSON: the engine behind `/query`.
//!
//! [`run_query`] is **blocking** (call it from `spawn_blocking`). It prepares exactly one statement,
//! refuses it unless SQLite says it is read-only (`sqlite3_stmt_readonly`), binds the parameters,
//! and steps through the rows, encoding each as a JSON object whose keys are the column names in
//! column order (duplicates kept as they come). Output goes to a sink in chunks of about
//! [`CHUNK_SIZE`] bytes; nothing is handed to the sink before the first chunk is full or the query
//! is complete, so every error that happens early (bad SQL, not read-only, a timeout or a limit hit
//! within the first chunk) is returned before any output exists and can get a proper status code.
//!
//! Formats: [`RowFormat::JsonArray`] is `[row,row,…]` with no newlines (`[]` when empty);
//! [`RowFormat::Ndjson`] is one row object per line, each ending in `\n`;
//! [`RowFormat::Columnar`] is `{"columns":[names],"rows":[[values],…]}` (column names once, rows
//! as arrays: duplicate names stay usable, and the names are there even without a row).
//!
//! The time limit is enforced by the [`super::watchdog`], which interrupts the statement at the
//! deadline even inside one slow step, backed by an SQLite progress handler (checked every
//! [`PROGRESS_OPS`] virtual-machine steps) and a check between rows (so a slow sink counts too).
//! Parameters are bound inside the deadline. At shutdown the statement is interrupted and fails
//! with `shutting_down` (503). Not here: connection pools, HTTP, or what to do
//! with an error after output has started (the reader's business).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::{Batch, Connection, ErrorCode, InterruptHandle};

use super::limits::QueryLimits;
use super::params::{bind, SqlRequest};
use super::value::{write_json, write_str};
use super::watchdog::{self, Armed, Fired};
use super::{guard, sqlite_error};
use trough_types::error::{codes, Error, ErrorKind, Result};

/// Output is handed to the sink in chunks of about this many bytes.
pub const CHUNK_SIZE: usize = 32 * 1024;

/// How many SQLite VM steps between two checks of the deadline / cancellation.
pub const PROGRESS_OPS: i32 = 1000;

/// How rows are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    /// One JSON array of row objects, without newlines: `[{"a":1},{"a":2}]`.
    JsonArray,
    /// Newline-delimited JSON: one row object per line.
    Ndjson,
    /// One JSON object: the column names, then the rows as arrays:
    /// `{"columns":["a","a"],"rows":[[1,2]]}`.
    Columnar,
}

/// The media type that asks for [`RowFormat::Columnar`] (in `Accept`).
pub const COLUMNAR_MEDIA_TYPE: &str = "application/vnd.trough.columnar+json";

impl RowFormat {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            RowFormat::JsonArray => "application/json",
            RowFormat::Ndjson => "application/x-ndjson",
            RowFormat::Columnar => COLUMNAR_MEDIA_TYPE,
        }
    }
}

/// What a completed query produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Rows returned.
    pub rows: u64,
    /// Bytes handed to the sink.
    pub bytes: u64,
}

/// Lets another thread stop a running query promptly (e.g. when its client went away).
///
/// While [`run_query_cancellable`] runs, the token holds the connection's interrupt handle, so
/// [`CancelToken::cancel`] interrupts SQLite at once (even inside one slow step); the progress
/// handler and the check between rows back it up. A cancelled query fails with code
/// `query_cancelled`.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    /// The running statement's connection, while one runs.
    interrupt: Mutex<Option<InterruptHandle>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CancelToken")
            .field(&self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A fresh, not cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation, interrupting the running statement if there is one.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        if let Some(h) = self.handle().as_ref() {
            h.interrupt();
        }
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }
    fn handle(&self) -> std::sync::MutexGuard<'_, Option<InterruptHandle>> {
        self.0.interrupt.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Lets `cancel` interrupt `conn` until [`Self::detach`].
    fn attach(&self, conn: &Connection) {
        *self.handle() = Some(conn.get_interrupt_handle());
    }
    /// After this returns, `cancel` no longer interrupts the connection.
    fn detach(&self) {
        *self.handle() = None;
    }
}

/// The error of a query that ran out of time.
pub fn timeout_error(limits: &QueryLimits) -> Error {
    Error::new(
        ErrorKind::Timeout,
        codes::QUERY_TIMEOUT,
        format!(
            "the query exceeded its time limit of {} ms",
            limits.timeout_ms
        ),
    )
}

/// The error of a statement interrupted because the process is shutting down.
pub fn shutting_down_error() -> Error {
    Error::unavailable(
        codes::SHUTTING_DOWN,
        "the node is shutting down; the statement was interrupted (retry on another node or later)",
    )
}

/// The error of a query whose consumer went away (sink returned false, or cancelled).
pub fn cancelled_error() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        codes::QUERY_CANCELLED,
        "the query was cancelled: its client went away",
    )
}

/// Runs one read-only statement (blocking); see the module docs.
///
/// `sink` receives the encoded output; it returns `false` when the consumer went away, which stops
/// the query with a `query_cancelled` error. The connection needs `&mut` only to install (and
/// afterwards remove) the progress handler that enforces the deadline.
pub fn run_query(
    conn: &mut Connection,
    req: &SqlRequest,
    limits: &QueryLimits,
    format: RowFormat,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<QueryStats> {
    run_query_cancellable(conn, req, limits, format, &CancelToken::new(), sink)
}

/// [`run_query`] that also stops promptly when `cancel` is triggered from another thread.
pub fn run_query_cancellable(
    conn: &mut Connection,
    req: &SqlRequest,
    limits: &QueryLimits,
    format: RowFormat,
    cancel: &CancelToken,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<QueryStats> {
    let deadline = Instant::now() + limits.timeout();
    let armed = watchdog::arm(conn, Some(deadline));
    let token = cancel.clone();
    let mut stop = armed.stop_check();
    conn.progress_handler(PROGRESS_OPS, Some(move || token.is_cancelled() || stop()))
        .map_err(sqlite_error)?;
    cancel.attach(conn);
    let result = execute(conn, req, limits, format, &armed, cancel, sink);
    // Disarm first, then drop the handler: a pooled connection must not keep an expired
    // deadline (or a cancellation) for its next query.
    cancel.detach();
    drop(armed);
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    result
}

fn too_large(msg: String) -> Error {
    Error::invalid(codes::RESULT_TOO_LARGE, msg)
}

fn execute(
    conn: &Connection,
    req: &SqlRequest,
    limits: &QueryLimits,
    format: RowFormat,
    armed: &Armed,
    cancel: &CancelToken,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<QueryStats> {
    // An interrupt is ours: tell the reasons apart.
    let interrupted = |e: rusqlite::Error| -> Error {
        if super::error_code(&e) == Some(ErrorCode::OperationInterrupted) {
            if cancel.is_cancelled() {
                return cancelled_error();
            }
            match armed.fired() {
                Some(Fired::Shutdown) => return shutting_down_error(),
                Some(Fired::Deadline) => return timeout_error(limits),
                None => {}
            }
        }
        sqlite_error(e)
    };

    guard::clear_denial();
    // The first statement decides `not_read_only` whatever follows it (a write's later
    // statements may not even prepare yet, e.g. an INSERT into a table the first one creates).
    let mut batch = Batch::new(conn, &req.sql);
    let mut stmt = batch
        .next()
        .map_err(interrupted)?
        .ok_or_else(|| Error::invalid(codes::SQL_ERROR, "no SQL statement given"))?;
    if !stmt.readonly() {
        return Err(Error::invalid(
            codes::NOT_READ_ONLY,
            "only read-only statements are allowed on /query; use /execute",
        ));
    }
    if !matches!(batch.next(), Ok(None)) {
        guard::clear_denial();
        return Err(Error::invalid(
            codes::MULTIPLE_STATEMENTS,
            "only one SQL statement is allowed per query",
        ));
    }
    bind(&mut stmt, &req.params)?;

    // `"name":` for each column, encoded once (columnar rows are arrays: no keys).
    let columnar = format == RowFormat::Columnar;
    let keys: Vec<Vec<u8>> = stmt
        .column_names()
        .map(|name| {
            let mut k = Vec::with_capacity(name.len() + 3);
            if !columnar {
                write_str(&mut k, name);
                k.push(b':');
            }
            k
        })
        .collect();
    let mut header = Vec::new();
    if columnar {
        header.extend_from_slice(b"{\"columns\":[");
        for (i, name) in stmt.column_names().enumerate() {
            if i > 0 {
                header.push(b',');
            }
            write_str(&mut header, name);
        }
        header.extend_from_slice(b"],\"rows\":[");
    }

    let mut stats = QueryStats::default();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE + 1024);
    let mut flush = |buf: &mut Vec<u8>, stats: &mut QueryStats| -> Result<()> {
        let chunk = Bytes::from(std::mem::replace(
            buf,
            Vec::with_capacity(CHUNK_SIZE + 1024),
        ));
        stats.bytes += chunk.len() as u64;
        if sink(chunk) {
            Ok(())
        } else {
            Err(cancelled_error())
        }
    };
    match format {
        RowFormat::JsonArray => buf.push(b'['),
        RowFormat::Columnar => buf.extend_from_slice(&header),
        RowFormat::Ndjson => {}
    }
    let mut rows = stmt.raw_query();
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                let e = interrupted(e);
                // Once output has started, hand over the complete rows before the failing one,
                // so the answer breaks exactly where the error happened.
                if stats.bytes > 0 && e.kind() == ErrorKind::InvalidInput && !buf.is_empty() {
                    let _ = flush(&mut buf, &mut stats);
                }
                return Err(e);
            }
        };
        stats.rows += 1;
        if stats.rows > limits.max_rows {
            return Err(too_large(format!(
                "the result has more than max_rows = {} rows; narrow the query (e.g. add LIMIT) \
                 or page through it",
                limits.max_rows
            )));
        }
        if format != RowFormat::Ndjson && stats.rows > 1 {
            buf.push(b',');
        }
        buf.push(if columnar { b'[' } else { b'{' });
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(key);
            write_json(&mut buf, row.get_ref(i).map_err(sqlite_error)?);
        }
        buf.push(if columnar { b']' } else { b'}' });
        if format == RowFormat::Ndjson {
            buf.push(b'\n');
        }
        // +2 for the closing `]` (and `}`).
        if stats.bytes + buf.len() as u64 + 2 > limits.max_response_bytes {
            return Err(too_large(format!(
                "the result is larger than max_response_bytes = {} bytes; narrow the query \
                 (e.g. add LIMIT or select fewer columns) or page through it",
                limits.max_response_bytes
            )));
        }
        if buf.len() >= CHUNK_SIZE {
            flush(&mut buf, &mut stats)?;
        }
        if cancel.is_cancelled() {
            return Err(cancelled_error());
        }
        match armed.fired() {
            Some(Fired::Shutdown) => return Err(shutting_down_error()),
            Some(Fired::Deadline) => return Err(timeout_error(limits)),
            None => {}
        }
    }
    match format {
        RowFormat::JsonArray => buf.push(b']'),
        RowFormat::Columnar => buf.extend_from_slice(b"]}"),
        RowFormat::Ndjson => {}
    }
    if !buf.is_empty() {
        flush(&mut buf, &mut stats)?;
    }
    Ok(stats)
}
