//! Background workers: named run loops that a node starts, cancels together at shutdown and
//! joins with a deadline, modelled on Garage's `Worker` (`garage_util::background::worker`).
//!
//! A [`Worker`] is one background job written as steps, not as a loop: [`Worker::work`] does
//! one round (a sync pass, an assignment round, a heartbeat) and [`Worker::wait_for_work`]
//! waits until the next round is due (a timer, a coordinator change). The loop, and with it
//! shutdown, is written once, here: [`Workers::spawn`] drives a worker until its token is
//! cancelled. Cancellation is observed between rounds and while waiting, never in the middle of
//! a round, so a round that started finishes (a half-done pass or publish is never abandoned by
//! shutdown); [`Worker::stop`] then runs once (e.g. to release a lock early).
//!
//! [`Workers::shutdown`] cancels every worker, waits for all of them up to a deadline and
//! returns a [`ShutdownReport`]: which workers panicked and which were still running at the
//! deadline. A panic in one worker never stops the others: it is logged as an error with the
//! worker's name, counted in `trough_worker_panics_total{worker}`, and reported at shutdown
//! instead of being swallowed.
//!
//! Built on `tokio_util`'s [`CancellationToken`] and [`TaskTracker`]. Not here: what the
//! workers do (each lives next to the code it schedules: `trough-sync`, `trough-writer`,
//! `trough-cluster`, `trough-node`), retry delays inside a round (the `backon` crate), and the
//! HTTP listener's connection tasks (`trough-api`'s listener drains those itself). See
//! `docs/decisions/0011-background-workers.md`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use async_trait::async_trait;

/// What a worker's round left it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is ready: run the next round at once.
    Busy,
    /// Nothing to do: wait ([`Worker::wait_for_work`]) before the next round.
    Idle,
    /// Finished for good: the worker ends (without [`Worker::stop`]).
    Done,
}

/// One background job, driven by [`Workers::spawn`].
#[async_trait]
pub trait Worker: Send + 'static {
    /// The worker's name in logs, metrics and the shutdown report.
    fn name(&self) -> &'static str;

    /// Whether the worker waits before its first round (default: it starts with a round).
    fn starts_idle(&self) -> bool {
        false
    }

    /// One round of work. Never cancelled: shutdown waits for a round to finish.
    async fn work(&mut self) -> WorkerState;

    /// Waits until the next round is due. Dropped (cancelled) at shutdown.
    async fn wait_for_work(&mut self);

    /// Runs once after shutdown was observed (not after [`WorkerState::Done`]).
    async fn stop(&mut self) {}
}

/// A worker that panicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    /// The worker's [`Worker::name`].
    pub worker: &'static str,
    /// The panic message.
    pub message: String,
}

/// What [`Workers::shutdown`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Workers that panicked (at any time since they were spawned).
    pub panicked: Vec<Panicked>,
    /// Workers still running when the deadline passed (left behind).
    pub unfinished: Vec<&'static str>,
}

impl ShutdownReport {
    /// Whether every worker stopped in time and none panicked.
    pub fn is_clean(&self) -> bool {
        self.panicked.is_empty() && self.unfinished.is_empty()
    }
}

#[derive(Default)]
struct Status {
    running: Vec<&'static str>,
    panicked: Vec<Panicked>,
}

/// The set of background workers of one node.
pub struct Workers {
    cancel: CancellationToken,
    tracker: TaskTracker,
    status: Arc<Mutex<Status>>,
}

impl Default for Workers {
    fn default() -> Self {
        Self::new()
    }
}

impl Workers {
    /// No workers yet.
    pub fn new() -> Self {
        Workers {
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            status: Arc::default(),
        }
    }

    /// Starts `worker` on the current runtime.
    pub fn spawn<W: Worker>(&self, worker: W) {
        let name = worker.name();
        self.status().running.push(name);
        let status = self.status.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tracing::debug!(worker = name, "background worker started");
            let outcome = AssertUnwindSafe(drive(worker, cancel)).catch_unwind().await;
            let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = st.running.iter().position(|n| *n == name) {
                st.running.swap_remove(i);
            }
            match outcome {
                Ok(()) => tracing::debug!(worker = name, "background worker stopped"),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(worker = name, panic = %message, "background worker panicked; it is stopped, the other workers keep running");
                    metrics::counter!("trough_worker_panics_total", "worker" => name).increment(1);
                    st.panicked.push(Panicked {
                        worker: name,
                        message,
                    });
                }
            }
        });
    }

    /// The workers that panicked so far.
    pub fn panicked(&self) -> Vec<Panicked> {
        self.status().panicked.clone()
    }

    /// Cancels every worker and waits up to `deadline` for all of them to stop.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.cancel.cancel();
        self.tracker.close();
        let in_time = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        let st = self.status();
        let mut unfinished = st.running.clone();
        unfinished.sort_unstable();
        if !in_time {
            tracing::warn!(workers = ?unfinished, deadline_ms = deadline.as_millis() as u64, "background workers still running after the shutdown deadline; leaving them");
        }
        ShutdownReport {
            panicked: st.panicked.clone(),
            unfinished,
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The one run loop: rounds, waits when idle, stops when cancelled.
async fn drive<W: Worker>(mut worker: W, cancel: CancellationToken) {
    let mut state = if worker.starts_idle() {
        WorkerState::Idle
    } else {
        WorkerState::Busy
    };
    loop {
        if state == WorkerState::Idle {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = worker.wait_for_work() => {}
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        state = worker.work().await;
        if state == WorkerState::Done {
            return;
        }
    }
    worker.stop().await;
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests;
