//! Many segments on one node: listings come in pages (and the CLI follows them); a restart
//! serves unchanged copies without re-hashing them first, and re-hashes a changed one before
//! serving it; after the first pass, publishing wakes sync passes that read only what changed.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The value of metric `name` with labels containing `labels` (summed), 0 if absent.
fn metric(s: &TestServer, name: &str, labels: &str) -> f64 {
    let text = s.get("/metrics").text().expect("GET /metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with(' ') || rest.starts_with('{')) && rest.contains(labels)
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every item of a listing, following `next_cursor` with pages of `limit`.
fn follow(s: &TestServer, path: &str, limit: usize, extra: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, page) =
            s.get_json(&format!("{path}{sep}limit={limit}&cursor={cursor}{extra}"));
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["segments"].as_array().expect("segments").clone();
        assert!(got.len() <= limit, "{page}");
        pages += 1;
        items.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    (items, pages)
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn listings_come_in_pages_and_the_cli_follows_them() {
    let s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    let mut want = Vec::new();
    for i in 0..23 {
        let id = format!("{}-{i:02}", if i % 2 == 0 { "even" } else { "odd" });
        s.publish(&id, f.bytes());
        want.push(id);
    }
    want.sort();

    // GET /segments: every segment once, in id order, in pages of at most `limit`.
    let (items, pages) = follow(&s, "/segments", 5, "");
    assert_eq!(ids(&items), want);
    assert_eq!(pages, 5);
    let (items, _) = follow(&s, "/segments", 4, "&prefix=odd-");
    assert_eq!(
        ids(&items),
        want.iter()
            .filter(|i| i.starts_with("odd-"))
            .cloned()
            .collect::<Vec<_>>()
    );
    // Without parameters: one page (the default limit) holds them all, no cursor.
    let (_, all) = s.get_json("/segments");
    assert_eq!(all["segments"].as_array().unwrap().len(), 23);
    assert!(all.get("next_cursor").is_none(), "{all}");
    for bad in ["limit=0", "limit=-1", "limit=abc", "limit=10001"] {
        let (status, body) = s.get_json(&format!("/segments?{bad}"));
        assert_error(status, &body, 400, "invalid_query_parameter");
    }

    // GET /health: a summary; the copies, paged, on request.
    for id in &want {
        s.wait_synced(id, 1);
    }
    let (_, h) = s.get_json("/health");
    assert_eq!(h["summary"]["verified"], 23, "{h}");
    assert!(h.get("segments").is_none(), "{h}");
    let (items, pages) = follow(&s, "/health?segments=true", 10, "");
    assert_eq!(ids(&items), want);
    assert_eq!(pages, 3);
    assert!(items.iter().all(|c| c["verified"] == true));
    let (items, _) = follow(&s, "/health?segments=true", 3, "&prefix=even-");
    assert_eq!(items.len(), 12);
    let (status, body) = s.get_json("/health?segments=maybe");
    assert_error(status, &body, 400, "invalid_query_parameter");

    // The CLI follows the pages.
    let out = Command::new(BIN)
        .args(["segment", "ls", "--page-size", "4", "--url", s.url()])
        .stdin(Stdio::null())
        .output()
        .expect("run trough");
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("ls prints JSON");
    assert_eq!(ids(listed["segments"].as_array().unwrap()), want);
    let out = Command::new(BIN)
        .args(["segment", "ls", "--prefix", "even-", "--url", s.url()])
        .stdin(Stdio::null())
        .output()
        .expect("run trough");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("ls prints JSON");
    assert_eq!(listed["segments"].as_array().unwrap().len(), 12);
}

fn copy_path(s: &TestServer, id: &str, m: &Value) -> std::path::PathBuf {
    s.data_dir()
        .join("copies")
        .join(id)
        .join(format!("1-{}.sqlite", m["sha256"].as_str().unwrap()))
}

const CHECK: &str = "SELECT id, name FROM t ORDER BY id";

#[test]
fn restart_serves_unchanged_copies_without_rehashing_them_first() {
    let mut s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    for id in ["r-a", "r-b", "r-c"] {
        s.publish(id, f.bytes());
        s.wait_synced(id, 1);
    }
    let want = f.rows(CHECK, &json!([]));
    s.restart();
    // Served at once: no re-hash before, one in the background after.
    assert_eq!(metric(&s, "trough_sync_adopted_total", "unchanged"), 3.0);
    assert_eq!(metric(&s, "trough_sync_adopted_total", "hashed"), 0.0);
    for id in ["r-a", "r-b", "r-c"] {
        assert_rows_eq(&s.query_ok(id, CHECK), &want);
    }
    assert!(
        wait_until(SYNC_TIMEOUT, || metric(
            &s,
            "trough_sync_background_verified_total",
            ""
        ) == 3.0),
        "the adopted copies were not re-hashed in the background"
    );
    assert_eq!(metric(&s, "trough_sync_scrub_failures_total", ""), 0.0);
}

#[test]
fn a_copy_changed_on_disk_is_rehashed_before_it_is_served() {
    let mut s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    let ma = s.publish("c-damaged", f.bytes());
    let mb = s.publish("c-touched", f.bytes());
    s.wait_synced("c-damaged", 1);
    s.wait_synced("c-touched", 1);
    let want = f.rows(CHECK, &json!([]));
    s.kill9();
    // Same size, one byte changed (so size and inode are unchanged; mtime is not).
    let damaged = copy_path(&s, "c-damaged", &ma);
    let bytes = std::fs::read(&damaged).unwrap();
    let pos = bytes
        .windows(5)
        .position(|w| w == b"alpha")
        .expect("row text in the copy");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&damaged)
        .unwrap();
    file.seek(SeekFrom::Start(pos as u64)).unwrap();
    file.write_all(b"A").unwrap();
    file.sync_all().unwrap();
    drop(file);
    // Rewritten with the same bytes: changed on disk as far as `stat` can tell, still good.
    let touched = copy_path(&s, "c-touched", &mb);
    let before = std::fs::metadata(&touched).unwrap().modified().unwrap();
    std::fs::write(&touched, std::fs::read(&touched).unwrap()).unwrap();
    // A distinct mtime without waiting for the clock to tick.
    std::fs::File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(before + Duration::from_secs(1))
        .unwrap();

    s.restart();
    assert_eq!(metric(&s, "trough_sync_adopted_total", "unchanged"), 0.0);
    assert_eq!(metric(&s, "trough_sync_adopted_total", "hashed"), 1.0);
    assert_eq!(metric(&s, "trough_sync_adopt_failures_total", ""), 1.0);
    // The damaged copy is never served: the answer is the published data (re-fetched).
    let mut answered = false;
    assert!(wait_until(SYNC_TIMEOUT, || {
        let (status, rows) = s.query_text("c-damaged", CHECK);
        if status == StatusCode::OK {
            assert_rows_eq(rows.as_array().unwrap(), &want);
            answered = true;
        }
        answered
    }));
    assert_rows_eq(&s.query_ok("c-touched", CHECK), &want);
    assert_eq!(
        sha256_hex(&std::fs::read(&damaged).unwrap()),
        ma["sha256"].as_str().unwrap(),
        "the copy on disk is the verified one again"
    );
}

/// After the first pass, each publish is synced by a pass over what changed (point reads), not by
/// a pass over the whole assignment and catalog: full passes happen only every
/// `sync.interval_secs` (an hour here) or after a failure.
#[test]
fn publishes_are_synced_by_passes_over_what_changed() {
    let s = TestServer::start_with(&[], &[("TROUGH_SYNC__INTERVAL_SECS", "3600")]);
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("inc-0", f.bytes());
    s.wait_synced("inc-0", 1);
    let full = metric(&s, "trough_sync_passes_total", "full");
    let changes = metric(&s, "trough_sync_passes_total", "changes");
    assert!(full >= 1.0, "the first pass is a full one");
    let want = f.rows(CHECK, &json!([]));
    for i in 1..=12 {
        let id = format!("inc-{i}");
        s.publish(&id, f.bytes());
        s.wait_synced(&id, 1);
        assert_rows_eq(&s.query_ok(&id, CHECK), &want);
    }
    assert_eq!(
        metric(&s, "trough_sync_passes_total", "full"),
        full,
        "no full pass while publishing"
    );
    assert!(metric(&s, "trough_sync_passes_total", "changes") > changes);
}

/// A graceful stop (SIGTERM) keeps every verified copy on disk: the next start serves them at
/// once, without fetching or re-hashing any. (Stored copies delete their file when they are
/// replaced or dropped; shutting the reader down is neither.)
#[test]
fn a_graceful_stop_keeps_the_copies() {
    let mut s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    let mut paths = Vec::new();
    for id in ["g-a", "g-b", "g-c"] {
        let m = s.publish(id, f.bytes());
        s.wait_synced(id, 1);
        paths.push(copy_path(&s, id, &m));
    }
    s.sigterm();
    assert!(
        s.wait_exit(Duration::from_secs(30)).is_some(),
        "no exit after SIGTERM"
    );
    for p in &paths {
        assert!(p.exists(), "{} was deleted by the shutdown", p.display());
    }
    s.restart();
    assert_eq!(metric(&s, "trough_sync_adopted_total", "unchanged"), 3.0);
    let want = f.rows(CHECK, &json!([]));
    for id in ["g-a", "g-b", "g-c"] {
        assert_rows_eq(&s.query_ok(id, CHECK), &want);
    }
}

/// A version stored but never catalogued (the process died between the manifest and the
/// catalog) is catalogued again after a restart, in the background; a lost catalog is rebuilt
/// from the object store before the node answers.
#[test]
fn restart_reconciles_the_catalog_with_the_store() {
    let mut s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("rc-kept", f.bytes());
    s.publish("rc-orphan", f.bytes());
    s.wait_synced("rc-orphan", 1);
    s.kill9();
    let catalog = s.data_dir().join("coordinator.sqlite");
    let db = rusqlite::Connection::open(&catalog).unwrap();
    db.execute("DELETE FROM versions WHERE id = 'rc-orphan'", [])
        .unwrap();
    db.execute("DELETE FROM segments WHERE id = 'rc-orphan'", [])
        .unwrap();
    drop(db);
    s.restart();
    assert!(
        wait_until(SYNC_TIMEOUT, || s.get_json("/segments/rc-orphan").0
            == StatusCode::OK),
        "the uncatalogued version was not reconciled"
    );
    s.kill9();
    for name in [
        "coordinator.sqlite",
        "coordinator.sqlite-wal",
        "coordinator.sqlite-shm",
    ] {
        let _ = std::fs::remove_file(s.data_dir().join(name));
    }
    s.restart();
    for id in ["rc-kept", "rc-orphan"] {
        let (status, doc) = s.get_json(&format!("/segments/{id}"));
        assert_eq!(status, StatusCode::OK, "{id} not rebuilt at start: {doc}");
        assert_eq!(doc["latest"]["version"], 1, "{doc}");
    }
}
