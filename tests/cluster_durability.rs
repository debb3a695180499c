//! End-to-end: data safety in a real cluster. A corrupted copy is never served and is fetched
//! again (by the periodic scrub on a running reader, and by re-verification when a reader
//! restarts); a writer killed with unpromoted writes loses no acknowledged row, refuses writes
//! until its old lease expires, and its promoted version reaches the read replicas.

mod common;

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{
    health_has, make_segment, ClusterSpec, TestCluster, CHECK_QUERIES, LOCK_DELAY_SECS,
    SESSION_TTL_SECS,
};
use common::{sha256_hex, wait_until, SqliteFile};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Changes one row's `name` in a copy file in place, keeping the file a valid SQLite database:
/// `seg0600-row00001` becomes `Seg0600-row00001`. Serving this copy would give wrong answers.
fn corrupt_copy(path: &Path, n: usize) {
    let marker = format!("seg{n:04}-row00001");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    let pos = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap_or_else(|| panic!("{marker} not found in {path:?}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open copy for writing");
    f.seek(SeekFrom::Start(pos as u64)).expect("seek");
    f.write_all(b"S").expect("write");
    f.sync_all().expect("sync");
    eprintln!("corrupted {path:?} at byte {pos}");
}

/// A query answered by `node` itself: forwarded requests are never forwarded again, so the node
/// answers from its own copy or says it has none (503).
fn local_query(c: &TestCluster, node: &str, id: &str, sql: &str) -> (StatusCode, Value) {
    common::json_of(
        c.client()
            .post(format!("{}/segments/{id}/query", c.url(node)))
            .header("x-trough-forwarded", "1")
            .body(sql.to_owned())
            .send()
            .expect("POST query"),
    )
}

/// Checks every [`CHECK_QUERIES`] answer of `node` for `id` against SQLite, asking the node
/// itself; returns false if it does not hold the segment (503).
fn node_answers_correctly(c: &TestCluster, node: &str, id: &str, file: &SqliteFile) -> bool {
    for sql in CHECK_QUERIES {
        let (status, body) = local_query(c, node, id, sql);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return false;
        }
        assert_eq!(status, StatusCode::OK, "{node} {id} {sql:?}: {body}");
        let want = file.rows(sql, &json!([]));
        let rows = body.as_array().expect("rows");
        assert!(
            rows.len() == want.len()
                && rows.iter().zip(&want).all(|(a, b)| common::same_json(a, b)),
            "{node} served a wrong answer for {id} {sql:?}:\n got: {body}\nwant: {}",
            Value::Array(want)
        );
    }
    true
}

#[test]
fn corrupted_copies_are_never_served_and_are_refetched() {
    let mut c = ClusterSpec::new(2, 2)
        .writers(0)
        .sync_servers(1)
        .scrub_interval_secs(1)
        .start();
    let (na, nb) = (600, 601);
    let (fa, fb) = (make_segment(na), make_segment(nb));
    let ma = c.publish("scrub-a", fa.bytes());
    let mb = c.publish("scrub-b", fb.bytes());
    c.wait_replicated("scrub-a", 2);
    c.wait_replicated("scrub-b", 2);
    let node = "reader-1";
    assert!(node_answers_correctly(&c, node, "scrub-a", &fa));

    // (a) A running reader: the scrub finds the damage, withdraws the copy and fetches it again.
    let path_a = c.copy_path(node, "scrub-a", 1, ma["sha256"].as_str().unwrap());
    assert_eq!(sha256_hex(&std::fs::read(&path_a).unwrap()), ma["sha256"]);
    let scrub_failures_before = c.metric(node, "trough_sync_scrub_failures_total");
    corrupt_copy(&path_a, na);
    let corrupted = Instant::now();
    let mut withdrawn_seen = false;
    let mut dns_dropped = false;
    // Withdrawn: seen in /health (absent or unverified), or counted by the scrub metric (the
    // window between withdrawal and re-fetch can be shorter than one poll). Then verified again,
    // with the file on disk matching the manifest again.
    let scrub_failures =
        || c.metric(node, "trough_sync_scrub_failures_total") - scrub_failures_before;
    let restored = wait_until(Duration::from_secs(30), || {
        let h = c.health(node);
        if !health_has(&h, "scrub-a", 1) {
            if !withdrawn_seen {
                eprintln!("withdrawn {:.1?} after the corruption", corrupted.elapsed());
            }
            // Its DNS tag goes with it (not asserted: the window is short).
            dns_dropped |= !c.dns_read_ports("scrub-a").contains(&c.node(node).port());
            withdrawn_seen = true;
            return false;
        }
        (withdrawn_seen || scrub_failures() >= 1.0)
            && std::fs::read(&path_a)
                .is_ok_and(|b| sha256_hex(&b) == ma["sha256"].as_str().unwrap())
    });
    assert!(
        restored,
        "{node}: scrub-a was not withdrawn (seen in /health: {withdrawn_seen}, scrub failures \
         +{}) and re-fetched with a matching hash within 30 s; /health: {}",
        scrub_failures(),
        c.health(node)
    );
    assert!(
        scrub_failures() >= 1.0,
        "{node}'s scrub did not count the corrupted copy (trough_sync_scrub_failures_total)"
    );
    eprintln!(
        "re-fetched {:.1?} after the corruption (DNS tag seen dropped: {dns_dropped})",
        corrupted.elapsed()
    );
    assert!(node_answers_correctly(&c, node, "scrub-a", &fa));
    assert_eq!(c.holders("scrub-a").len(), 2);

    // (b) A stopped reader's copy is damaged; on restart it re-verifies before serving, so the
    // damaged copy is never served, and it fetches a good one.
    let path_b = c.copy_path(node, "scrub-b", 1, mb["sha256"].as_str().unwrap());
    c.kill9(node);
    corrupt_copy(&path_b, nb);
    c.restart(node);
    let restarted = Instant::now();
    let mut unavailable = 0;
    let mut good = 0;
    let served = wait_until(Duration::from_secs(30), || {
        // Wrong answers fail inside; 503 means "no verified copy yet".
        if node_answers_correctly(&c, node, "scrub-b", &fb) {
            good += 1;
        } else {
            unavailable += 1;
        }
        good >= 5
    });
    assert!(
        served,
        "{node} did not serve scrub-b again within 30 s of restarting"
    );
    eprintln!(
        "{node} served scrub-b correctly {:.1?} after restarting ({unavailable} answers of 503 before)",
        restarted.elapsed()
    );
    // The restart itself caught it (re-verification), not the scrub of the new process.
    assert_eq!(
        c.metric(node, "trough_sync_scrub_failures_total"),
        0.0,
        "the corrupted copy survived the restart until a scrub"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&path_b).unwrap()),
        mb["sha256"],
        "the copy on disk is the verified one"
    );
    // Queries through the node's own URL (forwarding allowed) and through the router are right.
    for sql in CHECK_QUERIES {
        let (status, body) = c.post_text(&c.url(node), "/segments/scrub-b/query", sql);
        assert_eq!(status, StatusCode::OK, "{body}");
        common::cluster::assert_matches_sqlite(&fb, sql, body.as_array().unwrap());
        common::cluster::assert_matches_sqlite(&fb, sql, &c.query_ok("scrub-b", sql));
    }
}

/// Counts rows of the writable segment through the router.
fn count_rows(c: &TestCluster, id: &str) -> (StatusCode, Value) {
    c.query(id, "SELECT count(*) AS n FROM t")
}

/// Inserts with increasing row ids through the router, remembering the acknowledged ones.
#[derive(Default)]
struct Writes {
    acked: BTreeSet<i64>,
    next: i64,
}

impl Writes {
    fn write(&mut self, c: &TestCluster, id: &str) -> (StatusCode, Value) {
        self.next += 1;
        let k = self.next;
        let (status, body) = c.execute(id, &format!("INSERT INTO t VALUES ({k}, 'row {k}')"));
        if status == StatusCode::OK {
            self.acked.insert(k);
        }
        (status, body)
    }
}

#[test]
fn writer_restart_loses_no_acknowledged_write() {
    let mut c = ClusterSpec::new(2, 2).sync_servers(1).start();
    let id = "w-1";
    let router = c.router_url();
    let (status, doc) = c.post_json(
        &router,
        &format!("/segments/{id}/provision"),
        &json!({"schema_sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"}),
    );
    assert_eq!(status, StatusCode::CREATED, "provision: {doc}");
    assert_eq!(doc["writer"], "writer-1", "{doc}");

    // Acknowledged writes, by row id.
    let mut w = Writes::default();
    // The first write may meet the router's not-yet-refreshed view of the catalog (503
    // `writer_unavailable` right after provisioning; cluster_placement asserts that separately).
    // Refused writes are not acknowledged, and the final row check proves they committed nothing.
    let first_ok = wait_until(Duration::from_secs(3), || {
        w.write(&c, id).0 == StatusCode::OK
    });
    assert!(first_ok, "no write accepted within 3 s of provisioning");
    for _ in 1..20 {
        let (status, body) = w.write(&c, id);
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Reads through the router go to the writer (no read replica has the segment yet).
    let (status, body) = count_rows(&c, id);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!([{"n": 20}]));
    let (_, doc) = c.segment(id);
    assert!(
        doc["versions"].as_array().unwrap().is_empty(),
        "nothing promoted yet: {doc}"
    );

    // kill -9 with unpromoted writes. Writes now fail with 503 and succeed nowhere.
    c.kill9("writer-1");
    let killed = Instant::now();
    let allowed = ["writer_unavailable", "write_lease_lost"];
    for _ in 0..3 {
        let (status, body) = w.write(&c, id);
        common::assert_error_any(status, &body, 503, &allowed);
    }

    c.restart("writer-1");
    let restarted = Instant::now();
    // Read problems are collected and asserted at the end, so that one failure does not hide
    // what the rest of the scenario would show.
    let mut read_failures: Vec<String> = Vec::new();
    // Reads work at once: the live database is reopened at startup.
    let mut last = (StatusCode::OK, Value::Null);
    let read_ok = wait_until(Duration::from_secs(5), || {
        last = count_rows(&c, id);
        last.0 == StatusCode::OK
    });
    if read_ok {
        eprintln!(
            "reads answered {:.1?} after the restart",
            restarted.elapsed()
        );
        if last.1 != json!([{"n": w.acked.len()}]) {
            read_failures.push(format!(
                "after the restart the router read {} rows, {} were acknowledged",
                last.1,
                w.acked.len()
            ));
        }
    } else {
        let (ds, db) = c.post_text(
            &c.url("writer-1"),
            &format!("/segments/{id}/query"),
            "SELECT count(*) AS n FROM t",
        );
        read_failures.push(format!(
            "POST /segments/{id}/query through the router: no 200 within 5 s of the writer's \
             restart (before its old lease expired); last answer: {} {}; the writer itself \
             answers: {ds} {db}",
            last.0, last.1
        ));
    }

    // Writes are refused (503) until the old session's lease expires, then accepted.
    let bound = Duration::from_secs(2 * SESSION_TTL_SECS + LOCK_DELAY_SECS + 10);
    let mut refused = 0;
    let mut last = Value::Null;
    let accepted = wait_until(bound.saturating_sub(killed.elapsed()), || {
        let (status, body) = w.write(&c, id);
        if status == StatusCode::OK {
            return true;
        }
        common::assert_error_any(status, &body, 503, &allowed);
        refused += 1;
        last = body;
        false
    });
    assert!(
        accepted,
        "writes still refused {:.1?} after the kill: {last}",
        killed.elapsed()
    );
    let resumed = killed.elapsed();
    eprintln!("writes accepted again {resumed:.1?} after the kill ({refused} refused meanwhile)");
    // Fencing: not before the old session can have expired (Consul: at least one TTL).
    assert!(
        resumed >= Duration::from_secs(SESSION_TTL_SECS) - Duration::from_secs(4),
        "writes accepted {resumed:?} after the kill: before the old lease could expire"
    );
    for _ in 0..5 {
        let (status, body) = w.write(&c, id);
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Exactly the acknowledged rows: none lost, none of the refused ones committed. Through the
    // router, i.e. from the writer's live database.
    let (status, rows) = c.query(id, "SELECT id FROM t ORDER BY id");
    if status == StatusCode::OK {
        let ids: BTreeSet<i64> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ids, w.acked,
            "rows in the live segment vs acknowledged writes"
        );
    } else {
        read_failures.push(format!(
            "POST /segments/{id}/query through the router after writes resumed: {status} {rows}"
        ));
    }

    // Promote through the router; the read replicas pick up the promoted version, which holds
    // exactly the acknowledged rows.
    let (status, manifest) = c.post_text(&router, &format!("/segments/{id}/promote"), "");
    assert_eq!(status, StatusCode::OK, "promote: {manifest}");
    let version = manifest["version"].as_u64().expect("version");
    let holders = c.wait_replicated(id, 2);
    let (_, doc) = c.segment(id);
    assert_eq!(doc["latest"]["version"], version, "{doc}");
    eprintln!("promoted v{version} held by {holders:?}");
    for r in &holders {
        assert!(r.starts_with("reader-"), "{holders:?}");
        let (status, body) = local_query(&c, r, id, "SELECT id FROM t ORDER BY id");
        assert_eq!(status, StatusCode::OK, "{r}: {body}");
        let ids: BTreeSet<i64> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ids, w.acked,
            "{r}'s copy of v{version} vs acknowledged writes"
        );
    }
    assert!(
        read_failures.is_empty(),
        "reads of the restarted writer's segment failed:\n{}",
        read_failures.join("\n")
    );
}
