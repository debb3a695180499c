//! Server mode: the leader computes the assignment.
//!
//! Any number of synchronizers in server mode may run; the one holding the coordinator's
//! [`LEADER_LOCK_KEY`] lock computes assignments, the others wait to take over. A round reads the
//! live nodes (those that heartbeated recently) and what changed in the catalog since the last
//! round (the whole catalog only on its first round or when the coordinator cannot say), calls the
//! pure [`assign::assign`], and stores the entries that differ. Rounds run after every change in
//! the coordinator and at least every interval. A leader that loses its lock stops at once.
//!
//! Not here: the algorithm itself ([`assign`]) or acting on the assignment ([`crate::local`]).

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use trough_coord::{AssignmentMap, Coordinator, LEADER_LOCK_KEY};
use trough_types::{NodeName, SegmentEntry, SegmentId};

use trough_placement::{self as assign, NodeSpec, SegmentSpec, TierRule, TierSpec};

/// Tier configuration of the leader.
#[derive(Clone, Debug, Default)]
pub struct LeaderConfig {
    /// Tiers and their replication factors (default: one tier `default` with factor 1).
    pub tiers: Vec<TierSpec>,
    /// Rules mapping segment ids to tiers (first match wins; default tier `default`).
    pub tier_rules: Vec<TierRule>,
    /// Longest wait between rounds.
    pub interval: Duration,
}

/// What the leader learned in earlier rounds, so a round after a few publishes costs point reads
/// of what changed rather than a read of the whole catalog.
#[derive(Debug, Default)]
pub struct LeaderCache {
    /// The coordinator index `segments` and `assignment` are current to.
    index: u64,
    /// The planner's view of every catalogued segment.
    segments: BTreeMap<SegmentId, SegmentSpec>,
    /// The assignment this leader last stored (or read).
    assignment: assign::Assignment,
    /// The nodes the last plan was made for.
    nodes: Vec<NodeSpec>,
    /// Bytes assigned to each node by `assignment`.
    stored: BTreeMap<NodeName, u64>,
    /// Segments the last round could not fully place (then the next one plans everything).
    under_replicated: usize,
    /// Whether `segments` and `assignment` hold anything (a first round reads everything).
    loaded: bool,
}

/// The planner's view of one catalog entry (`None` when it has no stored version yet).
fn spec(matcher: &assign::TierMatcher, e: &SegmentEntry) -> Option<SegmentSpec> {
    Some(SegmentSpec {
        tier: matcher.tier_for(&e.id).to_owned(),
        id: e.id.clone(),
        size_bytes: e.latest()?.size,
    })
}

/// One assignment round, if this process is the leader. Returns whether it led.
///
/// With a `cache` from earlier rounds, it reads only the segments the coordinator names as
/// changed ([`Coordinator::catalog_changes`]) and does nothing when none of them changed what
/// the planner sees and the nodes are the same (its own assignment writes wake it too). New and
/// removed segments on unchanged nodes are placed alone ([`assign::place_new`]: cost independent
/// of the catalog's size); anything else (nodes, sizes, a first round, segments left
/// under-replicated) runs the full planner. Only entries that differ are written
/// ([`Coordinator::update_assignment`]).
pub async fn round(
    me: &NodeName,
    coordinator: &dyn Coordinator,
    config: &LeaderConfig,
    cache: &mut LeaderCache,
) -> trough_types::Result<bool> {
    let Some(lease) = coordinator.try_lock(LEADER_LOCK_KEY, me).await? else {
        // Someone else leads: what we knew may be overwritten.
        *cache = LeaderCache::default();
        return Ok(false);
    };
    let nodes: Vec<NodeSpec> = coordinator
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.roles.iter().any(|r| r == "reader"))
        .map(|n| NodeSpec {
            name: n.name,
            tier: n.tier,
            quota_bytes: if n.quota_bytes == 0 {
                u64::MAX
            } else {
                n.quota_bytes
            },
            healthy: true,
        })
        .collect();
    let matcher = assign::TierMatcher::new(&config.tier_rules)
        .map_err(|e| trough_types::Error::invalid("invalid_tier_rule", e.to_string()))?;
    let changes = if cache.loaded {
        coordinator.catalog_changes(cache.index).await?
    } else {
        None
    };
    let tiers = if config.tiers.is_empty() {
        vec![TierSpec {
            name: "default".into(),
            replication_factor: 1,
        }]
    } else {
        config.tiers.clone()
    };
    // What changed, as the planner sees it.
    let mut delta = Delta::default();
    match changes {
        Some((index, ids)) => {
            for id in ids {
                let now = coordinator
                    .get_segment(&id)
                    .await?
                    .and_then(|e| spec(&matcher, &e));
                let before = cache.segments.get(&id);
                match (before, now) {
                    (Some(b), Some(n)) if *b == n => {}
                    (None, Some(n)) => delta.new.push(n),
                    (Some(_), None) => delta.removed.push(id),
                    (None, None) => {}
                    (Some(_), Some(n)) => delta.resized.push(n),
                }
            }
            cache.index = index;
        }
        None => {
            let index = coordinator.wait_for_change(0, Duration::ZERO).await?;
            cache.segments = coordinator
                .list_segments()
                .await?
                .iter()
                .filter_map(|e| Some((e.id.clone(), spec(&matcher, e)?)))
                .collect();
            cache.assignment = assign::Assignment {
                replicas: coordinator.get_assignment().await?,
            };
            cache.index = index;
            cache.loaded = true;
            delta.reloaded = true;
        }
    }
    if delta.is_empty() && nodes == cache.nodes {
        return Ok(true);
    }
    // New or removed segments on unchanged nodes, with every earlier segment fully placed: place
    // the new ones only. Anything else (nodes, sizes, a reload, a backlog): plan everything.
    let incremental = !delta.reloaded
        && delta.resized.is_empty()
        && nodes == cache.nodes
        && cache.under_replicated == 0;
    let (set, removed, under) = if incremental {
        for id in &delta.removed {
            if let (Some(spec), Some(holders)) =
                (cache.segments.remove(id), cache.assignment.replicas.get(id))
            {
                for h in holders {
                    if let Some(b) = cache.stored.get_mut(h) {
                        *b = b.saturating_sub(spec.size_bytes);
                    }
                }
            }
        }
        let placed = assign::place_new(&nodes, &tiers, &mut cache.stored, &delta.new);
        for n in delta.new {
            cache.segments.insert(n.id.clone(), n);
        }
        let set: AssignmentMap = placed.replicas.into_iter().collect();
        (set, delta.removed, placed.under_replicated.len())
    } else {
        for n in delta.new.into_iter().chain(delta.resized) {
            cache.segments.insert(n.id.clone(), n);
        }
        for id in &delta.removed {
            cache.segments.remove(id);
        }
        let segments: Vec<SegmentSpec> = cache.segments.values().cloned().collect();
        let plan = assign::assign(&nodes, &segments, &tiers, &cache.assignment);
        // Only what differs is written.
        let previous = &cache.assignment.replicas;
        let set: AssignmentMap = plan
            .assignment
            .replicas
            .iter()
            .filter(|(id, n)| previous.get(*id) != Some(*n))
            .map(|(id, n)| (id.clone(), n.clone()))
            .collect();
        let removed: Vec<SegmentId> = previous
            .keys()
            .filter(|id| !plan.assignment.replicas.contains_key(*id))
            .cloned()
            .collect();
        cache.assignment = plan.assignment;
        cache.stored = plan.stored_bytes;
        (set, removed, plan.under_replicated.len())
    };
    if under > 0 {
        tracing::warn!(
            segments = under,
            "segments are under-replicated (not enough healthy nodes or capacity in their tier)"
        );
    }
    metrics::gauge!("trough_assignment_under_replicated").set(under as f64);
    let kind = if incremental { "incremental" } else { "full" };
    metrics::counter!("trough_assignment_rounds_total", "kind" => kind).increment(1);
    // Fencing: do not publish a round computed after the lock was lost.
    if !lease.is_held() {
        *cache = LeaderCache::default();
        return Ok(false);
    }
    if !set.is_empty() || !removed.is_empty() {
        if let Err(e) = coordinator.update_assignment(&set, &removed).await {
            // Unknown whether it was stored: read everything next round.
            *cache = LeaderCache::default();
            return Err(e);
        }
    }
    if incremental {
        for id in &removed {
            cache.assignment.replicas.remove(id);
        }
        cache.assignment.replicas.extend(set);
    }
    cache.under_replicated = under;
    cache.nodes = nodes;
    Ok(true)
}

/// The segments a round must act on, as the planner sees them.
#[derive(Debug, Default)]
struct Delta {
    /// Segments not seen before.
    new: Vec<SegmentSpec>,
    /// Known segments whose size or tier changed.
    resized: Vec<SegmentSpec>,
    /// Segments that left the catalog.
    removed: Vec<SegmentId>,
    /// Everything was read again.
    reloaded: bool,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.new.is_empty() && self.resized.is_empty() && self.removed.is_empty() && !self.reloaded
    }
}

/// The leader candidate as a background worker: a round ([`round`]) after every change in the
/// coordinator and at least every [`LeaderConfig::interval`]. A round never starts sooner after
/// the previous one than that round took. At shutdown it releases the leader lock at once, so
/// another candidate takes over without waiting for the lock to expire.
pub struct LeaderWorker {
    me: NodeName,
    coordinator: Arc<dyn Coordinator>,
    config: LeaderConfig,
    interval: Duration,
    /// The coordinator index the last round started from.
    index: u64,
    /// How long the last round took.
    rest: Duration,
    /// What earlier rounds learned.
    cache: LeaderCache,
}

/// The leader candidate's worker.
pub fn worker(
    me: NodeName,
    coordinator: Arc<dyn Coordinator>,
    config: LeaderConfig,
) -> LeaderWorker {
    let interval = if config.interval.is_zero() {
        Duration::from_secs(10)
    } else {
        config.interval
    };
    LeaderWorker {
        me,
        coordinator,
        config,
        interval,
        index: 0,
        rest: Duration::ZERO,
        cache: LeaderCache::default(),
    }
}

#[trough_worker::async_trait]
impl trough_worker::Worker for LeaderWorker {
    fn name(&self) -> &'static str {
        "sync-leader"
    }

    async fn work(&mut self) -> trough_worker::WorkerState {
        let before = self
            .coordinator
            .wait_for_change(0, Duration::ZERO)
            .await
            .unwrap_or(self.index);
        let started = tokio::time::Instant::now();
        if let Err(e) = round(
            &self.me,
            self.coordinator.as_ref(),
            &self.config,
            &mut self.cache,
        )
        .await
        {
            tracing::warn!(error = %e, "assignment round failed");
        }
        self.index = before;
        self.rest = started.elapsed();
        trough_worker::WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        // A round plans over every segment: under a stream of publishes, rest as long as the
        // round took, so rounds batch changes and take at most half the time.
        tokio::time::sleep(self.rest).await;
        if let Ok(i) = self
            .coordinator
            .wait_for_change(self.index, self.interval)
            .await
        {
            self.index = i;
        }
    }

    async fn stop(&mut self) {
        let _ = self.coordinator.unlock(LEADER_LOCK_KEY, &self.me).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use trough_coord::embedded::EmbeddedCoordinator;
    use trough_coord::NodeInfo;
    use trough_types::Manifest;

    fn sid(s: &str) -> SegmentId {
        SegmentId::new(s).unwrap()
    }

    /// A live reader node with no holdings.
    fn reader(name: &NodeName) -> NodeInfo {
        NodeInfo {
            name: name.clone(),
            address: format!("http://{name}"),
            tier: "default".into(),
            quota_bytes: 0,
            stored_bytes: 0,
            roles: vec!["reader".into()],
            held: Default::default(),
            updated_at: Utc::now(),
        }
    }

    fn manifest(id: &str) -> Manifest {
        Manifest {
            key: format!("segments/{id}/data/1.sqlite"),
            id: sid(id),
            version: 1,
            sha256: format!("sha-{id}"),
            size: 8192,
            created_at: Utc::now(),
            schema: None,
            writable: false,
        }
    }

    /// After its first round, the leader reads what changed, not the catalog; a round with
    /// nothing new (its own assignment write woke it) writes nothing.
    #[tokio::test]
    async fn rounds_after_the_first_read_only_what_changed() {
        let c = EmbeddedCoordinator::in_memory().unwrap();
        let me = NodeName::new("leader").unwrap();
        c.register_node(&reader(&me)).await.unwrap();
        for i in 0..300 {
            c.add_version(&manifest(&format!("s{i:03}"))).await.unwrap();
        }
        let config = LeaderConfig::default();
        let mut cache = LeaderCache::default();
        assert!(round(&me, &c, &config, &mut cache).await.unwrap());
        assert_eq!(c.get_assignment().await.unwrap().len(), 300);
        let first = c.stats();
        assert_eq!(first.list_segments, 1);

        c.add_version(&manifest("new-one")).await.unwrap();
        assert!(round(&me, &c, &config, &mut cache).await.unwrap());
        assert_eq!(
            c.get_assigned(&sid("new-one")).await.unwrap(),
            vec![me.clone()]
        );
        // Woken by its own write: nothing the planner sees changed.
        let before = c.stats();
        let index = c.wait_for_change(0, Duration::ZERO).await.unwrap();
        assert!(round(&me, &c, &config, &mut cache).await.unwrap());
        let after = c.stats();
        assert_eq!(after.list_segments, first.list_segments, "no catalog read");
        assert_eq!(
            after.get_assignment, first.get_assignment,
            "no assignment read"
        );
        assert_eq!(c.wait_for_change(0, Duration::ZERO).await.unwrap(), index);
        // The lock's statements only (try_lock): no assignment row written.
        assert!(
            after.statements - before.statements <= 2,
            "{before:?} {after:?}"
        );

        // A node joins: the full planner gives it its share.
        let other = NodeName::new("other").unwrap();
        c.register_node(&reader(&other)).await.unwrap();
        assert!(round(&me, &c, &config, &mut cache).await.unwrap());
        let a = c.get_assignment().await.unwrap();
        let on_other = a.values().filter(|n| n.contains(&other)).count();
        assert!((100..=200).contains(&on_other), "{on_other} of {}", a.len());
        assert_eq!(c.stats().list_segments, 1, "still no catalog read");
        // And new segments keep being placed on both, incrementally.
        for i in 0..40 {
            c.add_version(&manifest(&format!("later-{i:02}")))
                .await
                .unwrap();
        }
        assert!(round(&me, &c, &config, &mut cache).await.unwrap());
        let a = c.get_assignment().await.unwrap();
        let later: Vec<&Vec<NodeName>> = (0..40)
            .map(|i| &a[&sid(&format!("later-{i:02}"))])
            .collect();
        assert!(later.iter().all(|n| n.len() == 1));
        assert!(later.iter().any(|n| n[0] == other) && later.iter().any(|n| n[0] == me));
    }
}
