use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use trough_types::NodeName;

use crate::hedge::*;
use crate::Target;

fn targets(names: &[&str]) -> Vec<Target> {
    names
        .iter()
        .map(|n| Target {
            name: NodeName::new(n).unwrap(),
            address: format!("http://{n}"),
        })
        .collect()
}

fn names(v: &[NodeName]) -> Vec<&str> {
    v.iter().map(|n| n.as_str()).collect()
}

const LONG: Duration = Duration::from_secs(3600);

#[test]
fn hedge_delay_is_the_p95_clamped() {
    assert_eq!(hedge_delay(None), INITIAL_HEDGE_DELAY);
    assert_eq!(hedge_delay(Some(Duration::from_millis(1))), MIN_HEDGE_DELAY);
    assert_eq!(hedge_delay(Some(Duration::from_secs(30))), MAX_HEDGE_DELAY);
    let mid = Duration::from_millis(200);
    assert_eq!(hedge_delay(Some(mid)), mid);
}

#[test]
fn p95_of_recent_answer_times() {
    let mut l = Latencies::default();
    assert_eq!(l.p95(), None);
    for ms in 1..=100 {
        l.record(Duration::from_millis(ms));
    }
    assert_eq!(l.p95(), Some(Duration::from_millis(95)));
    // Old samples are forgotten: a window of fast answers brings the delay back down.
    for _ in 0..1000 {
        l.record(Duration::from_millis(2));
    }
    assert_eq!(l.p95(), Some(Duration::from_millis(2)));
}

#[test]
fn suspicion_expires() {
    let at = Instant::now();
    assert!(!is_suspect(None, at));
    assert!(is_suspect(Some(at), at));
    assert!(is_suspect(Some(at), at + SUSPECT_FOR / 2));
    assert!(!is_suspect(Some(at), at + SUSPECT_FOR));
}

#[tokio::test]
async fn a_silent_replica_is_hedged_to_the_next() {
    let policy = Policy {
        hedge_after: Duration::from_millis(10),
        deadline: LONG,
    };
    let raced = race(targets(&["frozen", "alive"]), policy, |t| async move {
        if t.name.as_str() == "frozen" {
            std::future::pending::<()>().await;
        }
        Step::Done(t.name)
    })
    .await;
    assert_eq!(
        raced.result.ok().map(|n| n.to_string()),
        Some("alive".into())
    );
    assert_eq!(names(&raced.suspects), ["frozen"]);
    assert_eq!(raced.hedges, 1);
    assert_eq!(raced.failed, 0);
}

#[tokio::test]
async fn the_deadline_turns_a_hang_into_a_failure() {
    let policy = Policy {
        hedge_after: LONG,
        deadline: Duration::from_millis(20),
    };
    let raced: Raced<()> = race(targets(&["frozen"]), policy, |_| async {
        std::future::pending::<()>().await;
        Step::Done(())
    })
    .await;
    let failures = raced.result.expect_err("nobody answered");
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with("frozen: no answer within 20 ms"),
        "{failures:?}"
    );
    assert_eq!(names(&raced.suspects), ["frozen"]);
    assert_eq!(raced.failed, 1);
}

#[tokio::test]
async fn a_failure_moves_on_at_once_and_a_quick_answer_asks_nobody_else() {
    let calls = AtomicUsize::new(0);
    let policy = Policy {
        hedge_after: LONG,
        deadline: LONG,
    };
    let raced = race(targets(&["broken", "alive", "spare"]), policy, |t| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            if t.name.as_str() == "broken" {
                Step::Next("connection refused".into())
            } else {
                Step::Done(t.name)
            }
        }
    })
    .await;
    assert_eq!(
        raced.result.ok().map(|n| n.to_string()),
        Some("alive".into())
    );
    assert_eq!(names(&raced.suspects), ["broken"]);
    assert_eq!((raced.hedges, raced.failed), (0, 1));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the spare was never asked"
    );
}

#[tokio::test]
async fn every_replica_failing_lists_each_and_no_replica_lists_none() {
    let policy = Policy {
        hedge_after: LONG,
        deadline: LONG,
    };
    let raced: Raced<()> = race(targets(&["a", "b"]), policy, |_| async {
        Step::Next("503".into())
    })
    .await;
    assert_eq!(raced.result.expect_err("all failed"), ["a: 503", "b: 503"]);
    let raced: Raced<()> = race(Vec::new(), policy, |_| async { Step::Done(()) }).await;
    assert!(raced.result.expect_err("no replica").is_empty());
}
