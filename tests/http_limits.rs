//! The HTTP layer under hostile or careless clients (issue 10, defects 8, 9, 13, 14, 15): bodies
//! over the limit, strict JSON, JSON errors from the HTTP layer itself, slow clients, connection
//! limits, and errors after an answer started streaming.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::{self, exchange};
use common::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);

fn sample(s: &TestServer) {
    s.publish("s", SqliteFile::new(SAMPLE_SQL).bytes());
    s.wait_synced("s", 1);
}

// ---- defect 15: 413 reaches clients that send the whole body first ------------------------------

#[test]
fn oversized_body_413_reaches_clients_that_write_everything_first() {
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__MAX_BODY_BYTES", "1048576")]);
    sample(&s);
    let big = 8 << 20;
    // Python's urllib writes the whole body, then reads the answer.
    let script = format!(
        r#"
import json, urllib.request, urllib.error
req = urllib.request.Request("{url}/segments/s/query", data=b"x" * {big},
                             headers={{"Content-Type": "text/plain"}}, method="POST")
try:
    urllib.request.urlopen(req, timeout=20)
    print("200")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["error"]["code"])
"#,
        url = s.url()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "413 body_too_large",
        "python urllib: stdout {stdout:?} stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same with a raw client, with and without Content-Length, and on an error that comes
    // before the body is read at all (an invalid id with a large upload).
    let body = vec![b'x'; big];
    for (what, head) in [
        (
            "content-length",
            format!("POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {big}\r\n\r\n"),
        ),
        (
            "invalid id",
            format!("PUT /segments/.bad HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"),
        ),
    ] {
        let mut req = head.into_bytes();
        req.extend_from_slice(&body);
        let a = exchange(s.url(), &req, LONG);
        assert!(!a.write_failed, "{what}: writing the body failed: {a:?}");
        assert!(
            matches!(a.status, Some(413) | Some(400)),
            "{what}: {:?}",
            a.status
        );
        assert!(a.code().is_some(), "{what}: no JSON error: {a:?}");
    }
    // Still serving.
    assert_eq!(s.query_ok("s", "SELECT count(*) AS n FROM t")[0]["n"], 5);
}

// ---- defect 14: strict JSON -------------------------------------------------------------------------

#[test]
fn json_bodies_are_strict_objects() {
    let s = TestServer::start();
    sample(&s);
    s.provision(
        "w",
        &json!({"schema_sql": "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)"}),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/segments/s/query", json!(["SELECT 1"]), "invalid_json"),
        ("/segments/s/query", json!(["SELECT 1", []]), "invalid_json"),
        ("/segments/s/query", json!("SELECT 1"), "invalid_json"),
        (
            "/segments/s/query",
            json!({"sql": "SELECT 1", "parms": [1]}),
            "unknown_field",
        ),
        (
            "/segments/w/execute",
            json!(["INSERT INTO items VALUES (1, 'a')"]),
            "invalid_json",
        ),
        (
            "/segments/w/execute",
            json!({"sql": "INSERT INTO items VALUES (2, 'b')", "parms": []}),
            "unknown_field",
        ),
        ("/query", json!(["SELECT 1", "*"]), "invalid_json"),
        (
            "/query",
            json!({"sql": "SELECT 1", "segments": "*", "parms": []}),
            "unknown_field",
        ),
        (
            "/segments/w2/provision",
            json!(["CREATE TABLE x (a)"]),
            "invalid_json",
        ),
        (
            "/segments/w2/provision",
            json!({"schema_sql": "CREATE TABLE x (a)", "extra": 1}),
            "unknown_field",
        ),
    ];
    for (path, body, code) in cases {
        let (status, answer) = s.post_json(path, &body);
        assert_error(status, &answer, 400, code);
        if code == "unknown_field" {
            let field = body
                .as_object()
                .unwrap()
                .keys()
                .find(|k| !["sql", "segments", "schema_sql"].contains(&k.as_str()))
                .unwrap();
            let msg = answer["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains(field.as_str()),
                "{path}: message does not name {field}: {msg}"
            );
        }
    }
    // Nothing was written or provisioned.
    assert_eq!(
        s.query_ok("w", "SELECT count(*) AS n FROM items")[0]["n"],
        0
    );
    let (status, _) = s.get_json("/segments/w2");
    assert_eq!(status.as_u16(), 404);
}

// ---- defect 13: every error is JSON with a code -------------------------------------------------------

#[test]
fn http_layer_errors_are_json() {
    let s = TestServer::start();
    sample(&s);
    let req = |line: &str, extra: &str| {
        format!("{line}\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n{extra}\r\nSELECT 1").into_bytes()
    };
    let long_uri = format!("GET /segments/{} HTTP/1.1", "a".repeat(20_000));
    let big_header = format!("X-Big: {}\r\n", "b".repeat(30_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "non-UTF-8 path segment",
            req("POST /segments/%FF%FE/query HTTP/1.1", ""),
            400,
            "invalid_path",
        ),
        (
            "non-UTF-8 query string",
            req("POST /?segment=%FF HTTP/1.1", ""),
            400,
            "invalid_segment_id",
        ),
        (
            "query string without segment",
            req("POST /?segmentx=1 HTTP/1.1", ""),
            400,
            "missing_segment",
        ),
        (
            "percent-encoded NUL",
            req("POST /segments/a%00b/query HTTP/1.1", ""),
            400,
            "invalid_segment_id",
        ),
        (
            "unknown route",
            req("GET /nope HTTP/1.1", ""),
            404,
            "no_such_route",
        ),
        (
            "wrong method",
            req("DELETE /segments/s/query HTTP/1.1", ""),
            405,
            "method_not_allowed",
        ),
        ("URI too long", req(&long_uri, ""), 414, "uri_too_long"),
        (
            "header too large",
            req("POST /segments/s/query HTTP/1.1", &big_header),
            431,
            "headers_too_large",
        ),
    ];
    for (what, bytes, status, code) in cases {
        let a = exchange(s.url(), &bytes, LONG);
        assert_json_error(&a, what, status, code);
    }
    // What hyper refuses itself, before any request reaches trough, is rewritten on its way out
    // (trough_api::listener::json_errors): the same JSON error document, and the connection closed.
    let many_headers: Vec<u8> = {
        let mut r = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..120 {
            r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    let hyper_own: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bad Content-Length", b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("two Content-Lengths", b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), 400, "malformed_request"),
        ("raw NUL in path", b"GET /segments/a\0b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("raw non-UTF-8 in path", b"GET /segments/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("over 100 headers", many_headers, 431, "headers_too_large"),
    ];
    for (what, bytes, status, code) in hyper_own {
        let a = exchange(s.url(), &bytes, LONG);
        assert_json_error(&a, what, status, code);
        assert!(
            a.closed || a.header("connection") == Some("close"),
            "{what}: connection left open: {a:?}"
        );
    }
    // The same on a kept-alive connection whose second request is malformed.
    let mut two = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    two.extend_from_slice(
        b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    );
    let mut c = raw::connect(s.url());
    c.set_read_timeout(Some(LONG)).unwrap();
    c.write_all(&two).unwrap();
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("HTTP/1.1 400") && text.contains("\"malformed_request\""),
        "second answer is not the JSON error: {text}"
    );
    assert_eq!(s.query_ok("s", "SELECT count(*) AS n FROM t")[0]["n"], 5);
}

/// `a` is the JSON error document with `status` and `code`.
fn assert_json_error(a: &raw::RawAnswer, what: &str, status: u16, code: &str) {
    assert_eq!(a.status, Some(status), "{what}: {a:?}");
    assert_eq!(
        a.code().as_deref(),
        Some(code),
        "{what}: {a:?} {}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: {a:?}"
    );
}

// ---- defect 8: slow clients ----------------------------------------------------------------------------

#[test]
fn slow_clients_are_timed_out_and_bounded() {
    let s = TestServer::start_with(
        &[],
        &[
            ("TROUGH_LIMITS__HTTP__HEADER_READ_TIMEOUT_MS", "1000"),
            ("TROUGH_LIMITS__HTTP__BODY_IDLE_TIMEOUT_MS", "1000"),
        ],
    );
    sample(&s);
    // Half-sent headers: the connection is closed after the header timeout.
    let mut c = raw::connect(s.url());
    c.write_all(b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        raw::closed_within(&mut c, Duration::from_secs(10)),
        "half-sent headers kept open"
    );

    // A body that stops arriving: 408 with a JSON error after the body idle timeout.
    let start = Instant::now();
    let mut c = raw::connect(s.url());
    c.write_all(b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nSELECT").unwrap();
    let a = raw::read_answer(&mut c, start, Duration::from_secs(10));
    assert_eq!(a.status, Some(408), "{a:?}");
    assert_eq!(a.code().as_deref(), Some("body_timeout"), "{a:?}");

    // A chunk size of 2^64-1: answered (not left hanging).
    let start = Instant::now();
    let mut c = raw::connect(s.url());
    c.write_all(b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nSELECT 1\r\n0\r\n\r\n").unwrap();
    let a = raw::read_answer(&mut c, start, Duration::from_secs(10));
    assert!(
        a.status.is_some_and(|st| (400..500).contains(&st)) && a.code().is_some(),
        "{a:?}"
    );

    // 300 idle sockets, some with half a request: a normal query still answers at once.
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut c = raw::connect(s.url());
        if i % 2 == 0 {
            let _ = c.write_all(
                b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nSEL",
            );
        }
        idle.push(c);
    }
    let start = Instant::now();
    let (status, rows) = s.query_text("s", "SELECT count(*) AS n FROM t");
    assert_eq!(status.as_u16(), 200, "{rows}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "normal query took {:?}",
        start.elapsed()
    );
    drop(idle);
}

#[test]
fn connections_beyond_the_limit_get_a_quick_503() {
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__HTTP__MAX_CONNECTIONS", "20")]);
    sample(&s);
    let idle: Vec<_> = (0..20).map(|_| raw::connect(s.url())).collect();
    // Let the server accept them all.
    assert!(wait_until(Duration::from_secs(5), || {
        let a = exchange(
            s.url(),
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        a.status == Some(503)
    }));
    let a = exchange(
        s.url(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(a.status, Some(503), "{a:?}");
    assert_eq!(a.code().as_deref(), Some("too_many_connections"), "{a:?}");
    assert!(a.elapsed < Duration::from_secs(2), "{a:?}");
    drop(idle);
    // Once they are gone, requests are served again.
    assert!(wait_until(Duration::from_secs(5), || {
        s.client()
            .get(s.at("/health"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)
    }));
}

// ---- defect 9: an error after streaming began is readable -----------------------------------------------

#[test]
fn error_after_streaming_began_ends_with_a_json_line() {
    let s = TestServer::start();
    let file = SqliteFile::new(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
         INSERT INTO t SELECT x, printf('%040d', x) FROM c;",
    );
    s.publish("big", file.bytes());
    s.wait_synced("big", 1);
    let sql =
        "SELECT CASE WHEN id > 10000 THEN abs(-9223372036854775808) ELSE id END AS v, pad FROM t";
    for accept in ["application/x-ndjson", "application/json"] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-H",
                "Content-Type: text/plain",
                "-H",
            ])
            .arg(format!("Accept: {accept}"))
            .args(["--data-binary", sql])
            .arg(s.at("/segments/big/query"))
            .output()
            .expect("run curl");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{accept}: curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = String::from_utf8_lossy(&out.stdout);
        let last = body.trim_end().lines().last().unwrap_or("");
        let v: Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{accept}: last line is not JSON ({e}): {last:?}"));
        assert!(v["error"]["code"].is_string(), "{accept}: {last}");
        assert!(
            body.len() > 32 << 10,
            "{accept}: the error came before streaming began"
        );
        if accept == "application/json" {
            assert!(
                serde_json::from_str::<Value>(&body).is_err(),
                "a failed answer parsed as JSON"
            );
        }
    }
    // With reqwest too, and the server keeps serving.
    let r = s
        .client()
        .post(s.at("/segments/big/query"))
        .header("content-type", "text/plain")
        .header("accept", "application/x-ndjson")
        .body(sql)
        .send()
        .unwrap();
    let text = r.text().expect("the whole body is readable");
    let last: Value = serde_json::from_str(text.trim_end().lines().last().unwrap()).unwrap();
    assert!(last["error"]["code"].is_string(), "{last}");
    assert_eq!(
        s.query_ok("big", "SELECT count(*) AS n FROM t")[0]["n"],
        20000
    );
}

// ---- issue 15: bounded requests in flight ------------------------------------------------------

/// With `limits.inflight.reads = 1`, a read that holds the slot (its body announced but not yet
/// sent) makes the next read a quick 503 `overloaded` with `Retry-After`; health still answers,
/// writes have their own bound, and once the slow read is gone reads are served again.
#[test]
fn past_the_bound_of_reads_in_flight_reads_get_503_overloaded_then_serve_again() {
    let s = TestServer::start_with(
        &[],
        &[
            ("TROUGH_LIMITS__INFLIGHT__READS", "1"),
            ("TROUGH_LIMITS__INFLIGHT__RETRY_AFTER_SECS", "3"),
        ],
    );
    sample(&s);
    assert_eq!(s.query_ok("s", "SELECT 1 AS one"), vec![json!({"one": 1})]);
    let mut held = raw::connect(s.url());
    held.write_all(
        b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
          Content-Length: 100\r\n\r\nSELECT",
    )
    .expect("write the head");
    let read = || {
        exchange(
            s.url(),
            b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Content-Length: 8\r\nConnection: close\r\n\r\nSELECT 1",
            LONG,
        )
    };
    assert!(wait_until(LONG, || read().status == Some(503)));
    let a = read();
    assert_json_error(&a, "a read past the bound", 503, "overloaded");
    assert_eq!(a.header("retry-after"), Some("3"), "{a:?}");
    let (status, _) = s.get_json("/health");
    assert_eq!(status.as_u16(), 200, "health is never refused");
    let (status, body) = s.put_text("/schemas/other", "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    assert_eq!(
        status.as_u16() / 100,
        2,
        "writes have their own bound: {body}"
    );
    drop(held);
    assert!(wait_until(LONG, || read().status == Some(200)));
}
