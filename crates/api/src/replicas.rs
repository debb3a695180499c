//! Trying the other replicas of a segment in turn: the one loop behind a forwarded read
//! (`handlers::sql`) and a fan-out fetch (`fanout`).
//!
//! The replicas are the cluster view's read targets for the segment minus this node; when the
//! view names none (it may predate the segment's placement) it is refreshed once with a point read
//! of that segment, never the whole catalog. Each replica gets one attempt; an attempt either
//! ends the loop with a value (an answer, or an error that would be the same on every replica,
//! such as the query's own 400) or asks for the next replica with a reason. A replica that failed
//! is penalized in the view (tried last for a few seconds), and every retry is logged and counted
//! (`trough_router_retries_total`).
//!
//! Not here: what an attempt sends (`trough_cluster::forward`, `fanout::fetch`), or where reads
//! are answered locally (`Node::reads_locally`).

use std::future::Future;

use trough_cluster::Target;
use trough_types::SegmentId;

use crate::Node;

/// The outcome of one attempt on one replica.
pub(crate) enum Step<T> {
    /// Stop here with this value.
    Done(T),
    /// This replica could not answer; try the next (the reason goes to logs and the final error).
    Next(String),
}

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

    /// Runs `attempt` on each remote replica of `id` until one is [`Step::Done`]. `Err` holds one
    /// line per replica that failed (`"<node>: <reason>"`); it is empty when no replica holds `id`.
    pub(crate) async fn each_replica<T, F, Fut>(
        &self,
        id: &SegmentId,
        mut attempt: F,
    ) -> Result<T, Vec<String>>
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        let mut failures = Vec::new();
        for t in self.remote_replicas(id).await {
            let name = t.name.clone();
            match attempt(t).await {
                Step::Done(v) => return Ok(v),
                Step::Next(reason) => {
                    tracing::warn!(segment = %id, node = %name, %reason, "replica failed; trying the next");
                    metrics::counter!("trough_router_retries_total").increment(1);
                    self.cluster.penalize(&name);
                    failures.push(format!("{name}: {reason}"));
                }
            }
        }
        Err(failures)
    }
}
