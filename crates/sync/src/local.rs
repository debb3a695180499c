//! Local mode: make this node hold exactly the verified copies assigned to it.
//!
//! Each pass reads the assignment and catalog entries that changed since the previous pass (the
//! whole of both on the first pass, every `sync.interval_secs` and after a failure; see
//! [`LocalSync::pass`]), asks the pure [`plan`] what to fetch and what to drop, and carries it
//! out: a fetch streams the version's object to
//! `copies/<id>/<version>-<sha256>.sqlite.part`, hashing as it goes ([`SegmentStore::download`]),
//! and only a file whose size and SHA-256 match the manifest is renamed into place and handed to
//! the reader, which swaps it in atomically (queries in flight finish on the old copy, whose file
//! the reader deletes afterwards). A drop happens only once every other assigned replica holds
//! the latest version, and only once it was unwanted for `sync.drop_grace_secs` (a reader
//! returning from a critical check is briefly assigned nothing: `local::grace`). A periodic scrub re-hashes every copy; a copy that no longer matches is
//! withdrawn from service at once and fetched again on the next pass. After a pass that changed
//! them the node reports its verified holdings to the coordinator (at most a fifth of the time
//! under a stream of changes; the heartbeat reports them every few seconds anyway).
//!
//! Every verified copy is recorded in a [`VerifiedLog`] (size, mtime, inode, SHA-256). At
//! restart ([`LocalSync::adopt_existing`]) a copy whose file is unchanged since it was recorded
//! is served at once and re-hashed in the background right after the first pass; a copy whose
//! file changed is re-hashed before it is served, and deleted if it no longer matches.
//!
//! Not here: deciding the assignment (leader), serving queries (reader).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use trough_config::SyncConfig;
use trough_coord::{AssignmentMap, Coordinator, NodeInfo};
use trough_reader::Reader;
use trough_store::SegmentStore;
use trough_types::{Manifest, NodeName, SegmentEntry, SegmentId};

use crate::verified::VerifiedLog;

mod copies;
mod grace;
mod plan;
mod worker;

pub use plan::{plan, Action};
pub use worker::SyncWorker;

/// What this node knows about one of its copies.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CopyState {
    /// The version held.
    pub version: u64,
    /// Its SHA-256, as in the manifest.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the file's checksum matched the manifest (only verified copies are served).
    pub verified: bool,
    /// The last error fetching or verifying this segment, if any.
    pub error: Option<String>,
}

/// Counts of a node's local copies (the summary of `/health`).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CopySummary {
    /// Copies known (verified or not).
    pub copies: u64,
    /// Verified copies (the ones served).
    pub verified: u64,
    /// Bytes of the verified copies.
    pub verified_bytes: u64,
    /// Copies whose last fetch or verification failed.
    pub errors: u64,
}

/// Static facts this node reports about itself.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node name.
    pub name: NodeName,
    /// URL others reach it at.
    pub address: String,
    /// Tier.
    pub tier: String,
    /// Quota in bytes (0 = unlimited).
    pub quota_bytes: u64,
    /// Roles it runs.
    pub roles: Vec<String>,
}

/// The local synchronizer of one node.
pub struct LocalSync {
    identity: NodeIdentity,
    dir: PathBuf,
    store: SegmentStore,
    coordinator: Arc<dyn Coordinator>,
    reader: Arc<Reader>,
    config: SyncConfig,
    state: RwLock<copies::Copies>,
    /// Serializes passes and scrubs.
    pass_lock: tokio::sync::Mutex<()>,
    /// How long the last pass took to read the coordinator and plan, in microseconds (not
    /// counting downloads).
    planning_micros: std::sync::atomic::AtomicU64,
    /// Which copies were verified, and their files' identity then.
    verified: VerifiedLog,
    /// Copies adopted at restart without re-hashing, to re-hash in the background.
    unhashed: std::sync::Mutex<Vec<Manifest>>,
    /// The coordinator index passes are current to, and when the last full pass started
    /// (`None` before the first pass).
    mark: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    /// How long the last full pass took to read and plan, in microseconds.
    full_micros: std::sync::atomic::AtomicU64,
    /// When the last report ended and how long it took ([`LocalSync::report_due`]).
    report_mark: std::sync::Mutex<(Option<std::time::Instant>, Duration)>,
    /// Drops held back for `sync.drop_grace_secs` ([`grace`]).
    drop_grace: std::sync::Mutex<grace::DropGrace>,
}

impl LocalSync {
    /// A synchronizer keeping copies under `dir` (e.g. `<data_dir>/copies`).
    pub fn new(
        identity: NodeIdentity,
        dir: PathBuf,
        store: SegmentStore,
        coordinator: Arc<dyn Coordinator>,
        reader: Arc<Reader>,
        config: SyncConfig,
    ) -> Self {
        Self {
            identity,
            store,
            coordinator,
            reader,
            config,
            state: RwLock::new(copies::Copies::default()),
            pass_lock: tokio::sync::Mutex::new(()),
            planning_micros: std::sync::atomic::AtomicU64::new(0),
            verified: VerifiedLog::open(&dir),
            unhashed: std::sync::Mutex::new(Vec::new()),
            mark: std::sync::Mutex::new(None),
            report_mark: std::sync::Mutex::new((None, Duration::ZERO)),
            drop_grace: std::sync::Mutex::new(grace::DropGrace::default()),
            full_micros: std::sync::atomic::AtomicU64::new(0),
            dir,
        }
    }

    /// How long the last pass spent reading the coordinator and planning.
    fn planning_cost(&self) -> Duration {
        Duration::from_micros(
            self.planning_micros
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// How long the last full pass took to read and plan.
    fn full_cost(&self) -> Duration {
        Duration::from_micros(self.full_micros.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The state of every local copy.
    pub fn status(&self) -> BTreeMap<SegmentId, CopyState> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .to_map()
    }

    /// Whether some copy's last fetch or verification failed.
    pub(crate) fn has_errors(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .has_errors()
    }

    /// The state of one local copy (without copying the others: called once per copy).
    fn copy_state(&self, id: &SegmentId) -> Option<CopyState> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// At most `limit` copies whose id starts with `prefix` and sorts after `after`, by id.
    pub fn status_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(SegmentId, CopyState)> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .page(prefix, after, limit)
    }

    /// Counts of the local copies, without listing them.
    pub fn summary(&self) -> CopySummary {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .summary()
    }

    fn copy_path(&self, m: &Manifest) -> PathBuf {
        self.dir
            .join(m.id.as_str())
            .join(format!("{}-{}.sqlite", m.version, m.sha256))
    }

    /// Re-adopts the copies already on disk (after a restart). Only a copy that matches a
    /// manifest in the catalog is served; anything else is deleted. A copy whose file is
    /// unchanged since it was verified (see [`VerifiedLog`]) is served at once and re-hashed in
    /// the background ([`LocalSync::rehash_adopted`]); any other is re-hashed first.
    pub async fn adopt_existing(&self) -> trough_types::Result<usize> {
        let _guard = self.pass_lock.lock().await;
        tokio::fs::create_dir_all(&self.dir).await?;
        let catalog = self.catalog().await?;
        let mut files = Vec::new();
        let mut dirs = tokio::fs::read_dir(&self.dir).await?;
        while let Some(d) = dirs.next_entry().await? {
            if !d.file_type().await?.is_dir() {
                continue;
            }
            let mut inner = tokio::fs::read_dir(d.path()).await?;
            while let Some(f) = inner.next_entry().await? {
                files.push(f.path());
            }
        }
        let mut adopted = 0;
        let (mut trusted, mut hashed) = (0u64, 0u64);
        for path in files {
            let manifest = identify(&path, &catalog);
            let Some(m) = manifest else {
                tracing::info!(path = %path.display(), "removing unknown local file");
                let _ = tokio::fs::remove_file(&path).await;
                continue;
            };
            // Keep only the newest adoptable version of each segment.
            let newer_held = self
                .copy_state(&m.id)
                .is_some_and(|s| s.version >= m.version);
            if newer_held {
                let _ = tokio::fs::remove_file(&path).await;
                continue;
            }
            if self.verified.unchanged(&path, &m.sha256, m.size) {
                trusted += 1;
                metrics::counter!("trough_sync_adopted_total", "check" => "unchanged").increment(1);
                self.install(&m, path)?;
                self.unhashed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(m);
                adopted += 1;
            } else if verify_file(&path, &m).await {
                hashed += 1;
                metrics::counter!("trough_sync_adopted_total", "check" => "hashed").increment(1);
                self.verified.record(&path, &m.sha256);
                self.install(&m, path)?;
                adopted += 1;
            } else {
                metrics::counter!("trough_sync_adopt_failures_total").increment(1);
                tracing::warn!(path = %path.display(), "local copy failed verification; deleting");
                self.verified.forget(&path);
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
        tracing::info!(
            unchanged = trusted,
            hashed,
            "adopted local copies (unchanged ones are re-hashed in the background)"
        );
        Ok(adopted)
    }

    fn install(&self, m: &Manifest, path: PathBuf) -> trough_types::Result<()> {
        self.reader
            .install_stored(m.id.clone(), m.version, m.sha256.clone(), path)
            .map_err(|e| trough_types::Error::internal(e.to_string()))?;
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                m.id.clone(),
                CopyState {
                    version: m.version,
                    sha256: m.sha256.clone(),
                    size: m.size,
                    verified: true,
                    error: None,
                },
            );
        Ok(())
    }

    /// One pass: fetch and drop what [`plan`] says, then report holdings (when they changed).
    ///
    /// A pass plans over the segments the coordinator names as changed since the previous pass
    /// ([`Coordinator::catalog_changes`]: new versions, new assignments), with point reads. It
    /// plans over everything (whole assignment, catalog and node list) on the first pass, every
    /// [`SyncConfig::interval`] (or twenty times what the last full pass took, if longer), while
    /// some copy is in error, and when the coordinator cannot
    /// name the changes: that catches what point reads do not see (another node's copy becoming
    /// verified lets a copy no longer assigned here be dropped).
    pub async fn pass(&self) -> trough_types::Result<()> {
        let _guard = self.pass_lock.lock().await;
        let started = std::time::Instant::now();
        let mark = *self.mark.lock().unwrap_or_else(|p| p.into_inner());
        let in_error = self.has_errors();
        // A full pass reads everything: at most a twentieth of the time, however large.
        let full_every = self.config.interval().max(self.full_cost() * 20);
        let changes = match mark {
            Some((index, last_full)) if !in_error && last_full.elapsed() < full_every => {
                self.coordinator.catalog_changes(index).await?
            }
            _ => None,
        };
        let (actions, full) = match changes {
            Some((index, ids)) => {
                let actions = self.plan_changed(&ids).await?;
                let last_full = mark.map(|(_, t)| t).unwrap_or(started);
                *self.mark.lock().unwrap_or_else(|p| p.into_inner()) = Some((index, last_full));
                (actions, false)
            }
            None => {
                let index = self.coordinator.wait_for_change(0, Duration::ZERO).await?;
                let actions = self.plan_all().await?;
                *self.mark.lock().unwrap_or_else(|p| p.into_inner()) = Some((index, started));
                self.full_micros.store(
                    started.elapsed().as_micros() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                (actions, true)
            }
        };
        self.planning_micros.store(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let actions = self
            .drop_grace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(
                actions,
                std::time::Instant::now(),
                self.config.drop_grace(),
                full,
            );
        let kind = if full { "full" } else { "changes" };
        metrics::counter!("trough_sync_passes_total", "kind" => kind).increment(1);
        let acted = !actions.is_empty();
        let mut fetches = Vec::new();
        for a in actions {
            match a {
                Action::Fetch(m) => fetches.push(m),
                Action::Drop(id) => {
                    tracing::info!(segment = %id, "dropping local copy (no longer assigned)");
                    if let Some(path) = self.held_path(&id) {
                        self.verified.forget(&path);
                    }
                    self.reader.remove_stored(&id);
                    self.state
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
            }
        }
        let concurrency = self.config.download_concurrency.max(1);
        let results: Vec<_> = futures::stream::iter(fetches)
            .map(|m| async move {
                let r = self.fetch(&m).await;
                (m, r)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (m, r) in results {
            if let Err(e) = r {
                metrics::counter!("trough_sync_fetch_failures_total").increment(1);
                tracing::warn!(segment = %m.id, version = m.version, error = %e, "fetch failed; will retry");
                self.state
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_error(&m, e.to_string());
            }
        }
        if full || (acted && self.report_due()) {
            self.report().await?;
        }
        Ok(())
    }

    /// The whole catalog, by id.
    async fn catalog(&self) -> trough_types::Result<BTreeMap<SegmentId, SegmentEntry>> {
        Ok(self
            .coordinator
            .list_segments()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), e))
            .collect())
    }

    /// The other nodes' verified versions of the segments `only` (every segment when `None`).
    async fn holders(
        &self,
        only: Option<&[SegmentId]>,
    ) -> trough_types::Result<BTreeMap<SegmentId, BTreeMap<NodeName, u64>>> {
        let mut holders: BTreeMap<SegmentId, BTreeMap<NodeName, u64>> = BTreeMap::new();
        for n in self.coordinator.list_nodes().await? {
            if n.name == self.identity.name {
                continue;
            }
            let mut add = |id: &SegmentId, v: u64| {
                holders
                    .entry(id.clone())
                    .or_default()
                    .insert(n.name.clone(), v);
            };
            match only {
                None => n.held.iter().for_each(|(id, v)| add(id, *v)),
                Some(ids) => {
                    for id in ids {
                        if let Some(v) = n.held.get(id) {
                            add(id, *v);
                        }
                    }
                }
            }
        }
        Ok(holders)
    }

    /// [`plan`] over everything: the whole assignment, catalog and node list.
    async fn plan_all(&self) -> trough_types::Result<Vec<Action>> {
        let assignment = self.coordinator.get_assignment().await?;
        let catalog = self.catalog().await?;
        let holders = self.holders(None).await?;
        let held: BTreeMap<SegmentId, (u64, bool)> = self
            .status()
            .into_iter()
            .map(|(id, s)| {
                let held = held_as(&s, catalog.get(&id));
                (id, held)
            })
            .collect();
        self.drop_grace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_gone(&held, &catalog);
        Ok(plan(
            &self.identity.name,
            &assignment,
            &catalog,
            &held,
            &holders,
        ))
    }

    /// [`plan`] over the segments `ids` only, from point reads: what a pass costs after a few
    /// changes, whatever the size of the catalog.
    async fn plan_changed(&self, ids: &[SegmentId]) -> trough_types::Result<Vec<Action>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut assignment = AssignmentMap::new();
        let mut catalog = BTreeMap::new();
        let mut held = BTreeMap::new();
        for id in ids {
            if let Some(e) = self.coordinator.get_segment(id).await? {
                catalog.insert(id.clone(), e);
            }
            let nodes = self.coordinator.get_assigned(id).await?;
            if !nodes.is_empty() {
                assignment.insert(id.clone(), nodes);
            }
            if let Some(s) = self.copy_state(id) {
                held.insert(id.clone(), held_as(&s, catalog.get(id)));
            }
        }
        let holders = self.holders(Some(ids)).await?;
        self.drop_grace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note_gone(&held, &catalog);
        Ok(plan(
            &self.identity.name,
            &assignment,
            &catalog,
            &held,
            &holders,
        ))
    }

    async fn fetch(&self, m: &Manifest) -> trough_types::Result<()> {
        let dest = self.copy_path(m);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let started = std::time::Instant::now();
        // `download` verifies size and SHA-256 while streaming and renames only on a match.
        self.store.download(m, &dest).await?;
        self.verified.record(&dest, &m.sha256);
        self.install(m, dest)?;
        metrics::counter!("trough_sync_fetched_bytes_total").increment(m.size);
        metrics::histogram!("trough_sync_fetch_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(segment = %m.id, version = m.version, size = m.size, "installed verified copy");
        Ok(())
    }

    /// Whether a pass that changed holdings should report them now: unless the last report was
    /// more recent than four times what it cost. A report lists every held copy, so under a
    /// stream of changes this keeps it to a fifth of the time; the heartbeat reports within
    /// seconds anyway.
    fn report_due(&self) -> bool {
        let (last, cost) = *self.report_mark.lock().unwrap_or_else(|p| p.into_inner());
        last.is_none_or(|t| t.elapsed() >= cost * 4)
    }

    /// Publishes this node's verified holdings (the heartbeat).
    pub async fn report(&self) -> trough_types::Result<()> {
        let started = std::time::Instant::now();
        let result = self.report_now().await;
        *self.report_mark.lock().unwrap_or_else(|p| p.into_inner()) =
            (Some(std::time::Instant::now()), started.elapsed());
        result
    }

    async fn report_now(&self) -> trough_types::Result<()> {
        let (held, stored_bytes) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            (state.held().clone(), state.summary().verified_bytes)
        };
        metrics::gauge!("trough_segments_held").set(held.len() as f64);
        metrics::gauge!("trough_bytes_stored").set(stored_bytes as f64);
        self.coordinator
            .register_node(&NodeInfo {
                name: self.identity.name.clone(),
                address: self.identity.address.clone(),
                tier: self.identity.tier.clone(),
                quota_bytes: self.identity.quota_bytes,
                stored_bytes,
                roles: self.identity.roles.clone(),
                held,
                updated_at: Utc::now(),
            })
            .await
    }

    /// Re-hashes every verified copy; a mismatch is withdrawn from service at once (and fetched
    /// again by the next pass). Returns how many copies failed.
    pub async fn scrub(&self) -> usize {
        let _guard = self.pass_lock.lock().await;
        let mut failed = 0;
        for (id, s) in self.status() {
            if !s.verified {
                continue;
            }
            let m = Manifest {
                id: id.clone(),
                version: s.version,
                sha256: s.sha256.clone(),
                size: s.size,
                created_at: Utc::now(),
                schema: None,
                writable: false,
                key: String::new(),
            };
            if !self.recheck(&m).await {
                failed += 1;
                metrics::counter!("trough_sync_scrub_failures_total").increment(1);
                tracing::error!(segment = %id, version = s.version, "scrub: local copy does not match its manifest; withdrawn");
            }
        }
        if failed > 0 {
            // Withdraw the copies from the registry (and DNS) now, not at the next pass.
            if let Err(e) = self.report().await {
                tracing::warn!(error = %e, "reporting after scrub failed");
            }
        }
        failed
    }

    /// Re-hashes one held copy; a mismatch is withdrawn from service (and forgotten by the
    /// verification record). Returns whether it matched.
    async fn recheck(&self, m: &Manifest) -> bool {
        let path = self.copy_path(m);
        if verify_file(&path, m).await {
            self.verified.record(&path, &m.sha256);
            return true;
        }
        self.verified.forget(&path);
        let still_held = self
            .copy_state(&m.id)
            .is_some_and(|s| s.version == m.version && s.sha256 == m.sha256);
        if still_held {
            self.reader.remove_stored(&m.id);
            self.state
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&m.id);
        }
        false
    }

    /// Re-hashes the copies [`LocalSync::adopt_existing`] served without hashing, one at a time
    /// (passes may run in between). Returns how many failed (withdrawn).
    pub async fn rehash_adopted(&self) -> usize {
        let todo = std::mem::take(&mut *self.unhashed.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = 0;
        for m in todo {
            let _guard = self.pass_lock.lock().await;
            let held = self
                .copy_state(&m.id)
                .is_some_and(|s| s.verified && s.version == m.version && s.sha256 == m.sha256);
            if !held {
                continue;
            }
            if self.recheck(&m).await {
                metrics::counter!("trough_sync_background_verified_total").increment(1);
            } else {
                failed += 1;
                metrics::counter!("trough_sync_scrub_failures_total").increment(1);
                tracing::error!(segment = %m.id, version = m.version, "background re-hash: local copy does not match its manifest; withdrawn");
            }
        }
        if failed > 0 {
            if let Err(e) = self.report().await {
                tracing::warn!(error = %e, "reporting after re-hash failed");
            }
        }
        failed
    }

    /// The file of the copy held for `id`, if any.
    fn held_path(&self, id: &SegmentId) -> Option<PathBuf> {
        let s = self.copy_state(id)?;
        Some(
            self.dir
                .join(id.as_str())
                .join(format!("{}-{}.sqlite", s.version, s.sha256)),
        )
    }
}

/// Finds the manifest a local file `<dir>/<id>/<version>-<sha>.sqlite` claims to be.
fn identify(path: &Path, catalog: &BTreeMap<SegmentId, SegmentEntry>) -> Option<Manifest> {
    let id = path.parent()?.file_name()?.to_str()?;
    let id = SegmentId::new(id).ok()?;
    let name = path.file_name()?.to_str()?.strip_suffix(".sqlite")?;
    let (version, sha) = name.split_once('-')?;
    let version: u64 = version.parse().ok()?;
    catalog
        .get(&id)?
        .versions
        .iter()
        .find(|m| m.version == version && m.sha256 == sha)
        .cloned()
}

/// Whether the file at `path` has the manifest's size and SHA-256.
async fn verify_file(path: &Path, m: &Manifest) -> bool {
    let p = path.to_owned();
    match tokio::task::spawn_blocking(move || trough_store::hash::sha256_file(&p)).await {
        Ok(Ok((sha, size))) => sha == m.sha256 && size == m.size,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

/// A copy as [`plan`] sees it: (version, verified). A copy of the catalog's latest version
/// number with other bytes (the segment was deleted and published again, restarting at
/// version 1) counts as not verified, so the new bytes are fetched and the old ones never
/// served as current.
fn held_as(s: &CopyState, entry: Option<&SegmentEntry>) -> (u64, bool) {
    let stale = entry
        .and_then(SegmentEntry::latest)
        .is_some_and(|m| m.version == s.version && m.sha256 != s.sha256);
    (s.version, s.verified && !stale)
}
