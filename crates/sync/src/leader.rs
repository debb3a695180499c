//! Server mode: the leader computes the assignment.
//!
//! Any number of synchronizers in server mode may run; the one holding the coordinator's
//! [`LEADER_LOCK_KEY`] lock computes assignments, the others wait to take over. A round reads the
//! live nodes (those that heartbeated recently) and the catalog, calls the pure
//! [`assign::assign`], and stores the result. Rounds run after every change in the coordinator and
//! at least every interval. A leader that loses its lock stops at once.
//!
//! Not here: the algorithm itself ([`assign`]) or acting on the assignment ([`crate::local`]).

use std::sync::Arc;
use std::time::Duration;

use trough_coord::{Coordinator, LEADER_LOCK_KEY};
use trough_types::NodeName;

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

/// One assignment round, if this process is the leader. Returns whether it led.
pub async fn round(
    me: &NodeName,
    coordinator: &dyn Coordinator,
    config: &LeaderConfig,
) -> trough_types::Result<bool> {
    let Some(lease) = coordinator.try_lock(LEADER_LOCK_KEY, me).await? else {
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
    let segments: Vec<SegmentSpec> = coordinator
        .list_segments()
        .await?
        .into_iter()
        .filter_map(|e| {
            let size = e.latest()?.size;
            Some(SegmentSpec {
                tier: matcher.tier_for(&e.id).to_owned(),
                id: e.id,
                size_bytes: size,
            })
        })
        .collect();
    let tiers = if config.tiers.is_empty() {
        vec![TierSpec {
            name: "default".into(),
            replication_factor: 1,
        }]
    } else {
        config.tiers.clone()
    };
    let previous = assign::Assignment {
        replicas: coordinator.get_assignment().await?,
    };
    let plan = assign::assign(&nodes, &segments, &tiers, &previous);
    if !plan.under_replicated.is_empty() {
        tracing::warn!(
            segments = plan.under_replicated.len(),
            "segments are under-replicated (not enough healthy nodes or capacity in their tier)"
        );
    }
    metrics::gauge!("trough_assignment_under_replicated").set(plan.under_replicated.len() as f64);
    // Fencing: do not publish a round computed after the lock was lost.
    if !lease.is_held() {
        return Ok(false);
    }
    coordinator
        .put_assignment(&plan.assignment.replicas)
        .await?;
    Ok(true)
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
        if let Err(e) = round(&self.me, self.coordinator.as_ref(), &self.config).await {
            tracing::warn!(error = %e, "assignment round failed");
        }
        self.index = before;
        self.rest = started.elapsed();
        trough_worker::WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        // A round reads the whole catalog: under a stream of publishes, rest as long as the
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
