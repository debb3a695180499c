//! End-to-end: where segments go in a real cluster (Consul + S3 + separate reader, writer,
//! `sync --server` and router processes). Replication, spreading, a reader joining, quotas,
//! and the choice of writer for provisioning.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{
    assert_matches_sqlite, health_bytes, health_has, health_segments, make_segment, ClusterSpec,
    TestCluster, CHECK_QUERIES,
};
use common::{wait_until, HEALTH_SEGMENTS};
use reqwest::StatusCode;
use serde_json::json;

/// Waits until every segment in `ids` has exactly `n` verified replicas in the router's view.
fn wait_all_exactly(c: &TestCluster, ids: &[String], n: usize, timeout: Duration) {
    let mut last = BTreeMap::new();
    let ok = wait_until(timeout, || {
        last = ids
            .iter()
            .map(|id| (id.clone(), c.holders(id)))
            .collect::<BTreeMap<_, _>>();
        last.values().all(|h| h.len() == n)
    });
    assert!(
        ok,
        "not every segment has exactly {n} verified replicas after {timeout:?}: {last:?}"
    );
}

/// 3 readers, RF 2: every segment is held verified by exactly 2 distinct readers, every
/// reader holds a share, and every query through the router matches SQLite on the same file.
#[test]
fn segments_are_replicated_and_spread() {
    let c = TestCluster::start(3, 2);
    let files: Vec<_> = (0..8).map(make_segment).collect();
    let ids: Vec<String> = (0..8).map(|i| format!("spread-{i}")).collect();
    let mut manifests = BTreeMap::new();
    for (id, f) in ids.iter().zip(&files) {
        let m = c.publish(id, f.bytes());
        assert_eq!(m["version"], 1, "{m}");
        manifests.insert(id.clone(), m);
    }
    wait_all_exactly(&c, &ids, 2, Duration::from_secs(40));

    // The nodes' own /health agrees with the router's view, replica for replica.
    let readers = c.names(common::cluster::Kind::Reader);
    let mut held_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &readers {
        held_by.insert(r.clone(), health_segments(&c.health(r)));
    }
    for id in &ids {
        let routed = c.holders(id);
        let mut local: Vec<String> = readers
            .iter()
            .filter(|r| held_by[*r].contains(id))
            .cloned()
            .collect();
        local.sort();
        assert_eq!(routed, local, "{id}: router view vs /health of the readers");
        assert_eq!(
            routed.iter().collect::<BTreeSet<_>>().len(),
            2,
            "{id}: 2 distinct holders: {routed:?}"
        );
        for h in &routed {
            assert!(h.starts_with("reader-"), "{id} held by non-reader {h}");
        }
    }
    for (r, held) in &held_by {
        eprintln!("{r} holds {} segments: {held:?}", held.len());
        assert!(
            !held.is_empty() && held.len() < ids.len(),
            "{r} should hold a share (some, not all) of {} segments, holds {held:?}",
            ids.len()
        );
    }
    let total: usize = held_by.values().map(Vec::len).sum();
    assert_eq!(total, 2 * ids.len(), "replica count: {held_by:?}");

    // Every query through the router is what SQLite says on the same file. Each query is sent
    // twice, so that the router's rotation reaches both replicas.
    for (id, f) in ids.iter().zip(&files) {
        for sql in CHECK_QUERIES {
            for _ in 0..2 {
                let rows = c.query_ok(id, sql);
                assert_matches_sqlite(f, sql, &rows);
            }
        }
    }
    // And each holder answers for itself (forwarded requests are never forwarded again).
    for id in &ids {
        let f = &files[ids.iter().position(|x| x == id).unwrap()];
        for h in c.holders(id) {
            let (status, rows) = common::json_of(
                c.client()
                    .post(format!("{}/segments/{id}/query", c.url(&h)))
                    .header("x-trough-forwarded", "1")
                    .body(CHECK_QUERIES[0])
                    .send()
                    .expect("POST"),
            );
            assert_eq!(status, StatusCode::OK, "{h} answering {id} locally: {rows}");
            assert_matches_sqlite(f, CHECK_QUERIES[0], rows.as_array().unwrap());
        }
    }
}

/// A third reader joins a 2-reader RF-2 cluster: it gets about a third of the replicas, and
/// the old readers delete their copies only after it verified its own: no segment ever has
/// fewer than 2 verified holders.
#[test]
fn joining_reader_gets_a_share_without_losing_replicas() {
    let mut c = TestCluster::start(2, 2);
    let n = 9;
    let ids: Vec<String> = (0..n).map(|i| format!("join-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        c.publish(id, make_segment(100 + i).bytes());
    }
    wait_all_exactly(&c, &ids, 2, Duration::from_secs(40));

    let before: BTreeMap<String, Vec<String>> = ["reader-1", "reader-2"]
        .iter()
        .map(|r| (r.to_string(), health_segments(&c.health(r))))
        .collect();
    for (r, held) in &before {
        assert_eq!(
            held.len(),
            n,
            "{r} should hold every segment before the join"
        );
    }

    c.add_reader("reader-3", None);
    let joined = Instant::now();

    // Sample until converged. Each sample asks the old readers first, then the new one: a copy
    // moving from an old reader to the new one is installed on the new one before the old one
    // drops it, so this order never under-counts a correct move.
    let order = ["reader-1", "reader-2", "reader-3"];
    let mut samples = 0;
    let mut stable_since: Option<Instant> = None;
    let mut last_state: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let converged_stably = wait_until(Duration::from_secs(60), || {
        let mut state: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in order {
            let h = c.health(r);
            for id in &ids {
                if health_has(&h, id, 1) {
                    state.entry(id.clone()).or_default().push(r.to_owned());
                }
            }
        }
        samples += 1;
        for id in &ids {
            let holders = state.get(id).cloned().unwrap_or_default();
            assert!(
                holders.len() >= 2,
                "sample {samples} ({:.1?} after the join): {id} has only {holders:?} verified \
                 holders; state: {state:?}",
                joined.elapsed()
            );
        }
        // The router's view, which routes queries, must never drop below 2 either.
        if samples % 5 == 0 {
            for id in &ids {
                let routed = c.holders(id);
                assert!(
                    routed.len() >= 2,
                    "{:.1?} after the join: router lists {routed:?} for {id}",
                    joined.elapsed()
                );
            }
        }
        let converged = state.values().all(|h| h.len() == 2)
            && state.values().any(|h| h.contains(&"reader-3".to_owned()));
        let stable = if converged && state == last_state {
            let since = *stable_since.get_or_insert_with(Instant::now);
            since.elapsed() > Duration::from_secs(3)
        } else {
            stable_since = None;
            false
        };
        last_state = state;
        stable
    });
    assert!(
        converged_stably,
        "no convergence within 60 s of the join; last state: {last_state:?}"
    );
    eprintln!(
        "converged {:.1?} after the join ({samples} samples): {last_state:?}",
        joined.elapsed()
    );

    let new_share: Vec<&String> = last_state
        .iter()
        .filter(|(_, h)| h.contains(&"reader-3".to_owned()))
        .map(|(id, _)| id)
        .collect();
    // 18 replicas on 3 readers: a fair share is 6.
    assert!(
        (4..=8).contains(&new_share.len()),
        "reader-3 holds {} of {} replicas, want about a third: {last_state:?}",
        new_share.len(),
        2 * n
    );
    // The router agrees, and the old readers' copies of moved segments are gone: not listed in
    // their /health and deleted from their copies directory.
    for id in &ids {
        let mut want = last_state[id].clone();
        want.sort();
        assert_eq!(c.holders(id), want, "router view of {id}");
    }
    for old in ["reader-1", "reader-2"] {
        let listed = health_segments(&c.health(old));
        for id in &ids {
            let holds = last_state[id].contains(&old.to_owned());
            assert_eq!(
                listed.contains(id),
                holds,
                "{old} /health lists {id}: {}, holder: {holds}",
                listed.contains(id)
            );
            if !holds {
                let dir = c.node(old).data_dir.join("copies").join(id);
                let gone = wait_until(Duration::from_secs(10), || {
                    std::fs::read_dir(&dir).map_or(true, |mut d| {
                        d.all(|e| {
                            !e.unwrap()
                                .file_name()
                                .to_string_lossy()
                                .ends_with(".sqlite")
                        })
                    })
                });
                assert!(
                    gone,
                    "{old} still has a copy file of dropped {id} in {dir:?}"
                );
            }
        }
    }
}

/// A reader with a quota of about 2 segments never holds more than its quota, while the others
/// take the rest.
#[test]
fn reader_at_quota_gets_no_more() {
    let size = make_segment(0).bytes().len() as u64;
    let small_quota = size * 5 / 2;
    // 8 segments at RF 2 = 16 replicas; capacity 8.75 + 8.75 + 2.5 = 20 segments, so the
    // small reader's fair share (80% of its quota) is 2 segments: its quota binds.
    let big_quota = size * 35 / 4;
    let c = ClusterSpec::new(3, 2)
        .reader_quota(1, big_quota)
        .reader_quota(2, big_quota)
        .reader_quota(3, small_quota)
        .writers(0)
        .start();

    // Sample the small reader's held bytes all along.
    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_seen) = (stop.clone(), max_seen.clone());
        let url = format!("{}{}", c.url("reader-3"), HEALTH_SEGMENTS);
        let client = c.client().clone();
        thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = client.get(&url).send() {
                    if let Ok(h) = r.json::<serde_json::Value>() {
                        max_seen.fetch_max(health_bytes(&h), Ordering::Relaxed);
                        samples += 1;
                    }
                }
                // The sampler's pace while it watches the quota (not a wait for anything).
                thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };

    let ids: Vec<String> = (0..8).map(|i| format!("quota-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let m = c.publish(id, make_segment(200 + i).bytes());
        assert_eq!(m["size"], size, "all test segments have one size: {m}");
    }
    wait_all_exactly(&c, &ids, 2, Duration::from_secs(45));
    // Let the assignment settle a little longer, still sampling. An observation window, not a
    // wait: the quota must hold while the leader keeps re-assigning, and no event says "done".
    thread::sleep(Duration::from_secs(3));
    wait_all_exactly(&c, &ids, 2, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");

    let held: BTreeMap<String, Vec<String>> = ["reader-1", "reader-2", "reader-3"]
        .iter()
        .map(|r| (r.to_string(), health_segments(&c.health(r))))
        .collect();
    eprintln!(
        "segment size {size}, small quota {small_quota}, max held by reader-3 {} ({samples} \
         samples); holdings: {held:?}",
        max_seen.load(Ordering::Relaxed)
    );
    assert!(
        max_seen.load(Ordering::Relaxed) <= small_quota,
        "reader-3 held {} bytes at some point, over its quota of {small_quota}",
        max_seen.load(Ordering::Relaxed)
    );
    assert!(
        samples > 20,
        "too few samples of reader-3's holdings ({samples})"
    );
    let small = held["reader-3"].len();
    assert!(
        (1..=2).contains(&small),
        "reader-3 (quota {small_quota} = 2.5 segments) should be filled to its quota: it \
         holds {small} segments"
    );
    let total: usize = held.values().map(Vec::len).sum();
    assert_eq!(total, 2 * ids.len(), "the others take the rest: {held:?}");
    for r in ["reader-1", "reader-2"] {
        assert!(
            held[r].len() as u64 * size <= big_quota,
            "{r} over its quota: {held:?}"
        );
    }
}

/// With 2 writers, provisioning 8 segments through the router spreads them 4/4, and each is
/// writable and readable through the router at once (the write right after the provision goes
/// through the router that answered it).
#[test]
fn provisioning_picks_the_least_loaded_writer() {
    let c = ClusterSpec::new(0, 1).writers(2).sync_servers(1).start();
    let router = c.router_url();
    let mut per_writer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut immediate_failures = Vec::new();
    for i in 0..8 {
        let id = format!("prov-{i}");
        let (status, doc) = c.post_json(
            &router,
            &format!("/segments/{id}/provision"),
            &json!({"schema_sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"}),
        );
        assert_eq!(status, StatusCode::CREATED, "provision {id}: {doc}");
        let writer = doc["writer"]
            .as_str()
            .unwrap_or_else(|| panic!("no writer in {doc}"))
            .to_owned();
        // The router that just answered the provision takes a write and a read of it at once.
        let (status, r) = c.execute(&id, &format!("INSERT INTO t (v) VALUES ('{id}')"));
        if status != StatusCode::OK {
            immediate_failures.push(format!(
                "POST /segments/{id}/execute right after its provision answered 201: {status} {r}"
            ));
        }
        per_writer.entry(writer).or_default().push(id);
    }
    eprintln!("provisioned: {per_writer:?}");
    let spread = per_writer.values().map(Vec::len).collect::<Vec<_>>();
    for (writer, ids) in &per_writer {
        for id in ids {
            let (status, r) = c.execute(id, &format!("INSERT INTO t (v) VALUES ('{id}-2')"));
            assert_eq!(status, StatusCode::OK, "execute {id}: {r}");
            let rows = c.query_ok(id, "SELECT v FROM t ORDER BY v");
            let mut want = vec![json!({"v": format!("{id}-2")})];
            if !immediate_failures
                .iter()
                .any(|f| f.contains(&format!("/{id}/")))
            {
                want.insert(0, json!({"v": id}));
            }
            assert_eq!(rows, want, "{id} read back");
            let (_, doc) = c.segment(id);
            assert_eq!(doc["writer"], writer.as_str(), "{doc}");
        }
    }
    let mut problems = immediate_failures;
    if spread != [4, 4] {
        problems.insert(
            0,
            format!(
                "8 segments provisioned one after another on 2 writers should be spread 4/4: \
                 {per_writer:?}"
            ),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
