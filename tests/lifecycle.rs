//! A dataset's life: delete, describe, labels and listing filters, selection by schema and
//! label in cluster-wide queries, restore, retention and the garbage collector (issue 14).
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs); the
//! same delete against a Consul + S3 cluster is in tests/cluster_lifecycle.rs, and the
//! collector's crash and grace-period cases, with a controlled clock, in
//! crates/store/src/gc_tests.rs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn delete(s: &TestServer, path: &str) -> (StatusCode, Value) {
    json_of(s.client().delete(s.at(path)).send().expect("DELETE"))
}

fn patch(s: &TestServer, path: &str, body: &Value) -> (StatusCode, Value) {
    json_of(
        s.client()
            .patch(s.at(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("PATCH"),
    )
}

fn objects(s: &TestServer) -> PathBuf {
    s.data_dir().join("objects")
}

/// Files under `dir` (recursively), relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn listed_ids(s: &TestServer, query: &str) -> Vec<String> {
    let (status, body) = s.get_json(&format!("/segments{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    body["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn held(s: &TestServer, id: &str) -> bool {
    let (_, health) = s.get_json(HEALTH_SEGMENTS);
    health["segments"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["id"] == id))
}

#[test]
fn delete_removes_a_read_only_segment_everywhere_and_the_id_can_be_published_again() {
    let s = TestServer::in_process();
    let v1 = SqliteFile::new("CREATE TABLE t (x); INSERT INTO t VALUES ('one');");
    let v2 = SqliteFile::new("CREATE TABLE t (x); INSERT INTO t VALUES ('two');");
    s.publish("del-ro", v1.bytes());
    s.publish("del-ro", v2.bytes());
    s.publish("del-keep", v1.bytes());
    s.wait_synced("del-ro", 2);
    let versions = objects(&s).join("segments/del-ro/versions");
    assert_eq!(files(&versions).len(), 2);

    let (status, body) = delete(&s, "/segments/del-ro");
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, json!(""), "204 has no body");
    let (status, body) = s.get_json("/segments/del-ro");
    assert_error(status, &body, 404, "segment_not_found");
    assert!(files(&versions).is_empty(), "manifests are deleted at once");
    assert_eq!(
        files(&objects(&s).join("segments/del-ro/data")).len(),
        2,
        "data objects wait for the garbage collector's grace period"
    );
    assert!(
        wait_until(SYNC_TIMEOUT, || !held(&s, "del-ro")),
        "the node drops its copy"
    );
    let (status, body) = s.query_text("del-ro", "SELECT x FROM t");
    assert_error(status, &body, 404, "segment_not_found");
    assert_eq!(listed_ids(&s, ""), ["del-keep"]);

    // Again: 404, and nothing else changed.
    let (status, body) = delete(&s, "/segments/del-ro");
    assert_error(status, &body, 404, "segment_not_found");
    assert_eq!(
        s.query_ok("del-keep", "SELECT x FROM t"),
        [json!({"x": "one"})]
    );

    // Published again: version 1, the new content (never the old copy).
    let v3 = SqliteFile::new("CREATE TABLE t (x); INSERT INTO t VALUES ('three');");
    let m = s.publish("del-ro", v3.bytes());
    assert_eq!(m["version"], 1, "{m}");
    s.wait_synced("del-ro", 1);
    assert_eq!(
        s.query_ok("del-ro", "SELECT x FROM t"),
        [json!({"x": "three"})]
    );
    let (_, doc) = s.get_json("/segments/del-ro");
    assert_eq!(doc["versions"].as_array().unwrap().len(), 1, "{doc}");
}

#[test]
fn deleting_a_writable_segment_releases_its_lease_and_drops_the_live_database() {
    let s = TestServer::in_process();
    s.provision("del-w", &json!({"schema_sql": "CREATE TABLE t (x);"}));
    s.execute_ok("del-w", "INSERT INTO t VALUES (1)");
    let (status, m) = s.post_json("/segments/del-w/promote", &json!({}));
    assert_eq!(status, 200, "{m}");
    let live = s.data_dir().join("writable/del-w.sqlite");
    assert!(live.exists());

    // Trough's own route answers the same way.
    let (status, body) = delete(&s, "/segment/del-w");
    assert_eq!(status, 204, "{body}");
    assert!(!live.exists(), "the live database is deleted");
    let (status, body) = s.execute_text("del-w", "INSERT INTO t VALUES (2)");
    assert_error(status, &body, 404, "segment_not_found");
    let (status, body) = delete(&s, "/segment/del-w");
    assert_error(status, &body, 404, "segment_not_found");
    assert!(wait_until(SYNC_TIMEOUT, || !held(&s, "del-w")));

    // The lease is free: the id is provisioned afresh, from the new schema.
    let doc = s.provision("del-w", &json!({"schema_sql": "CREATE TABLE u (y);"}));
    assert_eq!(doc["versions"], json!([]), "{doc}");
    s.execute_ok("del-w", "INSERT INTO u VALUES (7)");
    assert_eq!(s.query_ok("del-w", "SELECT y FROM u"), [json!({"y": 7})]);
}

#[test]
fn delete_refuses_bad_ids_and_changes_nothing() {
    let s = TestServer::in_process();
    s.publish("keep", SqliteFile::new("CREATE TABLE t (x);").bytes());
    for (path, code) in [
        ("/segments/bad%20id", "invalid_segment_id"),
        ("/segments/a%2Fb", "invalid_segment_id"),
        ("/segment/nope", "segment_not_found"),
        ("/segments/nope", "segment_not_found"),
    ] {
        let (status, body) = delete(&s, path);
        let want = if code == "segment_not_found" {
            404
        } else {
            400
        };
        assert_error(status, &body, want, code);
    }
    assert_eq!(listed_ids(&s, ""), ["keep"]);
}

#[test]
fn describe_shows_tables_columns_keys_indexes_and_row_counts() {
    let s = TestServer::in_process();
    let f = SqliteFile::new(
        "CREATE TABLE pages (url TEXT PRIMARY KEY, status INTEGER NOT NULL DEFAULT 200, size INT);
         CREATE INDEX pages_status ON pages(status);
         CREATE TABLE links (src TEXT, dst TEXT, PRIMARY KEY (dst, src)) WITHOUT ROWID;
         CREATE VIEW big AS SELECT * FROM pages WHERE size > 10;
         INSERT INTO pages VALUES ('a', 200, 1), ('b', 404, 20), ('c', 200, 30);
         INSERT INTO links VALUES ('a', 'b');",
    );
    s.publish("desc", f.bytes());
    s.wait_synced("desc", 1);
    let (status, d) = s.get_json("/segments/desc/schema");
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["id"], "desc");
    assert_eq!(d["version"], 1);
    assert_eq!(d["views"], json!(["big"]));
    let tables = d["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["links", "pages"]);
    let pages = &tables[1];
    assert_eq!(
        pages["columns"],
        json!([
            {"name": "url", "type": "TEXT", "not_null": false, "default": null},
            {"name": "status", "type": "INTEGER", "not_null": true, "default": "200"},
            {"name": "size", "type": "INT", "not_null": false, "default": null},
        ])
    );
    assert_eq!(pages["primary_key"], json!(["url"]));
    assert_eq!(pages["rows"], json!({"estimate": 3, "source": "count"}));
    let idx: Vec<&Value> = pages["indexes"].as_array().unwrap().iter().collect();
    assert!(
        idx.iter().any(|i| i["name"] == "pages_status"
            && i["columns"] == json!(["status"])
            && i["unique"] == false),
        "{pages}"
    );
    assert_eq!(tables[0]["primary_key"], json!(["dst", "src"]));

    // With statistics, the estimate comes from sqlite_stat1.
    let g = SqliteFile::new(
        "CREATE TABLE t (a INTEGER PRIMARY KEY, b); CREATE INDEX t_b ON t(b);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
         INSERT INTO t SELECT i, i % 5 FROM n;
         ANALYZE;",
    );
    s.publish("desc-stat", g.bytes());
    s.wait_synced("desc-stat", 1);
    let (_, d) = s.get_json("/segments/desc-stat/schema");
    let t = &d["tables"].as_array().unwrap()[0];
    assert_eq!(t["name"], "t", "internal tables are left out: {d}");
    assert_eq!(t["rows"], json!({"estimate": 50, "source": "sqlite_stat1"}));

    let (status, body) = s.get_json("/segments/nope/schema");
    assert_error(status, &body, 404, "segment_not_found");
    let (status, body) = s.get_json("/segments/bad%20id/schema");
    assert_error(status, &body, 400, "invalid_segment_id");
}

#[test]
fn labels_and_descriptions_are_set_shown_and_filtered_on() {
    let s = TestServer::in_process();
    let f = SqliteFile::new("CREATE TABLE t (x);");
    s.publish("lab-a", f.bytes());
    s.publish("lab-b", f.bytes());
    s.put_text("/schemas/crawl", "CREATE TABLE crawl (url TEXT);");
    s.provision("lab-w", &json!({"schema": "crawl"}));

    let (status, doc) = patch(
        &s,
        "/segments/lab-a",
        &json!({"description": "pages of 2026", "labels": {"team": "web", "crawl": "2026-11"}}),
    );
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["description"], "pages of 2026");
    assert_eq!(doc["labels"], json!({"crawl": "2026-11", "team": "web"}));
    patch(&s, "/segments/lab-b", &json!({"labels": {"team": "data"}}));
    // A merge patch: one label removed, one added, the description unchanged.
    let (status, doc) = patch(
        &s,
        "/segments/lab-a",
        &json!({"labels": {"crawl": null, "tier": "hot"}}),
    );
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["labels"], json!({"team": "web", "tier": "hot"}));
    assert_eq!(
        s.get_json("/segments/lab-a").1["description"],
        "pages of 2026"
    );

    let (_, list) = s.get_json("/segments");
    let a = &list["segments"][0];
    assert_eq!(a["id"], "lab-a");
    assert_eq!(a["labels"], json!({"team": "web", "tier": "hot"}));
    assert_eq!(a["description"], "pages of 2026");
    assert_eq!(list["segments"][2]["schema"], "crawl");

    assert_eq!(listed_ids(&s, "?label=team:web"), ["lab-a"]);
    assert_eq!(listed_ids(&s, "?label=team"), ["lab-a", "lab-b"]);
    assert_eq!(listed_ids(&s, "?label=team,tier:hot"), ["lab-a"]);
    assert_eq!(listed_ids(&s, "?schema=crawl"), ["lab-w"]);
    assert_eq!(listed_ids(&s, "?writable=true"), ["lab-w"]);
    assert_eq!(
        listed_ids(&s, "?writable=false&prefix=lab-"),
        ["lab-a", "lab-b"]
    );

    // Bad input: a clear error, nothing changed.
    let before = s.get_json("/segments/lab-a").1;
    for (body, code) in [
        (json!({"labels": {"bad key": "v"}}), "invalid_labels"),
        (json!({"labels": {"k": "x".repeat(257)}}), "invalid_labels"),
        (json!({"description": "d".repeat(4097)}), "invalid_labels"),
        (json!({"labels": {"k": 1}}), "invalid_json"),
        (json!({"colour": "blue"}), "unknown_field"),
    ] {
        let (status, err) = patch(&s, "/segments/lab-a", &body);
        assert_error(status, &err, 400, code);
    }
    assert_eq!(s.get_json("/segments/lab-a").1, before);
    let (status, err) = patch(&s, "/segments/nope", &json!({"labels": {"a": "b"}}));
    assert_error(status, &err, 404, "segment_not_found");
    for q in [
        "?writable=maybe",
        "?label=bad%20key:v",
        "?colour=blue",
        "?schema=bad%20name",
    ] {
        let (status, err) = s.get_json(&format!("/segments{q}"));
        assert_eq!(status, 400, "{q}: {err}");
    }
}

#[test]
fn cluster_wide_queries_select_segments_by_schema_and_label() {
    let s = TestServer::in_process();
    let pages = SqliteFile::new(
        "CREATE TABLE pages (url TEXT, status INTEGER);
         INSERT INTO pages VALUES ('a', 200), ('b', 404), ('c', 200);",
    );
    s.publish("pages-2024", pages.bytes());
    s.publish("pages-2025", pages.bytes());
    s.put_text(
        "/schemas/crawl",
        "CREATE TABLE crawl (url TEXT, ts INTEGER);",
    );
    s.provision("crawl-today", &json!({"schema": "crawl"}));
    s.execute_ok("crawl-today", "INSERT INTO crawl VALUES ('x', 1)");
    s.wait_synced("pages-2024", 1);
    s.wait_synced("pages-2025", 1);
    patch(
        &s,
        "/segments/pages-2024",
        &json!({"labels": {"kind": "pages"}}),
    );
    patch(
        &s,
        "/segments/pages-2025",
        &json!({"labels": {"kind": "pages"}}),
    );

    let q = |body: Value| {
        let (status, answer) = s.post_json("/query", &body);
        (status, answer)
    };
    // Every segment: the writable one has no `pages` table.
    let (status, answer) = q(json!({"sql": "SELECT count(*) AS n FROM pages", "segments": "*"}));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) =
        q(json!({"sql": "SELECT count(*) AS n FROM pages", "labels": {"kind": "pages"}}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([{"n": 6}]));
    assert_eq!(answer["segments"]["queried"], 2, "{answer}");
    let (status, answer) = q(json!({"sql": "SELECT url FROM crawl", "schema": "crawl"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([{"url": "x"}]));
    // Combined with an id pattern: both must match.
    let (status, answer) = q(json!({
        "sql": "SELECT count(*) AS n FROM pages", "segments": "pages-2025", "labels": {"kind": "pages"}
    }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], json!([{"n": 3}]));
    // Nothing matches: an empty answer, not an error.
    let (status, answer) =
        q(json!({"sql": "SELECT count(*) AS n FROM pages", "schema": "nothing"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["segments"]["queried"], 0, "{answer}");

    let (status, err) = q(json!({"sql": "SELECT 1"}));
    assert_error(status, &err, 400, "invalid_selector");
    let (status, err) = q(json!({"sql": "SELECT 1", "labels": {"bad key": "x"}}));
    assert_error(status, &err, 400, "invalid_selector");
    let (status, err) = q(json!({"sql": "SELECT 1", "schema": "bad name"}));
    assert_error(status, &err, 400, "invalid_selector");
}

#[test]
fn restore_makes_an_older_version_current_again() {
    let s = TestServer::in_process();
    let v1 = SqliteFile::new("CREATE TABLE t (x); INSERT INTO t VALUES ('one');");
    let v2 = SqliteFile::new("CREATE TABLE t (x); INSERT INTO t VALUES ('two');");
    let m1 = s.publish("rest", v1.bytes());
    s.publish("rest", v2.bytes());
    s.wait_synced("rest", 2);
    let (status, m3) = s.post_json("/segments/rest/restore", &json!({"version": 1}));
    assert_eq!(status, 201, "{m3}");
    assert_eq!(m3["version"], 3);
    assert_eq!(m3["sha256"], m1["sha256"]);
    assert_eq!(m3["key"], m1["key"], "no bytes are copied");
    s.wait_synced("rest", 3);
    assert_eq!(s.query_ok("rest", "SELECT x FROM t"), [json!({"x": "one"})]);

    let before = s.get_json("/segments/rest").1;
    for (body, status, code) in [
        (json!({"version": 9}), 404, "version_not_found"),
        (json!({"version": "1"}), 400, "invalid_json"),
        (json!({}), 400, "invalid_json"),
        (json!({"version": 1, "when": "now"}), 400, "unknown_field"),
    ] {
        let (got, err) = s.post_json("/segments/rest/restore", &body);
        assert_error(got, &err, status, code);
    }
    assert_eq!(s.get_json("/segments/rest").1, before);
    let (got, err) = s.post_json("/segments/nope/restore", &json!({"version": 1}));
    assert_error(got, &err, 404, "segment_not_found");
}

#[test]
fn restoring_a_writable_segment_rebuilds_its_live_database() {
    let s = TestServer::in_process();
    s.provision("rest-w", &json!({"schema_sql": "CREATE TABLE t (x);"}));
    s.execute_ok("rest-w", "INSERT INTO t VALUES (1)");
    let (_, m1) = s.post_json("/segments/rest-w/promote", &json!({}));
    assert_eq!(m1["version"], 1, "{m1}");
    s.execute_ok(
        "rest-w",
        "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)",
    );
    let (status, m) = s.post_json("/segments/rest-w/restore", &json!({"version": 1}));
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["version"], 2);
    // The live database answers reads on the writer at once.
    assert_eq!(s.query_ok("rest-w", "SELECT x FROM t"), [json!({"x": 1})]);
    s.execute_ok("rest-w", "INSERT INTO t VALUES (4)");
    assert_eq!(
        s.query_ok("rest-w", "SELECT x FROM t ORDER BY x"),
        [json!({"x": 1}), json!({"x": 4})]
    );
    // Described from the live database: no stored version, the rows written so far.
    let (status, d) = s.get_json("/segments/rest-w/schema");
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["version"], Value::Null, "{d}");
    assert_eq!(d["writable"], true, "{d}");
    assert_eq!(
        d["tables"][0]["rows"],
        json!({"estimate": 2, "source": "count"})
    );
}

#[test]
fn retention_keeps_the_newest_versions_and_the_collector_deletes_their_objects() {
    let s = TestServer::in_process_with(&[
        ("TROUGH_RETENTION__KEEP_LAST", "2"),
        ("TROUGH_RETENTION__INTERVAL_SECS", "1"),
        ("TROUGH_RETENTION__GC_GRACE_SECS", "1"),
    ]);
    let mut keys = Vec::new();
    for i in 1..=4 {
        let f = SqliteFile::new(&format!("CREATE TABLE t (x); INSERT INTO t VALUES ({i});"));
        keys.push(
            s.publish("ret", f.bytes())["key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let versions = |s: &TestServer| -> Vec<u64> {
        s.get_json("/segments/ret").1["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["version"].as_u64().unwrap())
            .collect()
    };
    assert!(
        wait_until(SYNC_TIMEOUT, || versions(&s) == [3, 4]),
        "versions: {:?}",
        versions(&s)
    );
    let root = objects(&s);
    assert!(
        wait_until(SYNC_TIMEOUT, || !root.join(&keys[0]).exists()
            && !root.join(&keys[1]).exists()),
        "unreferenced objects are collected: {:?}",
        files(&root)
    );
    assert!(root.join(&keys[2]).exists() && root.join(&keys[3]).exists());
    assert_eq!(
        files(&root.join("segments/ret/versions")).len(),
        2,
        "{:?}",
        files(&root)
    );
    assert!(
        wait_until(SYNC_TIMEOUT, || files(&root.join("gc")).is_empty()),
        "marks are dropped after the sweep: {:?}",
        files(&root.join("gc"))
    );
    s.wait_synced("ret", 4);
    assert_eq!(s.query_ok("ret", "SELECT x FROM t"), [json!({"x": 4})]);
}

#[test]
fn a_tier_can_keep_fewer_versions_than_the_global_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("trough.toml");
    std::fs::write(
        &config,
        r#"
[assignment]
tiers = [{ name = "default", replication_factor = 1 }, { name = "scratch", replication_factor = 1 }]
tier_rules = [{ pattern = "tmp-*", tier = "scratch" }]

[retention]
keep_last = 3
interval_secs = 1
gc_grace_secs = 1

[retention.tiers.scratch]
keep_last = 1
"#,
    )
    .unwrap();
    let s = TestServer::in_process_with(&[("TROUGH_CONFIG", config.to_str().unwrap())]);
    for i in 1..=4 {
        let f = SqliteFile::new(&format!("CREATE TABLE t (x); INSERT INTO t VALUES ({i});"));
        s.publish("tmp-a", f.bytes());
        s.publish("main-a", f.bytes());
    }
    let versions = |id: &str| -> Vec<u64> {
        s.get_json(&format!("/segments/{id}")).1["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["version"].as_u64().unwrap())
            .collect()
    };
    assert!(
        wait_until(SYNC_TIMEOUT, || versions("tmp-a") == [4]
            && versions("main-a") == [2, 3, 4]),
        "tmp-a {:?}, main-a {:?}",
        versions("tmp-a"),
        versions("main-a")
    );
}

#[test]
fn describe_needs_read_labels_need_write_delete_and_restore_need_admin() {
    use common::auth::{auth_env, call, json_body, no_body, publish, token, ADMIN};
    use reqwest::Method;
    let s = TestServer::in_process_with(&auth_env());
    assert_eq!(publish(&s, "pages-a", Some(ADMIN), 3), StatusCode::CREATED);
    assert_eq!(publish(&s, "pages-a", Some(ADMIN), 4), StatusCode::CREATED);
    let (reader, _) = token(&s, &[("read", "pages-*")], &[], None);
    let (writer, _) = token(&s, &[("write", "pages-*")], &[], None);
    let (admin, _) = token(&s, &[("admin", "pages-*")], &[], None);
    let (other, _) = token(&s, &[("admin", "logs-*")], &[], None);

    let describe = |t: &str| {
        let mut last = StatusCode::SERVICE_UNAVAILABLE;
        wait_until(SYNC_TIMEOUT, || {
            last = call(
                &s,
                Method::GET,
                "/segments/pages-a/schema",
                Some(t),
                no_body,
            )
            .0;
            last != StatusCode::SERVICE_UNAVAILABLE
        });
        last
    };
    assert_eq!(describe(&reader), StatusCode::OK);
    assert_eq!(describe(&other), StatusCode::FORBIDDEN);

    let labels = || json_body(json!({"labels": {"kind": "pages"}}));
    let patch = |t: &str| call(&s, Method::PATCH, "/segments/pages-a", Some(t), labels()).0;
    assert_eq!(patch(&reader), StatusCode::FORBIDDEN);
    assert_eq!(patch(&writer), StatusCode::OK);

    let restore = |t: &str| {
        call(
            &s,
            Method::POST,
            "/segments/pages-a/restore",
            Some(t),
            json_body(json!({"version": 1})),
        )
        .0
    };
    let delete = |t: &str| call(&s, Method::DELETE, "/segments/pages-a", Some(t), no_body).0;
    assert_eq!(restore(&writer), StatusCode::FORBIDDEN);
    assert_eq!(delete(&writer), StatusCode::FORBIDDEN);
    assert_eq!(delete(&other), StatusCode::FORBIDDEN);
    assert_eq!(
        common::auth::version(&s, "pages-a"),
        2,
        "refusals changed nothing"
    );
    assert_eq!(restore(&admin), StatusCode::CREATED);
    assert_eq!(common::auth::version(&s, "pages-a"), 3);
    assert_eq!(delete(&admin), StatusCode::NO_CONTENT);
    let (status, _, _) = call(&s, Method::GET, "/segments/pages-a", Some(ADMIN), no_body);
    assert_eq!(status, StatusCode::NOT_FOUND);
}
