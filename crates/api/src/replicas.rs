//! Trying the other replicas of a segment in turn: the one loop behind a forwarded read
//! (`handlers::sql`) and a fan-out fetch (`fanout`).
//!
//! The replicas are the cluster view's read targets for the segment minus this node; when the
//! view names none (it may predate the segment's placement) it is refreshed once with a point read
//! of that segment, never the whole catalog. Each replica gets one attempt; an attempt either
//! ends the loop with a value (an answer, or an error that would be the same on every replica,
//! such as the query's own 400) or asks for the next replica with a reason. A replica that failed
//! is penalized in the view (tried last for a few seconds), and every retry is logged and counted
//! (`trough_router_retries_total`). Attempts are hedged and bounded (decision 0015): a replica
//! slower than the adaptive hedge delay gets company (`trough_router_hedges_total`), and one
//! silent past the deadline counts as failed, so a frozen replica never stalls a read.
//!
//! Not here: what an attempt sends (`trough_cluster::forward`, `fanout::fetch`), or where reads
//! are answered locally (`Node::reads_locally`).

use std::future::Future;
use std::time::Duration;

use trough_cluster::hedge::{race, Policy};

use trough_cluster::Target;
use trough_types::SegmentId;

use crate::Node;

pub(crate) use trough_cluster::hedge::Step;

/// Time a replica gets beyond the query timeout before a forwarded read gives up on it.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

impl Node {
    /// The other nodes that can answer a read of `id`, best first; refreshes the view of `id`
    /// once when it names none.
    pub(crate) async fn remote_replicas(&self, id: &SegmentId) -> Vec<Target> {
        let others = |node: &Self| -> Vec<Target> {
            node.cluster
                .read_targets(id)
                .into_iter()
                .filter(|t| t.name != node.name)
                .collect()
        };
        let targets = others(self);
        if !targets.is_empty() {
            return targets;
        }
        let _ = self.cluster.refresh_segment(&self.coordinator, id).await;
        others(self)
    }

    /// Runs `attempt` on the remote replicas of `id` until one is [`Step::Done`], hedged and
    /// bounded ([`trough_cluster::hedge::race`]): the next replica is asked as well when the
    /// first is slower than the adaptive hedge delay, and a replica silent past the query timeout
    /// (plus a grace) counts as failed. `Err` holds one line per replica that failed
    /// (`"<node>: <reason>"`); it is empty when no replica holds `id`.
    pub(crate) async fn each_replica<T, F, Fut>(
        &self,
        id: &SegmentId,
        attempt: F,
    ) -> Result<T, Vec<String>>
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        let targets = self.remote_replicas(id).await;
        let policy = Policy {
            hedge_after: self.cluster.hedge_delay(),
            deadline: Duration::from_millis(self.limits.query.timeout_ms) + DEADLINE_GRACE,
        };
        let raced = race(targets, policy, attempt).await;
        if raced.hedges > 0 {
            metrics::counter!("trough_router_hedges_total").increment(raced.hedges as u64);
        }
        for name in &raced.suspects {
            self.cluster.penalize(name);
        }
        if let Some(took) = raced.latency {
            self.cluster.record_latency(took);
        }
        if raced.failed > 0 {
            metrics::counter!("trough_router_retries_total").increment(raced.failed as u64);
        }
        raced.result
    }
}
