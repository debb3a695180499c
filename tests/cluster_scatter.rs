//! End-to-end: cluster-wide SQL (`POST /query`) through a router that holds no data, over
//! segments spread across real reader processes, compared with one SQLite database holding every
//! row; and the partial-result contract when the only holder of some segments is killed.

mod common;

use common::cluster::{make_segment, TestCluster};
use common::{sqlite_rows, SqliteFile};
use serde_json::{json, Value};

#[test]
fn scatter_over_a_cluster_is_exact_and_never_silently_partial() {
    // RF 1: killing a reader makes its segments unavailable.
    let mut c = TestCluster::start(3, 1);
    let n = 6;
    let files: Vec<_> = (0..n).map(make_segment).collect();
    let ids: Vec<String> = (0..n).map(|i| format!("sc-{i}")).collect();
    for (id, f) in ids.iter().zip(&files) {
        c.publish(id, f.bytes());
    }
    for id in &ids {
        c.wait_replicated(id, 1);
    }
    // One monolithic database with every segment's rows, to compare with.
    let mono = rusqlite::Connection::open_in_memory().unwrap();
    for (i, f) in files.iter().enumerate() {
        mono.execute_batch(&format!(
            "ATTACH '{}' AS s{i}; {} INSERT INTO main.t SELECT * FROM s{i}.t; DETACH s{i};",
            f.path.display(),
            if i == 0 {
                "CREATE TABLE main.t AS SELECT * FROM s0.t WHERE 0;"
            } else {
                ""
            },
        ))
        .unwrap();
    }
    let table_sql: String = mono
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 't'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let cols: Vec<String> = mono
        .prepare("SELECT name FROM pragma_table_info('t') ORDER BY cid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!cols.is_empty(), "{table_sql}");
    let first = &cols[0];
    let queries = [
        "SELECT count(*) AS n FROM t".to_owned(),
        format!("SELECT {first} FROM t ORDER BY {first} DESC LIMIT 5"),
        format!(
            "SELECT count(DISTINCT {first}) AS d, min({first}) AS lo, max({first}) AS hi FROM t"
        ),
        // Gathered (a join, a subquery): rows travel from the readers to the router.
        format!("SELECT count(*) AS n FROM t a JOIN t b ON a.{first} = b.{first}"),
        format!("SELECT count(*) AS n FROM t WHERE {first} IN (SELECT max({first}) FROM t)"),
    ];
    let router = c.router_url();
    for sql in &queries {
        let (status, v) = c.post_json(&router, "/query", &json!({"sql": sql, "segments": "sc-*"}));
        assert_eq!(status, 200, "{sql}: {v}");
        assert_eq!(
            v["rows"],
            Value::Array(sqlite_rows(&mono, sql, &Value::Null)),
            "{sql}"
        );
        assert_eq!(v["segments"]["answered"], n);
    }

    // A segment's own error on a remote reader keeps its kind: before output (no such column)
    // and after output started (an overflow on a late row, past the first chunk).
    let mut sql = String::from("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER);");
    sql.push_str("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO t SELECT x, -x FROM c;");
    sql.push_str("INSERT INTO t VALUES (999999, -9223372036854775808);");
    c.publish("ov-0", SqliteFile::new(&sql).bytes());
    c.wait_replicated("ov-0", 1);
    for (q, msg) in [
        ("SELECT id, abs(v) AS av FROM t", "integer overflow"),
        ("SELECT nope FROM t", "no such column: nope"),
    ] {
        let (status, v) = c.post_json(&router, "/query", &json!({"sql": q, "segments": ["ov-0"]}));
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "sql_error", "{q}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(msg),
            "{q}: {v}"
        );
    }

    // Kill one reader: the segments only it held cannot answer.
    let victim = c.holders(&ids[0])[0].clone();
    let lost: Vec<String> = ids
        .iter()
        .filter(|id| c.holders(id) == vec![victim.clone()])
        .cloned()
        .collect();
    assert!(!lost.is_empty());
    c.kill9(&victim);
    let body = json!({"sql": "SELECT count(*) AS n FROM t", "segments": "sc-*"});
    let (status, v) = c.post_json(&router, "/query", &body);
    assert_eq!(status, 503, "default: no partial answer: {v}");
    assert_eq!(v["error"]["code"], "segments_failed");
    let msg = v["error"]["message"].as_str().unwrap();
    for id in &lost {
        assert!(msg.contains(id.as_str()), "{msg} names {id}");
    }

    let mut partial = body.clone();
    partial["partial"] = json!("allow");
    let (status, v) = c.post_json(&router, "/query", &partial);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["segments"]["answered"], n - lost.len());
    let failed: Vec<&str> = v["segments"]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, lost.iter().map(String::as_str).collect::<Vec<_>>());

    // The count is exactly the rows of the segments that answered.
    let want: i64 = ids
        .iter()
        .zip(&files)
        .filter(|(id, _)| !lost.contains(id))
        .map(|(_, f)| {
            let conn = rusqlite::Connection::open(&f.path).unwrap();
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap()
        })
        .sum();
    assert_eq!(v["rows"], json!([{"n": want}]));

    // The same contract for a gathered query.
    let join = format!("SELECT count(*) AS n FROM t a JOIN t b ON a.{first} = b.{first}");
    let body = json!({"sql": join, "segments": "sc-*"});
    let (status, v) = c.post_json(&router, "/query", &body);
    assert_eq!(status, 503, "gathered, default: no partial answer: {v}");
    assert_eq!(v["error"]["code"], "segments_failed");
    let mut partial = body.clone();
    partial["partial"] = json!("allow");
    let (status, v) = c.post_json(&router, "/query", &partial);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["segments"]["answered"], n - lost.len());
    assert_eq!(
        v["segments"]["failed"].as_array().unwrap().len(),
        lost.len()
    );
}
