//! The embedded coordinator: one process, state persisted in a local SQLite file.
//!
//! `trough serve` runs every part in one process, so coordination is a matter of shared state and
//! durable bookkeeping: the catalog, schemas, the assignment and locks live in
//! `<data_dir>/coordinator.sqlite` (WAL, `synchronous=FULL`), and change notifications are an
//! in-process counter. Locks never expire here (there is no other process to take over), so a
//! [`Lease`] from this backend is never lost. Not for clusters: use the Consul backend there.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::{AssignmentMap, Coordinator, Lease, NodeInfo};
use crate::error::{Error, Result};
use crate::id::{NodeName, SchemaName, SegmentId};
use crate::manifest::{Manifest, SegmentEntry, WritableInfo};

/// How long a node stays listed without refreshing its registration.
pub const NODE_TTL: Duration = Duration::from_secs(30);

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS versions (
    id TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL,
    PRIMARY KEY (id, version));
CREATE TABLE IF NOT EXISTS writable (id TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schemas (name TEXT PRIMARY KEY, sql TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignment (k INTEGER PRIMARY KEY CHECK (k = 0), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, holder TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (id TEXT PRIMARY KEY);
INSERT OR IGNORE INTO segments SELECT id FROM versions UNION SELECT id FROM writable;
";

/// In-process coordinator persisted in SQLite.
#[derive(Clone)]
pub struct EmbeddedCoordinator {
    db: Arc<Mutex<Connection>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl EmbeddedCoordinator {
    /// Opens (creating if needed) the coordinator database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A coordinator that forgets everything when dropped (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA_SQL)?;
        // Locks do not survive a restart of the only process that could hold them.
        conn.execute("DELETE FROM locks", [])?;
        let (tx, _rx) = tokio::sync::watch::channel(1u64);
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
            changes: Arc::new(tx),
        })
    }

    /// Runs `f` on the database off the async runtime.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a panic mid-transaction; SQLite rolled it back, so the
            // connection itself is still consistent.
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::internal(format!("coordinator task failed: {e}")))?
    }

    fn notify(&self) {
        self.changes.send_modify(|i| *i += 1);
    }
}

fn load_entry(conn: &Connection, id: &SegmentId) -> Result<Option<SegmentEntry>> {
    let mut stmt =
        conn.prepare_cached("SELECT manifest FROM versions WHERE id = ?1 ORDER BY version")?;
    let versions = stmt
        .query_map([id.as_str()], |r| r.get::<_, String>(0))?
        .map(|r| Ok(serde_json::from_str::<Manifest>(&r?)?))
        .collect::<Result<Vec<_>>>()?;
    let writable: Option<String> = conn
        .query_row(
            "SELECT info FROM writable WHERE id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let writable = writable
        .map(|s| serde_json::from_str::<WritableInfo>(&s))
        .transpose()?;
    if versions.is_empty() && writable.is_none() {
        // A segment that existed stays in the catalog (empty) when it stops being writable.
        let exists: bool = conn
            .query_row(
                "SELECT 1 FROM segments WHERE id = ?1",
                [id.as_str()],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if !exists {
            return Ok(None);
        }
    }
    Ok(Some(SegmentEntry {
        id: id.clone(),
        versions,
        writable,
    }))
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    async fn list_segments(&self) -> Result<Vec<SegmentEntry>> {
        self.with(|conn| {
            let ids: Vec<String> = conn
                .prepare("SELECT id FROM segments ORDER BY 1")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let id = SegmentId::new(&id)?;
                if let Some(e) = load_entry(conn, &id)? {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>> {
        let id = id.clone();
        self.with(move |conn| load_entry(conn, &id)).await
    }

    async fn add_version(&self, manifest: &Manifest) -> Result<SegmentEntry> {
        let m = manifest.clone();
        let (entry, changed) = self
            .with(move |conn| {
                let tx = conn.transaction()?;
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT sha256 FROM versions WHERE id = ?1 AND version = ?2",
                        params![m.id.as_str(), m.version as i64],
                        |r| r.get(0),
                    )
                    .optional()?;
                let changed = match existing {
                    Some(sha) if sha == m.sha256 => false,
                    Some(sha) => {
                        return Err(Error::conflict(
                            "version_conflict",
                            format!(
                                "{} v{} is already recorded with sha256 {sha}",
                                m.id, m.version
                            ),
                        ))
                    }
                    None => {
                        tx.execute(
                            "INSERT OR IGNORE INTO segments (id) VALUES (?1)",
                            [m.id.as_str()],
                        )?;
                        tx.execute(
                            "INSERT INTO versions (id, version, sha256, manifest) VALUES (?1, ?2, ?3, ?4)",
                            params![m.id.as_str(), m.version as i64, m.sha256, serde_json::to_string(&m)?],
                        )?;
                        true
                    }
                };
                let entry = load_entry(&tx, &m.id)?.expect("just inserted");
                tx.commit()?;
                Ok((entry, changed))
            })
            .await?;
        if changed {
            self.notify();
        }
        Ok(entry)
    }

    async fn set_writable(
        &self,
        id: &SegmentId,
        info: Option<WritableInfo>,
    ) -> Result<SegmentEntry> {
        let id = id.clone();
        let entry = self
            .with(move |conn| {
                let tx = conn.transaction()?;
                let current = load_entry(&tx, &id)?.and_then(|e| e.writable);
                match (&current, &info) {
                    (Some(cur), Some(new)) if cur.writer != new.writer => {
                        return Err(Error::conflict(
                            "write_lease_elsewhere",
                            format!("{id} is writable on node {}", cur.writer),
                        ))
                    }
                    (Some(_), Some(_)) => {}
                    (_, Some(new)) => {
                        tx.execute(
                            "INSERT OR IGNORE INTO segments (id) VALUES (?1)",
                            [id.as_str()],
                        )?;
                        tx.execute(
                            "INSERT INTO writable (id, info) VALUES (?1, ?2)",
                            params![id.as_str(), serde_json::to_string(new)?],
                        )?;
                    }
                    (_, None) => {
                        tx.execute("DELETE FROM writable WHERE id = ?1", [id.as_str()])?;
                    }
                }
                let entry = load_entry(&tx, &id)?.unwrap_or(SegmentEntry {
                    id: id.clone(),
                    versions: vec![],
                    writable: None,
                });
                tx.commit()?;
                Ok(entry)
            })
            .await?;
        self.notify();
        Ok(entry)
    }

    async fn wait_for_change(&self, since: u64, timeout: Duration) -> Result<u64> {
        let mut rx = self.changes.subscribe();
        let current = *rx.borrow_and_update();
        if since == 0 || current > since {
            return Ok(current);
        }
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
        let now = *rx.borrow();
        Ok(now)
    }

    async fn put_schema(&self, name: &SchemaName, sql: &str) -> Result<bool> {
        let (name, sql) = (name.clone(), sql.to_owned());
        self.with(move |conn| {
            let existed: bool = conn
                .query_row(
                    "SELECT 1 FROM schemas WHERE name = ?1",
                    [name.as_str()],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            conn.execute(
                "INSERT INTO schemas (name, sql) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET sql = excluded.sql",
                params![name.as_str(), sql],
            )?;
            Ok(!existed)
        })
        .await
    }

    async fn get_schema(&self, name: &SchemaName) -> Result<Option<String>> {
        let name = name.clone();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT sql FROM schemas WHERE name = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn list_schemas(&self) -> Result<Vec<(SchemaName, String)>> {
        self.with(|conn| {
            let rows: Vec<(String, String)> = conn
                .prepare("SELECT name, sql FROM schemas ORDER BY name")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(n, s)| Ok((SchemaName::new(&n)?, s)))
                .collect()
        })
        .await
    }

    async fn register_node(&self, node: &NodeInfo) -> Result<()> {
        let mut node = node.clone();
        node.updated_at = Utc::now();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO nodes (name, info) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET info = excluded.info",
                params![node.name.as_str(), serde_json::to_string(&node)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.with(|conn| {
            let rows: Vec<String> = conn
                .prepare("SELECT info FROM nodes ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let cutoff = Utc::now() - chrono::Duration::from_std(NODE_TTL).unwrap_or_default();
            let mut out = Vec::new();
            for r in rows {
                let n: NodeInfo = serde_json::from_str(&r)?;
                if n.updated_at >= cutoff {
                    out.push(n);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_assignment(&self, assignment: &AssignmentMap) -> Result<()> {
        let doc = serde_json::to_string(assignment)?;
        let changed = self
            .with(move |conn| {
                let old: Option<String> = conn
                    .query_row("SELECT doc FROM assignment WHERE k = 0", [], |r| r.get(0))
                    .optional()?;
                if old.as_deref() == Some(doc.as_str()) {
                    return Ok(false);
                }
                conn.execute(
                    "INSERT INTO assignment (k, doc) VALUES (0, ?1)
                     ON CONFLICT(k) DO UPDATE SET doc = excluded.doc",
                    [doc],
                )?;
                Ok(true)
            })
            .await?;
        if changed {
            self.notify();
        }
        Ok(())
    }

    async fn get_assignment(&self) -> Result<AssignmentMap> {
        self.with(|conn| {
            let doc: Option<String> = conn
                .query_row("SELECT doc FROM assignment WHERE k = 0", [], |r| r.get(0))
                .optional()?;
            Ok(match doc {
                Some(d) => serde_json::from_str(&d)?,
                None => AssignmentMap::new(),
            })
        })
        .await
    }

    async fn try_lock(&self, key: &str, holder: &NodeName) -> Result<Option<Lease>> {
        let (k, h) = (key.to_owned(), holder.clone());
        let got = self
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO locks (key, holder) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                    params![k, h.as_str()],
                )?;
                let cur: String =
                    conn.query_row("SELECT holder FROM locks WHERE key = ?1", [&k], |r| {
                        r.get(0)
                    })?;
                Ok(cur == h.as_str())
            })
            .await?;
        if !got {
            return Ok(None);
        }
        // Never lost: nothing else can take an embedded lock. The sender is leaked into the
        // receiver's channel state by dropping it; `borrow()` keeps returning `false`.
        let (_tx, rx) = tokio::sync::watch::channel(false);
        Ok(Some(Lease {
            key: key.to_owned(),
            holder: holder.clone(),
            lost: rx,
        }))
    }

    async fn unlock(&self, key: &str, holder: &NodeName) -> Result<()> {
        let (k, h) = (key.to_owned(), holder.clone());
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM locks WHERE key = ?1 AND holder = ?2",
                params![k, h.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn lock_holder(&self, key: &str) -> Result<Option<NodeName>> {
        let k = key.to_owned();
        let h: Option<String> = self
            .with(move |conn| {
                Ok(conn
                    .query_row("SELECT holder FROM locks WHERE key = ?1", [&k], |r| {
                        r.get(0)
                    })
                    .optional()?)
            })
            .await?;
        h.map(|s| NodeName::new(&s)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_in_memory() {
        let c = EmbeddedCoordinator::in_memory().unwrap();
        super::super::conformance::run_all(&c).await;
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coord.sqlite");
        let c = EmbeddedCoordinator::open(&path).unwrap();
        super::super::conformance::catalog(&c).await;
        super::super::conformance::schemas(&c).await;
        drop(c);
        let c = EmbeddedCoordinator::open(&path).unwrap();
        let e = c
            .get_segment(&SegmentId::new("cat-a").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.latest_version(), 2);
        assert!(c
            .get_schema(&SchemaName::new("urls").unwrap())
            .await
            .unwrap()
            .is_some());
    }
}
