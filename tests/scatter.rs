//! Cluster-wide SQL through the HTTP API (`POST /query`) on `trough serve`: exact answers
//! compared with one SQLite database holding every row, the partial-result contract with a
//! segment that fails mid-query, refusals, selectors, NDJSON and the CLI.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs).

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
    let server = TestServer::in_process();
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
            json!({"queried": 6, "answered": 6, "failed": [], "not_permitted": 0})
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
        json!({"segments": {"queried": 2, "answered": 2, "failed": [], "not_permitted": 0}})
    );
}

#[test]
fn a_failing_segment_fails_the_query_unless_partial_is_allowed() {
    let s = TestServer::in_process();
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
    // The failure is the query's own (an integer overflow, as one database would raise it):
    // a 400 with SQLite's message, not a retryable 503.
    let (status, v) = scatter(&s, &json!({"sql": q, "segments": "*"}));
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        400,
        "sql_error",
    );
    assert_eq!(v["error"]["message"], "integer overflow", "{v}");

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

/// The data of issue 9: `r-0` holds (1,2); `r-1` holds (3,4) and (1,5); `r-2` is empty.
fn issue9_server() -> TestServer {
    let s = TestServer::in_process();
    let schema = "CREATE TABLE t(a INTEGER, b INTEGER);";
    for (id, rows) in [
        ("r-0", "INSERT INTO t VALUES (1, 2);"),
        ("r-1", "INSERT INTO t VALUES (3, 4), (1, 5);"),
        ("r-2", ""),
    ] {
        let m = s.publish(id, SqliteFile::new(&format!("{schema}{rows}")).bytes());
        s.wait_synced(id, m["version"].as_u64().unwrap());
    }
    s
}

fn sorted_rows(v: &Value) -> Vec<Value> {
    let mut rows = v["rows"].as_array().cloned().unwrap_or_default();
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[test]
fn issue_9_defects_answer_exactly_or_clearly() {
    let s = issue9_server();
    let q = |sql: &str| scatter(&s, &json!({"sql": sql, "segments": "r-*"}));
    // 1. DISTINCT aggregates without GROUP BY over no matching row: one row, SQLite's values.
    for (sql, want) in [
        (
            "SELECT count(DISTINCT a) AS n FROM t WHERE b > 100",
            json!([{"n": 0}]),
        ),
        (
            "SELECT sum(DISTINCT a) AS s, avg(DISTINCT a) AS v, min(DISTINCT a) AS lo, max(DISTINCT a) AS hi, total(DISTINCT a) AS t FROM t WHERE b > 100",
            json!([{"s": null, "v": null, "lo": null, "hi": null, "t": 0.0}]),
        ),
        (
            "SELECT count(*) AS c, count(DISTINCT a) AS n FROM t WHERE b > 100",
            json!([{"c": 0, "n": 0}]),
        ),
    ] {
        let (status, v) = q(sql);
        assert_eq!(status, 200, "{sql}: {v}");
        assert_eq!(v["rows"], want, "{sql}");
    }
    // 2. A result alias that is also a column means the column in WHERE, even when the alias
    //    reading would match nothing.
    let (status, v) = q("SELECT a AS b FROM t WHERE b > 3");
    assert_eq!(status, 200, "{v}");
    assert_eq!(sorted_rows(&v), [json!({"b": 1}), json!({"b": 3})]);
    let (status, v) = q("SELECT a AS b FROM t WHERE b > 100");
    assert_eq!((status, v["rows"].clone()), (200, json!([])), "{v}");
    // 3. Integer constants are values, not column numbers.
    let (status, v) = q("SELECT count(DISTINCT 8) AS n FROM t");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"n": 1}])), "{v}");
    let (status, v) = q("SELECT 7 AS k FROM t GROUP BY k");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"k": 7}])), "{v}");
    // `a` is a column: GROUP BY a groups by it (two groups), as in SQLite.
    let (status, v) = q("SELECT 7 AS a FROM t GROUP BY a");
    assert_eq!(
        (status, v["rows"].clone()),
        (200, json!([{"a": 7}, {"a": 7}])),
        "{v}"
    );
    // 4. A refusal in plain JSON mode is a complete 400 JSON document (a view in one segment is
    //    only known from the segment; the answer is refused before any row is sent).
    let v_sql = "CREATE TABLE u(a INTEGER, b INTEGER); CREATE VIEW t AS SELECT a, b FROM u;";
    let m = s.publish("v-0", SqliteFile::new(v_sql).bytes());
    s.wait_synced("v-0", m["version"].as_u64().unwrap());
    let resp = s
        .client()
        .post(s.at("/query"))
        .json(&json!({"sql": "SELECT a AS b FROM t WHERE b > 0", "segments": ["r-2", "v-0"]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["error"]["code"], "unsupported_scatter_query", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("view"));
    // 5. A segment's own client error keeps its kind: 400 with SQLite's message.
    for (sql, msg) in [
        ("SELECT zz FROM t", "no such column: zz"),
        ("SELECT a FROM nope", "no such table: nope"),
        (
            "SELECT abs(a - 9223372036854775807 - 2) FROM t",
            "integer overflow",
        ),
    ] {
        let (status, v) = q(sql);
        assert_eq!(status, 400, "{sql}: {v}");
        assert_eq!(v["error"]["code"], "sql_error", "{sql}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(msg),
            "{sql}: {v}"
        );
    }
    let (status, v) = scatter(
        &s,
        &json!({"sql": "SELECT a FROM t WHERE b > :x", "segments": "r-*"}),
    );
    assert_eq!(status, 400, "missing parameter: {v}");
    // 6. SQL SQLite reads but the planner cannot is gathered: answered as one database would,
    //    including SQLite's own error (t has two columns); not SQL at all: SQLite's syntax error.
    let (status, v) = q("SELECT 1 IN t");
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "sql_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sub-select returns 2 columns"),
        "{v}"
    );
    let (status, v) = q("SELECT 3 IN (SELECT a FROM t) AS x");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"x": 1}])), "{v}");
    let (status, v) = q("SELEC a FROM t");
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!("sql_error"))
    );
}

#[test]
fn columnar_answers_keep_duplicate_names_on_one_segment_and_cluster_wide() {
    let s = issue9_server();
    let columnar = |path: &str, body: Value| -> (u16, String, Value) {
        let resp = s
            .client()
            .post(s.at(path))
            .header("accept", "application/vnd.trough.columnar+json")
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        (
            status,
            ct,
            serde_json::from_str(&resp.text().unwrap()).unwrap(),
        )
    };
    // One segment.
    let (status, ct, v) = columnar(
        "/segments/r-1/query",
        json!({"sql": "SELECT a, a, b AS a FROM t ORDER BY b"}),
    );
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/vnd.trough.columnar+json")
    );
    assert_eq!(
        v,
        json!({"columns": ["a", "a", "a"], "rows": [[3, 3, 4], [1, 1, 5]]})
    );
    let (_, _, v) = columnar("/segments/r-2/query", json!({"sql": "SELECT b, a FROM t"}));
    assert_eq!(v, json!({"columns": ["b", "a"], "rows": []}));
    // Cluster-wide: the same shape, with the fan-out summary.
    let (status, ct, v) = columnar(
        "/query",
        json!({"sql": "SELECT a, a, b AS a FROM t ORDER BY b", "segments": "r-*"}),
    );
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/vnd.trough.columnar+json")
    );
    assert_eq!(v["columns"], json!(["a", "a", "a"]));
    assert_eq!(v["rows"], json!([[1, 1, 2], [3, 3, 4], [1, 1, 5]]));
    assert_eq!(v["segments"]["answered"], 3);
    let (_, _, v) = columnar(
        "/query",
        json!({"sql": "SELECT a, a, count(*) AS n FROM t GROUP BY a ORDER BY a", "segments": "r-*"}),
    );
    assert_eq!(v["columns"], json!(["a", "a", "n"]));
    assert_eq!(v["rows"], json!([[1, 1, 2], [3, 3, 1]]));
    // No row anywhere: the names are still SQLite's.
    for (sql, names) in [
        ("SELECT * FROM t WHERE b > 100", json!(["a", "b"])),
        (
            "SELECT B, a + 1, a AS x FROM t WHERE b > 100",
            json!(["b", "a + 1", "x"]),
        ),
        (
            "SELECT count(DISTINCT a) FROM t WHERE b > 100",
            json!(["count(DISTINCT a)"]),
        ),
    ] {
        let (status, _, v) = columnar("/query", json!({"sql": sql, "segments": "r-*"}));
        assert_eq!(status, 200, "{sql}: {v}");
        assert_eq!(v["columns"], names, "{sql}");
    }
}

#[test]
fn per_segment_mode_runs_the_statement_in_each_segment_and_tags_rows() {
    let s = issue9_server();
    let per = |sql: &str| {
        scatter(
            &s,
            &json!({"sql": sql, "segments": "r-*", "mode": "per_segment"}),
        )
    };
    // An aggregate: one row per segment, tagged, in segment order; nothing merged.
    let (status, v) = per("SELECT count(*) AS n FROM t");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([
            {"_segment": "r-0", "n": 1},
            {"_segment": "r-1", "n": 2},
            {"_segment": "r-2", "n": 0}
        ])
    );
    assert_eq!(v["segments"]["answered"], 3);
    // A join runs inside each segment (exact mode refuses it).
    let join = "SELECT x.a AS a, y.b AS b FROM t x JOIN t y ON x.a = y.a ORDER BY b";
    let (status, v) = per(join);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([
            {"_segment": "r-0", "a": 1, "b": 2},
            {"_segment": "r-1", "a": 3, "b": 4},
            {"_segment": "r-1", "a": 1, "b": 5}
        ])
    );
    // Exact mode gathers the join: the rows of every segment meet.
    let (status, v) = scatter(&s, &json!({"sql": join, "segments": "r-*"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 5, "{v}");
    // Columnar: `_segment` leads the columns.
    let resp = s
        .client()
        .post(s.at("/query"))
        .header("accept", "application/vnd.trough.columnar+json")
        .json(&json!({"sql": "SELECT a, a FROM t WHERE b > 3", "segments": "r-*", "mode": "per_segment"}))
        .send()
        .unwrap();
    let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert_eq!(v["columns"], json!(["_segment", "a", "a"]));
    assert_eq!(v["rows"], json!([["r-1", 3, 3], ["r-1", 1, 1]]));
    // Writes are refused, and change nothing.
    let (status, v) = per("DELETE FROM t");
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        400,
        "not_read_only",
    );
    let (_, v) = per("SELECT count(*) AS n FROM t");
    assert_eq!(v["rows"][1]["n"], 2);
    let (status, v) = scatter(
        &s,
        &json!({"sql": "SELECT 1", "segments": "r-*", "mode": "merged"}),
    );
    assert_eq!(status, 400, "unknown mode: {v}");
}
