//! # trough-writer: writable segments
//!
//! A writable segment is a live SQLite database (WAL mode) on the one node that holds its write
//! lease. This crate provisions such databases (from a registered schema, inline schema SQL, or
//! the latest stored version of an existing segment), runs write requests against them in one
//! transaction each ([`exec`]), and promotes them: a consistent snapshot taken with SQLite's
//! online backup API becomes a new immutable stored version through [`trough_store::publish`].
//!
//! Durability: a write is acknowledged only after its transaction committed with
//! `synchronous=FULL` (configurable) in WAL mode, so it survives `kill -9` of the process and,
//! with `full`, power loss too. Promotion is what makes writes visible to *other* nodes' read
//! copies; reads on this node see them at once through the live database.
//!
//! Not here: HTTP routes (the router), read queries (the reader opens the live database
//! read-only), and copying stored versions to read nodes (the synchronizer).

pub mod error;
pub mod exec;
mod release;
mod restore;
pub mod workers;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rusqlite::Connection;
use trough_coord::{write_lease_key, Coordinator, Lease};
use trough_sqlite::{open_writable, Synchronous};
use trough_store::publish::{PublishOptions, Publisher};
use trough_types::{Manifest, NodeName, SchemaName, SegmentEntry, SegmentId, WritableInfo};

pub use error::{Error, Result};
pub use exec::{ExecuteRequest, ExecuteResult, SchemaCheck};

/// How the writer runs its databases.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// `PRAGMA synchronous` of the live databases.
    pub synchronous: Synchronous,
    /// Deadline of one write request (`limits.write_timeout_ms`).
    pub write_timeout: Duration,
    /// How inline schema SQL is validated before provisioning.
    pub schema_check: SchemaCheck,
}

/// Pages copied per step of the online backup during promotion.
const BACKUP_PAGES_PER_STEP: std::ffi::c_int = 4096;

/// How a segment should be provisioned.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// A registered schema's name.
    #[serde(default)]
    pub schema: Option<SchemaName>,
    /// Inline schema SQL.
    #[serde(default)]
    pub schema_sql: Option<String>,
}

/// One live writable database.
struct WritableDb {
    id: SegmentId,
    path: PathBuf,
    schema: Option<SchemaName>,
    /// The only read-write connection. A std mutex: it is only ever locked inside
    /// `spawn_blocking`, never across an `.await`.
    conn: Mutex<Connection>,
    /// Set by every committed write, cleared by a promotion's snapshot.
    dirty: AtomicBool,
    lease: Lease,
    /// Set (under `conn`) when the segment is released ([`Writer::release`]): a write that got
    /// this database before is refused instead of landing in a file about to be deleted.
    retired: AtomicBool,
    /// Held by a promotion or a restore for its whole duration; a release that finds it taken
    /// is refused (`segment_busy`) rather than waiting.
    op: tokio::sync::Mutex<()>,
}

/// The writable segments of this node.
pub struct Writer {
    node: NodeName,
    dir: PathBuf,
    coordinator: Arc<dyn Coordinator>,
    publisher: Publisher,
    synchronous: Synchronous,
    write_timeout: Duration,
    schema_check: SchemaCheck,
    /// Segments whose write lease this node holds, with their open databases.
    dbs: Mutex<HashMap<SegmentId, Arc<WritableDb>>>,
    /// Segments the catalog says this node writes, whose lease it does not hold right now (after a
    /// restart, until the old session's lock expires; or after losing the lease). Writes to them
    /// are refused until [`Writer::keep_leases`] takes the lease again.
    pending: Mutex<BTreeMap<SegmentId, Option<SchemaName>>>,
}

impl Writer {
    /// Opens the writer, re-opening every segment whose write lease this node holds in the
    /// catalog. Returns the writer and the (id, path) of each live database, for the reader.
    pub async fn open(
        node: NodeName,
        dir: PathBuf,
        coordinator: Arc<dyn Coordinator>,
        publisher: Publisher,
        options: WriterOptions,
    ) -> Result<Self> {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(trough_types::Error::from)?;
        let w = Self {
            node,
            dir,
            coordinator,
            publisher,
            synchronous: options.synchronous,
            write_timeout: options.write_timeout,
            schema_check: options.schema_check,
            dbs: Mutex::new(HashMap::new()),
            pending: Mutex::new(BTreeMap::new()),
        };
        for entry in w.coordinator.list_segments().await? {
            let Some(info) = &entry.writable else {
                continue;
            };
            if info.writer != w.node {
                continue;
            }
            let path = w.db_path(&entry.id);
            if !path.exists() {
                // The live file is gone (disk replaced?): resume from the last promoted version.
                tracing::error!(segment = %entry.id, "live database missing; restoring from the latest stored version");
                w.materialize(&entry, None, &path).await?;
            }
            match w.attach(&entry.id, info.schema.clone(), path).await {
                Ok(()) => {}
                Err(Error::LeaseElsewhere { .. }) => {
                    // Our previous session still holds it (we restarted): take it over once that
                    // session expires. Reads keep working from the live database meanwhile.
                    tracing::warn!(segment = %entry.id, "write lease still held by a previous session; writes wait until it expires");
                    w.pending_lock()
                        .insert(entry.id.clone(), info.schema.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(w)
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SegmentId, Option<SchemaName>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One round of lease keeping: segments whose lease was lost stop taking writes at once and
    /// are retried, as are segments still waiting for a lease ([`workers::LeaseKeeper`] runs it
    /// every second).
    pub async fn keep_leases(&self) {
        let lost: Vec<Arc<WritableDb>> = {
            let mut dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<SegmentId> = dbs
                .values()
                .filter(|d| !d.lease.is_held())
                .map(|d| d.id.clone())
                .collect();
            ids.iter().filter_map(|id| dbs.remove(id)).collect()
        };
        for db in lost {
            tracing::error!(segment = %db.id, "write lease lost; writes refused until it is reacquired");
            self.pending_lock().insert(db.id.clone(), db.schema.clone());
        }
        let pending: Vec<(SegmentId, Option<SchemaName>)> = self
            .pending_lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, schema) in pending {
            match self.attach(&id, schema, self.db_path(&id)).await {
                Ok(()) => {
                    self.pending_lock().remove(&id);
                    tracing::info!(segment = %id, "write lease acquired; accepting writes");
                }
                Err(Error::LeaseElsewhere { .. }) => {}
                Err(e) => {
                    tracing::warn!(segment = %id, error = %e, "reacquiring write lease failed")
                }
            }
        }
    }

    /// Where a segment's live database lives.
    pub fn db_path(&self, id: &SegmentId) -> PathBuf {
        self.dir.join(format!("{id}.sqlite"))
    }

    /// The (id, path) of every live database on this node (leased, or waiting for its lease:
    /// reads are safe either way, nobody else writes it).
    pub fn live(&self) -> Vec<(SegmentId, PathBuf)> {
        let mut v: Vec<_> = {
            let dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
            dbs.values()
                .map(|d| (d.id.clone(), d.path.clone()))
                .collect()
        };
        v.extend(
            self.pending_lock()
                .keys()
                .map(|id| (id.clone(), self.db_path(id))),
        );
        v.sort();
        v
    }

    /// Whether this node is the writer of `id` (holding its lease, or waiting to take it back).
    pub fn holds(&self, id: &SegmentId) -> bool {
        self.get(id).is_some() || self.pending_lock().contains_key(id)
    }

    fn get(&self, id: &SegmentId) -> Option<Arc<WritableDb>> {
        let dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
        dbs.get(id).cloned()
    }

    async fn attach(
        &self,
        id: &SegmentId,
        schema: Option<SchemaName>,
        path: PathBuf,
    ) -> Result<()> {
        let lease = self
            .coordinator
            .try_lock(&write_lease_key(id), &self.node)
            .await?
            .ok_or_else(|| Error::LeaseElsewhere {
                id: id.clone(),
                writer: self.node.clone(),
            })?;
        let sync = self.synchronous;
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_writable(&p, sync))
            .await
            .map_err(|e| trough_types::Error::internal(e.to_string()))??;
        let db = Arc::new(WritableDb {
            id: id.clone(),
            path,
            schema,
            conn: Mutex::new(conn),
            dirty: AtomicBool::new(false),
            lease,
            retired: AtomicBool::new(false),
            op: tokio::sync::Mutex::new(()),
        });
        self.dbs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), db);
        metrics::gauge!("trough_writer_segments").set(self.live().len() as f64);
        Ok(())
    }

    /// Makes `id` writable on this node. Returns the catalog entry and whether it was newly
    /// provisioned (`false` when it already was writable here: provisioning is idempotent).
    pub async fn provision(
        &self,
        id: &SegmentId,
        req: ProvisionRequest,
    ) -> Result<(SegmentEntry, bool)> {
        let existing = self.coordinator.get_segment(id).await?;
        if let Some(info) = existing.as_ref().and_then(|e| e.writable.as_ref()) {
            if info.writer != self.node {
                return Err(Error::LeaseElsewhere {
                    id: id.clone(),
                    writer: info.writer.clone(),
                });
            }
            if self.holds(id) {
                return Ok((existing.expect("checked"), false));
            }
            // The catalog names us but we do not have it open (e.g. the live file was lost):
            // fall through and rebuild it from the latest stored version.
        }
        let schema_sql = match (&req.schema, &req.schema_sql) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest(
                    "give either `schema` or `schema_sql`, not both".into(),
                ))
            }
            (Some(name), None) => Some(
                self.coordinator
                    .get_schema(name)
                    .await?
                    .ok_or_else(|| Error::SchemaNotFound(name.to_string()))?,
            ),
            (None, Some(sql)) => {
                let sql = sql.clone();
                tokio::task::spawn_blocking({
                    let sql = sql.clone();
                    let check = self.schema_check.clone();
                    move || exec::validate_schema(&sql, &check)
                })
                .await
                .map_err(|e| trough_types::Error::internal(e.to_string()))??;
                Some(sql)
            }
            (None, None) => None,
        };
        let path = self.db_path(id);
        let empty = SegmentEntry {
            id: id.clone(),
            versions: vec![],
            writable: None,
        };
        self.materialize(existing.as_ref().unwrap_or(&empty), schema_sql, &path)
            .await?;
        let schema = req.schema.clone().or_else(|| {
            existing
                .as_ref()
                .and_then(|e| e.latest())
                .and_then(|m| m.schema.clone())
        });
        let info = WritableInfo {
            writer: self.node.clone(),
            schema: schema.clone(),
            provisioned_at: Utc::now(),
        };
        // Take the lease before announcing ourselves as the writer.
        self.attach(id, schema, path).await?;
        let entry = match self.coordinator.set_writable(id, Some(info)).await {
            Ok(e) => e,
            Err(e) => {
                self.detach(id).await;
                return Err(e.into());
            }
        };
        tracing::info!(segment = %id, "provisioned writable segment");
        Ok((entry, true))
    }

    async fn detach(&self, id: &SegmentId) {
        let removed = self
            .dbs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if removed.is_some() {
            let _ = self
                .coordinator
                .unlock(&write_lease_key(id), &self.node)
                .await;
        }
    }

    /// Builds the live database file at `path`: the latest stored version of `entry` if there is
    /// one, else an empty database with `schema_sql` applied. Written beside and renamed into
    /// place, so a crash leaves no half-built database.
    async fn materialize(
        &self,
        entry: &SegmentEntry,
        schema_sql: Option<String>,
        path: &Path,
    ) -> Result<()> {
        let tmp = self.dir.join(format!(".{}.provision", entry.id));
        let _ = tokio::fs::remove_file(&tmp).await;
        // Schema SQL applies to a new, empty segment only; an existing segment resumes from its
        // latest stored version as it is.
        let schema_sql = match entry.latest() {
            Some(latest) => {
                self.publisher.store().download(latest, &tmp).await?;
                None
            }
            None => schema_sql,
        };
        let sync = self.synchronous;
        let timeout = self.write_timeout;
        let t = tmp.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut conn = open_writable(&t, sync)?;
            if let Some(sql) = schema_sql {
                exec::execute(&mut conn, &ExecuteRequest::text(sql), Some(timeout))
                    .map_err(|e| Error::InvalidSchema(e.to_string()))?;
            }
            // Fold the WAL into the main file so the rename moves one complete database.
            trough_sqlite::guard::exec_trusted(&conn, "PRAGMA wal_checkpoint(TRUNCATE)")?;
            Ok(())
        })
        .await
        .map_err(|e| trough_types::Error::internal(e.to_string()))??;
        for suffix in ["-wal", "-shm"] {
            let _ = tokio::fs::remove_file(path_with(path, suffix)).await;
            let _ = tokio::fs::remove_file(path_with(&tmp, suffix)).await;
        }
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(trough_types::Error::from)?;
        Ok(())
    }

    fn writable_db(&self, id: &SegmentId) -> Result<Arc<WritableDb>> {
        if self.pending_lock().contains_key(id) {
            return Err(Error::LeaseLost(id.clone()));
        }
        let db = self.get(id).ok_or_else(|| Error::NotWritable(id.clone()))?;
        // Fencing: never write without the lease.
        if !db.lease.is_held() {
            return Err(Error::LeaseLost(id.clone()));
        }
        Ok(db)
    }

    /// Runs a write request in one transaction. `NotWritable` if this node does not hold `id`.
    pub async fn execute(&self, id: &SegmentId, req: ExecuteRequest) -> Result<ExecuteResult> {
        let db = self.writable_db(id)?;
        let started = std::time::Instant::now();
        let timeout = self.write_timeout;
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            if !db.lease.is_held() {
                return Err(Error::LeaseLost(db.id.clone()));
            }
            if db.retired.load(Ordering::Acquire) {
                return Err(Error::NotWritable(db.id.clone()));
            }
            let r = exec::execute(&mut conn, &req, Some(timeout))?;
            db.dirty.store(true, Ordering::Release);
            Ok(r)
        })
        .await
        .map_err(|e| trough_types::Error::internal(e.to_string()))?;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("trough_writer_executes_total", "outcome" => outcome).increment(1);
        metrics::histogram!("trough_writer_execute_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Snapshots `id` with the online backup API and publishes it as a new stored version.
    pub async fn promote(&self, id: &SegmentId) -> Result<Manifest> {
        let db = self.writable_db(id)?;
        let _op = db.op.lock().await;
        if db.retired.load(Ordering::Acquire) {
            return Err(Error::NotWritable(id.clone()));
        }
        let snapshot = self.dir.join(format!(
            ".{id}.promote-{}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let snap = snapshot.clone();
        let db2 = db.clone();
        let backup = tokio::task::spawn_blocking(move || -> Result<()> {
            let conn = db2.conn.lock().unwrap_or_else(|p| p.into_inner());
            let mut dst = Connection::open(&snap)?;
            {
                let b = rusqlite::backup::Backup::new(&conn, &mut dst)?;
                b.run_to_completion(BACKUP_PAGES_PER_STEP, Duration::ZERO, None)?;
            }
            // The copy is a standalone file: no WAL, no dependency on the live database.
            dst.pragma_update(None, "journal_mode", "DELETE")?;
            db2.dirty.store(false, Ordering::Release);
            Ok(())
        })
        .await
        .map_err(|e| trough_types::Error::internal(e.to_string()))?;
        if let Err(e) = backup {
            let _ = tokio::fs::remove_file(&snapshot).await;
            return Err(e);
        }
        let result = self
            .publisher
            .publish_file(
                id,
                &snapshot,
                PublishOptions {
                    schema: db.schema.clone(),
                    writable: true,
                    known_digest: None,
                },
            )
            .await;
        let _ = tokio::fs::remove_file(&snapshot).await;
        if result.is_err() {
            // Nothing was published: the changes still need promoting.
            db.dirty.store(true, Ordering::Release);
        }
        Ok(result?)
    }

    /// Promotes every segment with unpromoted writes ([`workers::AutoPromoter`] runs it every
    /// `writer.auto_promote_secs`).
    pub async fn promote_dirty(&self) {
        let dirty: Vec<SegmentId> = {
            let dbs = self.dbs.lock().unwrap_or_else(|p| p.into_inner());
            dbs.values()
                .filter(|d| d.dirty.load(Ordering::Acquire))
                .map(|d| d.id.clone())
                .collect()
        };
        for id in dirty {
            match self.promote(&id).await {
                Ok(m) => tracing::info!(segment = %id, version = m.version, "auto-promoted"),
                Err(e) => tracing::warn!(segment = %id, error = %e, "auto-promotion failed"),
            }
        }
    }
}

fn path_with(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;
