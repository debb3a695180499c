//! Merge execution: combines the rows of every segment (the answers to
//! [`ScatterPlan::segment_sql`]) into the answer of the query. Blocking: run it in
//! `spawn_blocking` (see the module docs of [`super`] for feeding it from async streams).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value as Json;
use trough_core::error::{Error, ErrorKind, Result};
use trough_core::sql::value::{from_json, to_json};
use trough_core::sql::{bind, CancelToken, Params};

use super::order::KHeap;
use super::plan::{
    KeyCol, MergeSpec, Names, OutputName, ScatterPlan, SortKey, SqlBody, GUARD_ALIAS,
    GUARD_COLLATE, GUARD_VIEW,
};

/// One row: values in column order, in the JSON value encoding of [`trough_core::sql::value`].
pub type Row = Vec<Json>;

/// The rows one segment returned for [`ScatterPlan::segment_sql`], in order. An `Err` item ends
/// the merge with that error.
pub type SegmentRows = Box<dyn Iterator<Item = Result<Row>> + Send>;

/// One segment's answer.
pub struct SegmentStream {
    /// The segment's name, for error messages.
    pub segment: String,
    /// Its rows.
    pub rows: SegmentRows,
}

impl SegmentStream {
    /// A segment's answer.
    pub fn new(segment: impl Into<String>, rows: SegmentRows) -> Self {
        Self {
            segment: segment.into(),
            rows,
        }
    }
}

/// Default memory budget of a merge (`merge_memory_budget_bytes`).
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

/// Limits and environment of one merge.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// Memory the merge database may use for its page cache and sorter (`merge_memory_budget_bytes`);
    /// beyond it SQLite spills to disk. Streaming merges (concatenation, ORDER BY) hold one row per
    /// segment and do not use it.
    pub memory_budget_bytes: u64,
    /// Largest merge database on disk; past it the merge fails with `merge_too_large`. `None`: no
    /// limit but the disk's.
    pub disk_budget_bytes: Option<u64>,
    /// Where the temporary merge database is created (default: the system temporary directory).
    pub temp_dir: Option<PathBuf>,
    /// Stops the merge (code `query_cancelled`).
    pub cancel: Option<CancelToken>,
    /// Fails the merge when passed (code `query_timeout`).
    pub deadline: Option<Instant>,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET,
            disk_budget_bytes: None,
            temp_dir: None,
            cancel: None,
            deadline: None,
        }
    }
}

impl MergeOptions {
    fn check(&self) -> Result<()> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(cancelled());
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timeout());
        }
        Ok(())
    }
}

fn cancelled() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "query_cancelled",
        "the query was cancelled: its client went away",
    )
}

fn timeout() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "query_timeout",
        "the query exceeded its time limit while merging segment answers",
    )
}

fn internal(msg: impl Into<String>) -> Error {
    Error::internal(msg)
}

/// The merged answer: column names and a stream of rows.
///
/// For [`super::Strategy::SqlMerge`] plans every error (an integer overflow, the budget) happens
/// in [`merge`], before the first row; for streaming plans a segment's error can also come from
/// [`Iterator::next`] after rows were produced (see decision 0003 on errors after output started).
pub struct MergedRows {
    columns: Vec<String>,
    inner: Inner,
}

impl MergedRows {
    /// The result column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

impl std::fmt::Debug for MergedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedRows")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

enum Inner {
    Stream(Box<StreamMerge>),
    Sql(SqlResult),
    Done,
}

impl Iterator for MergedRows {
    type Item = Result<Row>;
    fn next(&mut self) -> Option<Result<Row>> {
        let r = match &mut self.inner {
            Inner::Stream(s) => s.next(),
            Inner::Sql(s) => s.next(),
            Inner::Done => None,
        };
        if matches!(r, Some(Err(_)) | None) {
            // Stop for good (and release the segments / the merge database).
            self.inner = Inner::Done;
        }
        r
    }
}

/// Merges the segments' answers to `plan` into the query's answer.
///
/// `segment_columns` are the column names of [`ScatterPlan::segment_sql`] (as SQLite reports them
/// when it prepares the statement on any segment; they only depend on the schema). `params` are
/// the request's parameters (the merge SQL may use them, e.g. `HAVING count(*) > ?`).
pub fn merge(
    plan: &ScatterPlan,
    params: &Params,
    segment_columns: &[String],
    segments: Vec<SegmentStream>,
    opts: &MergeOptions,
) -> Result<MergedRows> {
    let n = segment_columns.len();
    if n < plan.tail {
        return Err(internal(format!(
            "the segment SQL returned {n} columns, expected at least {}",
            plan.tail
        )));
    }
    let front = n - plan.tail;
    let checker = RowCheck {
        width: n,
        fatal: plan.guard_fatal,
        table: plan.table.clone(),
        aliases: plan.alias_refs.clone(),
    };
    match &plan.merge {
        MergeSpec::Concat { limit, offset } => Ok(MergedRows {
            columns: segment_columns[..front].to_vec(),
            inner: Inner::Stream(Box::new(StreamMerge {
                checker,
                front,
                segments: segments.into_iter().collect(),
                heap: None,
                keys: Vec::new(),
                skip: *offset,
                remaining: *limit,
                opts: opts.clone(),
                rows_seen: 0,
            })),
        }),
        MergeSpec::Sorted {
            keys,
            limit,
            offset,
        } => {
            for k in keys {
                if let KeyCol::Column(c) = k.col {
                    if c >= front {
                        return Err(Error::invalid(
                            "sql_error",
                            format!("ORDER BY term out of range - should be between 1 and {front}"),
                        ));
                    }
                }
            }
            Ok(MergedRows {
                columns: segment_columns[..front].to_vec(),
                inner: Inner::Stream(Box::new(StreamMerge {
                    checker,
                    front,
                    segments: segments.into_iter().collect(),
                    heap: None,
                    keys: keys.clone(),
                    skip: *offset,
                    remaining: *limit,
                    opts: opts.clone(),
                    rows_seen: 0,
                })),
            })
        }
        MergeSpec::Sql { body, names } => {
            let columns = match names {
                Names::Segment => segment_columns[..front].to_vec(),
                Names::Fixed(list) => list
                    .iter()
                    .map(|o| match o {
                        OutputName::Text(t) => Ok(t.clone()),
                        OutputName::Segment(i) => segment_columns
                            .get(*i)
                            .cloned()
                            .ok_or_else(|| internal("segment column missing")),
                    })
                    .collect::<Result<_>>()?,
            };
            let result = sql_merge(body, front, params, segments, &checker, opts)?;
            Ok(MergedRows {
                columns,
                inner: Inner::Sql(result),
            })
        }
    }
}

/// Checks each segment row: its width and the guard column (the last one).
struct RowCheck {
    width: usize,
    fatal: i64,
    table: String,
    aliases: Vec<String>,
}

impl RowCheck {
    fn check(&self, segment: &str, row: &Row) -> Result<()> {
        if row.len() != self.width {
            return Err(internal(format!(
                "segment {segment} returned a row of {} values, expected {}",
                row.len(),
                self.width
            )));
        }
        let guard = row.last().and_then(Json::as_i64).unwrap_or(-1);
        if guard < 0 {
            return Err(internal(format!("segment {segment}: bad guard column")));
        }
        let bad = guard & self.fatal;
        if bad == 0 {
            return Ok(());
        }
        let why = if bad & GUARD_VIEW != 0 {
            format!(
                "in segment {segment}, {} is a view or a virtual table; scatter queries read \
                 ordinary tables only (a view may aggregate or limit each segment on its own)",
                self.table
            )
        } else if bad & GUARD_COLLATE != 0 {
            format!(
                "in segment {segment}, table {} declares a COLLATE on a column; the merge \
                 compares values with the BINARY collation, so this query is refused (add an \
                 explicit COLLATE to the compared expressions)",
                self.table
            )
        } else {
            debug_assert!(bad & GUARD_ALIAS != 0);
            format!(
                "in segment {segment}, one of the result aliases {:?} is also a column of {} \
                 (SQLite would use the column there); rename the alias",
                self.aliases, self.table
            )
        };
        Err(Error::invalid("unsupported_scatter_query", why))
    }
}

/// Concatenation and k-way merge: streaming, one pending row per segment.
struct StreamMerge {
    checker: RowCheck,
    front: usize,
    segments: VecDeque<SegmentStream>,
    /// For sorted merges: the heap of segment heads, once primed.
    heap: Option<(KHeap<Row>, Vec<SegmentStream>)>,
    keys: Vec<SortKey>,
    skip: u64,
    remaining: Option<u64>,
    opts: MergeOptions,
    rows_seen: u64,
}

impl StreamMerge {
    fn next(&mut self) -> Option<Result<Row>> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let row = match self.next_raw() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if let Some(r) = &mut self.remaining {
                *r -= 1;
            }
            let mut row = row;
            row.truncate(self.front);
            return Some(Ok(row));
        }
    }

    fn pull(&mut self, seg: &mut SegmentStream) -> Result<Option<Row>> {
        self.rows_seen += 1;
        if self.rows_seen.is_multiple_of(1024) {
            self.opts.check()?;
        }
        match seg.rows.next() {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(row)) => {
                self.checker.check(&seg.segment, &row)?;
                Ok(Some(row))
            }
        }
    }

    fn sort_key(&self, row: &Row) -> Result<Vec<Value>> {
        self.keys
            .iter()
            .map(|k| {
                let idx = match k.col {
                    KeyCol::Column(c) => c,
                    KeyCol::Hidden(j) => self.front + j,
                };
                from_json(&row[idx]).map_err(|e| internal(format!("bad value in segment row: {e}")))
            })
            .collect()
    }

    fn next_raw(&mut self) -> Result<Option<Row>> {
        if self.keys.is_empty() {
            // Concatenation: one segment after the other.
            while let Some(mut seg) = self.segments.pop_front() {
                match self.pull(&mut seg)? {
                    Some(row) => {
                        self.segments.push_front(seg);
                        return Ok(Some(row));
                    }
                    None => continue,
                }
            }
            return Ok(None);
        }
        if self.heap.is_none() {
            // Prime: the first row of every segment.
            let mut heap = KHeap::new(self.keys.clone());
            let mut streams = Vec::new();
            while let Some(mut seg) = self.segments.pop_front() {
                let idx = streams.len();
                if let Some(row) = self.pull(&mut seg)? {
                    let key = self.sort_key(&row)?;
                    heap.push(key, idx, row);
                }
                streams.push(seg);
            }
            self.heap = Some((heap, streams));
        }
        let (mut heap, mut streams) = self.heap.take().expect("primed");
        let result = (|| {
            let Some((idx, row)) = heap.pop() else {
                return Ok(None);
            };
            if let Some(next) = self.pull(&mut streams[idx])? {
                let key = self.sort_key(&next)?;
                heap.push(key, idx, next);
            }
            Ok(Some(row))
        })();
        debug_assert!(heap.len() <= streams.len());
        self.heap = Some((heap, streams));
        result
    }
}

/// The merge database and its paged result.
struct SqlResult {
    // Field order matters: the connection closes before the directory is removed.
    conn: Connection,
    _dir: tempfile::TempDir,
    buffer: VecDeque<Row>,
    last_rowid: i64,
    done: bool,
    width: usize,
}

const PAGE_ROWS: i64 = 256;

impl SqlResult {
    fn next(&mut self) -> Option<Result<Row>> {
        if self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }

    fn fill(&mut self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rowid, * FROM _r WHERE rowid > ?1 ORDER BY rowid LIMIT ?2")
            .map_err(merge_error)?;
        let mut rows = stmt
            .query(rusqlite::params![self.last_rowid, PAGE_ROWS])
            .map_err(merge_error)?;
        let mut got = 0;
        while let Some(r) = rows.next().map_err(merge_error)? {
            got += 1;
            self.last_rowid = r.get(0).map_err(merge_error)?;
            let mut out = Vec::with_capacity(self.width);
            for i in 0..self.width {
                out.push(to_json(r.get_ref(i + 1).map_err(merge_error)?));
            }
            self.buffer.push_back(out);
        }
        if got < PAGE_ROWS {
            self.done = true;
        }
        Ok(())
    }
}

fn merge_error(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match trough_core::sql::error_code(&e) {
        Some(ErrorCode::DiskFull) => Error::invalid(
            "merge_too_large",
            "the merge of the segment answers needs more disk than its budget allows",
        ),
        Some(ErrorCode::OperationInterrupted) => timeout(),
        Some(ErrorCode::OutOfMemory) => Error::invalid(
            "merge_too_large",
            "the merge of the segment answers ran out of memory",
        ),
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::InternalMalfunction,
        ) => Error::new(ErrorKind::Internal, "merge_error", e.to_string()),
        None => Error::new(ErrorKind::Internal, "merge_error", e.to_string()),
        // Errors of the query's own expressions (integer overflow, …), as SQLite says them.
        _ => Error::invalid("sql_error", e.to_string()),
    }
}

fn open_merge_db(opts: &MergeOptions) -> Result<(Connection, tempfile::TempDir)> {
    let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("trough-merge-")
        .tempdir_in(&base)
        .map_err(|e| {
            internal(format!(
                "cannot create the merge directory in {base:?}: {e}"
            ))
        })?;
    let conn = Connection::open_with_flags(
        dir.path().join("merge.db"),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(merge_error)?;
    let cache_kib = (opts.memory_budget_bytes / 1024).max(256);
    let mut pragmas = format!(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE; \
         PRAGMA temp_store = FILE; PRAGMA mmap_size = 0; PRAGMA cache_size = -{cache_kib};"
    );
    if let Some(disk) = opts.disk_budget_bytes {
        let pages = (disk / 4096).max(16);
        pragmas.push_str(&format!(
            " PRAGMA page_size = 4096; PRAGMA max_page_count = {pages};"
        ));
    }
    conn.execute_batch(&pragmas).map_err(merge_error)?;
    conn.create_aggregate_function(
        "_trough_sum",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        ExactSum,
    )
    .map_err(merge_error)?;
    Ok((conn, dir))
}

fn sql_merge(
    body: &SqlBody,
    front: usize,
    params: &Params,
    segments: Vec<SegmentStream>,
    checker: &RowCheck,
    opts: &MergeOptions,
) -> Result<SqlResult> {
    let (mut conn, dir) = open_merge_db(opts)?;
    {
        let cancel = opts.cancel.clone();
        let deadline = opts.deadline;
        conn.progress_handler(
            1000,
            Some(move || {
                cancel.as_ref().is_some_and(CancelToken::is_cancelled)
                    || deadline.is_some_and(|d| Instant::now() >= d)
            }),
        )
        .map_err(merge_error)?;
    }
    let cols: Vec<String> = (0..front).map(|i| format!("\"_c{i}\"")).collect();
    conn.execute_batch(&format!("CREATE TABLE _p({}); BEGIN;", cols.join(", ")))
        .map_err(merge_error)?;
    {
        let marks: Vec<String> = (1..=front).map(|i| format!("?{i}")).collect();
        let mut insert = conn
            .prepare(&format!("INSERT INTO _p VALUES ({})", marks.join(", ")))
            .map_err(merge_error)?;
        let mut seen = 0u64;
        for mut seg in segments {
            for row in seg.rows.by_ref() {
                let row = row?;
                checker.check(&seg.segment, &row)?;
                seen += 1;
                if seen.is_multiple_of(1024) {
                    opts.check()?;
                }
                for (i, v) in row[..front].iter().enumerate() {
                    let v = from_json(v)
                        .map_err(|e| internal(format!("bad value in segment row: {e}")))?;
                    insert.raw_bind_parameter(i + 1, v).map_err(merge_error)?;
                }
                insert.raw_execute().map_err(merge_error)?;
            }
        }
    }
    let merge_sql = match body {
        SqlBody::Fixed(s) => s.clone(),
        SqlBody::Distinct {
            colls,
            prefix,
            tail,
        } => {
            let list: Vec<String> = (0..front)
                .map(|i| match colls.get(i).copied().flatten() {
                    Some(c) => format!("\"_c{i}\" COLLATE {}", c.sql()),
                    None => format!("\"_c{i}\""),
                })
                .collect();
            format!("{prefix}SELECT DISTINCT {} FROM _p{tail}", list.join(", "))
        }
    };
    let width;
    {
        let mut stmt = conn.prepare(&merge_sql).map_err(merge_error)?;
        bind(&mut stmt, params)?;
        width = stmt.column_count();
        let rcols: Vec<String> = (0..width).map(|i| format!("\"_r{i}\"")).collect();
        conn.execute_batch(&format!("CREATE TABLE _r({});", rcols.join(", ")))
            .map_err(merge_error)?;
        let marks: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
        let mut insert = conn
            .prepare(&format!("INSERT INTO _r VALUES ({})", marks.join(", ")))
            .map_err(merge_error)?;
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next().map_err(merge_error)? {
            for i in 0..width {
                let v: Value = r.get(i).map_err(merge_error)?;
                insert.raw_bind_parameter(i + 1, v).map_err(merge_error)?;
            }
            insert.raw_execute().map_err(merge_error)?;
        }
    }
    conn.execute_batch("COMMIT;").map_err(merge_error)?;
    Ok(SqlResult {
        conn,
        _dir: dir,
        buffer: VecDeque::new(),
        last_rowid: 0,
        done: false,
        width,
    })
}

/// `_trough_sum(x)`: SQLite's `sum()` over partial sums, with an order-independent overflow rule.
///
/// NULLs are ignored; no non-NULL input gives NULL. If every input is an integer, the result is
/// their exact sum, or the error "integer overflow" if it does not fit in 64 bits (SQLite's own
/// `sum()` raises it when a running total overflows, which depends on the order rows are visited;
/// over many segments the only order-independent rule is the total's). Otherwise the result is a
/// REAL computed with the same Kahan-Babuska-Neumaier summation as SQLite.
struct ExactSum;

/// Accumulator of [`ExactSum`].
#[derive(Default)]
struct SumAcc {
    count: u64,
    int_sum: i128,
    approx: bool,
    r_sum: f64,
    r_err: f64,
}

impl SumAcc {
    fn kbn(&mut self, r: f64) {
        let s = self.r_sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.r_err += (s - t) + r;
        } else {
            self.r_err += (r - t) + s;
        }
        self.r_sum = t;
    }
    fn kbn_int(&mut self, i: i128) {
        // Exact for |i| < 2^53; larger values are split like SQLite's
        // kahanBabuskaNeumaierStepInt64.
        const BIG: i128 = 4_503_599_627_370_496;
        if i <= -BIG || i >= BIG {
            let small = i % 16384;
            self.kbn((i - small) as f64);
            self.kbn(small as f64);
        } else {
            self.kbn(i as f64);
        }
    }
}

impl Aggregate<SumAcc, Value> for ExactSum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<SumAcc> {
        Ok(SumAcc::default())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut SumAcc) -> rusqlite::Result<()> {
        match ctx.get_raw(0) {
            ValueRef::Null => {}
            ValueRef::Integer(i) => {
                acc.count += 1;
                acc.int_sum += i128::from(i);
            }
            other => {
                acc.count += 1;
                let r = match other {
                    ValueRef::Real(r) => r,
                    // Partial sums are never text or blobs; convert like SQLite would anyway.
                    ValueRef::Text(t) => std::str::from_utf8(t)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0.0),
                    _ => 0.0,
                };
                acc.approx = true;
                acc.kbn(r);
            }
        }
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<SumAcc>) -> rusqlite::Result<Value> {
        let Some(mut acc) = acc else {
            return Ok(Value::Null);
        };
        if acc.count == 0 {
            return Ok(Value::Null);
        }
        if !acc.approx {
            return i64::try_from(acc.int_sum)
                .map(Value::Integer)
                .map_err(|_| rusqlite::Error::UserFunctionError("integer overflow".into()));
        }
        let int_part = acc.int_sum;
        acc.kbn_int(int_part);
        Ok(Value::Real(if acc.r_err.is_finite() {
            acc.r_sum + acc.r_err
        } else {
            acc.r_sum
        }))
    }
}
