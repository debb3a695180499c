//! The node's registration in the coordinator: once at start-up, then every few seconds by the
//! [`HeartbeatWorker`]. A node with a local synchronizer registers with its verified holdings
//! ([`LocalSync::report`]); any other node with no holdings.
//!
//! Not here: deciding who is alive (the coordinator's TTLs, the leader's view of live nodes).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use trough_coord::{Coordinator, NodeInfo};
use trough_sync::local::{LocalSync, NodeIdentity};
use trough_types::Result;
use trough_worker::{async_trait, Worker, WorkerState};

/// How often a node re-registers itself (Consul's TTL check is a few times longer).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Registers this node once: with its holdings if it has a local synchronizer.
pub(crate) async fn heartbeat(
    coordinator: &dyn Coordinator,
    identity: &NodeIdentity,
    sync: Option<&LocalSync>,
) -> Result<()> {
    match sync {
        Some(s) => s.report().await,
        None => {
            coordinator
                .register_node(&NodeInfo {
                    name: identity.name.clone(),
                    address: identity.address.clone(),
                    tier: identity.tier.clone(),
                    quota_bytes: identity.quota_bytes,
                    stored_bytes: 0,
                    roles: identity.roles.clone(),
                    held: Default::default(),
                    updated_at: Utc::now(),
                })
                .await
        }
    }
}

/// Re-registers the node every [`HEARTBEAT_INTERVAL`]. Starts idle: the node registered once
/// before starting it.
pub(crate) struct HeartbeatWorker {
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) identity: NodeIdentity,
    pub(crate) sync: Option<Arc<LocalSync>>,
}

#[async_trait]
impl Worker for HeartbeatWorker {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn starts_idle(&self) -> bool {
        true
    }

    async fn work(&mut self) -> WorkerState {
        if let Err(e) = heartbeat(
            self.coordinator.as_ref(),
            &self.identity,
            self.sync.as_deref(),
        )
        .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
    }
}
