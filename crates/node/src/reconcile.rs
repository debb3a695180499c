//! Reconciling the catalog with the object store at start-up.
//!
//! A version whose manifest was stored but not catalogued (a crash between the two) is found by
//! listing the store ([`trough_store::publish::reconcile`]), which reads every key of every
//! segment: linear in the data, a third of a restart at 50,000 segments. So the listing blocks
//! start-up only when the catalog is empty (a lost catalog is rebuilt before anything reads it);
//! otherwise it runs once in the background ([`ReconcileWorker`]). Until it finishes, such a
//! version is simply not served yet: it was never acknowledged (the publisher answers only after
//! cataloguing), and a new publish of that segment takes the next free version.
//!
//! Not here: publishing, or the listing itself.

use std::sync::Arc;

use trough_coord::Coordinator;
use trough_store::publish::reconcile;
use trough_store::SegmentStore;
use trough_types::Result;
use trough_worker::{async_trait, Worker, WorkerState};

/// Whether start-up must wait for the listing: only when the catalog is empty.
pub(crate) async fn must_block(coordinator: &dyn Coordinator) -> Result<bool> {
    Ok(coordinator
        .list_segments_page("", None, 1)
        .await?
        .is_empty())
}

/// Runs [`reconcile`] once, in the background.
pub(crate) struct ReconcileWorker {
    pub(crate) store: SegmentStore,
    pub(crate) coordinator: Arc<dyn Coordinator>,
}

#[async_trait]
impl Worker for ReconcileWorker {
    fn name(&self) -> &'static str {
        "reconcile"
    }

    async fn work(&mut self) -> WorkerState {
        match reconcile(&self.store, self.coordinator.as_ref()).await {
            Ok(added) => tracing::debug!(added, "background reconcile finished"),
            Err(e) => {
                tracing::warn!(error = %e, "reconciling the catalog with the object store failed")
            }
        }
        WorkerState::Done
    }

    async fn wait_for_work(&mut self) {}
}
