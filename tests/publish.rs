//! Publishing segments: PUT /segments/{id}, the catalog (GET /segments, GET /segments/{id}),
//! sync to the local node, and queries over the published data.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs),
//! except in the test of the command-line flags.

mod common;

use std::io::{Read, Write};

use common::*;
use serde_json::{json, Value};

fn assert_manifest(m: &Value, id: &str, version: u64, bytes: &[u8]) {
    assert_eq!(m["id"], id, "{m}");
    assert_eq!(m["version"], version, "{m}");
    assert_eq!(
        m["sha256"],
        sha256_hex(bytes),
        "sha256 must be lower-hex SHA-256 of the upload: {m}"
    );
    assert_eq!(m["size"], bytes.len() as u64, "{m}");
    assert!(m["created_at"].is_string(), "created_at: {m}");
    assert!(
        m.get("schema").is_some(),
        "manifest has no schema field: {m}"
    );
    assert!(m["writable"].is_boolean(), "writable: {m}");
    assert!(m["key"].is_string(), "key: {m}");
}

#[test]
fn put_returns_manifest_and_versions_increment() {
    let s = TestServer::in_process();
    let v1 = SqliteFile::new(SAMPLE_SQL);
    let v2 = SqliteFile::new(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'v2');",
    );

    let m1 = s.publish("pub.one", v1.bytes());
    assert_manifest(&m1, "pub.one", 1, &v1.bytes());
    assert_eq!(m1["writable"], false);
    let m2 = s.publish("pub.one", v2.bytes());
    assert_manifest(&m2, "pub.one", 2, &v2.bytes());
    assert_ne!(m1["key"], m2["key"], "versions must be distinct objects");

    // GET /segments/{id}: every version, oldest first; latest; writable; writer; replicas.
    let (status, doc) = s.get_json("/segments/pub.one");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["id"], "pub.one");
    assert_eq!(
        doc["versions"],
        json!([m1, m2]),
        "versions oldest first, as returned by PUT"
    );
    assert_eq!(doc["latest"], m2);
    assert_eq!(doc["writable"], false);
    assert!(doc["writer"].is_null(), "{doc}");
    let replicas = doc["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("replicas: {doc}"));
    for r in replicas {
        // A replica assigned but not yet holding anything may report version null.
        assert!(
            r["node"].is_string()
                && (r["version"].is_u64() || r["version"].is_null())
                && r["verified"].is_boolean(),
            "{r}"
        );
    }

    // A different segment gets its own version sequence.
    let m_other = s.publish("pub-two_2", v1.bytes());
    assert_eq!(m_other["version"], 1);

    // GET /segments: latest version per segment.
    let (status, list) = s.get_json("/segments");
    assert_eq!(status, 200, "{list}");
    let segs = list["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(segs.len(), 2, "{list}");
    let one = segs
        .iter()
        .find(|e| e["id"] == "pub.one")
        .expect("pub.one listed");
    assert_eq!(one["version"], 2);
    assert_eq!(one["sha256"], m2["sha256"]);
    assert_eq!(one["size"], m2["size"]);
    assert_eq!(one["created_at"], m2["created_at"]);
    assert_eq!(one["writable"], false);
    assert!(one.get("writer").is_some_and(Value::is_null), "{one}");
    let two = segs
        .iter()
        .find(|e| e["id"] == "pub-two_2")
        .expect("pub-two_2 listed");
    assert_eq!(two["version"], 1);

    // Replicas converge: the local node holds the latest version, verified.
    s.wait_synced("pub.one", 2);
    let node = s.node_name();
    assert!(
        wait_until(SYNC_TIMEOUT, || {
            let (_, doc) = s.get_json("/segments/pub.one");
            doc["replicas"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["node"] == node.as_str() && r["version"] == 2 && r["verified"] == true
                })
            })
        }),
        "replicas never showed {node} at v2 verified: {}",
        s.get_json("/segments/pub.one").1
    );
}

#[test]
fn publish_sync_query_round_trip_matches_sqlite() {
    let s = TestServer::in_process();
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("roundtrip", f.bytes());
    for sql in [
        "SELECT * FROM t ORDER BY id",
        "SELECT id, name, score, data, note, typeof(score) AS ts FROM t ORDER BY id DESC",
        "SELECT count(*) AS n, sum(id) AS s, avg(id) AS a, total(id) AS tot FROM t",
        "SELECT name FROM t WHERE id > 100",
        "SELECT 1",
        "SELECT name, length(data) AS len, hex(data) AS h FROM t WHERE data IS NOT NULL ORDER BY 1",
    ] {
        let got = s.query_ok("roundtrip", sql);
        assert_rows_eq(&got, &f.rows(sql, &json!([])));
    }
    s.wait_synced("roundtrip", 1);
    let (_, health) = s.get_json(HEALTH_SEGMENTS);
    let entry = health["segments"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == "roundtrip"))
        .cloned()
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(entry["sha256"], sha256_hex(&f.bytes()), "{entry}");
}

#[test]
fn second_version_replaces_data_seen_by_queries() {
    let s = TestServer::in_process();
    let v1 = SqliteFile::new("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('one');");
    let v2 = SqliteFile::new(
        "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('two'); INSERT INTO t VALUES ('two-b');",
    );
    s.publish("vers", v1.bytes());
    assert_rows_eq(
        &s.query_ok("vers", "SELECT v FROM t"),
        &v1.rows("SELECT v FROM t", &json!([])),
    );
    s.publish("vers", v2.bytes());
    let want = v2.rows("SELECT v FROM t ORDER BY v", &json!([]));
    let mut last = Vec::new();
    let converged = wait_until(SYNC_TIMEOUT, || {
        let (status, body) = s.query_text("vers", "SELECT v FROM t ORDER BY v");
        // While v2 is being installed the node may answer v1 or 503; never anything else.
        assert!(status == 200 || status == 503, "{status} {body}");
        if status == 200 {
            last = body.as_array().cloned().unwrap_or_default();
            last.len() == want.len() && last.iter().zip(&want).all(|(a, b)| same_json(a, b))
        } else {
            false
        }
    });
    assert!(converged, "queries never saw v2; last answer {:?}", last);
    s.wait_synced("vers", 2);
}

#[test]
fn not_sqlite_is_rejected_and_nothing_stored() {
    let s = TestServer::in_process();
    // Unknown segment → nothing stored.
    let (status, body) = s.put_bytes(
        "/segments/junk",
        b"this is definitely not a sqlite database file".repeat(200),
    );
    assert_error(status, &body, 400, "not_sqlite");
    let (status, body) = s.get_json("/segments/junk");
    assert_error(status, &body, 404, "segment_not_found");
    let (_, list) = s.get_json("/segments");
    assert_eq!(list["segments"], json!([]), "{list}");

    // Existing segment: a bad upload leaves the version unchanged.
    let good = SqliteFile::new(SAMPLE_SQL);
    let m1 = s.publish("keep", good.bytes());
    let mut header_only = good.bytes();
    header_only.truncate(100); // a SQLite header and nothing else
    let (status, body) = s.put_bytes("/segments/keep", header_only);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["code"] == "not_sqlite" || body["error"]["code"] == "integrity_check_failed",
        "{body}"
    );
    let (status, body) = s.put_bytes("/segments/keep", b"garbage".to_vec());
    assert_error(status, &body, 400, "not_sqlite");
    let (_, doc) = s.get_json("/segments/keep");
    assert_eq!(doc["versions"], json!([m1]), "{doc}");
    assert_rows_eq(
        &s.query_ok("keep", "SELECT * FROM t"),
        &good.rows("SELECT * FROM t", &json!([])),
    );
}

#[test]
fn empty_body_is_not_sqlite() {
    // A zero-byte body has no SQLite header: it is not a SQLite database file.
    let s = TestServer::in_process();
    let (status, body) = s.put_bytes("/segments/empty", Vec::new());
    assert_error_any(
        status,
        &body,
        400,
        &["not_sqlite", "integrity_check_failed"],
    );
    let (status, _) = s.get_json("/segments/empty");
    assert_eq!(status, 404);
}

#[test]
fn damaged_sqlite_is_rejected_and_nothing_stored() {
    let s = TestServer::in_process();
    let f = SqliteFile::new(
        "PRAGMA page_size=4096;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         CREATE INDEX t_v ON t(v);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3000)
         INSERT INTO t SELECT x, printf('value-%08d', x) FROM c;",
    );
    let mut bytes = f.bytes();
    assert!(bytes.len() > 4096 * 8);
    // Keep the header page intact, scribble over pages 3..5 (b-tree pages).
    for b in &mut bytes[4096 * 2..4096 * 5] {
        *b = 0xA5;
    }
    // Precondition: SQLite itself finds this damaged.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.sqlite");
    std::fs::write(&p, &bytes).unwrap();
    let damaged = rusqlite::Connection::open(&p)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)))
        .map(|s| s != "ok")
        .unwrap_or(true);
    assert!(damaged, "test precondition: the file must be damaged");

    let (status, body) = s.put_bytes("/segments/damaged", bytes);
    assert_error_any(
        status,
        &body,
        400,
        &["integrity_check_failed", "not_sqlite"],
    );
    let (status, body) = s.get_json("/segments/damaged");
    assert_error(status, &body, 404, "segment_not_found");
}

const LIMIT: usize = 20000;

fn small_file() -> SqliteFile {
    let f = SqliteFile::new("PRAGMA page_size=4096; CREATE TABLE t (v); INSERT INTO t VALUES (1);");
    assert!(f.bytes().len() <= LIMIT);
    f
}

fn big_file() -> SqliteFile {
    let f = SqliteFile::new(
        "PRAGMA page_size=4096; CREATE TABLE t (v);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 40)
         INSERT INTO t SELECT randomblob(1000) FROM c;",
    );
    assert!(f.bytes().len() > LIMIT);
    f
}

/// Both limits set to LIMIT: SQL bodies (`limits.max_body_bytes`) and segment uploads
/// (`limits.max_upload_bytes`) are separate knobs.
fn limited_server_config() -> TestServer {
    TestServer::in_process_with(&[
        ("TROUGH_LIMITS__MAX_BODY_BYTES", "20000"),
        ("TROUGH_LIMITS__MAX_UPLOAD_BYTES", "20000"),
    ])
}

/// PUT bodies over the limit: 413, nothing stored.
fn put_limit_checks(s: &TestServer) {
    s.publish("small", small_file().bytes());
    let big = big_file();
    let (status, body) = s.put_bytes("/segments/big", big.bytes());
    assert_error(status, &body, 413, "body_too_large");
    let (status, _) = s.get_json("/segments/big");
    assert_eq!(status, 404);
    let (_, before) = s.get_json("/segments/small");
    let (status, body) = s.put_bytes("/segments/small", big.bytes());
    assert_error(status, &body, 413, "body_too_large");
    let (_, after) = s.get_json("/segments/small");
    assert_eq!(
        after["versions"], before["versions"],
        "a refused upload adds no version"
    );
}

/// SQL bodies over the limit: 413.
fn sql_limit_checks(s: &TestServer) {
    s.publish("small", small_file().bytes());
    let big_sql = format!("SELECT 1 AS one /* {} */", "x".repeat(LIMIT + 1000));
    let (status, body) = s.query_text("small", &big_sql);
    assert_error(status, &body, 413, "body_too_large");
    let (status, body) = s.query_json("small", &json!({"sql": big_sql}));
    assert_error(status, &body, 413, "body_too_large");
    assert_eq!(
        s.query_ok("small", "SELECT 1 AS one"),
        vec![json!({"one": 1})]
    );
    s.provision("w", &json!({"schema_sql": "CREATE TABLE t (v);"}));
    let big_insert = format!("INSERT INTO t VALUES ('{}')", "x".repeat(LIMIT + 1000));
    let (status, body) = s.execute_text("w", &big_insert);
    assert_error(status, &body, 413, "body_too_large");
    assert_eq!(
        s.query_ok("w", "SELECT count(*) AS n FROM t"),
        vec![json!({"n": 0})]
    );
}

#[test]
fn max_upload_bytes_config_limits_put() {
    put_limit_checks(&limited_server_config());
}

#[test]
fn max_body_bytes_config_limits_sql_bodies() {
    sql_limit_checks(&limited_server_config());
}

#[test]
fn max_body_bytes_flag() {
    let s = TestServer::start_with(
        &["--max-body-bytes", "20000", "--max-upload-bytes", "20000"],
        &[],
    );
    sql_limit_checks(&s);
    put_limit_checks(&s);
}

#[test]
fn unknown_segment_is_404() {
    let s = TestServer::in_process();
    let (status, body) = s.get_json("/segments/nope");
    assert_error(status, &body, 404, "segment_not_found");
    let (status, body) = s.get_json("/segments");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"segments": []}));
}

/// A body of unknown length (sent chunked): `data`.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(4096).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A chunked `PUT /segments/{id}` whose client dies after sending `part`: it closes its side
/// without the terminating chunk. Returns once the server has closed the connection, i.e. is
/// done with the request (instead of sleeping and hoping it is).
fn abandoned_upload(s: &TestServer, id: &str, part: &[u8]) {
    let mut conn = raw::connect(s.url());
    let mut request = format!(
        "PUT /segments/{id} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        raw::addr_of(s.url())
    )
    .into_bytes();
    for chunk in part.chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    // The server may stop reading early; a failed write is part of the client dying.
    let _ = conn.write_all(&request);
    raw::finish_writing(&conn);
    assert!(
        raw::closed_within(&mut conn, SYNC_TIMEOUT),
        "the server kept the connection of the abandoned upload of {id} open"
    );
}

#[test]
fn chunked_upload_and_aborted_upload() {
    let s = TestServer::in_process();
    let f = SqliteFile::new(SAMPLE_SQL);
    // Without Content-Length (chunked): stored like any other upload.
    let r = s
        .client()
        .put(s.at("/segments/chunked"))
        .body(reqwest::blocking::Body::new(Chunked {
            data: f.bytes(),
            pos: 0,
        }))
        .send()
        .unwrap();
    let (status, m) = json_of(r);
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["sha256"], sha256_hex(&f.bytes()));
    assert_eq!(m["size"], f.bytes().len() as u64);

    // The client dies half-way: nothing is stored.
    let big = SqliteFile::new(
        "CREATE TABLE t (v);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200)
         INSERT INTO t SELECT randomblob(1000) FROM c;",
    );
    let half = big.bytes()[..big.bytes().len() / 2].to_vec();
    abandoned_upload(&s, "aborted", &half);
    abandoned_upload(&s, "chunked", &half);
    let (status, body) = s.get_json("/segments/aborted");
    assert_error(status, &body, 404, "segment_not_found");
    let (_, doc) = s.get_json("/segments/chunked");
    assert_eq!(
        doc["versions"],
        json!([m]),
        "an aborted upload changed the segment: {doc}"
    );
}

#[test]
fn ids_are_case_sensitive_and_distinct() {
    let s = TestServer::in_process();
    let upper = SqliteFile::new("CREATE TABLE t (v); INSERT INTO t VALUES ('upper');");
    let lower = SqliteFile::new("CREATE TABLE t (v); INSERT INTO t VALUES ('lower');");
    s.publish("Case", upper.bytes());
    s.publish("case", lower.bytes());
    assert_eq!(
        s.query_ok("Case", "SELECT v FROM t"),
        vec![json!({"v": "upper"})]
    );
    assert_eq!(
        s.query_ok("case", "SELECT v FROM t"),
        vec![json!({"v": "lower"})]
    );
    assert_eq!(s.get_json("/segments/Case").1["latest"]["version"], 1);
    assert_eq!(s.get_json("/segments/case").1["latest"]["version"], 1);
}

#[test]
fn stored_object_matches_manifest() {
    // The default object store lives under the data dir (`<data_dir>/objects/<key>`). When it is
    // there, the stored object must be byte-identical to the upload.
    let s = TestServer::in_process();
    let f = SqliteFile::new(SAMPLE_SQL);
    let m = s.publish("obj", f.bytes());
    let path = s
        .data_dir()
        .join("objects")
        .join(m["key"].as_str().unwrap());
    if path.exists() {
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&stored), m["sha256"].as_str().unwrap());
        assert_eq!(stored, f.bytes());
    } else {
        eprintln!(
            "object {} not under the data dir; skipped byte check",
            path.display()
        );
    }
}
