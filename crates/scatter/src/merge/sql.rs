//! The SQL merge: loads the segments' partial rows into a temporary SQLite database (page cache
//! bounded by the memory budget, spilling to disk, file capped by the disk budget), runs the plan's
//! merge SQL there with the request's parameters, stores the result and reads it back in pages, so
//! every merge error happens before the first row. The streaming merges are in `stream`.

use std::collections::VecDeque;
use std::time::Instant;
use trough_types::error::codes;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use trough_sqlite::value::{from_json, to_json};
use trough_sqlite::{bind, CancelToken, Params};
use trough_types::error::{Error, ErrorKind, Result};

use super::guard::RowCheck;
use super::sum::ExactSum;
use super::{internal, timeout, MergeOptions, Row, SegmentStream};
use crate::plan::SqlBody;

/// The merge database and its paged result.
pub(super) struct SqlResult {
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
    pub(super) fn next(&mut self) -> Option<Result<Row>> {
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
    match trough_sqlite::error_code(&e) {
        Some(ErrorCode::DiskFull) => Error::invalid(
            codes::MERGE_TOO_LARGE,
            "the merge of the segment answers needs more disk than its budget allows",
        ),
        Some(ErrorCode::OperationInterrupted) => timeout(),
        Some(ErrorCode::OutOfMemory) => Error::invalid(
            codes::MERGE_TOO_LARGE,
            "the merge of the segment answers ran out of memory",
        ),
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::InternalMalfunction,
        ) => Error::new(ErrorKind::Internal, codes::MERGE_ERROR, e.to_string()),
        None => Error::new(ErrorKind::Internal, codes::MERGE_ERROR, e.to_string()),
        // Errors of the query's own expressions (integer overflow, …), as SQLite says them.
        _ => Error::invalid(codes::SQL_ERROR, e.to_string()),
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
    // The same string/blob length and parameter limits as segment connections.
    trough_sqlite::limits::apply(&conn).map_err(merge_error)?;
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

pub(super) fn sql_merge(
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
