//! The router's view of the cluster: which nodes are alive, what each holds, who writes what.
//!
//! A [`ClusterView`] keeps a snapshot of the coordinator's node list and catalog, kept fresh by a
//! background worker ([`ViewWorker`]) that waits on the coordinator's change notifications
//! (Consul blocking queries in a cluster) and applies each catalog change with a point read when
//! the coordinator can name the changed segments ([`Coordinator::catalog_changes`]); it re-reads
//! the whole catalog only when it cannot. Routing a query never costs a coordinator lookup. A
//! request for a segment the view cannot place costs one point read of that segment
//! ([`ClusterView::refresh_segment`]), shared by concurrent misses, never a catalog-wide read.
//! The pure functions here ([`read_targets`], [`pick_writer`]) decide where a request goes.
//! Nodes that just failed are put at the back of the line for a few seconds
//! ([`ClusterView::penalize`]); forwarded reads are hedged and bounded ([`hedge`]).
//!
//! Not here: sending requests ([`crate::forward`]) or serving them locally (handlers).

mod flight;
pub mod forward;
pub mod hedge;
#[cfg(test)]
mod hedge_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use trough_coord::{Coordinator, NodeInfo};
use trough_types::{NodeName, SegmentEntry, SegmentId};

/// Longest wait between two refreshes.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps a [`ClusterView`] fresh: a round catches up with the coordinator, then the worker waits
/// for the next change (at most 5 s). A round never starts sooner after the
/// previous one than that round took, so following a busy catalog costs at most half the time.
pub struct ViewWorker {
    view: Arc<ClusterView>,
    coordinator: Arc<dyn Coordinator>,
    /// The coordinator index the view is current to (0: read everything next round).
    index: u64,
    /// How long the last round took: the rest before waiting for the next change.
    pause: Duration,
}

#[trough_worker::async_trait]
impl trough_worker::Worker for ViewWorker {
    fn name(&self) -> &'static str {
        "cluster-view"
    }

    async fn work(&mut self) -> trough_worker::WorkerState {
        let started = Instant::now();
        match self
            .view
            .catch_up(self.coordinator.as_ref(), self.index)
            .await
        {
            Ok(i) => self.index = i,
            Err(e) => {
                tracing::warn!(error = %e, "cluster view refresh failed");
                self.index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        self.pause = started.elapsed();
        trough_worker::WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.pause).await;
        if self
            .coordinator
            .wait_for_change(self.index.max(1), REFRESH_INTERVAL)
            .await
            .is_err()
        {
            self.index = 0;
        }
    }
}

/// What the router knows about the cluster at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live nodes by name.
    pub nodes: BTreeMap<NodeName, NodeInfo>,
    /// The catalog (entries shared between snapshots: a change replaces one entry).
    pub catalog: BTreeMap<SegmentId, Arc<SegmentEntry>>,
}

/// A node a request may be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Node name.
    pub name: NodeName,
    /// Base URL.
    pub address: String,
}

/// Where a read of `id` should go, best first: the writer for a writable segment (its live
/// database is the truth); otherwise every live reader holding a verified copy, newest version
/// first. `rotation` spreads load among equally good replicas.
pub fn read_targets(snapshot: &Snapshot, id: &SegmentId, rotation: usize) -> Vec<Target> {
    let Some(entry) = snapshot.catalog.get(id) else {
        return Vec::new();
    };
    if let Some(w) = &entry.writable {
        return snapshot
            .nodes
            .get(&w.writer)
            .map(|n| Target {
                name: n.name.clone(),
                address: n.address.clone(),
            })
            .into_iter()
            .collect();
    }
    let mut holders: Vec<(&NodeInfo, u64)> = snapshot
        .nodes
        .values()
        .filter(|n| n.roles.iter().any(|r| r == "reader"))
        .filter_map(|n| n.held.get(id).map(|&v| (n, v)))
        .collect();
    // Newest version first; among equals, rotate.
    holders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    if let Some(&(_, best)) = holders.first() {
        let top = holders.iter().take_while(|(_, v)| *v == best).count();
        if top > 1 {
            holders[..top].rotate_left(rotation % top);
        }
    }
    holders
        .into_iter()
        .map(|(n, _)| Target {
            name: n.name.clone(),
            address: n.address.clone(),
        })
        .collect()
}

/// The writer node with the fewest writable segments (ties by name), for provisioning.
pub fn pick_writer(snapshot: &Snapshot) -> Option<Target> {
    let mut load: HashMap<&NodeName, usize> = HashMap::new();
    for e in snapshot.catalog.values() {
        if let Some(w) = &e.writable {
            *load.entry(&w.writer).or_default() += 1;
        }
    }
    snapshot
        .nodes
        .values()
        .filter(|n| n.roles.iter().any(|r| r == "writer"))
        .min_by_key(|n| (load.get(&n.name).copied().unwrap_or(0), n.name.clone()))
        .map(|n| Target {
            name: n.name.clone(),
            address: n.address.clone(),
        })
}

/// The router's cached, self-refreshing view of the cluster.
pub struct ClusterView {
    snapshot: RwLock<Arc<Snapshot>>,
    penalties: Mutex<HashMap<NodeName, Instant>>,
    latencies: Mutex<hedge::Latencies>,
    rotation: AtomicUsize,
    flights: flight::Flights,
    full_reads: AtomicU64,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterView {
    /// An empty view; call [`ClusterView::refresh`] or run [`ClusterView::worker`].
    pub fn new() -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            penalties: Mutex::new(HashMap::new()),
            latencies: Mutex::new(hedge::Latencies::default()),
            rotation: AtomicUsize::new(0),
            flights: flight::Flights::default(),
            full_reads: AtomicU64::new(0),
        }
    }

    /// How many times this view re-read the whole catalog (also the metric
    /// `trough_cluster_view_full_reads_total`).
    pub fn full_reads(&self) -> u64 {
        self.full_reads.load(Ordering::Relaxed)
    }

    /// Lookups that joined one already in flight instead of asking the coordinator again.
    pub fn shared_lookups(&self) -> u64 {
        self.flights.shared()
    }

    /// Changes the snapshot in place when no reader holds it (else on a copy whose entries are
    /// shared with the old one).
    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        f(Arc::make_mut(&mut guard));
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads nodes and the whole catalog from the coordinator (at start, and when the
    /// coordinator cannot name what changed).
    pub async fn refresh(&self, coordinator: &dyn Coordinator) -> trough_types::Result<()> {
        self.full_reads.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("trough_cluster_view_full_reads_total").increment(1);
        let nodes = coordinator
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let catalog = coordinator
            .list_segments()
            .await?
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { nodes, catalog });
        Ok(())
    }

    /// Brings the view up to date from index `since` (0: never read): the changed segments by
    /// point reads and the node list, or everything when the coordinator cannot name the
    /// changes. Returns the index the view is now current to.
    pub async fn catch_up(
        &self,
        coordinator: &dyn Coordinator,
        since: u64,
    ) -> trough_types::Result<u64> {
        if since != 0 {
            if let Some((index, ids)) = coordinator.catalog_changes(since).await? {
                let mut entries = Vec::with_capacity(ids.len());
                for id in ids {
                    let e = coordinator.get_segment(&id).await?;
                    entries.push((id, e));
                }
                let nodes = coordinator.list_nodes().await?;
                self.update(|s| {
                    for (id, e) in entries {
                        set_entry(s, id, e);
                    }
                    s.nodes = nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
                });
                return Ok(index);
            }
        }
        let index = coordinator.wait_for_change(0, Duration::ZERO).await?;
        self.refresh(coordinator).await?;
        Ok(index)
    }

    /// Re-reads one segment's catalog entry (a point read), for a request the view cannot place;
    /// when the segment exists but the view knows no live copy of it, re-reads the node list too.
    /// Concurrent calls for the same segment (and concurrent node re-reads) share one request.
    pub async fn refresh_segment(
        &self,
        coordinator: &Arc<dyn Coordinator>,
        id: &SegmentId,
    ) -> trough_types::Result<()> {
        let entry = self.flights.segment(coordinator, id).await?;
        let exists = entry.is_some();
        self.update(|s| set_entry(s, id.clone(), entry));
        if exists && read_targets(&self.snapshot(), id, 0).is_empty() {
            self.refresh_nodes(coordinator).await?;
        }
        Ok(())
    }

    /// Re-reads the node list (shared by concurrent callers).
    pub async fn refresh_nodes(
        &self,
        coordinator: &Arc<dyn Coordinator>,
    ) -> trough_types::Result<()> {
        let nodes = self.flights.nodes(coordinator).await?;
        self.update(|s| s.nodes = nodes.iter().map(|n| (n.name.clone(), n.clone())).collect());
        Ok(())
    }

    /// The background worker that keeps the view fresh ([`ViewWorker`]).
    pub fn worker(self: Arc<Self>, coordinator: Arc<dyn Coordinator>) -> ViewWorker {
        ViewWorker {
            view: self,
            coordinator,
            index: 0,
            pause: Duration::ZERO,
        }
    }

    /// Read targets for `id`, with recently failed nodes moved to the back.
    pub fn read_targets(&self, id: &SegmentId) -> Vec<Target> {
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut targets = read_targets(&self.snapshot(), id, rotation);
        self.demote_penalized(&mut targets);
        targets
    }

    /// The writer of `id`, if it is writable and its node is alive.
    pub fn writer_of(&self, id: &SegmentId) -> Option<Target> {
        let snap = self.snapshot();
        let w = snap.catalog.get(id)?.writable.as_ref()?;
        let n = snap.nodes.get(&w.writer)?;
        Some(Target {
            name: n.name.clone(),
            address: n.address.clone(),
        })
    }

    /// A live node by name.
    pub fn node(&self, name: &NodeName) -> Option<Target> {
        let snap = self.snapshot();
        snap.nodes.get(name).map(|n| Target {
            name: n.name.clone(),
            address: n.address.clone(),
        })
    }

    /// The writer node new writable segments should go to.
    pub fn pick_writer(&self) -> Option<Target> {
        pick_writer(&self.snapshot())
    }

    /// Marks a node as having just failed a request.
    pub fn penalize(&self, node: &NodeName) {
        self.penalties
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.clone(), Instant::now());
    }

    /// Records how long a forwarded read took to answer (feeds [`ClusterView::hedge_delay`]).
    pub fn record_latency(&self, took: Duration) {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(took);
    }

    /// How long a forwarded read waits for a replica before asking the next one too.
    pub fn hedge_delay(&self) -> Duration {
        let p95 = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .p95();
        hedge::hedge_delay(p95)
    }

    fn demote_penalized(&self, targets: &mut [Target]) {
        let penalties = self.penalties.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let recent = |t: &Target| hedge::is_suspect(penalties.get(&t.name).copied(), now);
        // Stable: keeps the preference order within each group.
        targets.sort_by_key(recent);
    }
}

/// Sets (or removes, for `None`) one catalog entry of a snapshot.
fn set_entry(s: &mut Snapshot, id: SegmentId, entry: Option<SegmentEntry>) {
    match entry {
        Some(e) => {
            s.catalog.insert(id, Arc::new(e));
        }
        None => {
            s.catalog.remove(&id);
        }
    }
}
