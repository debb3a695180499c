//! The run loop, cancellation, deadlines and panic reporting, with workers driven by channels
//! (no sleeps; one test lets a 100 ms shutdown deadline pass).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Counts each round on `rounds` and waits for a message on `go` between rounds.
struct Counter_ {
    rounds: mpsc::UnboundedSender<u64>,
    go: mpsc::UnboundedReceiver<()>,
    done: u64,
    stopped: Arc<AtomicBool>,
}

#[async_trait]
impl Worker for Counter_ {
    fn name(&self) -> &'static str {
        "counter"
    }
    async fn work(&mut self) -> WorkerState {
        self.done += 1;
        let _ = self.rounds.send(self.done);
        WorkerState::Idle
    }
    async fn wait_for_work(&mut self) {
        if self.go.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
    async fn stop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Panics in its first round.
struct Panicker;

#[async_trait]
impl Worker for Panicker {
    fn name(&self) -> &'static str {
        "panicker"
    }
    async fn work(&mut self) -> WorkerState {
        panic!("boom in round one");
    }
    async fn wait_for_work(&mut self) {}
}

fn counter() -> (
    Counter_,
    mpsc::UnboundedReceiver<u64>,
    mpsc::UnboundedSender<()>,
    Arc<AtomicBool>,
) {
    let (rounds_tx, rounds) = mpsc::unbounded_channel();
    let (go, go_rx) = mpsc::unbounded_channel();
    let stopped = Arc::new(AtomicBool::new(false));
    let w = Counter_ {
        rounds: rounds_tx,
        go: go_rx,
        done: 0,
        stopped: stopped.clone(),
    };
    (w, rounds, go, stopped)
}

/// Waits until `f` holds, yielding to the runtime in between.
async fn until(mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !f() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("condition not reached");
}

/// A recorder that counts increments of `trough_worker_panics_total` per `worker` label.
#[derive(Default)]
struct PanicCounter(Arc<Mutex<Vec<(String, u64)>>>);

struct Incr(Arc<Mutex<Vec<(String, u64)>>>, String);

impl metrics::CounterFn for Incr {
    fn increment(&self, value: u64) {
        self.0.lock().unwrap().push((self.1.clone(), value));
    }
    fn absolute(&self, _: u64) {}
}

impl Recorder for PanicCounter {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() != "trough_worker_panics_total" {
            return Counter::noop();
        }
        let worker = key
            .labels()
            .find(|l| l.key() == "worker")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        Counter::from_arc(Arc::new(Incr(self.0.clone(), worker)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn a_panicking_worker_is_reported_and_the_others_keep_running() {
    let recorder = PanicCounter::default();
    let counted = recorder.0.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let workers = Workers::new();
            let (w, mut rounds, go, stopped) = counter();
            workers.spawn(w);
            workers.spawn(Panicker);
            assert_eq!(rounds.recv().await, Some(1));
            until(|| !workers.panicked().is_empty()).await;
            // The counter goes on after the panic.
            go.send(()).unwrap();
            assert_eq!(rounds.recv().await, Some(2));
            go.send(()).unwrap();
            assert_eq!(rounds.recv().await, Some(3));
            let report = workers.shutdown(Duration::from_secs(5)).await;
            assert!(
                stopped.load(Ordering::SeqCst),
                "the counter's stop hook ran"
            );
            report
        })
    });
    assert_eq!(
        report.panicked,
        vec![Panicked {
            worker: "panicker",
            message: "boom in round one".into()
        }]
    );
    assert!(report.unfinished.is_empty(), "{report:?}");
    assert!(!report.is_clean());
    assert_eq!(*counted.lock().unwrap(), vec![("panicker".to_owned(), 1)]);
}

/// Signals when its round starts, then finishes it only when told.
struct SlowRound {
    started: Option<oneshot::Sender<()>>,
    finish: Option<oneshot::Receiver<()>>,
    finished: Arc<AtomicBool>,
}

#[async_trait]
impl Worker for SlowRound {
    fn name(&self) -> &'static str {
        "slow-round"
    }
    async fn work(&mut self) -> WorkerState {
        if let Some(s) = self.started.take() {
            let _ = s.send(());
        }
        match self.finish.take() {
            Some(f) => {
                let _ = f.await;
            }
            None => std::future::pending::<()>().await,
        }
        self.finished.store(true, Ordering::SeqCst);
        WorkerState::Idle
    }
    async fn wait_for_work(&mut self) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test]
async fn shutdown_lets_a_running_round_finish() {
    let workers = Workers::new();
    let (started_tx, started) = oneshot::channel();
    let (finish, finish_rx) = oneshot::channel();
    let finished = Arc::new(AtomicBool::new(false));
    workers.spawn(SlowRound {
        started: Some(started_tx),
        finish: Some(finish_rx),
        finished: finished.clone(),
    });
    started.await.unwrap();
    let shutdown = tokio::spawn(workers.shutdown(Duration::from_secs(30)));
    finish.send(()).unwrap();
    let report = shutdown.await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(
        finished.load(Ordering::SeqCst),
        "the round was not cut short"
    );
}

#[tokio::test]
async fn a_worker_past_the_deadline_is_reported_unfinished() {
    let workers = Workers::new();
    let (started_tx, started) = oneshot::channel();
    let finished = Arc::new(AtomicBool::new(false));
    workers.spawn(SlowRound {
        started: Some(started_tx),
        finish: None,
        finished: finished.clone(),
    });
    let (w, mut rounds, _go, stopped) = counter();
    workers.spawn(w);
    started.await.unwrap();
    assert_eq!(rounds.recv().await, Some(1));
    // The round never ends: the deadline passes (a short one, to keep the test fast).
    let report = workers.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.unfinished, vec!["slow-round"]);
    assert!(report.panicked.is_empty());
    assert!(
        stopped.load(Ordering::SeqCst),
        "the idle worker stopped in time"
    );
    assert!(!finished.load(Ordering::SeqCst));
}

/// Waits for `go` before each round (starts idle); finishes after `rounds` rounds.
struct IdleFirst {
    go: mpsc::UnboundedReceiver<()>,
    rounds: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

#[async_trait]
impl Worker for IdleFirst {
    fn name(&self) -> &'static str {
        "idle-first"
    }
    fn starts_idle(&self) -> bool {
        true
    }
    async fn work(&mut self) -> WorkerState {
        if self.rounds.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
            WorkerState::Done
        } else {
            WorkerState::Idle
        }
    }
    async fn wait_for_work(&mut self) {
        if self.go.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
    async fn stop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_idle_first_worker_waits_and_a_done_worker_ends_without_stop() {
    let workers = Workers::new();
    let (go, go_rx) = mpsc::unbounded_channel();
    let rounds = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    workers.spawn(IdleFirst {
        go: go_rx,
        rounds: rounds.clone(),
        stopped: stopped.clone(),
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        rounds.load(Ordering::SeqCst),
        0,
        "no round before the first wait"
    );
    go.send(()).unwrap();
    until(|| rounds.load(Ordering::SeqCst) == 1).await;
    go.send(()).unwrap();
    until(|| rounds.load(Ordering::SeqCst) == 2).await;
    let report = workers.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(
        !stopped.load(Ordering::SeqCst),
        "stop runs only on cancellation"
    );
}
