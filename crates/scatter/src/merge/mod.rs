//! Merge execution: combines the rows of every segment (the answers to
//! [`ScatterPlan::segment_sql`]) into the answer of the query. Blocking: run it in
//! `spawn_blocking` (see the module docs of [`super`] for feeding it from async streams).
//!
//! This file holds the public types and [`merge`], which checks the segment columns and starts the
//! merge the plan asks for; the merges themselves are in the submodules:
//!
//! - `stream`: concatenation and the k-way merge of sorted rows, streaming (Concat, SortedMerge);
//! - `sql`: the temporary merge database and the merge SQL (SqlMerge);
//! - `sum`: `_trough_sum`, the exact `sum()` of partial sums the merge SQL uses;
//! - `guard`: the check of every segment row (its width).

mod guard;
mod sql;
mod stream;
mod sum;

use std::path::PathBuf;
use std::time::Instant;
use trough_types::error::codes;

use serde_json::Value as Json;
use trough_sqlite::{CancelToken, Params};
use trough_types::error::{Error, ErrorKind, Result};

use super::plan::{KeyCol, MergeSpec, Names, OutputName, ScatterPlan};
use guard::RowCheck;
use sql::{sql_merge, SqlResult};
use stream::StreamMerge;

/// One row: values in column order, in the JSON value encoding of [`trough_sqlite::value`].
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
        trough_types::error::codes::QUERY_CANCELLED,
        "the query was cancelled: its client went away",
    )
}

fn timeout() -> Error {
    Error::new(
        ErrorKind::Timeout,
        codes::QUERY_TIMEOUT,
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
    let checker = RowCheck { width: n };
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
                            codes::SQL_ERROR,
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
