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
//! The time limit is enforced both by an SQLite progress handler (checked every
//! [`PROGRESS_OPS`] virtual-machine steps, so a long aggregate with no output row is interrupted)
//! and between rows (so a slow sink counts too). Not here: connection pools, HTTP, or what to do
//! with an error after output has started (the reader's business).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rusqlite::{Connection, ErrorCode};

use super::limits::QueryLimits;
use super::params::{bind, SqlRequest};
use super::value::{write_json, write_str};
use super::{guard, sqlite_error};
use crate::error::{Error, ErrorKind, Result};

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
/// Checked by the progress handler and between rows; a cancelled query fails with code
/// `query_cancelled`.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, not cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The error of a query that ran out of time.
pub fn timeout_error(limits: &QueryLimits) -> Error {
    Error::new(
        ErrorKind::Timeout,
        "query_timeout",
        format!(
            "the query exceeded its time limit of {} ms",
            limits.timeout_ms
        ),
    )
}

/// The error of a query whose consumer went away (sink returned false, or cancelled).
pub fn cancelled_error() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "query_cancelled",
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
    let token = cancel.clone();
    conn.progress_handler(
        PROGRESS_OPS,
        Some(move || token.is_cancelled() || Instant::now() >= deadline),
    )
    .map_err(sqlite_error)?;
    let result = execute(conn, req, limits, format, deadline, cancel, sink);
    // A pooled connection must not keep an expired deadline for its next query.
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    result
}

fn too_large(msg: String) -> Error {
    Error::invalid("result_too_large", msg)
}

fn execute(
    conn: &Connection,
    req: &SqlRequest,
    limits: &QueryLimits,
    format: RowFormat,
    deadline: Instant,
    cancel: &CancelToken,
    sink: &mut dyn FnMut(Bytes) -> bool,
) -> Result<QueryStats> {
    // An interrupt is ours: tell the two reasons apart.
    let interrupted = |e: rusqlite::Error| -> Error {
        if super::error_code(&e) == Some(ErrorCode::OperationInterrupted) {
            if cancel.is_cancelled() {
                return cancelled_error();
            }
            if Instant::now() >= deadline {
                return timeout_error(limits);
            }
        }
        sqlite_error(e)
    };

    guard::clear_denial();
    let mut stmt = conn.prepare(&req.sql).map_err(|e| match e {
        rusqlite::Error::MultipleStatement => Error::invalid(
            "multiple_statements",
            "only one SQL statement is allowed per query",
        ),
        e => interrupted(e),
    })?;
    if stmt.expanded_sql().is_none() {
        return Err(Error::invalid("sql_error", "no SQL statement given"));
    }
    if !stmt.readonly() {
        return Err(Error::invalid(
            "not_read_only",
            "only read-only statements are allowed on /query; use /execute",
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
        if Instant::now() >= deadline {
            return Err(timeout_error(limits));
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
