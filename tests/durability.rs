//! Durability: acknowledged writes survive `kill -9`; a restart on the same data dir keeps every
//! segment, version and write.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn acknowledged_writes_survive_kill9() {
    let mut s = TestServer::start();
    s.provision(
        "d.kill",
        &json!({"schema_sql": "CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT, b BLOB);"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let refdb = rusqlite::Connection::open(dir.path().join("ref.sqlite")).unwrap();
    refdb
        .execute_batch("CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
        .unwrap();
    for i in 1..=30 {
        let sql = format!("INSERT INTO ev (v, b) VALUES ('event {i}', x'{i:02x}')");
        s.execute_ok("d.kill", &sql);
        refdb.execute_batch(&sql).unwrap();
    }
    let (status, body) = s.execute_json(
        "d.kill",
        &json!({"sql": "INSERT INTO ev (v) VALUES (?)", "batch": [["batch a"], ["batch b"], ["batch c"]]}),
    );
    assert_eq!(status, 200, "{body}");
    refdb
        .execute_batch("INSERT INTO ev (v) VALUES ('batch a'), ('batch b'), ('batch c');")
        .unwrap();
    // The very last acknowledged write, then SIGKILL immediately.
    s.execute_ok("d.kill", "UPDATE ev SET v = 'last' WHERE id = 1");
    refdb
        .execute_batch("UPDATE ev SET v = 'last' WHERE id = 1")
        .unwrap();
    s.kill9();

    s.restart();
    let sql = "SELECT * FROM ev ORDER BY id";
    assert_rows_eq(
        &s.query_ok("d.kill", sql),
        &sqlite_rows(&refdb, sql, &json!([])),
    );
    // Still writable after the restart, by this node.
    let (_, doc) = s.get_json("/segments/d.kill");
    assert_eq!(doc["writable"], true, "{doc}");
    assert_eq!(doc["writer"], s.node_name().as_str(), "{doc}");
    s.execute_ok("d.kill", "INSERT INTO ev (v) VALUES ('after restart')");
    assert_eq!(
        s.query_ok("d.kill", "SELECT count(*) AS n FROM ev"),
        vec![json!({"n": 34})]
    );
}

#[test]
fn restart_keeps_segments_versions_and_writes() {
    let mut s = TestServer::start();
    let v1 = SqliteFile::new("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('one');");
    let v2 = SqliteFile::new(SAMPLE_SQL);
    s.publish("d.stored", v1.bytes());
    s.publish("d.stored", v2.bytes());
    s.publish("d.other", v1.bytes());
    s.provision(
        "d.writable",
        &json!({"schema_sql": "CREATE TABLE w (a INTEGER, b REAL);"}),
    );
    s.execute_ok("d.writable", "INSERT INTO w VALUES (1, 1.5), (2, 2.0)");
    let r = s
        .client()
        .post(s.at("/segments/d.writable/promote"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    s.execute_ok("d.writable", "INSERT INTO w VALUES (3, NULL)");
    s.provision("d.never", &json!({}));
    s.put_text("/schemas/keep", "CREATE TABLE k (a);");

    let sql = "SELECT * FROM t ORDER BY id";
    s.query_ok("d.stored", "SELECT 1");
    let docs_before: Vec<Value> = ["d.stored", "d.other", "d.writable", "d.never"]
        .iter()
        .map(|id| s.get_json(&format!("/segments/{id}")).1)
        .collect();
    let list_before = s.get_json("/segments").1;

    s.restart();

    for (id, before) in ["d.stored", "d.other", "d.writable", "d.never"]
        .iter()
        .zip(&docs_before)
    {
        let (status, after) = s.get_json(&format!("/segments/{id}"));
        assert_eq!(status, 200, "{id} lost on restart: {after}");
        assert_eq!(
            after["versions"], before["versions"],
            "{id}: versions changed across restart"
        );
        assert_eq!(after["latest"], before["latest"], "{id}");
        assert_eq!(after["writable"], before["writable"], "{id}");
        assert_eq!(after["writer"], before["writer"], "{id}");
    }
    let mut ids_before: Vec<Value> = list_before["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let list_after = s.get_json("/segments").1;
    let mut ids_after: Vec<Value> = list_after["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    ids_before.sort_by_key(|v| v.to_string());
    ids_after.sort_by_key(|v| v.to_string());
    assert_eq!(ids_after, ids_before);
    assert_rows_eq(&s.query_ok("d.stored", sql), &v2.rows(sql, &json!([])));
    s.wait_synced("d.stored", 2);
    s.wait_synced("d.other", 1);
    assert_eq!(
        s.query_ok("d.other", "SELECT v FROM t"),
        vec![json!({"v": "one"})]
    );
    assert_rows_eq(
        &s.query_ok("d.writable", "SELECT * FROM w ORDER BY a"),
        &[
            json!({"a": 1, "b": 1.5}),
            json!({"a": 2, "b": 2.0}),
            json!({"a": 3, "b": null}),
        ],
    );
    let (status, schema) = s.get_json("/schemas/keep");
    assert_eq!(status, 200, "schema lost on restart: {schema}");
    // Versions keep counting from where they were.
    let m = s.publish("d.stored", v1.bytes());
    assert_eq!(m["version"], 3, "{m}");
}
