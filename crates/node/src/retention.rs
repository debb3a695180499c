//! The retention and garbage-collection worker: every `retention.interval_secs`, on the one
//! node that takes the `gc` lock, removes the versions the retention policy expires
//! ([`trough_store::retention`]) and runs one round of the garbage collector
//! ([`trough_store::gc`]). It runs on sync-server nodes (every `trough serve`); the lock keeps
//! two of them from collecting at once. A round that fails is logged and tried again at the
//! next interval: every step can run again. Not here: the policy or the collector themselves.

use std::sync::Arc;
use std::time::Duration;

use trough_coord::Coordinator;
use trough_store::retention::Policy;
use trough_store::SegmentStore;
use trough_types::NodeName;
use trough_worker::{async_trait, Worker, WorkerState};

/// The lock only one collector holds at a time.
pub const GC_LOCK_KEY: &str = "gc";

/// See the module docs.
pub(crate) struct RetentionWorker {
    pub(crate) name: NodeName,
    pub(crate) store: SegmentStore,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) policy: Policy,
    pub(crate) grace: Duration,
    pub(crate) interval: Duration,
}

impl RetentionWorker {
    async fn round(&self) -> trough_types::Result<()> {
        let Some(_lease) = self.coordinator.try_lock(GC_LOCK_KEY, &self.name).await? else {
            return Ok(());
        };
        let result = async {
            let now = chrono::Utc::now();
            let removed =
                trough_store::retention::run(&self.store, &self.coordinator, &self.policy, now)
                    .await?;
            let report =
                trough_store::gc::collect(&self.store, &self.coordinator, self.grace, now).await?;
            tracing::info!(
                removed_versions = removed,
                ?report,
                "retention and garbage collection round"
            );
            Ok(())
        }
        .await;
        let _ = self.coordinator.unlock(GC_LOCK_KEY, &self.name).await;
        result
    }
}

#[async_trait]
impl Worker for RetentionWorker {
    fn name(&self) -> &'static str {
        "retention"
    }

    // The first round waits an interval: a restart does not list the whole store at once.
    fn starts_idle(&self) -> bool {
        true
    }

    async fn work(&mut self) -> WorkerState {
        if let Err(e) = self.round().await {
            tracing::warn!(error = %e, "retention and garbage collection round failed; retrying at the next interval");
        }
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}
