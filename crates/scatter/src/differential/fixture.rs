//! The fixture: segment files and a monolithic database holding the same rows, and running one
//! query both ways: directly on one database ([`run_one`]), and planned, run per segment and
//! merged ([`run_scatter`]). Shared with `tests.rs`; knows nothing of generated queries or of how
//! answers are compared.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use trough_sqlite::value::to_json;
use trough_sqlite::{bind, Access, Params};

use crate::{merge, plan, plan_with_columns, MergeOptions, Row, SegmentFacts, SegmentStream};

/// Segment files and the monolithic database, in a temporary directory.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub segments: Vec<PathBuf>,
    pub mono: PathBuf,
}

impl Fixture {
    /// Creates `n` segments with `schema`, and the monolith; `rows(i)` says which segment row
    /// `i` goes to.
    pub fn new(n: usize, schema: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let segments: Vec<PathBuf> = (0..n)
            .map(|i| dir.path().join(format!("seg{i:02}.sqlite")))
            .collect();
        let mono = dir.path().join("mono.sqlite");
        for p in segments.iter().chain(std::iter::once(&mono)) {
            let c = Connection::open(p).unwrap();
            c.execute_batch(schema).unwrap();
        }
        Self {
            dir,
            segments,
            mono,
        }
    }

    /// Inserts one row (SQL `INSERT` text) into segment `seg` and into the monolith.
    pub fn insert_all(&self, rows: &[(usize, String)]) {
        let conns: Vec<Connection> = self
            .segments
            .iter()
            .map(|p| Connection::open(p).unwrap())
            .collect();
        let mono = Connection::open(&self.mono).unwrap();
        for c in conns.iter().chain(std::iter::once(&mono)) {
            c.execute_batch("BEGIN").unwrap();
        }
        for (seg, sql) in rows {
            conns[*seg].execute_batch(sql).unwrap();
            mono.execute_batch(sql).unwrap();
        }
        for c in &conns {
            c.execute_batch("COMMIT").unwrap();
        }
        mono.execute_batch("COMMIT").unwrap();
    }

    pub fn open_segments(&self) -> Vec<Connection> {
        self.segments.iter().map(|p| open_ro(p)).collect()
    }
}

pub(super) fn open_ro(p: &Path) -> Connection {
    trough_sqlite::open(p, Access::ReadOnlyImmutable).unwrap()
}

/// Column names and rows of `sql` on one connection.
pub(crate) fn run_one(
    conn: &Connection,
    sql: &str,
    params: &Params,
) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    bind(&mut stmt, params).map_err(|e| e.to_string())?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let n = names.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        out.push((0..n).map(|i| to_json(r.get_ref(i).unwrap())).collect());
    }
    Ok((names, out))
}

/// The outcome of a scatter run.
pub(crate) enum Scatter {
    Refused(String),
    Failed(String),
    Rows(Vec<String>, Vec<Row>),
}

/// Plans `sql`, runs the segment SQL on every segment, merges.
pub(crate) fn run_scatter(
    segments: &[Connection],
    sql: &str,
    params: &Params,
    opts: &MergeOptions,
) -> Scatter {
    let mut p = match plan(sql) {
        Ok(p) => p,
        Err(e) => return Scatter::Refused(e.to_string()),
    };
    // The guard query, answered by every segment, judged before anything is merged.
    let mut facts = Vec::new();
    for (i, c) in segments.iter().enumerate() {
        let row = match run_one(c, p.guard_sql(), &Params::None) {
            Ok((_, rows)) if rows.len() == 1 => rows.into_iter().next().unwrap(),
            Ok((_, rows)) => return Scatter::Failed(format!("guard: {} rows", rows.len())),
            Err(e) => return Scatter::Failed(e),
        };
        match SegmentFacts::from_row(&row) {
            Ok(f) => facts.push((format!("seg{i:02}"), f)),
            Err(e) => return Scatter::Failed(e.to_string()),
        }
    }
    match p.check_segments(&facts) {
        Ok(None) => {}
        Ok(Some(columns)) => {
            p = match plan_with_columns(sql, &columns) {
                Ok(p) => p,
                Err(e) => return Scatter::Refused(e.to_string()),
            };
            if let Err(e) = p.check_segments(&facts) {
                return Scatter::Failed(e.to_string());
            }
        }
        Err(e) => return Scatter::Failed(e.to_string()),
    }
    let mut streams = Vec::new();
    let mut columns = None;
    for (i, c) in segments.iter().enumerate() {
        match run_one(c, p.segment_sql(), params) {
            Ok((names, rows)) => {
                columns.get_or_insert(names);
                streams.push(SegmentStream::new(
                    format!("seg{i:02}"),
                    Box::new(rows.into_iter().map(Ok)),
                ));
            }
            Err(e) => return Scatter::Failed(e),
        }
    }
    let columns = columns.unwrap_or_default();
    match merge(&p, params, &columns, streams, opts) {
        Ok(m) => {
            let names = m.columns().to_vec();
            match m.collect::<Result<Vec<_>, _>>() {
                Ok(rows) => Scatter::Rows(names, rows),
                Err(e) => Scatter::Failed(e.to_string()),
            }
        }
        Err(e) => Scatter::Failed(e.to_string()),
    }
}
