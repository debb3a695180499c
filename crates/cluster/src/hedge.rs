//! Hedged, bounded reads: which replica to ask, when to ask another one as well, and when to give
//! up on one (decision 0015).
//!
//! A read may be answered by any replica of its segment. [`race`] sends it to the first replica;
//! when that one has not answered within the *hedge delay* it sends it to the next one too, and
//! the first answer wins (the others are dropped, which closes their connections). A replica
//! that fails is replaced at once; one that does not answer within the *deadline* counts as
//! failed. Replicas that failed, timed out, or were overtaken by a hedge are reported as
//! [`Raced::suspects`], and the caller marks them so that the next reads try them last for a
//! while ([`is_suspect`], [`SUSPECT_FOR`]).
//!
//! The hedge delay adapts: it is the 95th percentile of recent answer times ([`Latencies`]),
//! clamped to [`MIN_HEDGE_DELAY`]..[`MAX_HEDGE_DELAY`] ([`hedge_delay`]), so a healthy cluster
//! sends few duplicates while a frozen replica costs a read at most about a second.
//!
//! Only reads come here: a write has one possible target and is never hedged
//! ([`crate::forward::Retry::NotSent`]).
//!
//! Not here: what one attempt sends (`forward`, the api crate's fan-out fetch).

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use trough_types::NodeName;

use crate::Target;

/// Shortest hedge delay: below it a healthy replica's ordinary jitter would double the load.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(50);
/// Longest hedge delay: a frozen replica costs a read at most this before another is asked.
pub const MAX_HEDGE_DELAY: Duration = Duration::from_secs(1);
/// The hedge delay before any answer time is known.
pub const INITIAL_HEDGE_DELAY: Duration = Duration::from_millis(250);
/// How long a replica that failed, timed out or was overtaken is tried last.
pub const SUSPECT_FOR: Duration = Duration::from_secs(5);
/// How many recent answer times the hedge delay is computed from.
const WINDOW: usize = 256;

/// The hedge delay for a 95th percentile of recent answer times (`None`: none known yet).
pub fn hedge_delay(p95: Option<Duration>) -> Duration {
    p95.map_or(INITIAL_HEDGE_DELAY, |d| {
        d.clamp(MIN_HEDGE_DELAY, MAX_HEDGE_DELAY)
    })
}

/// Whether a node marked suspect at `marked` (if ever) is still suspect at `now`.
pub fn is_suspect(marked: Option<Instant>, now: Instant) -> bool {
    marked.is_some_and(|at| now.saturating_duration_since(at) < SUSPECT_FOR)
}

/// The most recent answer times of forwarded reads.
#[derive(Debug, Default)]
pub struct Latencies {
    recent: VecDeque<Duration>,
}

impl Latencies {
    /// Records one answer time, forgetting the oldest past `WINDOW` samples.
    pub fn record(&mut self, d: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(d);
    }

    /// The 95th percentile of the recorded times (`None` when there are none).
    pub fn p95(&self) -> Option<Duration> {
        if self.recent.is_empty() {
            return None;
        }
        let mut v: Vec<Duration> = self.recent.iter().copied().collect();
        v.sort_unstable();
        let rank = (v.len() * 95).div_ceil(100).max(1) - 1;
        Some(v[rank])
    }
}

/// When to hedge and when to give up on one replica.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Ask the next replica as well when no answer came within this.
    pub hedge_after: Duration,
    /// Give up on a replica that has not answered within this.
    pub deadline: Duration,
}

/// The outcome of one attempt on one replica.
pub enum Step<T> {
    /// Stop here with this value (an answer, or an error that would be the same everywhere).
    Done(T),
    /// This replica could not answer; try the next (the reason goes to logs and the final error).
    Next(String),
}

/// What [`race`] found.
pub struct Raced<T> {
    /// The winning value, or one line per replica that failed (`"<node>: <reason>"`, empty
    /// when there was no replica).
    pub result: Result<T, Vec<String>>,
    /// Replicas that failed, timed out, or were still silent when another answered.
    pub suspects: Vec<NodeName>,
    /// How long the winning replica took.
    pub latency: Option<Duration>,
    /// How many extra requests were sent because a replica was slow.
    pub hedges: usize,
    /// How many replicas failed or timed out (each caused a retry on the next).
    pub failed: usize,
}

/// Runs `attempt` on `targets` (best first) with hedging and a per-replica deadline; see the
/// module docs.
pub async fn race<T, F, Fut>(targets: Vec<Target>, policy: Policy, mut attempt: F) -> Raced<T>
where
    F: FnMut(Target) -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let mut queue = targets.into_iter();
    let mut running = FuturesUnordered::new();
    let mut in_flight: Vec<NodeName> = Vec::new();
    let mut failures = Vec::new();
    let mut suspects = Vec::new();
    let mut hedges = 0;
    let mut launch = |t: Target, running: &mut FuturesUnordered<_>, in_flight: &mut Vec<_>| {
        let name = t.name.clone();
        in_flight.push(name.clone());
        let fut = attempt(t);
        running.push(async move {
            let started = Instant::now();
            let out = tokio::time::timeout(policy.deadline, fut).await;
            (name, started.elapsed(), out)
        });
    };
    let Some(first) = queue.next() else {
        return Raced {
            failed: 0,
            result: Err(failures),
            suspects,
            latency: None,
            hedges,
        };
    };
    launch(first, &mut running, &mut in_flight);
    let mut remaining = queue.len();
    loop {
        let hedge = tokio::time::sleep(policy.hedge_after);
        tokio::pin!(hedge);
        let finished = tokio::select! {
            f = running.next() => f,
            () = &mut hedge, if remaining > 0 => {
                let t = queue.next().expect("remaining > 0");
                remaining -= 1;
                hedges += 1;
                launch(t, &mut running, &mut in_flight);
                continue;
            }
        };
        let Some((name, took, out)) = finished else {
            return Raced {
                failed: failures.len(),
                result: Err(failures),
                suspects,
                latency: None,
                hedges,
            };
        };
        in_flight.retain(|n| n != &name);
        let reason = match out {
            Ok(Step::Done(v)) => {
                suspects.append(&mut in_flight);
                return Raced {
                    result: Ok(v),
                    suspects,
                    latency: Some(took),
                    hedges,
                    failed: failures.len(),
                };
            }
            Ok(Step::Next(reason)) => reason,
            Err(_) => format!("no answer within {} ms", policy.deadline.as_millis()),
        };
        tracing::warn!(node = %name, %reason, "replica failed; trying the next");
        failures.push(format!("{name}: {reason}"));
        suspects.push(name);
        if let Some(t) = queue.next() {
            remaining -= 1;
            launch(t, &mut running, &mut in_flight);
        }
    }
}
