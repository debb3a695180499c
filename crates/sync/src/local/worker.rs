//! The background worker that runs [`LocalSync`] passes and scrubs; the pass itself is in
//! [`super`].

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::LocalSync;

/// Delays after consecutive failed passes: 0.4 s, doubling, at most 10 s; reset by a pass that
/// succeeds.
const PASS_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(400))
    .with_max_delay(Duration::from_secs(10))
    .without_max_times();

/// Runs [`LocalSync`] passes: after every change in the coordinator, or at least every
/// `sync.interval_secs` (every second while some copy failed, with a growing delay while passes
/// fail); scrubs every `sync.scrub_interval_secs`. After the first pass, the copies adopted
/// without hashing are re-hashed ([`LocalSync::rehash_adopted`]).
pub struct SyncWorker {
    sync: Arc<LocalSync>,
    /// The coordinator index the last pass started from.
    index: u64,
    /// The longest wait for a change before the next pass.
    wait: Duration,
    failures: ExponentialBackoff,
    scrub_every: Duration,
    last_scrub: tokio::time::Instant,
}

#[trough_worker::async_trait]
impl trough_worker::Worker for SyncWorker {
    fn name(&self) -> &'static str {
        "local-sync"
    }

    async fn work(&mut self) -> trough_worker::WorkerState {
        let me = &self.sync;
        let before = match me.coordinator.wait_for_change(0, Duration::ZERO).await {
            Ok(i) => i,
            Err(_) => self.index,
        };
        self.wait = match me.pass().await {
            Ok(()) => {
                self.failures = PASS_BACKOFF.build();
                let retry_soon = me.has_errors();
                if retry_soon {
                    Duration::from_secs(1)
                } else {
                    me.config.interval()
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync pass failed");
                self.failures.next().unwrap_or(Duration::from_secs(10))
            }
        };
        let unhashed = !me
            .unhashed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if unhashed {
            let me = me.clone();
            tokio::spawn(async move { me.rehash_adopted().await });
        }
        if !self.scrub_every.is_zero() && self.last_scrub.elapsed() >= self.scrub_every {
            me.scrub().await;
            self.last_scrub = tokio::time::Instant::now();
        }
        self.index = before;
        trough_worker::WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        // A pass reads the whole assignment: under a stream of publishes, rest as long as the
        // pass took, so passes batch changes and take at most half the time.
        tokio::time::sleep(self.sync.planning_cost()).await;
        if let Ok(i) = self
            .sync
            .coordinator
            .wait_for_change(self.index, self.wait)
            .await
        {
            self.index = i;
        }
    }
}

impl LocalSync {
    /// The background worker that runs passes ([`SyncWorker`]).
    pub fn worker(self: Arc<Self>) -> SyncWorker {
        SyncWorker {
            scrub_every: Duration::from_secs(self.config.scrub_interval_secs),
            last_scrub: tokio::time::Instant::now(),
            sync: self,
            index: 0,
            wait: Duration::ZERO,
            failures: PASS_BACKOFF.build(),
        }
    }
}
