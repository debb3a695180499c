//! Cluster-wide SQL answered by gathering (`POST /query` for joins, subqueries, compound SELECTs,
//! CTEs, views and queries without FROM): every answer is compared with one SQLite database
//! holding every segment's rows (rusqlite, here), plus the refusals, the schema check and the
//! disk budget of the merge.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs).

mod common;

use common::{assert_error, same_json, sqlite_rows, SqliteFile, TestServer};
use serde_json::{json, Value};

const SCHEMA: &str = "
CREATE TABLE t1(a INTEGER PRIMARY KEY, b INTEGER, c TEXT);
CREATE TABLE t2(x INTEGER, y TEXT COLLATE NOCASE, z REAL, w BLOB);
CREATE INDEX t2x ON t2(x);
CREATE VIEW v AS SELECT b, count(*) AS n, max(c) AS mc FROM t1 GROUP BY b;
";

/// Rows of segment `i` of `n` (segment `n - 1` is empty).
fn rows_sql(i: i64, n: i64) -> String {
    let mut s = String::new();
    if i == n - 1 {
        return s;
    }
    for j in 0..30 {
        let a = i * 1000 + j;
        let b = if j % 9 == 0 {
            "NULL".to_owned()
        } else {
            ((j * 7 + i) % 11).to_string()
        };
        let c = if j % 5 == 0 {
            "NULL".to_owned()
        } else {
            format!("'c{}'", (j + i) % 6)
        };
        s.push_str(&format!("INSERT INTO t1 VALUES ({a}, {b}, {c});"));
    }
    let reals = [
        "0.1",
        "-0.0",
        "1e300",
        "1.0/3",
        "2.5",
        "-7.25",
        "NULL",
        "4611686018427387904.0",
    ];
    let texts = ["'abc'", "'ABC'", "'Abc '", "NULL", "'x'", "'12'", "'ü'"];
    for j in 0..20 {
        let x = if j % 8 == 0 {
            "NULL".to_owned()
        } else {
            ((j * 3 + i * 5) % 13).to_string()
        };
        let y = texts[((j + i) % 7) as usize];
        let z = reals[((j * 5 + i) % 8) as usize];
        let w = if j % 3 == 0 {
            "x'00ff10'".to_owned()
        } else {
            "NULL".to_owned()
        };
        s.push_str(&format!("INSERT INTO t2 VALUES ({x}, {y}, {z}, {w});"));
    }
    // A large integer (beyond 2^53) travels exactly.
    s.push_str(&format!(
        "INSERT INTO t2 VALUES ({}, 'big', 0.5, NULL);",
        9007199254740993i64 + i
    ));
    s
}

struct Fixture {
    server: TestServer,
    mono: rusqlite::Connection,
    _mono_file: SqliteFile,
}

const SEGMENTS: i64 = 4;

fn fixture() -> Fixture {
    let server = TestServer::in_process();
    let mut all = String::from(SCHEMA);
    for i in 0..SEGMENTS {
        let rows = rows_sql(i, SEGMENTS);
        all.push_str(&rows);
        let f = SqliteFile::new(&format!("{SCHEMA}{rows}"));
        let m = server.publish(&format!("r-{i}"), f.bytes());
        server.wait_synced(&format!("r-{i}"), m["version"].as_u64().unwrap());
    }
    let mono_file = SqliteFile::new(&all);
    let mono = rusqlite::Connection::open(&mono_file.path).unwrap();
    Fixture {
        server,
        mono,
        _mono_file: mono_file,
    }
}

fn post(s: &TestServer, body: &Value) -> (u16, Value) {
    let (status, v) = s.post_json("/query", body);
    (status.as_u16(), v)
}

/// Posts with `Accept: application/x-ndjson`; returns the status and, on success, the answer in
/// the shape of a JSON answer (`{"rows": [...], "segments": {...}}`).
fn post_ndjson(s: &TestServer, body: &Value) -> (u16, Value) {
    let resp = s
        .client()
        .post(s.at("/query"))
        .header("accept", "application/x-ndjson")
        .json(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    if status != 200 {
        return (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        );
    }
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    (
        status,
        json!({"rows": lines, "segments": summary["segments"]}),
    )
}

/// Floats may differ in the last bits only where SQLite adds them up (sum, avg over a join),
/// because the merge database visits rows in another order.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        _ => same_json(a, b),
    }
}

fn key(row: &Value) -> String {
    row.to_string()
}

/// Runs `sql` over every segment and on the monolith; compares column names and rows (in order
/// when `ordered`, else as multisets).
#[track_caller]
fn check(f: &Fixture, sql: &str, params: Value, ordered: bool) {
    let mut body = json!({"sql": sql, "segments": "r-*"});
    if !params.is_null() {
        body["params"] = params.clone();
    }
    // NDJSON: the rows of a query the scatter planner accepts but a segment's guard refuses (a
    // view, a declared COLLATE) are gathered too; in plain JSON that depends on the refusal
    // arriving before any output.
    let (status, v) = post_ndjson(&f.server, &body);
    assert_eq!(status, 200, "{sql}: {v}");
    assert_eq!(
        v["segments"],
        json!({"queried": SEGMENTS, "answered": SEGMENTS, "failed": [], "not_permitted": 0}),
        "{sql}"
    );
    let mut got = v["rows"].as_array().unwrap().clone();
    let mut want = sqlite_rows(&f.mono, sql, &params);
    assert!(
        !want.is_empty() || sql.contains("EXCEPT"),
        "{sql}: a test query should return rows"
    );
    if !ordered {
        got.sort_by_key(key);
        want.sort_by_key(key);
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{sql}\n got: {got:?}\nwant: {want:?}"
    );
    for (g, w) in got.iter().zip(&want) {
        let (go, wo) = (g.as_object().unwrap(), w.as_object().unwrap());
        assert_eq!(
            go.keys().collect::<Vec<_>>(),
            wo.keys().collect::<Vec<_>>(),
            "{sql}: column names"
        );
        for ((k, gv), wv) in go.iter().zip(wo.values()) {
            assert!(
                close(gv, wv),
                "{sql}: column {k}: got {gv}, want {wv}\n got: {g}\nwant: {w}"
            );
        }
    }
}

#[test]
fn gathered_queries_equal_one_database() {
    let f = fixture();
    let unordered = [
        // joins
        "SELECT t1.a, t1.c, t2.y, t2.z FROM t1 JOIN t2 ON t1.b = t2.x",
        "SELECT t1.a, t2.z, t2.w FROM t1 LEFT JOIN t2 ON t1.b = t2.x AND t2.z > 0",
        "SELECT t1.a FROM t1 LEFT JOIN t2 ON t1.b = t2.x WHERE t2.x IS NULL",
        "SELECT p.a AS pa, q.a AS qa FROM t1 p, t1 q WHERE p.b = q.b AND p.a < q.a AND p.c = 'c1'",
        "SELECT t2.y, count(*) AS n, sum(t1.a) AS s FROM t1, t2 WHERE t1.b = t2.x GROUP BY t2.y",
        "SELECT * FROM t2 WHERE y = 'abc'",
        "SELECT t1.a, t2.y FROM t1 JOIN t2 ON t1.b = t2.x WHERE t2.y = 'abc'",
        // subqueries
        "SELECT a, (SELECT count(*) FROM t2 WHERE t2.x = t1.b) AS n FROM t1",
        "SELECT a FROM t1 WHERE b > (SELECT avg(x) FROM t2 WHERE x < 100)",
        "SELECT a FROM t1 WHERE b IN (SELECT x FROM t2 WHERE z > 0)",
        "SELECT a FROM t1 WHERE b NOT IN (SELECT x FROM t2 WHERE x > 4)",
        "SELECT a FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE x = t1.b AND y = 'abc')",
        "SELECT a FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE x = t1.b)",
        "SELECT s.b, s.n FROM (SELECT b, count(*) AS n FROM t1 GROUP BY b) AS s WHERE s.n > 2",
        // compound
        "SELECT b FROM t1 UNION SELECT x FROM t2",
        "SELECT b FROM t1 UNION ALL SELECT x FROM t2",
        "SELECT b FROM t1 INTERSECT SELECT x FROM t2",
        "SELECT x FROM t2 EXCEPT SELECT b FROM t1",
        "SELECT c FROM t1 UNION SELECT y FROM t2",
        // CTEs
        "WITH s AS (SELECT b, count(*) AS n FROM t1 GROUP BY b) SELECT * FROM s WHERE n > 1",
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 12) SELECT i, (SELECT count(*) FROM t1 WHERE b = i) AS n FROM k",
        "WITH t1 AS (SELECT x AS a FROM t2) SELECT a FROM t1",
        // a view, alone and joined
        "SELECT * FROM v",
        "SELECT v.b, v.n, t2.y FROM v JOIN t2 ON v.b = t2.x",
        // the alias-shadowing case the scatter planner cannot plan
        "SELECT a AS b FROM t1 WHERE b > 3",
        // values travel exactly: reals, blobs, large integers, -0.0
        "SELECT t2.* FROM t2 JOIN t1 ON t1.b = t2.x",
        "SELECT x, z, typeof(z) AS tz, hex(w) AS hw FROM t2 WHERE x IN (SELECT b FROM t1)",
    ];
    for sql in unordered {
        check(&f, sql, Value::Null, false);
    }
    let ordered = [
        "SELECT t1.a, t2.z FROM t1 JOIN t2 ON t1.b = t2.x ORDER BY t1.a, t2.z, t2.y LIMIT 10 OFFSET 5",
        "SELECT b FROM t1 UNION SELECT x FROM t2 ORDER BY 1 DESC",
        "SELECT 1 + 2 AS three, 'x' || 'y', typeof(1.0) AS t, 7 / 2",
        "SELECT (SELECT max(a) FROM t1) AS hi, (SELECT count(*) FROM t2) AS n",
        "SELECT b, count(*) AS n FROM t1 WHERE b IN (SELECT x FROM t2) GROUP BY b ORDER BY n DESC, b",
    ];
    for sql in ordered {
        check(&f, sql, Value::Null, true);
    }
    // Parameters, positional and named, bound in the merge database.
    check(
        &f,
        "SELECT t1.a, t2.y FROM t1 JOIN t2 ON t1.b = t2.x WHERE t1.b > ? AND t2.z < ?",
        json!([3, 2.0]),
        false,
    );
    check(
        &f,
        "SELECT a FROM t1 WHERE b IN (SELECT x FROM t2 WHERE y = :y) ORDER BY a",
        json!({"y": "ABC"}),
        true,
    );
    check(&f, "SELECT :v + 1 AS n", json!({"v": 41}), true);
}

#[test]
fn ndjson_and_partial_selection() {
    let f = fixture();
    let resp = f
        .server
        .client()
        .post(f.server.at("/query"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"sql": "SELECT count(*) AS n FROM t1 JOIN t2 ON t1.b = t2.x", "segments": ["r-0", "r-3"]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = SqliteFile::new(&format!("{SCHEMA}{}", rows_sql(0, SEGMENTS))).rows(
        "SELECT count(*) AS n FROM t1 JOIN t2 ON t1.b = t2.x",
        &Value::Null,
    );
    assert_eq!(lines[0], want[0], "{text}");
    assert_eq!(
        lines[1],
        json!({"segments": {"queried": 2, "answered": 2, "failed": [], "not_permitted": 0}})
    );
}

#[test]
fn refusals_and_errors_name_their_reason() {
    let f = fixture();
    // A pattern that matches nothing: an empty answer, as for every /query.
    let (status, v) = post(
        &f.server,
        &json!({"sql": "SELECT * FROM t1 JOIN t2 ON t1.b = t2.x", "segments": "none-*"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"rows": [], "segments": {"queried": 0, "answered": 0, "failed": [], "not_permitted": 0}})
    );
    let refused = [
        (
            "SELECT t2.rowid, t1.a FROM t1 JOIN t2 ON t1.b = t2.x",
            "rowid",
        ),
        (
            "SELECT a FROM t1 WHERE b IN (SELECT x FROM t2 WHERE z > random())",
            "random",
        ),
        (
            "SELECT group_concat(y) FROM t1 JOIN t2 ON t1.b = t2.x",
            "order",
        ),
        (
            "SELECT name FROM sqlite_schema WHERE name IN (SELECT c FROM t1)",
            "sqlite_schema",
        ),
    ];
    for (sql, why) in refused {
        let (status, v) = post(&f.server, &json!({"sql": sql, "segments": "r-*"}));
        assert_error(
            reqwest::StatusCode::from_u16(status).unwrap(),
            &v,
            400,
            "unsupported_scatter_query",
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{sql}: {msg}");
    }
    // The query's own errors are SQLite's, as one database would say them.
    for sql in [
        "SELECT * FROM t1 JOIN nosuch ON 1",
        "SELECT nosuch FROM t1 JOIN t2 ON 1",
        "SELECT a FROM t1 UNION SELECT x, y FROM t2",
    ] {
        let (status, v) = post(&f.server, &json!({"sql": sql, "segments": "r-*"}));
        assert_error(
            reqwest::StatusCode::from_u16(status).unwrap(),
            &v,
            400,
            "sql_error",
        );
    }
}

#[test]
fn differing_schemas_are_refused_and_colliding_keys_are_a_union() {
    let s = TestServer::in_process();
    let segments = [
        ("d-0", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u(k INTEGER); INSERT INTO t VALUES (1, 'a');"),
        ("d-1", "CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER); CREATE TABLE u(k INTEGER); INSERT INTO t VALUES (2, 3);"),
        ("k-0", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');"),
        ("k-1", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'b');"),
    ];
    for (id, sql) in segments {
        let m = s.publish(id, SqliteFile::new(sql).bytes());
        s.wait_synced(id, m["version"].as_u64().unwrap());
    }
    let q = "SELECT t.v FROM t JOIN u ON t.k = u.k";
    let (status, v) = post(&s, &json!({"sql": q, "segments": "d-*"}));
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        400,
        "unsupported_scatter_query",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("defined differently"),
        "{v}"
    );
    // Tables the query does not read may differ.
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT count(*) AS n FROM u, u AS u2", "segments": "d-*"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([{"n": 0}]));
    // The same primary key in two segments: the merge holds the union of the rows (keys are
    // not enforced across segments)…
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT a.v AS av, b.v AS bv FROM t a JOIN t b ON a.k = b.k ORDER BY 1, 2", "segments": "k-*"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([{"av": "a", "bv": "a"}, {"av": "a", "bv": "b"}, {"av": "b", "bv": "a"}, {"av": "b", "bv": "b"}])
    );
    // …unless the query names the rowid, which that INTEGER PRIMARY KEY is: no database could
    // hold those rows with those rowids.
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT a.v FROM t a JOIN t b ON a.rowid = b.k", "segments": "k-*"}),
    );
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        400,
        "unsupported_scatter_query",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PRIMARY KEY"),
        "{v}"
    );
}

#[test]
fn a_gather_past_the_disk_budget_is_merge_too_large() {
    let s = TestServer::in_process_with(&[(
        "TROUGH_LIMITS__SCATTER__MERGE_DISK_BUDGET_BYTES",
        "1048576",
    )]);
    for i in 0..2 {
        let sql = "CREATE TABLE t(k INTEGER, pad TEXT); CREATE TABLE u(k INTEGER); \
            INSERT INTO u VALUES (3), (5000); \
            WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) \
            INSERT INTO t SELECT x, printf('%.200c', 'p') FROM c;";
        let id = format!("big-{i}");
        let m = s.publish(&id, SqliteFile::new(sql).bytes());
        s.wait_synced(&id, m["version"].as_u64().unwrap());
    }
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT count(*) FROM t a JOIN t b ON a.k = b.k", "segments": "big-*"}),
    );
    assert_error(
        reqwest::StatusCode::from_u16(status).unwrap(),
        &v,
        400,
        "merge_too_large",
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1048576"),
        "{v}"
    );
    // A small gather fits.
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT count(*) AS n FROM t a JOIN t b ON a.k = b.k WHERE a.k < 10", "segments": ["big-0"]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([{"n": 9}]));
    // A filter on one table of a join runs in the segments: only the matching rows travel, so
    // the same tables over both segments fit.
    let (status, v) = post(
        &s,
        &json!({"sql": "SELECT t.k, length(t.pad) AS l FROM t, u WHERE t.k = u.k AND t.k < 10", "segments": "big-*"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([{"k": 3, "l": 200}, {"k": 3, "l": 200}, {"k": 3, "l": 200}, {"k": 3, "l": 200}])
    );
}
