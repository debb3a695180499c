//! The embedded coordinator's durable side: the SQLite file and the statements run on it.
//!
//! Every statement is a cached prepared statement (`prepare_cached`) and every write is a point
//! write on a primary key, so the cost of a change does not depend on the size of the catalog.
//! The whole file is read once, at open, into the in-memory [`Loaded`] state that answers every
//! read. Not here: notifications and the trait (see the parent module).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::db_error;
use crate::AssignmentMap;
use trough_types::error::Result;
use trough_types::id::{NodeName, SegmentId};
use trough_types::manifest::{Manifest, SegmentEntry, WritableInfo};

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS versions (
    id TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL,
    PRIMARY KEY (id, version));
CREATE TABLE IF NOT EXISTS writable (id TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schemas (name TEXT PRIMARY KEY, sql TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignment (k INTEGER PRIMARY KEY CHECK (k = 0), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assigned (id TEXT PRIMARY KEY, nodes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, holder TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS tokens (accessor TEXT PRIMARY KEY, doc TEXT NOT NULL);
INSERT OR IGNORE INTO segments SELECT id FROM versions UNION SELECT id FROM writable;
";

/// Everything read from the file at open.
pub(super) struct Loaded {
    pub catalog: BTreeMap<SegmentId, SegmentEntry>,
    pub assignment: AssignmentMap,
}

/// Creates the tables, migrates old layouts, and reads the catalog and the assignment.
pub(super) fn open(conn: &mut Connection) -> Result<Loaded> {
    conn.execute_batch(SCHEMA_SQL).map_err(db_error)?;
    // Locks do not survive a restart of the only process that could hold them.
    conn.execute("DELETE FROM locks", []).map_err(db_error)?;
    // Node registrations are liveness, kept in memory; older files persisted them.
    conn.execute("DELETE FROM nodes", []).map_err(db_error)?;
    migrate_assignment_doc(conn)?;

    let mut catalog: BTreeMap<SegmentId, SegmentEntry> = BTreeMap::new();
    fn entry(catalog: &mut BTreeMap<SegmentId, SegmentEntry>, id: SegmentId) -> &mut SegmentEntry {
        catalog.entry(id.clone()).or_insert_with(|| SegmentEntry {
            id,
            versions: Vec::new(),
            writable: None,
        })
    }
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM segments")
        .map_err(db_error)?
        .query_map([], |r| r.get(0))
        .map_err(db_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error)?;
    for id in ids {
        entry(&mut catalog, SegmentId::new(&id)?);
    }
    let versions: Vec<String> = conn
        .prepare("SELECT manifest FROM versions ORDER BY id, version")
        .map_err(db_error)?
        .query_map([], |r| r.get(0))
        .map_err(db_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error)?;
    for m in versions {
        let m: Manifest = serde_json::from_str(&m)?;
        entry(&mut catalog, m.id.clone()).versions.push(m);
    }
    let writable: Vec<(String, String)> = conn
        .prepare("SELECT id, info FROM writable")
        .map_err(db_error)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error)?;
    for (id, info) in writable {
        entry(&mut catalog, SegmentId::new(&id)?).writable =
            Some(serde_json::from_str::<WritableInfo>(&info)?);
    }
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT id, nodes FROM assigned")
        .map_err(db_error)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error)?;
    let mut assignment = AssignmentMap::new();
    for (id, nodes) in rows {
        assignment.insert(
            SegmentId::new(&id)?,
            serde_json::from_str::<Vec<NodeName>>(&nodes)?,
        );
    }
    Ok(Loaded {
        catalog,
        assignment,
    })
}

/// Older files kept the assignment as one JSON document; it is one row per segment now.
fn migrate_assignment_doc(conn: &mut Connection) -> Result<()> {
    let doc: Option<String> = conn
        .query_row("SELECT doc FROM assignment WHERE k = 0", [], |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    let Some(doc) = doc else { return Ok(()) };
    let map: AssignmentMap = serde_json::from_str(&doc)?;
    let tx = conn.transaction().map_err(db_error)?;
    for (id, nodes) in &map {
        tx.execute(
            "INSERT OR REPLACE INTO assigned (id, nodes) VALUES (?1, ?2)",
            params![id.as_str(), serde_json::to_string(nodes)?],
        )
        .map_err(db_error)?;
    }
    tx.execute("DELETE FROM assignment", []).map_err(db_error)?;
    tx.commit().map_err(db_error)?;
    Ok(())
}

/// Counts the statements run, so tests can check that work does not grow with the catalog.
pub(super) struct Db {
    pub conn: Connection,
    pub statements: u64,
}

impl Db {
    /// Runs one cached prepared statement that returns no rows.
    pub fn exec(&mut self, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
        self.statements += 1;
        self.conn
            .prepare_cached(sql)
            .map_err(db_error)?
            .execute(p)
            .map_err(db_error)
    }

    /// Runs one cached prepared statement returning at most one row of one column.
    pub fn one<T: rusqlite::types::FromSql>(
        &mut self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Option<T>> {
        self.statements += 1;
        self.conn
            .prepare_cached(sql)
            .map_err(db_error)?
            .query_row(p, |r| r.get(0))
            .optional()
            .map_err(db_error)
    }

    /// Runs `f` in one transaction (statements inside it go through [`Db::exec`]).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        self.statements += 1;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db_error)?;
        match f(self) {
            Ok(v) => {
                self.statements += 1;
                self.conn.execute_batch("COMMIT").map_err(db_error)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
