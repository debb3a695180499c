//! The gather's merge database: a temporary SQLite file that receives the segment schema (the
//! same `CREATE` statements, so affinities, collations and declared types behave as in one
//! database), then every selected segment's rows of the tables the query reads, then runs the
//! original query with the request's parameters. Blocking: run it in `spawn_blocking`.
//!
//! Memory and disk: the page cache is `cache_size` from the merge memory budget, temporary
//! storage is a file, there is no journal; past the budget SQLite spills to disk. The file is
//! capped by the disk budget (`max_page_count`): past it the query fails with `merge_too_large`
//! naming the budget. The answer is written to a result table and read back in pages, so every
//! error (budget, timeout, a constraint, the query's own) happens before the first row.
//!
//! Not here: deciding what to gather (`analyze`, `plan`), fetching rows (the router's fan-out).

use std::collections::VecDeque;
use std::time::Instant;
use trough_types::error::codes;

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::Value as Json;
use trough_sqlite::value::{from_json, to_json};
use trough_sqlite::{bind, CancelToken, Params};
use trough_types::error::{Error, ErrorKind, Result};

use super::schema::{Kind, Schema};
use crate::MergeOptions;

/// Rows read back from the result table at a time.
const PAGE_ROWS: i64 = 256;

/// What an SQLite error means while the merge database is being filled or queried.
#[derive(Clone, Copy)]
enum Stage<'a> {
    Load(&'a str),
    Index(&'a str),
    Query,
}

fn db_error(e: rusqlite::Error, stage: Stage<'_>, opts: &MergeOptions) -> Error {
    match (trough_sqlite::error_code(&e), stage) {
        (Some(ErrorCode::DiskFull), _) => Error::invalid(
            codes::MERGE_TOO_LARGE,
            match opts.disk_budget_bytes {
                Some(b) => format!(
                    "the rows gathered for this query need more disk than the merge budget of \
                     {b} bytes (limits.scatter.merge_disk_budget_bytes); select fewer segments or \
                     filter more"
                ),
                None => "the rows gathered for this query do not fit on the merge disk".to_owned(),
            },
        ),
        (Some(ErrorCode::OutOfMemory), _) => Error::invalid(
            codes::MERGE_TOO_LARGE,
            "the merge of the gathered rows ran out of memory",
        ),
        (Some(ErrorCode::OperationInterrupted), _) => {
            if opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                Error::new(
                    ErrorKind::Unavailable,
                    trough_types::error::codes::QUERY_CANCELLED,
                    "the query was cancelled: its client went away",
                )
            } else {
                timeout()
            }
        }
        (Some(ErrorCode::ConstraintViolation), Stage::Load(t) | Stage::Index(t)) => Error::invalid(
            codes::UNSUPPORTED_SCATTER_QUERY,
            format!(
                "rows of {t} from different segments violate its PRIMARY KEY or UNIQUE \
                 constraint ({e}): one database could not hold them all"
            ),
        ),
        (
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::InternalMalfunction,
            )
            | None,
            _,
        ) => Error::new(ErrorKind::Internal, codes::MERGE_ERROR, e.to_string()),
        (_, Stage::Query) => Error::invalid(codes::SQL_ERROR, e.to_string()),
        (_, Stage::Load(t) | Stage::Index(t)) => Error::new(
            ErrorKind::Internal,
            codes::MERGE_ERROR,
            format!("cannot load {t} into the merge database: {e}"),
        ),
    }
}

fn timeout() -> Error {
    Error::new(
        ErrorKind::Timeout,
        codes::QUERY_TIMEOUT,
        "the query exceeded its time limit while merging segment answers",
    )
}

/// The merge database while it is being filled.
pub struct MergeDb {
    // Field order matters: the connection closes before the directory is removed.
    conn: Connection,
    dir: tempfile::TempDir,
    opts: MergeOptions,
    rows_loaded: u64,
}

impl MergeDb {
    /// Creates the database with the tables and views of `schema` (indexes come after the rows).
    pub fn create(schema: &Schema, opts: &MergeOptions) -> Result<MergeDb> {
        let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("trough-gather-")
            .tempdir_in(&base)
            .map_err(|e| {
                Error::internal(format!(
                    "cannot create the merge directory in {base:?}: {e}"
                ))
            })?;
        let mut conn = Connection::open_with_flags(
            dir.path().join("gather.db"),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_error(e, Stage::Query, opts))?;
        // Half the budget for the page cache: SQLite's sorter (ORDER BY, DISTINCT, index builds)
        // takes as much again before it spills to disk.
        let cache_kib = (opts.memory_budget_bytes / 2048).max(256);
        let mut pragmas = format!(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA temp_store = FILE; PRAGMA mmap_size = 0; \
             PRAGMA cache_size = -{cache_kib};"
        );
        if let Some(disk) = opts.disk_budget_bytes {
            pragmas.push_str(&format!(
                " PRAGMA max_page_count = {};",
                (disk / 4096).max(16)
            ));
        }
        conn.execute_batch(&pragmas)
            .map_err(|e| db_error(e, Stage::Query, opts))?;
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
            .map_err(|e| db_error(e, Stage::Query, opts))?;
        }
        for e in &schema.entries {
            if matches!(e.kind, Kind::Table | Kind::View) {
                conn.execute_batch(&e.sql)
                    .map_err(|err| db_error(err, Stage::Load(&e.name), opts))?;
            }
        }
        conn.execute_batch("BEGIN")
            .map_err(|e| db_error(e, Stage::Query, opts))?;
        Ok(MergeDb {
            conn,
            dir,
            opts: opts.clone(),
            rows_loaded: 0,
        })
    }

    /// Inserts one segment's rows of `table` (values of `columns`, in order, in the JSON value
    /// encoding). Returns the number of rows.
    pub fn insert(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &mut dyn Iterator<Item = Result<Vec<Json>>>,
    ) -> Result<u64> {
        let opts = &self.opts;
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "INSERT INTO main.{} ({}) VALUES ({})",
                quote(table),
                cols.join(", "),
                marks.join(", ")
            ))
            .map_err(|e| db_error(e, Stage::Load(table), opts))?;
        let mut n = 0u64;
        for row in rows {
            let row = row?;
            if row.len() != columns.len() {
                return Err(Error::internal(format!(
                    "a segment returned {} values for a row of {table}, expected {}",
                    row.len(),
                    columns.len()
                )));
            }
            for (i, v) in row.iter().enumerate() {
                let v = from_json(v)
                    .map_err(|e| Error::internal(format!("bad value in a row of {table}: {e}")))?;
                stmt.raw_bind_parameter(i + 1, v)
                    .map_err(|e| db_error(e, Stage::Load(table), opts))?;
            }
            stmt.raw_execute()
                .map_err(|e| db_error(e, Stage::Load(table), opts))?;
            n += 1;
            if (self.rows_loaded + n).is_multiple_of(1024) {
                check(opts)?;
            }
        }
        self.rows_loaded += n;
        Ok(n)
    }

    /// Creates the indexes, runs `sql` with `params` and stores its answer.
    pub fn finish(self, schema: &Schema, sql: &str, params: &Params) -> Result<GatheredRows> {
        let MergeDb {
            conn, dir, opts, ..
        } = self;
        for e in &schema.entries {
            if e.kind == Kind::Index {
                conn.execute_batch(&e.sql)
                    .map_err(|err| db_error(err, Stage::Index(&e.table), &opts))?;
            }
        }
        let mut result = "_trough_result".to_owned();
        while schema.get(&result).is_some() {
            result.push('_');
        }
        let (columns, width) = {
            let mut stmt = conn
                .prepare(sql)
                .map_err(|e| db_error(e, Stage::Query, &opts))?;
            bind(&mut stmt, params)?;
            let width = stmt.column_count();
            let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            let rcols: Vec<String> = (0..width).map(|i| format!("\"_r{i}\"")).collect();
            conn.execute_batch(&format!(
                "CREATE TABLE {}({});",
                quote(&result),
                rcols.join(", ")
            ))
            .map_err(|e| db_error(e, Stage::Query, &opts))?;
            let marks: Vec<String> = (1..=width).map(|i| format!("?{i}")).collect();
            let mut insert = conn
                .prepare(&format!(
                    "INSERT INTO {} VALUES ({})",
                    quote(&result),
                    marks.join(", ")
                ))
                .map_err(|e| db_error(e, Stage::Query, &opts))?;
            let mut rows = stmt.raw_query();
            while let Some(r) = rows.next().map_err(|e| db_error(e, Stage::Query, &opts))? {
                for i in 0..width {
                    let v: Value = r.get(i).map_err(|e| db_error(e, Stage::Query, &opts))?;
                    insert
                        .raw_bind_parameter(i + 1, v)
                        .map_err(|e| db_error(e, Stage::Query, &opts))?;
                }
                insert
                    .raw_execute()
                    .map_err(|e| db_error(e, Stage::Query, &opts))?;
            }
            (columns, width)
        };
        conn.execute_batch("COMMIT")
            .map_err(|e| db_error(e, Stage::Query, &opts))?;
        Ok(GatheredRows {
            read: format!(
                "SELECT rowid, * FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                quote(&result)
            ),
            conn,
            _dir: dir,
            opts,
            columns,
            buffer: VecDeque::new(),
            last_rowid: 0,
            done: false,
            width,
        })
    }
}

fn check(opts: &MergeOptions) -> Result<()> {
    if opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
        return Err(Error::new(
            ErrorKind::Unavailable,
            trough_types::error::codes::QUERY_CANCELLED,
            "the query was cancelled: its client went away",
        ));
    }
    if opts.deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(timeout());
    }
    Ok(())
}

/// `name` as an SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The answer of a gathered query: its column names (SQLite's) and its rows, in the order the
/// query produced them.
pub struct GatheredRows {
    // Field order matters: the connection closes before the directory is removed.
    conn: Connection,
    _dir: tempfile::TempDir,
    opts: MergeOptions,
    read: String,
    columns: Vec<String>,
    buffer: VecDeque<Vec<Json>>,
    last_rowid: i64,
    done: bool,
    width: usize,
}

impl GatheredRows {
    /// The result column names, as one database would name them.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    fn fill(&mut self) -> Result<()> {
        let opts = &self.opts;
        let mut stmt = self
            .conn
            .prepare_cached(&self.read)
            .map_err(|e| db_error(e, Stage::Query, opts))?;
        let mut rows = stmt
            .query(rusqlite::params![self.last_rowid, PAGE_ROWS])
            .map_err(|e| db_error(e, Stage::Query, opts))?;
        let mut got = 0;
        while let Some(r) = rows.next().map_err(|e| db_error(e, Stage::Query, opts))? {
            got += 1;
            self.last_rowid = r.get(0).map_err(|e| db_error(e, Stage::Query, opts))?;
            let mut out = Vec::with_capacity(self.width);
            for i in 0..self.width {
                out.push(to_json(
                    r.get_ref(i + 1)
                        .map_err(|e| db_error(e, Stage::Query, opts))?,
                ));
            }
            self.buffer.push_back(out);
        }
        if got < PAGE_ROWS {
            self.done = true;
        }
        Ok(())
    }
}

impl Iterator for GatheredRows {
    type Item = Result<Vec<Json>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl std::fmt::Debug for GatheredRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatheredRows")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}
