//! Hostile SQL against a real `trough serve` (issue 10, the SQLite half): writes and schema
//! validation have deadlines, deadlines interrupt at once, temporary objects are refused, values
//! and memory are bounded, named parameters bind in linear time, the wire format only turns a
//! read into a write when SQLite says it is not read-only, publishing runs a full integrity check,
//! SQLite's temporary files stay in the data dir, and SIGTERM stops a process stuck in SQLite.
//!
//! Bounds on elapsed time are generous (several times the configured limit): they tell "stopped
//! at the deadline" from "ran to completion", they do not measure speed.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use reqwest::blocking::Client;
use serde_json::{json, Map, Value};

const SCHEMA: &str =
    "CREATE TABLE page (id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, body BLOB, score REAL);";

/// Counts forever (no output row until the end).
const ENDLESS_COUNT: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";

/// Inserts forever.
const ENDLESS_INSERT: &str = "INSERT INTO page (url) SELECT 'http://x/' || x FROM \
     (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)";

/// A client that gives up long before an endless statement would end, so that a missing
/// deadline fails the test instead of hanging it.
fn impatient() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn send(req: reqwest::blocking::RequestBuilder) -> (reqwest::StatusCode, Value) {
    json_of(
        req.send()
            .expect("the server answers before the client's timeout"),
    )
}

fn count(s: &TestServer, id: &str) -> i64 {
    s.query_ok(id, "SELECT count(*) AS n FROM page")[0]["n"]
        .as_i64()
        .unwrap()
}

fn promote_ok(s: &TestServer, id: &str) {
    let (status, body) = json_of(
        s.client()
            .post(s.at(&format!("/segments/{id}/promote")))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "promote {id}: {body}");
}

fn wire(s: &TestServer, client: &Client, id: &str, sql: &str) -> (reqwest::StatusCode, Value) {
    send(
        client
            .post(s.at(&format!("/?segment={id}")))
            .body(sql.to_owned()),
    )
}

/// Defect 1: a write has a deadline; at it the statement is interrupted, the transaction rolled
/// back, the client gets 504 `write_timeout`, and the writer takes the next write and promote.
#[test]
fn endless_write_times_out_rolls_back_and_frees_the_writer() {
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__WRITE_TIMEOUT_MS", "1000")]);
    s.provision("h.w", &json!({ "schema_sql": SCHEMA }));
    s.execute_ok("h.w", "INSERT INTO page (url) VALUES ('http://a/')");
    let c = impatient();
    let path = s.at("/segments/h.w/execute");
    for sql in [ENDLESS_COUNT, ENDLESS_INSERT] {
        let started = Instant::now();
        let (status, body) = send(c.post(&path).body(sql));
        assert_error(status, &body, 504, "write_timeout");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sql}: answered after {:?}",
            started.elapsed()
        );
    }
    // The wire format's write path has the same deadline.
    let (status, body) = wire(&s, &c, "h.w", ENDLESS_INSERT);
    assert_error(status, &body, 504, "write_timeout");
    // A JSON batch too.
    let (status, body) = send(
        c.post(&path)
            .header("content-type", "application/json")
            .body(json!({"sql": ENDLESS_INSERT, "params": []}).to_string()),
    );
    assert_error(status, &body, 504, "write_timeout");

    // Nothing of the interrupted inserts remains, the writer is free, promote works.
    assert_eq!(count(&s, "h.w"), 1);
    s.execute_ok("h.w", "INSERT INTO page (url) VALUES ('http://b/')");
    assert_eq!(count(&s, "h.w"), 2);
    promote_ok(&s, "h.w");
}

/// Defect 2: temporary objects on the shared writer connection are refused, so no TEMP table
/// can shadow a real one and no TEMP trigger can eat later inserts.
#[test]
fn temporary_objects_are_refused_and_acknowledged_rows_stay() {
    let s = TestServer::start();
    s.provision("h.temp", &json!({ "schema_sql": SCHEMA }));
    let c = impatient();
    for sql in [
        "CREATE TEMP TABLE page (id INTEGER PRIMARY KEY, url TEXT, body BLOB, score REAL)",
        "CREATE TEMPORARY TABLE x (y)",
        "CREATE TABLE temp.page (id INTEGER PRIMARY KEY, url TEXT, body BLOB, score REAL)",
        "CREATE TABLE TEMP.x (y)",
        "CREATE TEMP TABLE x AS SELECT * FROM page",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE VIEW temp.v AS SELECT 1",
        "CREATE TEMP TRIGGER eat BEFORE INSERT ON page BEGIN SELECT RAISE(IGNORE); END",
        "CREATE TRIGGER temp.eat BEFORE INSERT ON page BEGIN SELECT RAISE(IGNORE); END",
        "INSERT INTO page (url) VALUES ('http://in-batch/'); CREATE TEMP TABLE x (y)",
    ] {
        let (status, body) = s.execute_text("h.temp", sql);
        assert_error(status, &body, 400, "forbidden_statement");
        let (status, body) = wire(&s, &c, "h.temp", sql);
        assert_error(status, &body, 400, "forbidden_statement");
    }
    // On the read path too (a pooled read connection is shared between requests).
    let (status, body) = s.query_text("h.temp", "CREATE TEMP TABLE x (y)");
    assert_error_any(
        status,
        &body,
        400,
        &["forbidden_statement", "not_read_only"],
    );

    // Every acknowledged insert is in the segment, for every reader and after promotion.
    for i in 0..5 {
        s.execute_ok(
            "h.temp",
            &format!("INSERT INTO page (url) VALUES ('http://{i}/')"),
        );
    }
    let (status, body) = wire(
        &s,
        &c,
        "h.temp",
        "INSERT INTO page (url) VALUES ('http://wire/')",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&s, "h.temp"), 6);
    promote_ok(&s, "h.temp");
    assert_eq!(count(&s, "h.temp"), 6);
}

/// Defect 10: the wire format runs a body as a write only when SQLite says it is not
/// read-only (or it holds several statements); a read that fails for any other reason answers
/// its error.
#[test]
fn wire_format_falls_back_to_a_write_only_when_not_read_only() {
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__QUERY__MAX_ROWS", "3")]);
    s.provision("h.wire", &json!({ "schema_sql": SCHEMA }));
    for i in 0..5 {
        s.execute_ok(
            "h.wire",
            &format!("INSERT INTO page (url) VALUES ('http://{i}/')"),
        );
    }
    let c = impatient();
    let (status, body) = wire(&s, &c, "h.wire", "SELECT * FROM page");
    assert_error(status, &body, 400, "result_too_large");
    let (status, body) = wire(&s, &c, "h.wire", "SELECT nope FROM page");
    assert_error(status, &body, 400, "sql_error");
    // Writes, single and several statements, still run as writes.
    let (status, body) = wire(
        &s,
        &c,
        "h.wire",
        "INSERT INTO page (url) VALUES ('http://a/'); INSERT INTO page (url) VALUES ('http://b/')",
    );
    assert_eq!((status.as_u16(), body), (200, json!("OK")));
    let (status, body) = wire(&s, &c, "h.wire", "SELECT count(*) AS n FROM page");
    assert_eq!((status.as_u16(), body), (200, json!([{"n": 7}])));
}

/// A stored segment `t(id)` with `rows` rows.
fn publish_ids(s: &TestServer, id: &str, rows: u32) {
    let f = SqliteFile::new(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY); \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT {rows}) \
         INSERT INTO t SELECT x FROM c;"
    ));
    let m = s.publish(id, f.bytes());
    s.wait_synced(id, m["version"].as_u64().unwrap());
}

/// Defect 5: the query deadline interrupts at the deadline even when each VM step is slow.
#[test]
fn query_deadline_interrupts_slow_steps_at_the_deadline() {
    let s = TestServer::start_with(
        &[],
        &[
            ("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "2000"),
            // Big enough for the 40 MB strings below: this test is about time, not length.
            ("TROUGH_LIMITS__SQLITE__MAX_LENGTH_BYTES", "100000000"),
        ],
    );
    publish_ids(&s, "h.slow", 400);
    let c = impatient();
    let started = Instant::now();
    let (status, body) = send(
        c.post(s.at("/segments/h.slow/query"))
            .body("SELECT sum(length(hex(zeroblob(20000000 + id % 2)))) AS n FROM t"),
    );
    assert_error(status, &body, 504, "query_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a 2 s deadline answered after {:?}",
        started.elapsed()
    );
}

/// Defects 5 and 6: values are limited to `limits.sqlite.max_length_bytes` (16 MiB by default):
/// a huge string or blob fails at once with 400 `too_big` and memory stays bounded.
#[test]
fn huge_values_fail_fast_with_too_big_and_memory_stays_bounded() {
    let s = TestServer::start();
    publish_ids(&s, "h.big", 10);
    s.provision("h.bigw", &json!({ "schema_sql": SCHEMA }));
    let c = impatient();
    let reads = [
        "SELECT length(printf('%.*c', 1000000000, 'x')) AS n",
        "SELECT length(zeroblob(1000000000)) AS n",
        "SELECT length(randomblob(1000000000)) AS n",
        "SELECT length(hex(zeroblob(20000000 + id % 2))) AS n FROM t",
        "SELECT length(replace(printf('%.*c', 10000000, 'x'), 'x', 'xxxxxxxx')) AS n",
    ];
    std::thread::scope(|scope| {
        // Three at a time, as in the issue's report.
        for _ in 0..3 {
            scope.spawn(|| {
                for sql in reads {
                    let (status, body) = send(c.post(s.at("/segments/h.big/query")).body(sql));
                    assert_error(status, &body, 400, "too_big");
                }
            });
        }
    });
    let (status, body) = s.execute_text(
        "h.bigw",
        "INSERT INTO page (url) VALUES (printf('%.*c', 1000000000, 'x'))",
    );
    assert_error(status, &body, 400, "too_big");
    assert_eq!(count(&s, "h.bigw"), 0);
    let rss = s.peak_rss_bytes();
    assert!(
        rss < 512 << 20,
        "peak RSS {} MiB with default limits",
        rss >> 20
    );
}

/// Defect 7: named parameters bind in linear time (20 000 of them), and the number of
/// parameters is limited.
#[test]
fn many_named_params_bind_quickly_and_are_limited() {
    let s = TestServer::start();
    publish_ids(&s, "h.params", 1);
    let n = 20_000;
    let names: Vec<String> = (0..n).map(|i| format!(":p{i}")).collect();
    let sql = format!("SELECT ({} IN ({})) AS hit", n - 1, names.join(","));
    let params: Map<String, Value> = (0..n).map(|i| (format!("p{i}"), json!(i))).collect();
    let c = impatient();
    let (status, body) = send(
        c.post(s.at("/segments/h.params/query"))
            .json(&json!({"sql": sql, "params": params})),
    );
    assert_eq!((status.as_u16(), body), (200, json!([{"hit": 1}])));

    // More parameters than `limits.sqlite.max_params` (default 32766).
    let many: Map<String, Value> = (0..40_000).map(|i| (format!("p{i}"), json!(i))).collect();
    let (status, body) = send(
        c.post(s.at("/segments/h.params/query"))
            .json(&json!({"sql": "SELECT :p0", "params": many})),
    );
    assert_error(status, &body, 400, "invalid_params");
    let names: Vec<String> = (0..40_000).map(|i| format!("?{}", i + 1)).collect();
    let (status, body) = send(
        c.post(s.at("/segments/h.params/query"))
            .body(format!("SELECT 1 IN ({})", names.join(","))),
    );
    assert_error(status, &body, 400, "sql_error");
}

fn dir_entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Defect 3: schema validation runs in a scratch database inside the data dir, with a deadline
/// and a size cap, and leaves nothing behind.
#[test]
fn schema_validation_has_a_deadline_and_a_size_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(
        &[],
        &[
            ("TMPDIR", tmp.path().to_str().unwrap()),
            ("TROUGH_LIMITS__SCHEMA_TIMEOUT_MS", "1000"),
            ("TROUGH_LIMITS__SCHEMA_MAX_BYTES", "4000000"),
        ],
    );
    let c = impatient();
    let endless = format!("CREATE TABLE t (x); INSERT INTO t {ENDLESS_COUNT};");
    let big = "CREATE TABLE t AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c \
               LIMIT 100000) SELECT x, randomblob(1000) AS b FROM c;";
    for sql in [endless.as_str(), big] {
        let started = Instant::now();
        let (status, body) = send(c.put(s.at("/schemas/hostile")).body(sql.to_owned()));
        assert_error(status, &body, 400, "invalid_schema");
        assert!(started.elapsed() < Duration::from_secs(10), "{sql}");
        let (status, body) = send(
            c.post(s.at("/segments/h.schema/provision"))
                .json(&json!({ "schema_sql": sql })),
        );
        assert_error(status, &body, 400, "invalid_schema");
    }
    let (status, body) = s.get_json("/schemas");
    assert_eq!((status.as_u16(), body), (200, json!({"schemas": []})));
    assert_eq!(dir_entries(tmp.path()), Vec::<String>::new(), "$TMPDIR");
    let scratch: Vec<String> = dir_entries(&s.data_dir().join("tmp"))
        .into_iter()
        .filter(|n| n != "sqlite")
        .collect();
    assert_eq!(scratch, Vec::<String>::new(), "left in <data_dir>/tmp");
    // A normal schema still registers.
    let (status, body) = s.put_text("/schemas/fine", SCHEMA);
    assert_eq!(status, 201, "{body}");
}

/// Defect 4: publishing runs `PRAGMA integrity_check`: an index that disagrees with its table is
/// refused with 400 `integrity_check_failed`.
#[test]
fn publish_refuses_an_index_that_disagrees_with_its_table() {
    let f = SqliteFile::new(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX tv ON t (v); \
         INSERT INTO t (v) VALUES ('needle-AAAA'), ('other-1'), ('other-2');",
    );
    let mut bytes = f.bytes();
    // The table's root page (2) comes before the index's (3): edit the table's copy only.
    let pos = bytes
        .windows(11)
        .position(|w| w == b"needle-AAAA")
        .expect("value in the file");
    bytes[pos + 7..pos + 11].copy_from_slice(b"BBBB");
    std::fs::write(&f.path, &bytes).unwrap();
    {
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        let quick: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(quick, "ok", "the damage is one quick_check does not see");
        let full: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_ne!(full, "ok", "integrity_check sees it");
    }
    let s = TestServer::start();
    let (status, body) = s.put_bytes("/segments/h.corrupt", bytes);
    assert_error(status, &body, 400, "integrity_check_failed");
    let (status, _) = s.get_json("/segments/h.corrupt");
    assert_eq!(status, 404);
}

/// Defect 11: SQLite's temporary files (sorts that spill) are created under the data dir, not
/// under `$TMPDIR`.
#[test]
fn sqlite_temp_files_stay_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(&[], &[("TMPDIR", tmp.path().to_str().unwrap())]);
    publish_ids(&s, "h.sort", 1);
    // A sort far bigger than the page cache spills to temporary files; a client that does not
    // read keeps the query (and its files) open.
    let body = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 300000) \
                SELECT x, randomblob(300) AS r FROM c ORDER BY r";
    let addr = s.url().trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /segments/h.sort/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let data_dir = std::fs::canonicalize(s.data_dir()).unwrap();
    let tmp_dir = std::fs::canonicalize(tmp.path()).unwrap();
    let mut outside = Vec::new();
    let mut seen = Vec::new();
    let inside = wait_until(Duration::from_secs(30), || {
        let files = s.open_files();
        seen.clone_from(&files);
        outside.extend(files.iter().filter(|p| p.starts_with(&tmp_dir)).cloned());
        // SQLite unlinks its temporary files at once: they show as deleted files.
        files.iter().any(|p| {
            p.starts_with(data_dir.join("tmp").join("sqlite"))
                && p.to_string_lossy().ends_with(" (deleted)")
        })
    });
    assert_eq!(
        outside,
        Vec::<std::path::PathBuf>::new(),
        "files under $TMPDIR"
    );
    assert!(
        inside,
        "no SQLite temporary file under <data_dir>/tmp; open files: {seen:?}"
    );
    drop(conn);
}

/// Defect 16: SIGTERM stops a process whose statements are stuck in SQLite, within the
/// configured grace period.
#[test]
fn sigterm_stops_a_process_stuck_in_sqlite() {
    let mut s = TestServer::start_with(
        &[],
        &[
            ("TROUGH_LIMITS__SHUTDOWN_GRACE_MS", "2000"),
            ("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "600000"),
            ("TROUGH_LIMITS__WRITE_TIMEOUT_MS", "600000"),
        ],
    );
    s.provision("h.stuck", &json!({ "schema_sql": SCHEMA }));
    let base = s.url().to_owned();
    let before = s.cpu_ticks();
    for path in ["/segments/h.stuck/execute", "/segments/h.stuck/query"] {
        let url = format!("{base}{path}");
        std::thread::spawn(move || {
            let _ = Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap()
                .post(url)
                .body(ENDLESS_COUNT)
                .send();
        });
    }
    // Both statements are running once the process burns CPU.
    assert!(
        wait_until(Duration::from_secs(30), || s.cpu_ticks() > before + 100),
        "the endless statements did not start"
    );
    s.sigterm();
    let started = Instant::now();
    let status = s.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM",
        started.elapsed()
    );
}

/// Defect 6: SQLite's memory in the process is bounded by `limits.sqlite.heap_limit_bytes`; a
/// statement past it fails with 503 `out_of_memory` and the node keeps serving.
#[test]
fn sqlite_heap_limit_answers_out_of_memory() {
    let s = TestServer::start_with(
        &[],
        &[("TROUGH_LIMITS__SQLITE__HEAP_LIMIT_BYTES", "40000000")],
    );
    publish_ids(&s, "h.heap", 3);
    let c = impatient();
    // Three 15 MB values in one row: each is under the length limit, together over the heap.
    let (status, body) = send(c.post(s.at("/segments/h.heap/query")).body(
        "SELECT randomblob(15000000) AS a, randomblob(15000000) AS b, randomblob(15000000) AS c",
    ));
    assert_error(status, &body, 503, "out_of_memory");
    assert_eq!(
        s.query_ok("h.heap", "SELECT count(*) AS n FROM t"),
        vec![json!({"n": 3})]
    );
}

/// Defect 11: no temporary file of any kind goes to `$TMPDIR`. With `$TMPDIR` pointing nowhere,
/// everything that spills still works: a sort bigger than the page cache, a cluster-wide query
/// whose per-segment answers are spooled to disk and merged in a temporary database, schema
/// validation.
#[test]
fn nothing_needs_tmpdir() {
    let s = TestServer::start_with(&[], &[("TMPDIR", "/nonexistent/trough-tmpdir")]);
    publish_ids(&s, "h.notmp-1", 20_000);
    publish_ids(&s, "h.notmp-2", 20_000);
    let rows = s.query_ok(
        "h.notmp-1",
        "SELECT count(*) AS n FROM (SELECT id, randomblob(300) AS r FROM t ORDER BY r)",
    );
    assert_eq!(rows, vec![json!({"n": 20_000})]);
    // Answers of 20 000 rows (over 64 KiB each) are spooled; GROUP BY merges in a database.
    let (status, body) = s.post_json(
        "/query",
        &json!({"sql": "SELECT id % 7 AS k, count(*) AS n FROM t GROUP BY k ORDER BY k",
                "segments": "h.notmp-*"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0], json!({"k": 0, "n": 2 * (20_000 / 7)}));
    let (status, body) = s.post_json(
        "/query",
        &json!({"sql": "SELECT id FROM t", "segments": "h.notmp-*"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(40_000));
    let (status, body) = s.put_text("/schemas/fine", SCHEMA);
    assert_eq!(status, 201, "{body}");
}
