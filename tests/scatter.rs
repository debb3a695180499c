//! Cluster-wide SQL through the HTTP API (`POST /query`) on `trough serve`: exact answers
//! compared with one SQLite database holding every row, the partial-result contract with a
//! segment that fails mid-query, refusals, selectors, NDJSON and the CLI.

mod common;

use common::{assert_error, sqlite_rows, SqliteFile, TestServer};
use serde_json::{json, Value};

const SCHEMA: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, g TEXT, a INTEGER, b REAL);";

/// Rows of segment `i`: deterministic, with NULLs, negatives and ties.
fn rows_sql(i: i64, n: i64) -> String {
    let mut s = String::new();
    for j in 0..n {
        let id = i * 100_000 + j;
        let g = if j % 7 == 0 {
            "NULL".to_owned()
        } else {
            format!("'g{}'", j % 4)
        };
        let a = if j % 11 == 0 {
            "NULL".to_owned()
        } else {
            ((j * 37 + i * 13) % 101 - 50).to_string()
        };
        let b = format!("{}.25", (j * 7 + i) % 19 - 9);
        s.push_str(&format!("INSERT INTO t VALUES ({id}, {g}, {a}, {b});"));
    }
    s
}

struct Fixture {
    server: TestServer,
    mono: rusqlite::Connection,
    _mono_file: SqliteFile,
}

fn fixture(segments: i64) -> Fixture {
    let server = TestServer::start();
    let mut all = String::from(SCHEMA);
    for i in 0..segments {
        let sql = format!("{SCHEMA}{}", rows_sql(i, 40 + i * 5));
        all.push_str(&rows_sql(i, 40 + i * 5));
        let f = SqliteFile::new(&sql);
        let m = server.publish(&format!("part-{i}"), f.bytes());
        server.wait_synced(&format!("part-{i}"), m["version"].as_u64().unwrap());
    }
    let mono_file = SqliteFile::new(&all);
    let mono = rusqlite::Connection::open(&mono_file.path).unwrap();
    Fixture {
        server,
        mono,
        _mono_file: mono_file,
    }
}

fn scatter(s: &TestServer, body: &Value) -> (u16, Value) {
    let (status, v) = s.post_json("/query", body);
    (status.as_u16(), v)
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        _ => a == b,
    }
}

fn assert_same(got: &[Value], want: &[Value], sql: &str) {
    assert_eq!(got.len(), want.len(), "{sql}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "{sql}"
        );
        for (k, gv) in g {
            assert!(
                close(gv, &w[k]),
                "{sql}: column {k}: got {gv}, want {}",
                w[k]
            );
        }
    }
}

#[test]
fn answers_equal_one_database() {
    let f = fixture(6);
    let queries = [
        "SELECT count(*) AS n, count(a) AS na, sum(a) AS s, total(a) AS t, min(b) AS lo, max(b) AS hi, avg(a) AS av FROM t",
        "SELECT g, count(*) AS n, sum(a) AS s, avg(b) AS av FROM t GROUP BY g ORDER BY g",
        "SELECT g, sum(a) / count(*) AS ratio FROM t WHERE a IS NOT NULL GROUP BY g HAVING count(*) > 20 ORDER BY g",
        "SELECT id, a FROM t ORDER BY a DESC, id ASC LIMIT 7 OFFSET 3",
        "SELECT count(DISTINCT g) AS dg, count(DISTINCT a) AS da FROM t",
        "SELECT DISTINCT g FROM t ORDER BY g",
        "SELECT a % 3 AS k, max(b) - min(b) AS spread FROM t GROUP BY a % 3 ORDER BY k",
        "SELECT id FROM t WHERE b < -8 ORDER BY id",
    ];
    for sql in queries {
        let (status, v) = scatter(&f.server, &json!({"sql": sql, "segments": "*"}));
        assert_eq!(status, 200, "{sql}: {v}");
        let want = sqlite_rows(&f.mono, sql, &Value::Null);
        assert_same(v["rows"].as_array().unwrap(), &want, sql);
        assert_eq!(
            v["segments"],
            json!({"queried": 6, "answered": 6, "failed": []})
        );
    }
    // Parameters go to every segment and to the merge.
    let sql =
        "SELECT g, count(*) AS n FROM t WHERE a > ? GROUP BY g HAVING count(*) > ? ORDER BY g";
    let (status, v) = scatter(
        &f.server,
        &json!({"sql": sql, "params": [0, 5], "segments": "part-*"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_same(
        v["rows"].as_array().unwrap(),
        &sqlite_rows(&f.mono, sql, &json!([0, 5])),
        sql,
    );
}

#[test]
fn ndjson_streams_rows_then_the_summary() {
    let f = fixture(3);
    let resp = f
        .server
        .client()
        .post(f.server.at("/query"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"sql": "SELECT id FROM t ORDER BY id LIMIT 5", "segments": ["part-0", "part-2"]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], json!({"id": 0}));
    assert_eq!(
        lines[5],
        json!({"segments": {"queried": 2, "answered": 2, "failed": []}})
    );
}

#[test]
fn a_failing_segment_fails_the_query_unless_partial_is_allowed() {
    let s = TestServer::start();
    let mut sizes = Vec::new();
    for i in 0..3 {
        // Segment 1 holds, after 3000 good rows, a value whose abs() overflows: it fails
        // mid-scan, after it already streamed rows.
        let mut sql = String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);");
        sql.push_str("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) INSERT INTO t SELECT x, -x FROM c;");
        if i == 1 {
            sql.push_str("INSERT INTO t VALUES (999999, -9223372036854775808);");
        }
        let m = s.publish(&format!("seg-{i}"), SqliteFile::new(&sql).bytes());
        s.wait_synced(&format!("seg-{i}"), 1);
        sizes.push(m["size"].clone());
    }
    let q = "SELECT id, abs(v) AS av FROM t";
    let (status, v) = scatter(&s, &json!({"sql": q, "segments": "*"}));
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        503,
        "segments_failed",
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("seg-1") && !msg.contains("seg-0") && !msg.contains("seg-2"),
        "{msg}"
    );

    let (status, v) = scatter(&s, &json!({"sql": q, "segments": "*", "partial": "allow"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"].as_array().unwrap().len(),
        6000,
        "the two good segments' rows"
    );
    assert_eq!(v["segments"]["queried"], 3);
    assert_eq!(v["segments"]["answered"], 2);
    let failed = v["segments"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], "seg-1");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("overflow"),
        "{failed:?}"
    );

    // Aggregates over the answering segments only, and said so.
    let (status, v) = scatter(
        &s,
        &json!({"sql": "SELECT count(*) AS n, sum(abs(v)) AS s FROM t", "segments": "*", "partial": "allow"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([{"n": 6000, "s": 2 * (3000 * 3001 / 2)}]));
    assert_eq!(v["segments"]["failed"][0]["id"], "seg-1");
}

#[test]
fn refusals_and_bad_requests() {
    let f = fixture(2);
    // Joins, window functions and UNION are answered by gathering (tests/scatter_gather.rs).
    for sql in [
        "SELECT group_concat(a.g) FROM t a JOIN t b ON a.id = b.id",
        "SELECT random() FROM t",
        "SELECT id FROM t UNION SELECT random()",
    ] {
        let (status, v) = scatter(&f.server, &json!({"sql": sql, "segments": "*"}));
        assert_eq!(status, 400, "{sql}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().len() > 10,
            "says why: {v}"
        );
    }
    let (status, v) = scatter(&f.server, &json!({"sql": "DELETE FROM t", "segments": "*"}));
    assert_eq!(status, 400, "{v}");
    let (status, v) = scatter(
        &f.server,
        &json!({"sql": "SELECT id FROM t", "segments": ["nope"]}),
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = scatter(
        &f.server,
        &json!({"sql": "SELECT id FROM t", "segments": {"regex": "("}}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = scatter(
        &f.server,
        &json!({"sql": "SELECT id FROM t", "segments": ["../etc"]}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = f.server.post_text("/query", "not json");
    assert_eq!(status, 400);
    // Nothing changed: the data is all still there.
    let (status, v) = scatter(
        &f.server,
        &json!({"sql": "SELECT count(*) AS n FROM t", "segments": "*"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        v["rows"],
        json!(sqlite_rows(
            &f.mono,
            "SELECT count(*) AS n FROM t",
            &Value::Null
        ))
    );
}

#[test]
fn cli_query_all_and_segments() {
    let f = fixture(3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trough"))
        .args([
            "query",
            "--all",
            "SELECT count(*) AS n FROM t",
            "--url",
            f.server.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["rows"],
        json!(sqlite_rows(
            &f.mono,
            "SELECT count(*) AS n FROM t",
            &Value::Null
        ))
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trough"))
        .args([
            "query",
            "--segments",
            "regex:part-[01]",
            "SELECT count(*) AS n FROM t",
            "--url",
            f.server.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["segments"]["queried"], 2);
}
