//! Tests of the Consul coordinator against a real `consul agent -dev` (no mocks), plus a few
//! pure unit tests of its helpers.

use crate::HeldMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use trough_testkit::{dns, ConsulAgent};

use super::*;
use crate::conformance;
use trough_types::error::ErrorKind;

pub(super) fn node(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

fn sid(s: &str) -> SegmentId {
    SegmentId::new(s).unwrap()
}

fn manifest(id: &str, version: u64) -> Manifest {
    Manifest {
        id: sid(id),
        version,
        sha256: format!("{version:064x}"),
        size: version,
        created_at: Utc::now(),
        schema: None,
        writable: false,
        key: format!("segments/{id}/data/{version}.sqlite"),
    }
}

pub(super) fn node_info(name: &str, port: u16, roles: &[&str], held: &[(&str, u64)]) -> NodeInfo {
    NodeInfo {
        name: node(name),
        address: format!("http://127.0.0.1:{port}"),
        tier: "default".into(),
        quota_bytes: 1 << 30,
        stored_bytes: held.iter().map(|(_, v)| v * 100).sum(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        held: held.iter().map(|(s, v)| (sid(s), *v)).collect(),
        updated_at: Utc::now(),
    }
}

/// Starts a dev agent off the async threads (it sleeps while waiting for a leader).
pub(super) async fn agent() -> ConsulAgent {
    tokio::task::spawn_blocking(ConsulAgent::start)
        .await
        .expect("start consul")
}

/// Test options: a short lock-delay so lock tests finish quickly.
pub(super) fn opts(prefix: &str) -> ConsulOptions {
    ConsulOptions {
        prefix: prefix.into(),
        lock_delay: Duration::from_secs(1),
        ..ConsulOptions::default()
    }
}

pub(super) fn coordinator(agent: &ConsulAgent, name: &str, o: ConsulOptions) -> ConsulCoordinator {
    ConsulCoordinator::connect_with(&agent.url(), &node(name), o).expect("connect")
}

async fn dns_a(agent: &ConsulAgent, name: &str) -> dns::Answer {
    let server = SocketAddr::from(([127, 0, 0, 1], agent.dns_port));
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || dns::query_a(server, &name))
        .await
        .unwrap()
        .expect("dns answer")
}

async fn dns_srv(agent: &ConsulAgent, name: &str) -> dns::Answer {
    let server = SocketAddr::from(([127, 0, 0, 1], agent.dns_port));
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || dns::query_srv(server, &name))
        .await
        .unwrap()
        .expect("dns answer")
}

async fn destroy_session(agent: &ConsulAgent, id: &str) {
    reqwest::Client::new()
        .put(format!("{}/v1/session/destroy/{id}", agent.url()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// Polls `f` every 100 ms until it is true, for at most `limit`.
pub(super) async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- pure helpers -----

#[test]
fn addresses_split_into_host_and_port() {
    assert_eq!(
        parse_address("http://127.0.0.1:6444").unwrap(),
        ("127.0.0.1".into(), 6444)
    );
    assert_eq!(
        parse_address("https://node-1.example").unwrap(),
        ("node-1.example".into(), 443)
    );
    assert_eq!(
        parse_address("10.0.0.5:80").unwrap(),
        ("10.0.0.5".into(), 80)
    );
    assert_eq!(parse_address("http://[::1]:9").unwrap(), ("::1".into(), 9));
    assert_eq!(
        parse_address("not a url").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn held_tags_round_trip() {
    let t = held_tag(&sid("a.b-c_1"), 42);
    assert_eq!(t, "a.b-c_1@42");
    assert_eq!(parse_held_tag(&t), Some((sid("a.b-c_1"), 42)));
    assert_eq!(parse_held_tag("plain"), None);
    assert_eq!(parse_held_tag("../x@1"), None);
}

#[test]
fn keys_and_prefixes_are_validated() {
    assert!(valid_path("trough"));
    assert!(valid_path("a/b.c/write-x"));
    for bad in ["", "/", "a//b", "../x", "a/./b", "a b", "a?b", "é"] {
        assert!(!valid_path(bad), "{bad}");
    }
    let url = "http://127.0.0.1:1";
    assert!(ConsulCoordinator::connect(url, "/trough/", &node("n")).is_ok());
    assert!(ConsulCoordinator::connect(url, "../x", &node("n")).is_err());
    let c = ConsulCoordinator::connect(url, "p", &node("n")).unwrap();
    assert_eq!(c.lock_key("write/seg-1").unwrap(), "p/locks/write/seg-1");
    assert!(c.lock_key("write/../x").is_err());
    let short_ttl = ConsulOptions {
        session_ttl: Duration::from_secs(1),
        ..ConsulOptions::default()
    };
    assert!(ConsulCoordinator::connect_with(url, &node("n"), short_ttl).is_err());
}

#[test]
fn index_only_grows_across_a_reset() {
    let c = ConsulCoordinator::connect("http://127.0.0.1:1", "p", &node("n")).unwrap();
    assert_eq!(c.settle(0, 0), 1, "never 0");
    assert_eq!(c.settle(0, 100), 100);
    assert_eq!(c.settle(100, 100), 100, "no change");
    assert_eq!(c.settle(100, 120), 120, "change");
    // Consul's index went backwards (e.g. snapshot restore): reported as a change...
    assert_eq!(c.settle(120, 30), 121);
    // ... and later indexes are shifted so they keep growing.
    assert_eq!(c.consul_since(121), 30);
    assert_eq!(c.settle(121, 30), 121, "no change after the reset");
    assert_eq!(c.settle(121, 35), 126);
    // An index from before the reset maps below the offset: treated as "give me the current".
    assert_eq!(c.consul_since(50), 0);
}

// ----- against a real agent -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_real_consul() {
    let agent = agent().await;
    let c = coordinator(&agent, "conf", opts("conformance"));
    c.check().await.unwrap();
    conformance::run_all(&c).await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_contend_and_session_loss_fences_the_holder() {
    let agent = agent().await;
    let a = coordinator(&agent, "a", opts("locks"));
    let b = coordinator(&agent, "b", opts("locks"));
    let la = a
        .try_lock("leader", &node("a"))
        .await
        .unwrap()
        .expect("a takes the free lock");
    assert!(b.try_lock("leader", &node("b")).await.unwrap().is_none());
    // Even claiming a's name, b's session cannot take or release it.
    assert!(b.try_lock("leader", &node("a")).await.unwrap().is_none());
    b.unlock("leader", &node("a")).await.unwrap();
    assert_eq!(b.lock_holder("leader").await.unwrap(), Some(node("a")));

    // An operator (or a failed node) invalidates a's session.
    let old = a.session_id().expect("a has a session");
    destroy_session(&agent, &old).await;
    let mut lost = la.lost.clone();
    tokio::time::timeout(Duration::from_secs(8), lost.wait_for(|l| *l))
        .await
        .expect("the lease flips to lost within a few seconds")
        .unwrap();
    assert!(!la.is_held());

    // After the lock-delay, b can take it.
    let start = Instant::now();
    let lb = loop {
        if let Some(l) = b.try_lock("leader", &node("b")).await.unwrap() {
            break l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "b never got the lock"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(lb.is_held());
    assert_eq!(a.lock_holder("leader").await.unwrap(), Some(node("b")));

    // a starts a new session for new locks; the old lease stays lost.
    assert!(a.try_lock("leader", &node("a")).await.unwrap().is_none());
    let la2 = a
        .try_lock("other", &node("a"))
        .await
        .unwrap()
        .expect("free");
    assert_ne!(a.session_id().as_deref(), Some(old.as_str()));
    assert!(la2.is_held());
    assert!(!la.is_held());

    // unlock flips the releasing process's lease, and frees the key at once.
    b.unlock("leader", &node("b")).await.unwrap();
    assert!(!lb.is_held());
    assert!(a.try_lock("leader", &node("a")).await.unwrap().is_some());
    a.close().await.unwrap();
    assert!(!la2.is_held(), "close flips every lease");
    b.close().await.unwrap();
}

/// With a production-like lock-delay (≥ TTL/2), the holder learns it lost the lock strictly
/// before anyone else can take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_before_anyone_else_acquires() {
    let agent = agent().await;
    let o = ConsulOptions {
        lock_delay: Duration::from_secs(6),
        ..opts("fencing")
    };
    let a = coordinator(&agent, "a", o.clone());
    let b = coordinator(&agent, "b", o);
    let la = a.try_lock("leader", &node("a")).await.unwrap().unwrap();
    destroy_session(&agent, &a.session_id().unwrap()).await;
    let mut lost = la.lost.clone();
    let flipped = tokio::spawn(async move {
        lost.wait_for(|l| *l).await.unwrap();
        Instant::now()
    });
    let start = Instant::now();
    let acquired = loop {
        if b.try_lock("leader", &node("b")).await.unwrap().is_some() {
            break Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "b never got the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let flipped = flipped.await.unwrap();
    assert!(
        flipped < acquired,
        "a was fenced {:?} after b acquired",
        flipped - acquired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_change_wakes_across_coordinators() {
    let agent = agent().await;
    let a = coordinator(&agent, "a", opts("watch"));
    let b = Arc::new(coordinator(&agent, "b", opts("watch")));
    a.add_version(&manifest("seed", 1)).await.unwrap();
    // A cluster has nodes. (With no node service at all, Consul reports the whole catalog's
    // index for it on a fresh agent, so unrelated catalog writes would wake watchers.)
    a.register_node(&node_info("watcher", 7009, &["reader"], &[]))
        .await
        .unwrap();
    let idx = b.wait_for_change(0, Duration::ZERO).await.unwrap();
    assert!(idx > 0);
    let start = Instant::now();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_for_change(idx, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.add_version(&manifest("seg", 1)).await.unwrap();
    let new = waiter.await.unwrap().unwrap();
    assert!(new > idx);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woke on the change"
    );

    // No change: the same index after the timeout.
    let t = Instant::now();
    assert_eq!(
        b.wait_for_change(new, Duration::from_millis(500))
            .await
            .unwrap(),
        new
    );
    assert!(t.elapsed() >= Duration::from_millis(450), "it did block");

    // An idempotent add and an unchanged assignment write nothing, so they wake nobody.
    a.add_version(&manifest("seg", 1)).await.unwrap();
    let mut assignment = AssignmentMap::new();
    assignment.insert(
        SegmentId::new("seg").unwrap(),
        vec![NodeName::new("n1").unwrap()],
    );
    a.put_assignment(&assignment).await.unwrap();
    let now = b
        .wait_for_change(new, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(now > new, "the first assignment is a change");
    a.put_assignment(&assignment).await.unwrap();
    assert_eq!(
        b.wait_for_change(now, Duration::from_millis(300))
            .await
            .unwrap(),
        now
    );

    // A node joining wakes watchers too (KV record + health).
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_for_change(now, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.register_node(&node_info("joiner", 7000, &["reader"], &[]))
        .await
        .unwrap();
    let joined = waiter.await.unwrap().unwrap();
    assert!(joined > now);

    // A heartbeat with the same facts changes nothing in Consul: watchers stay asleep.
    let idx = b.wait_for_change(0, Duration::ZERO).await.unwrap();
    a.register_node(&node_info("joiner", 7000, &["reader"], &[]))
        .await
        .unwrap();
    assert_eq!(
        b.wait_for_change(idx, Duration::from_millis(500))
            .await
            .unwrap(),
        idx
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_resolves_segments_to_the_nodes_holding_them() {
    let agent = agent().await;
    let c = coordinator(&agent, "n1", opts("dns"));
    c.register_node(&node_info("n1", 6444, &["reader"], &[("a", 1), ("b", 3)]))
        .await
        .unwrap();
    // A second reader holding only b, and a writer-only node holding nothing.
    c.register_node(&node_info("n2", 6445, &["reader", "writer"], &[("b", 3)]))
        .await
        .unwrap();

    let ans = dns_a(&agent, "a.trough-read.service.consul").await;
    assert_eq!(ans.a, vec![Ipv4Addr::LOCALHOST]);
    let srv = dns_srv(&agent, "a.trough-read.service.consul").await;
    assert_eq!(
        srv.srv.iter().map(|s| s.port).collect::<Vec<_>>(),
        vec![6444]
    );
    let mut ports: Vec<u16> = dns_srv(&agent, "b.trough-read.service.consul")
        .await
        .srv
        .iter()
        .map(|s| s.port)
        .collect();
    ports.sort();
    assert_eq!(ports, vec![6444, 6445]);
    let none = dns_a(&agent, "c.trough-read.service.consul").await;
    assert!(
        none.a.is_empty(),
        "a segment nobody holds resolves to nothing: {none:?}"
    );
    let writers = dns_srv(&agent, "trough-write.service.consul").await;
    assert_eq!(
        writers.srv.iter().map(|s| s.port).collect::<Vec<_>>(),
        vec![6445]
    );

    // n1 drops a: it stops resolving at once (register_node waits for the catalog).
    c.register_node(&node_info("n1", 6444, &["reader"], &[("b", 4)]))
        .await
        .unwrap();
    assert!(dns_a(&agent, "a.trough-read.service.consul")
        .await
        .a
        .is_empty());
    let nodes = c.list_nodes().await.unwrap();
    let n1 = nodes.iter().find(|n| n.name == node("n1")).unwrap();
    assert_eq!(n1.held, [(sid("b"), 4u64)].into_iter().collect::<HeldMap>());
    assert_eq!(n1.stored_bytes, 400);
    assert_eq!(n1.roles, vec!["reader".to_owned()]);

    // close() deregisters: the node leaves DNS and the listing at once.
    c.close().await.unwrap();
    let start = Instant::now();
    loop {
        let left = dns_srv(&agent, "b.trough-read.service.consul").await;
        if left.srv.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still in DNS: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_drops_out_after_its_ttl() {
    let agent = agent().await;
    let o = ConsulOptions {
        node_ttl: Duration::from_secs(2),
        ..opts("ttl")
    };
    let c = coordinator(&agent, "w", o);
    c.register_node(&node_info("quiet", 7001, &["reader"], &[("x", 1)]))
        .await
        .unwrap();
    c.register_node(&node_info("chatty", 7002, &["reader"], &[]))
        .await
        .unwrap();
    let names = |v: Vec<NodeInfo>| {
        v.into_iter()
            .map(|n| n.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(c.list_nodes().await.unwrap()), ["chatty", "quiet"]);

    // Watchers wake when a node turns critical (health blocking query).
    let idx = c.wait_for_change(0, Duration::ZERO).await.unwrap();
    let start = Instant::now();
    let woke = {
        let hb = async {
            // chatty keeps heartbeating; quiet does not.
            for _ in 0..12 {
                c.register_node(&node_info("chatty", 7002, &["reader"], &[]))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let (woke, ()) = tokio::join!(c.wait_for_change(idx, Duration::from_secs(20)), hb);
        woke.unwrap()
    };
    assert!(woke > idx);
    assert!(start.elapsed() < Duration::from_secs(15));
    eventually(Duration::from_secs(10), "quiet drops out", || async {
        names(c.list_nodes().await.unwrap()) == ["chatty"]
    })
    .await;
    assert!(dns_a(&agent, "x.trough-read.service.consul")
        .await
        .a
        .is_empty());

    // A heartbeat brings it back.
    c.register_node(&node_info("quiet", 7001, &["reader"], &[("x", 1)]))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "quiet is back", || async {
        names(c.list_nodes().await.unwrap()) == ["chatty", "quiet"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kv_is_written_only_when_static_facts_change() {
    let agent = agent().await;
    let c = coordinator(&agent, "n", opts("churn"));
    let key = c.key("nodes/n1");
    let mut info = node_info("n1", 7000, &["reader"], &[("a", 1)]);
    c.register_node(&info).await.unwrap();
    let first = c.client.kv_get(&key).await.unwrap().unwrap().modify_index;
    // Heartbeats, and changes of held copies and stored bytes: no KV write.
    c.register_node(&info).await.unwrap();
    info.held.insert(sid("b"), 2);
    info.stored_bytes += 1000;
    c.register_node(&info).await.unwrap();
    assert_eq!(
        c.client.kv_get(&key).await.unwrap().unwrap().modify_index,
        first
    );
    let listed = c.list_nodes().await.unwrap();
    assert_eq!(listed[0].held.len(), 2);
    // A static fact changed: written.
    info.quota_bytes *= 2;
    c.register_node(&info).await.unwrap();
    assert!(c.client.kv_get(&key).await.unwrap().unwrap().modify_index > first);
    assert_eq!(
        c.list_nodes().await.unwrap()[0].quota_bytes,
        info.quota_bytes
    );
    // Dropping the reader role removes the read service.
    info.roles = vec!["router".into()];
    c.register_node(&info).await.unwrap();
    let srv = dns_srv(&agent, "a.trough-read.service.consul").await;
    assert!(srv.srv.is_empty(), "{srv:?}");
    assert_eq!(c.list_nodes().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_catalog_writers_never_lose_an_update() {
    let agent = agent().await;
    let a = Arc::new(coordinator(&agent, "a", opts("cas")));
    let b = Arc::new(coordinator(&agent, "b", opts("cas")));
    let mut tasks = Vec::new();
    for v in 1..=20u64 {
        let c = if v % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            c.add_version(&manifest("hot", v)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let e = a.get_segment(&sid("hot")).await.unwrap().unwrap();
    assert_eq!(
        e.versions.iter().map(|m| m.version).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );

    // Two nodes racing to become the writer: exactly one wins.
    let w = |n: &str| WritableInfo {
        writer: node(n),
        schema: None,
        provisioned_at: Utc::now(),
    };
    let contested = sid("contested");
    let (ra, rb) = tokio::join!(
        a.set_writable(&contested, Some(w("a"))),
        b.set_writable(&contested, Some(w("b")))
    );
    let oks = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks, 1, "{ra:?} {rb:?}");
    let err = ra.err().or(rb.err()).unwrap();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

/// An assignment far larger than one Consul value (512 KiB) round-trips through the buckets, and
/// an unchanged assignment writes nothing (wakes nobody).
#[tokio::test]
async fn large_assignment_is_bucketed() {
    let agent = trough_testkit::ConsulAgent::start();
    let node = NodeName::new("big").unwrap();
    let c = ConsulCoordinator::connect(&agent.url(), "bigassign", &node).unwrap();
    let mut a = crate::AssignmentMap::new();
    for i in 0..20_000 {
        let id = trough_types::id::SegmentId::new(&format!("segment-with-a-longish-name-{i:06}"))
            .unwrap();
        a.insert(
            id,
            vec![
                NodeName::new(&format!("reader-node-{}", i % 7)).unwrap(),
                NodeName::new(&format!("reader-node-{}", (i + 3) % 7)).unwrap(),
            ],
        );
    }
    assert!(
        serde_json::to_vec(&a).unwrap().len() > 512 * 1024,
        "bigger than one value"
    );
    // A cluster has nodes: with no node service at all, a fresh agent reports the whole
    // catalog's index for it, and its own anti-entropy writes would look like a change.
    c.register_node(&node_info("big", 7010, &["reader"], &[]))
        .await
        .unwrap();
    c.put_assignment(&a).await.unwrap();
    assert_eq!(c.get_assignment().await.unwrap(), a);
    let idx = c
        .wait_for_change(0, std::time::Duration::ZERO)
        .await
        .unwrap();
    c.put_assignment(&a).await.unwrap();
    let after = c
        .wait_for_change(idx, std::time::Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(after, idx, "an unchanged assignment writes nothing");
    // Removing segments empties their entries.
    let small: crate::AssignmentMap = a
        .iter()
        .take(3)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    c.put_assignment(&small).await.unwrap();
    assert_eq!(c.get_assignment().await.unwrap(), small);
}
