//! The embedded coordinator: one process, state persisted in a local SQLite file.
//!
//! `trough serve` runs every part in one process, so coordination is a matter of shared state and
//! durable bookkeeping: the catalog, schemas, the assignment and locks live in
//! `<data_dir>/coordinator.sqlite` (WAL, `synchronous=FULL`), and change notifications are an
//! in-process counter. Locks never expire here (there is no other process to take over), so a
//! [`Lease`] from this backend is never lost. Not for clusters: use the Consul backend there.
//!
//! ## Cost of a change
//!
//! The file is read once, at open, into memory; every read is answered from memory and every
//! change is a few point writes with cached prepared statements (see `store`), so a publish costs
//! the same with ten segments or a hundred thousand. The assignment is stored one row per segment
//! and only the rows that changed are written. Catalog changes are logged in memory (the last
//! [`CHANGE_LOG_LEN`]) so followers can apply them one by one
//! ([`Coordinator::catalog_changes`]) instead of re-reading the catalog. Node registrations are
//! liveness and stay in memory (a restarted process registers again at once).
//! [`EmbeddedCoordinator::stats`] counts statements and whole-catalog reads for tests.

mod lifecycle;
mod store;
mod tokens;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{params, Connection};

use super::{AssignmentMap, Coordinator, Lease, NodeInfo};
use trough_types::error::{Error, Result};

/// A failure of the coordinator's own database: always internal (the caller's input was checked
/// before it reached SQLite).
pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    Error::new(
        trough_types::ErrorKind::Internal,
        "sqlite_error",
        e.to_string(),
    )
}
use store::Db;
use trough_types::id::{NodeName, SchemaName, SegmentId};
use trough_types::manifest::{Manifest, SegmentEntry, WritableInfo};

/// How long a node stays listed without refreshing its registration.
pub const NODE_TTL: Duration = Duration::from_secs(30);

/// How many catalog changes are kept for [`Coordinator::catalog_changes`].
pub const CHANGE_LOG_LEN: usize = 65_536;

/// Work counters of one embedded coordinator (see [`EmbeddedCoordinator::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// SQL statements run since open (transactions count their BEGIN and COMMIT).
    pub statements: u64,
    /// Calls of [`Coordinator::list_segments`] (whole-catalog reads).
    pub list_segments: u64,
    /// Calls of [`Coordinator::list_nodes`].
    pub list_nodes: u64,
    /// Calls of [`Coordinator::get_segment`] (point reads).
    pub get_segment: u64,
    /// Calls of [`Coordinator::get_assignment`] (whole-assignment reads).
    pub get_assignment: u64,
}

/// What is answered from memory.
struct Mem {
    catalog: BTreeMap<SegmentId, SegmentEntry>,
    assignment: AssignmentMap,
    nodes: BTreeMap<NodeName, NodeInfo>,
    /// The change index (also published on the watch channel).
    index: u64,
    /// Catalog changes `(index, segment)`, oldest first.
    log: VecDeque<(u64, SegmentId)>,
    /// Every catalog change after this index is in `log`.
    log_floor: u64,
    stats: EmbeddedStats,
}

impl Mem {
    /// A new change index, with the segments whose entry or assignment it changed.
    fn bump(&mut self, changed: Vec<SegmentId>) -> u64 {
        self.index += 1;
        for id in changed {
            self.log.push_back((self.index, id));
        }
        while self.log.len() > CHANGE_LOG_LEN {
            if let Some((i, _)) = self.log.pop_front() {
                self.log_floor = i;
            }
        }
        self.index
    }

    /// Writes assignment rows (`set` replaces, `removed` deletes) and applies them to memory.
    /// Only rows that differ from memory are written; returns the segments that changed.
    fn store_assignment(
        db: &mut Db,
        cell: &RwLock<Mem>,
        set: Vec<(SegmentId, Vec<NodeName>)>,
        removed: Vec<SegmentId>,
    ) -> Result<Vec<SegmentId>> {
        let (set, removed) = {
            let mem = rd(cell);
            let set: Vec<(SegmentId, Vec<NodeName>)> = set
                .into_iter()
                .filter(|(id, nodes)| mem.assignment.get(id) != Some(nodes))
                .collect();
            let removed: Vec<SegmentId> = removed
                .into_iter()
                .filter(|id| mem.assignment.contains_key(id))
                .collect();
            (set, removed)
        };
        if set.is_empty() && removed.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<String> = set
            .iter()
            .map(|(_, nodes)| Ok(serde_json::to_string(nodes)?))
            .collect::<Result<_>>()?;
        db.transaction(|db| {
            for id in &removed {
                db.exec("DELETE FROM assigned WHERE id = ?1", [id.as_str()])?;
            }
            for ((id, _), doc) in set.iter().zip(&docs) {
                db.exec(
                    "INSERT INTO assigned (id, nodes) VALUES (?1, ?2)
                     ON CONFLICT(id) DO UPDATE SET nodes = excluded.nodes",
                    params![id.as_str(), doc],
                )?;
            }
            Ok(())
        })?;
        let mut mem = wr(cell);
        let mut changed = removed.clone();
        for id in removed {
            mem.assignment.remove(&id);
        }
        for (id, nodes) in set {
            changed.push(id.clone());
            mem.assignment.insert(id, nodes);
        }
        Ok(changed)
    }
}

fn rd(mem: &RwLock<Mem>) -> std::sync::RwLockReadGuard<'_, Mem> {
    mem.read().unwrap_or_else(|p| p.into_inner())
}

fn wr(mem: &RwLock<Mem>) -> std::sync::RwLockWriteGuard<'_, Mem> {
    mem.write().unwrap_or_else(|p| p.into_inner())
}

/// In-process coordinator persisted in SQLite.
#[derive(Clone)]
pub struct EmbeddedCoordinator {
    /// Serializes writers; held across the SQL and the in-memory update.
    db: Arc<Mutex<Db>>,
    mem: Arc<RwLock<Mem>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl EmbeddedCoordinator {
    /// Opens (creating if needed) the coordinator database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db_error)?;
        Self::init(conn)
    }

    /// A coordinator that forgets everything when dropped (tests).
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(db_error)?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        let loaded = store::open(&mut conn)?;
        let (tx, _rx) = tokio::sync::watch::channel(1u64);
        Ok(Self {
            db: Arc::new(Mutex::new(Db {
                conn,
                statements: 0,
            })),
            mem: Arc::new(RwLock::new(Mem {
                catalog: loaded.catalog,
                assignment: loaded.assignment,
                nodes: BTreeMap::new(),
                index: 1,
                log: VecDeque::new(),
                log_floor: 1,
                stats: EmbeddedStats::default(),
            })),
            changes: Arc::new(tx),
        })
    }

    /// Work done since open: statements run and whole-catalog reads served.
    pub fn stats(&self) -> EmbeddedStats {
        let mut s = self.read().stats;
        s.statements = self.db.lock().unwrap_or_else(|p| p.into_inner()).statements;
        s
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut EmbeddedStats)) {
        f(&mut self.mem.write().unwrap_or_else(|p| p.into_inner()).stats);
    }

    /// Runs `f` with the database and the in-memory state, off the async runtime. `f` returns
    /// its result and whether to notify (with the segments whose entry or assignment changed).
    ///
    /// Writers are serialized by the database mutex, so `f` may check the state under a read
    /// lock, commit, then apply under a short write lock: readers never wait for an fsync.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db, &RwLock<Mem>) -> Result<(T, Option<Vec<SegmentId>>)> + Send + 'static,
    {
        let (db, mem, changes) = (self.db.clone(), self.mem.clone(), self.changes.clone());
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means a panic mid-transaction; SQLite rolled it back, and memory
            // is only updated after a commit, so both are still consistent.
            let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
            let (out, notify) = f(&mut db, &mem)?;
            if let Some(changed) = notify {
                let i = wr(&mem).bump(changed);
                changes.send_replace(i);
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::internal(format!("coordinator task failed: {e}")))?
    }

    /// Runs a read-only `f` on the database off the async runtime (schemas, locks).
    async fn query<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&mut db.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| Error::internal(format!("coordinator task failed: {e}")))?
    }
}

#[async_trait]
impl Coordinator for EmbeddedCoordinator {
    async fn list_segments(&self) -> Result<Vec<SegmentEntry>> {
        self.count(|s| s.list_segments += 1);
        let mem = self.mem.clone();
        tokio::task::spawn_blocking(move || {
            let mem = mem.read().unwrap_or_else(|p| p.into_inner());
            mem.catalog.values().cloned().collect()
        })
        .await
        .map_err(|e| Error::internal(format!("coordinator task failed: {e}")))
    }

    async fn list_segments_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SegmentEntry>> {
        use std::ops::Bound;
        let mem = self.read();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        Ok(mem
            .catalog
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(id, _)| id.as_str().starts_with(prefix))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn get_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>> {
        self.count(|s| s.get_segment += 1);
        Ok(self.read().catalog.get(id).cloned())
    }

    async fn add_version(&self, manifest: &Manifest) -> Result<SegmentEntry> {
        let m = manifest.clone();
        self.write(move |db, cell| {
            {
                let mem = rd(cell);
                let existing = mem
                    .catalog
                    .get(&m.id)
                    .and_then(|e| e.versions.iter().find(|v| v.version == m.version));
                match existing {
                    Some(v) if v.sha256 == m.sha256 => {
                        return Ok((mem.catalog[&m.id].clone(), None));
                    }
                    Some(v) => {
                        return Err(Error::conflict(
                            "version_conflict",
                            format!(
                                "{} v{} is already recorded with sha256 {}",
                                m.id, m.version, v.sha256
                            ),
                        ))
                    }
                    None => {}
                }
            }
            let doc = serde_json::to_string(&m)?;
            db.transaction(|db| {
                db.exec(
                    "INSERT OR IGNORE INTO segments (id) VALUES (?1)",
                    [m.id.as_str()],
                )?;
                db.exec(
                    "INSERT INTO versions (id, version, sha256, manifest) VALUES (?1, ?2, ?3, ?4)",
                    params![m.id.as_str(), m.version as i64, m.sha256, doc],
                )?;
                Ok(())
            })?;
            let mut mem = wr(cell);
            let e = mem
                .catalog
                .entry(m.id.clone())
                .or_insert_with(|| SegmentEntry {
                    id: m.id.clone(),
                    versions: Vec::new(),
                    writable: None,
                });
            let at = e.versions.partition_point(|v| v.version < m.version);
            e.versions.insert(at, m.clone());
            Ok((e.clone(), Some(vec![m.id.clone()])))
        })
        .await
    }

    async fn set_writable(
        &self,
        id: &SegmentId,
        info: Option<WritableInfo>,
    ) -> Result<SegmentEntry> {
        let id = id.clone();
        self.write(move |db, cell| {
            let current = rd(cell).catalog.get(&id).and_then(|e| e.writable.clone());
            match (&current, &info) {
                (Some(cur), Some(new)) if cur.writer != new.writer => {
                    return Err(Error::conflict(
                        "write_lease_elsewhere",
                        format!("{id} is writable on node {}", cur.writer),
                    ))
                }
                (Some(_), Some(_)) => {}
                (_, Some(new)) => {
                    let doc = serde_json::to_string(new)?;
                    db.transaction(|db| {
                        db.exec(
                            "INSERT OR IGNORE INTO segments (id) VALUES (?1)",
                            [id.as_str()],
                        )?;
                        db.exec(
                            "INSERT INTO writable (id, info) VALUES (?1, ?2)",
                            params![id.as_str(), doc],
                        )?;
                        Ok(())
                    })?;
                    wr(cell)
                        .catalog
                        .entry(id.clone())
                        .or_insert_with(|| SegmentEntry {
                            id: id.clone(),
                            versions: Vec::new(),
                            writable: None,
                        })
                        .writable = Some(new.clone());
                }
                (_, None) => {
                    db.exec("DELETE FROM writable WHERE id = ?1", [id.as_str()])?;
                    if let Some(e) = wr(cell).catalog.get_mut(&id) {
                        e.writable = None;
                    }
                }
            }
            let entry = rd(cell).catalog.get(&id).cloned().unwrap_or(SegmentEntry {
                id: id.clone(),
                versions: vec![],
                writable: None,
            });
            Ok((entry, Some(vec![id.clone()])))
        })
        .await
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

    async fn catalog_changes(&self, since: u64) -> Result<Option<(u64, Vec<SegmentId>)>> {
        let mem = self.read();
        if since < mem.log_floor {
            return Ok(None);
        }
        let start = mem.log.partition_point(|(i, _)| *i <= since);
        let ids: BTreeSet<SegmentId> = mem.log.range(start..).map(|(_, id)| id.clone()).collect();
        Ok(Some((mem.index, ids.into_iter().collect())))
    }

    async fn put_schema(&self, name: &SchemaName, sql: &str) -> Result<bool> {
        let (name, sql) = (name.clone(), sql.to_owned());
        self.query(move |db| {
            let existed: Option<i64> =
                db.one("SELECT 1 FROM schemas WHERE name = ?1", [name.as_str()])?;
            db.exec(
                "INSERT INTO schemas (name, sql) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET sql = excluded.sql",
                params![name.as_str(), sql],
            )?;
            Ok(existed.is_none())
        })
        .await
    }

    async fn get_schema(&self, name: &SchemaName) -> Result<Option<String>> {
        let name = name.clone();
        self.query(move |db| db.one("SELECT sql FROM schemas WHERE name = ?1", [name.as_str()]))
            .await
    }

    async fn list_schemas(&self) -> Result<Vec<(SchemaName, String)>> {
        self.query(|db| {
            db.statements += 1;
            let rows: Vec<(String, String)> = db
                .conn
                .prepare_cached("SELECT name, sql FROM schemas ORDER BY name")
                .map_err(db_error)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db_error)?;
            rows.into_iter()
                .map(|(n, s)| Ok((SchemaName::new(&n)?, s)))
                .collect()
        })
        .await
    }

    async fn register_node(&self, node: &NodeInfo) -> Result<()> {
        let mut node = node.clone();
        node.updated_at = Utc::now();
        self.mem
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .insert(node.name.clone(), node);
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        self.count(|s| s.list_nodes += 1);
        let cutoff = Utc::now() - chrono::Duration::from_std(NODE_TTL).unwrap_or_default();
        Ok(self
            .read()
            .nodes
            .values()
            .filter(|n| n.updated_at >= cutoff)
            .cloned()
            .collect())
    }

    async fn put_assignment(&self, assignment: &AssignmentMap) -> Result<()> {
        let set: Vec<(SegmentId, Vec<NodeName>)> = assignment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let new = assignment.clone();
        self.write(move |db, cell| {
            let removed: Vec<SegmentId> = rd(cell)
                .assignment
                .keys()
                .filter(|id| !new.contains_key(*id))
                .cloned()
                .collect();
            let changed = Mem::store_assignment(db, cell, set, removed)?;
            Ok(((), (!changed.is_empty()).then_some(changed)))
        })
        .await
    }

    async fn update_assignment(&self, set: &AssignmentMap, removed: &[SegmentId]) -> Result<()> {
        let set: Vec<(SegmentId, Vec<NodeName>)> =
            set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let removed = removed.to_vec();
        self.write(move |db, cell| {
            let changed = Mem::store_assignment(db, cell, set, removed)?;
            Ok(((), (!changed.is_empty()).then_some(changed)))
        })
        .await
    }

    async fn get_assigned(&self, id: &SegmentId) -> Result<Vec<NodeName>> {
        Ok(self.read().assignment.get(id).cloned().unwrap_or_default())
    }

    async fn get_assignment(&self) -> Result<AssignmentMap> {
        self.count(|s| s.get_assignment += 1);
        Ok(self.read().assignment.clone())
    }

    async fn try_lock(&self, key: &str, holder: &NodeName) -> Result<Option<Lease>> {
        let (k, h) = (key.to_owned(), holder.clone());
        let got = self
            .query(move |db| {
                db.exec(
                    "INSERT INTO locks (key, holder) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                    params![k, h.as_str()],
                )?;
                let cur: Option<String> =
                    db.one("SELECT holder FROM locks WHERE key = ?1", [&k])?;
                Ok(cur.as_deref() == Some(h.as_str()))
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
        self.query(move |db| {
            db.exec(
                "DELETE FROM locks WHERE key = ?1 AND holder = ?2",
                params![k, h.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_token(&self, token: &trough_auth::TokenRecord) -> Result<()> {
        tokens::create(self, token).await
    }

    async fn get_token(&self, accessor: &str) -> Result<Option<trough_auth::TokenRecord>> {
        tokens::get(self, accessor).await
    }

    async fn list_tokens(&self) -> Result<Vec<trough_auth::TokenRecord>> {
        tokens::list(self).await
    }

    async fn delete_token(&self, accessor: &str) -> Result<bool> {
        tokens::delete(self, accessor).await
    }

    async fn delete_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>> {
        lifecycle::delete_segment(self, id).await
    }

    async fn remove_versions(
        &self,
        id: &SegmentId,
        versions: &[u64],
    ) -> Result<Option<SegmentEntry>> {
        lifecycle::remove_versions(self, id, versions).await
    }

    async fn get_segment_info(&self, id: &SegmentId) -> Result<crate::SegmentInfo> {
        lifecycle::get_info(self, id).await
    }

    async fn set_segment_info(&self, id: &SegmentId, info: &crate::SegmentInfo) -> Result<()> {
        lifecycle::set_info(self, id, info).await
    }

    async fn list_segment_info(&self) -> Result<BTreeMap<SegmentId, crate::SegmentInfo>> {
        lifecycle::list_info(self).await
    }

    async fn lock_holder(&self, key: &str) -> Result<Option<NodeName>> {
        let k = key.to_owned();
        let h: Option<String> = self
            .query(move |db| db.one("SELECT holder FROM locks WHERE key = ?1", [&k]))
            .await?;
        h.map(|s| NodeName::new(&s)).transpose()
    }
}

#[cfg(test)]
mod tests;
