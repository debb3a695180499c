//! The writer's background workers: keeping write leases and promoting on a timer.
//!
//! Each is a thin [`Worker`] around one [`Writer`] method; the node starts them
//! ([`trough_worker::Workers`]) and stops them at shutdown. Not here: what a round does
//! ([`Writer::keep_leases`], [`Writer::promote_dirty`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};
use trough_worker::{async_trait, Worker, WorkerState};

use crate::Writer;

/// Runs [`Writer::keep_leases`] every `interval`, first after one `interval`.
pub struct LeaseKeeper {
    writer: Arc<Writer>,
    interval: Duration,
}

impl LeaseKeeper {
    /// Keeps `writer`'s leases every `interval`.
    pub fn new(writer: Arc<Writer>, interval: Duration) -> Self {
        LeaseKeeper { writer, interval }
    }
}

#[async_trait]
impl Worker for LeaseKeeper {
    fn name(&self) -> &'static str {
        "write-leases"
    }

    fn starts_idle(&self) -> bool {
        true
    }

    async fn work(&mut self) -> WorkerState {
        self.writer.keep_leases().await;
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}

/// Runs [`Writer::promote_dirty`] at once and then every `interval` (a round that runs long
/// delays the next tick instead of bunching them).
pub struct AutoPromoter {
    writer: Arc<Writer>,
    tick: Interval,
}

impl AutoPromoter {
    /// Promotes `writer`'s dirty segments every `interval`.
    pub fn new(writer: Arc<Writer>, interval: Duration) -> Self {
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        AutoPromoter { writer, tick }
    }
}

#[async_trait]
impl Worker for AutoPromoter {
    fn name(&self) -> &'static str {
        "auto-promote"
    }

    async fn work(&mut self) -> WorkerState {
        self.writer.promote_dirty().await;
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        self.tick.tick().await;
    }
}
