//! The router's view of the cluster: which nodes are alive, what each holds, who writes what.
//!
//! A [`ClusterView`] keeps a snapshot of the coordinator's node list and catalog, refreshed by a
//! background task that waits on the coordinator's change notifications (Consul blocking queries
//! in a cluster). Routing a query never costs a coordinator lookup. The pure functions here
//! ([`read_targets`], [`pick_writer`]) decide where a request goes. Nodes that just failed are
//! put at the back of the line for a few seconds ([`ClusterView::penalize`]).
//!
//! Not here: sending requests ([`crate::forward`]) or serving them locally (handlers).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use trough_core::coord::{Coordinator, NodeInfo};
use trough_core::{NodeName, SegmentEntry, SegmentId};

/// How long a node that failed a request is tried last.
const PENALTY: Duration = Duration::from_secs(5);
/// Longest wait between two refreshes.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// What the router knows about the cluster at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Live nodes by name.
    pub nodes: BTreeMap<NodeName, NodeInfo>,
    /// The catalog.
    pub catalog: BTreeMap<SegmentId, SegmentEntry>,
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
    rotation: AtomicUsize,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterView {
    /// An empty view; call [`ClusterView::refresh`] or run [`ClusterView::run`].
    pub fn new() -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            penalties: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads nodes and catalog from the coordinator.
    pub async fn refresh(&self, coordinator: &dyn Coordinator) -> trough_core::Result<()> {
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
            .map(|e| (e.id.clone(), e))
            .collect();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { nodes, catalog });
        Ok(())
    }

    /// Keeps the view fresh until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        coordinator: Arc<dyn Coordinator>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut index = 0;
        loop {
            let before = coordinator
                .wait_for_change(0, Duration::ZERO)
                .await
                .unwrap_or(index);
            if let Err(e) = self.refresh(coordinator.as_ref()).await {
                tracing::warn!(error = %e, "cluster view refresh failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            index = before;
            tokio::select! {
                r = coordinator.wait_for_change(index, REFRESH_INTERVAL) => { if let Ok(i) = r { index = i; } }
                _ = shutdown.changed() => return,
            }
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

    fn demote_penalized(&self, targets: &mut [Target]) {
        let penalties = self.penalties.lock().unwrap_or_else(|p| p.into_inner());
        let recent = |t: &Target| {
            penalties
                .get(&t.name)
                .is_some_and(|at| at.elapsed() < PENALTY)
        };
        // Stable: keeps the preference order within each group.
        targets.sort_by_key(recent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use trough_core::{Manifest, WritableInfo};

    fn node(name: &str, roles: &[&str], held: &[(&str, u64)]) -> NodeInfo {
        NodeInfo {
            name: NodeName::new(name).unwrap(),
            address: format!("http://{name}"),
            tier: "default".into(),
            quota_bytes: 0,
            stored_bytes: 0,
            roles: roles.iter().map(|s| s.to_string()).collect(),
            held: held
                .iter()
                .map(|(id, v)| (SegmentId::new(id).unwrap(), *v))
                .collect(),
            updated_at: Utc::now(),
        }
    }

    fn entry(id: &str, latest: u64, writer: Option<&str>) -> SegmentEntry {
        let sid = SegmentId::new(id).unwrap();
        SegmentEntry {
            id: sid.clone(),
            versions: (1..=latest)
                .map(|v| Manifest {
                    id: sid.clone(),
                    version: v,
                    sha256: String::new(),
                    size: 0,
                    created_at: Utc::now(),
                    schema: None,
                    writable: false,
                    key: String::new(),
                })
                .collect(),
            writable: writer.map(|w| WritableInfo {
                writer: NodeName::new(w).unwrap(),
                schema: None,
                provisioned_at: Utc::now(),
            }),
        }
    }

    fn snapshot(nodes: Vec<NodeInfo>, entries: Vec<SegmentEntry>) -> Snapshot {
        Snapshot {
            nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
            catalog: entries.into_iter().map(|e| (e.id.clone(), e)).collect(),
        }
    }

    #[test]
    fn newest_holders_first_and_rotated() {
        let s = snapshot(
            vec![
                node("a", &["reader"], &[("s", 2)]),
                node("b", &["reader"], &[("s", 1)]),
                node("c", &["reader"], &[("s", 2)]),
                node("d", &["writer"], &[("s", 2)]),
            ],
            vec![entry("s", 2, None)],
        );
        let id = SegmentId::new("s").unwrap();
        let names = |r| {
            read_targets(&s, &id, r)
                .into_iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["a", "c", "b"]);
        assert_eq!(names(1), ["c", "a", "b"]);
        assert!(read_targets(&s, &SegmentId::new("nope").unwrap(), 0).is_empty());
    }

    #[test]
    fn writable_reads_go_to_the_writer_only() {
        let s = snapshot(
            vec![
                node("r", &["reader"], &[("w", 1)]),
                node("wr", &["writer"], &[]),
            ],
            vec![entry("w", 1, Some("wr"))],
        );
        let t = read_targets(&s, &SegmentId::new("w").unwrap(), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name.as_str(), "wr");
    }

    #[test]
    fn least_loaded_writer() {
        let s = snapshot(
            vec![node("w1", &["writer"], &[]), node("w2", &["writer"], &[])],
            vec![entry("x", 0, Some("w1")), entry("y", 0, Some("w1"))],
        );
        assert_eq!(pick_writer(&s).unwrap().name.as_str(), "w2");
    }

    #[test]
    fn penalized_nodes_go_last() {
        let view = ClusterView::new();
        *view.snapshot.write().unwrap() = Arc::new(snapshot(
            vec![
                node("a", &["reader"], &[("s", 1)]),
                node("b", &["reader"], &[("s", 1)]),
            ],
            vec![entry("s", 1, None)],
        ));
        let id = SegmentId::new("s").unwrap();
        view.penalize(&NodeName::new("a").unwrap());
        for _ in 0..4 {
            assert_eq!(view.read_targets(&id)[0].name.as_str(), "b");
        }
    }
}
