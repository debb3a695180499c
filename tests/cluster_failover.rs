//! End-to-end: failures in a real cluster. A reader killed under query load, the synchronizer
//! leader killed, and what Consul DNS says about who holds a segment before and after a
//! holder dies.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{
    health_has, make_segment, port_of, ClusterSpec, TestCluster, CHECK_QUERIES, LOCK_DELAY_SECS,
    NODE_TTL_SECS, SESSION_TTL_SECS,
};
use common::{assert_error_any, wait_until};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `kill -9` of a reader while 4 clients query every segment through the router: no client
/// query fails and every answer is correct (the router retries another replica). Afterwards
/// the dead reader's replicas are re-placed on the survivors.
#[test]
fn killing_a_reader_under_load_fails_no_query() {
    let mut c = TestCluster::start(3, 2);
    let files: Vec<_> = (0..6).map(|i| make_segment(300 + i)).collect();
    let ids: Vec<String> = (0..6).map(|i| format!("load-{i}")).collect();
    for (id, f) in ids.iter().zip(&files) {
        c.publish(id, f.bytes());
    }
    for id in &ids {
        c.wait_replicated(id, 2);
    }
    // Expected answers, from SQLite on the same files.
    let mut cases: Vec<(String, &'static str, Vec<Value>)> = Vec::new();
    for (id, f) in ids.iter().zip(&files) {
        for sql in CHECK_QUERIES {
            cases.push((id.clone(), sql, f.rows(sql, &json!([]))));
        }
    }
    let cases = Arc::new(cases);
    // The victim: a reader holding something (with 6 segments × 2 on 3 readers, all do).
    let victim = "reader-1";
    let victim_held: Vec<String> = ids
        .iter()
        .filter(|id| c.holders(id).contains(&victim.to_owned()))
        .cloned()
        .collect();
    assert!(!victim_held.is_empty(), "{victim} holds nothing");

    let router = c.router_url();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (cases, stop, ok, failures, router) = (
                cases.clone(),
                stop.clone(),
                ok.clone(),
                failures.clone(),
                router.clone(),
            );
            thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let (id, sql, want) = &cases[i % cases.len()];
                    i += 1;
                    let result = client
                        .post(format!("{router}/segments/{id}/query"))
                        .body(*sql)
                        .send()
                        .map_err(|e| e.to_string())
                        .and_then(|r| {
                            let status = r.status();
                            let text = r.text().map_err(|e| e.to_string())?;
                            Ok((status, text))
                        });
                    let problem = match result {
                        Err(e) => Some(format!("{id} {sql:?}: request failed: {e}")),
                        Ok((status, text)) if status != StatusCode::OK => {
                            Some(format!("{id} {sql:?}: {status} {text}"))
                        }
                        Ok((_, text)) => match serde_json::from_str::<Vec<Value>>(&text) {
                            Ok(rows)
                                if rows.len() == want.len()
                                    && rows
                                        .iter()
                                        .zip(want)
                                        .all(|(a, b)| common::same_json(a, b)) =>
                            {
                                None
                            }
                            _ => Some(format!("{id} {sql:?}: wrong answer {text}")),
                        },
                    };
                    match problem {
                        None => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(p) => failures.lock().unwrap().push(p),
                    }
                }
            })
        })
        .collect();

    // Load before the kill: twice the minimum asserted below, instead of a fixed 2 s.
    let loaded = wait_until(Duration::from_secs(30), || {
        ok.load(Ordering::Relaxed) >= 40 || !failures.lock().unwrap().is_empty()
    });
    let before_kill = ok.load(Ordering::Relaxed);
    assert!(
        loaded,
        "only {before_kill} correct answers within 30 s before the kill"
    );
    c.kill9(victim);
    let killed = Instant::now();
    // Load after the kill until the router has met the dead replica (and retried elsewhere) and
    // the clients got twice the minimum of answers after the kill, instead of a fixed 6 s.
    wait_until(Duration::from_secs(30), || {
        !failures.lock().unwrap().is_empty()
            || (ok.load(Ordering::Relaxed) >= before_kill + 100
                && c.metric("router", "trough_router_retries_total") >= 1.0)
    });
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client thread");
    }
    let total_ok = ok.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "{total_ok} correct answers ({before_kill} before the kill, {} after), {} failures",
        total_ok - before_kill,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} client queries failed or were wrong after killing {victim}; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // The router did meet the dead replica and retried elsewhere.
    let retries = c.metric("router", "trough_router_retries_total");
    eprintln!("router retries: {retries}");
    assert!(
        retries >= 1.0,
        "the router never retried: the kill did not exercise failover"
    );
    assert!(
        before_kill >= 20 && total_ok - before_kill >= 50,
        "the load was too light to mean anything: {before_kill} before, {total_ok} in all"
    );

    // Once the dead reader's heartbeat expires, its replicas are re-placed on the survivors.
    let heal = Duration::from_secs(NODE_TTL_SECS + 30);
    for id in &ids {
        let mut last = Vec::new();
        let healed = wait_until(heal.saturating_sub(killed.elapsed()), || {
            last = c.holders(id);
            last.len() == 2 && !last.contains(&victim.to_owned())
        });
        assert!(
            healed,
            "{id} not re-replicated on the 2 live readers {:?} after the kill: {last:?}",
            killed.elapsed()
        );
    }
    eprintln!("re-replicated {:.1?} after the kill", killed.elapsed());
}

/// The synchronizer leader is killed: the other `sync --server` takes the leader lock once the
/// dead one's Consul session expires, and a segment published after the kill gets placed.
#[test]
fn leader_failover_resumes_assignment() {
    let mut c = ClusterSpec::new(2, 2).writers(0).start();
    c.publish("before", make_segment(400).bytes());
    c.wait_replicated("before", 2);
    let leader = c.wait_leader();
    let standby = if leader == "sync-1" {
        "sync-2"
    } else {
        "sync-1"
    };
    eprintln!("leader: {leader}; killing it");

    c.kill9(&leader);
    let killed = Instant::now();
    c.publish("after", make_segment(401).bytes());

    // Consul invalidates a session between TTL and 2 × TTL after its last renewal; then the lock
    // delay; then the standby's next round (sync interval 1 s).
    let bound = Duration::from_secs(2 * SESSION_TTL_SECS + LOCK_DELAY_SECS + 5);
    let mut holder = None;
    let mut assigned_without_leader = None;
    let took_over = wait_until(bound, || {
        // Read the segment's assignment first, then the lock: an assignment seen before the
        // standby holds the lock was made by no leader at all.
        let (_, doc) = c.segment("after");
        let assigned = doc["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["assigned"] == true));
        holder = c.leader();
        if assigned && holder.as_deref() != Some(standby) {
            assigned_without_leader.get_or_insert(doc);
        }
        holder.as_deref() == Some(standby)
    });
    let takeover = killed.elapsed();
    assert!(
        took_over,
        "{standby} did not take the leader lock within {bound:?} of killing {leader}; holder: {holder:?}"
    );
    eprintln!("leader takeover by {standby}: {takeover:.1?} after kill -9 of {leader}");
    assert!(
        assigned_without_leader.is_none(),
        "a segment was assigned while no live process held the leader lock: {assigned_without_leader:?}"
    );

    // The segment published after the kill is placed by the new leader.
    let placed_bound = bound + Duration::from_secs(15);
    let holders =
        c.wait_replicated_within("after", 2, placed_bound.saturating_sub(killed.elapsed()));
    let placed = killed.elapsed();
    eprintln!("segment published after the kill placed on {holders:?} {placed:.1?} after the kill");
    let rows = c.query_ok("after", "SELECT seg FROM t LIMIT 1");
    assert_eq!(rows, vec![json!({"seg": "seg0401"})]);
    // Still exactly one leader, and it is the standby, after it placed one more segment (a
    // leader round observed, instead of a fixed 2 s).
    c.publish("after-2", make_segment(402).bytes());
    c.wait_replicated("after-2", 2);
    assert_eq!(c.leader().as_deref(), Some(standby));
}

/// Consul DNS: `<segment>.trough-read.service.consul` SRV answers exactly the ports of the
/// readers holding the segment; nothing for a segment nobody holds; and a killed holder drops
/// out once its heartbeat TTL expires.
#[test]
fn dns_resolves_segment_holders() {
    let mut c = ClusterSpec::new(3, 2).writers(0).start();
    let id = "dns-a";
    c.publish(id, make_segment(500).bytes());
    let holders = c.wait_replicated(id, 2);
    let ports = |names: &[String], c: &TestCluster| -> Vec<u16> {
        let mut p: Vec<u16> = names.iter().map(|n| c.node(n).port()).collect();
        p.sort_unstable();
        p
    };
    let want = ports(&holders, &c);
    let mut got = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        got = c.dns_read_ports(id);
        got == want
    });
    assert!(
        ok,
        "SRV {id}: got ports {got:?}, want {want:?} ({holders:?})"
    );
    // The non-holder's port is not in the answer.
    let other: Vec<String> = c
        .running_readers()
        .into_iter()
        .filter(|r| !holders.contains(r))
        .collect();
    assert_eq!(other.len(), 1);
    assert!(!got.contains(&c.node(&other[0]).port()));

    // A segment nobody holds: no answer.
    let ghost =
        trough_testkit::dns::query_srv(c.dns_addr(), "dns-ghost.trough-read.service.consul")
            .expect("DNS query");
    assert!(
        ghost.srv.is_empty(),
        "SRV for a segment nobody holds: {ghost:?}"
    );
    assert!(ghost.a.is_empty(), "{ghost:?}");

    // Kill a holder: once its TTL expires it leaves the answer, and every port still answered
    // is a live reader holding a verified copy.
    let victim = holders[0].clone();
    let victim_port = c.node(&victim).port();
    c.kill9(&victim);
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(NODE_TTL_SECS + 15), || {
        got = c.dns_read_ports(id);
        !got.contains(&victim_port)
    });
    assert!(
        gone,
        "{victim} (port {victim_port}) still in SRV {id} {:?} after the kill: {got:?}",
        killed.elapsed()
    );
    eprintln!("{victim} left DNS {:.1?} after kill -9", killed.elapsed());
    let live: BTreeSet<u16> = c
        .running_readers()
        .iter()
        .filter(|r| {
            let h = c.health(r);
            health_has(&h, id, 1)
        })
        .map(|r| c.node(r).port())
        .collect();
    for p in &got {
        assert!(
            live.contains(p),
            "SRV {id} answers port {p}, which is not a live holder ({live:?})"
        );
    }
    assert!(
        !got.is_empty(),
        "the surviving holder should still be in DNS"
    );

    // The replica is re-placed on the third reader, which then appears in DNS too.
    let survivors = c.running_readers();
    let want = ports(&survivors, &c);
    let ok = wait_until(Duration::from_secs(30), || {
        got = c.dns_read_ports(id);
        got == want
    });
    assert!(
        ok,
        "SRV {id} after re-placement: got {got:?}, want {want:?} ({survivors:?})"
    );
    let routed: Vec<u16> = c
        .holders(id)
        .iter()
        .map(|n| port_of(&c.url(n)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(routed, want, "router view and DNS agree");
}

/// The router's counter `name` (0 when it was never incremented).
fn router_counter(c: &TestCluster, name: &str) -> f64 {
    let text = c
        .client()
        .get(format!("{}/metrics", c.router_url()))
        .send()
        .and_then(|r| r.text())
        .expect("router metrics");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Issue 15: a frozen replica (SIGSTOP: its port accepts, nothing answers) does not stall reads.
/// The router sends the read to the other replica too once the first is slower than the hedge
/// delay, so every read answers, correctly. With every replica frozen, the forward deadline
/// (query timeout + grace) turns the hang into a retryable 503, and after thawing reads succeed.
#[test]
fn a_frozen_replica_is_hedged_around_and_the_deadline_ends_a_hang() {
    let c = TestCluster::start_spec(ClusterSpec::new(2, 2).query_timeout_ms(1000));
    let files: Vec<_> = (0..2).map(|i| make_segment(500 + i)).collect();
    let ids = ["frozen-0", "frozen-1"];
    for (id, f) in ids.iter().zip(&files) {
        c.publish(id, f.bytes());
    }
    for id in ids {
        c.wait_replicated(id, 2);
    }
    let sql = CHECK_QUERIES[0];
    let want: Vec<Vec<Value>> = files.iter().map(|f| f.rows(sql, &json!([]))).collect();
    c.signal("reader-1", "STOP");
    for _ in 0..10 {
        for (id, want) in ids.iter().zip(&want) {
            assert_eq!(&c.query_ok(id, sql), want, "{id} with reader-1 frozen");
        }
    }
    assert!(
        router_counter(&c, "trough_router_hedges_total") >= 1.0,
        "reads sent to the frozen replica were hedged"
    );
    c.signal("reader-2", "STOP");
    let (status, body) = c.query(ids[0], sql);
    assert_error_any(
        status,
        &body,
        503,
        &["no_healthy_replica", "segment_unavailable"],
    );
    c.signal("reader-1", "CONT");
    c.signal("reader-2", "CONT");
    assert!(wait_until(Duration::from_secs(60), || c
        .query(ids[0], sql)
        .0
        == StatusCode::OK));
}
