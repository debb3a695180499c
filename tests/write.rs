//! Writable segments: schemas, provision, execute (atomic), promote, auto-promote, and the
//! Trough wire format `POST /?segment={id}`.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SCHEMA: &str =
    "CREATE TABLE page (id INTEGER PRIMARY KEY, url TEXT UNIQUE NOT NULL, body BLOB, score REAL);";

fn provisioned(s: &TestServer, id: &str) -> Value {
    s.provision(id, &json!({ "schema_sql": SCHEMA }))
}

/// A reference SQLite database in a temp dir, fed the same writes as the server.
fn reference(sql: &str) -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("ref.sqlite")).unwrap();
    conn.execute_batch(sql).unwrap();
    (dir, conn)
}

#[test]
fn schemas_put_get_list_and_errors() {
    let s = TestServer::in_process();
    let (status, body) = s.put_text("/schemas/pages", SCHEMA);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"name": "pages", "sql": SCHEMA}));
    let (status, body) = s.get_json("/schemas/pages");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"name": "pages", "sql": SCHEMA}));

    // Replace → 200.
    let v2 =
        "CREATE TABLE page (id INTEGER PRIMARY KEY, url TEXT); CREATE INDEX page_url ON page(url);";
    let (status, body) = s.put_text("/schemas/pages", v2);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"name": "pages", "sql": v2}));
    assert_eq!(s.get_json("/schemas/pages").1["sql"], v2);

    s.put_text("/schemas/other", "CREATE TABLE o (a);");
    let (status, list) = s.get_json("/schemas");
    assert_eq!(status, 200, "{list}");
    let names: Vec<String> = list["schemas"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e["name"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert!(
        names.contains(&"pages".to_owned()) && names.contains(&"other".to_owned()),
        "{list}"
    );
    assert_eq!(names.len(), 2, "{list}");

    // Invalid SQL → 400 invalid_schema, nothing stored / replaced.
    let (status, body) = s.put_text("/schemas/broken", "CREATE TABLE (oops");
    assert_error(status, &body, 400, "invalid_schema");
    let (status, body) = s.get_json("/schemas/broken");
    assert_error(status, &body, 404, "schema_not_found");
    let (status, body) = s.put_text("/schemas/pages", "CREAT TABLE x");
    assert_error(status, &body, 400, "invalid_schema");
    assert_eq!(s.get_json("/schemas/pages").1["sql"], v2);

    let (status, body) = s.get_json("/schemas/unknown");
    assert_error(status, &body, 404, "schema_not_found");

    // Schema names are not paths.
    for name in ["..%2Fevil", ".hidden", "a%2Fb"] {
        let (status, body) = s.put_text(&format!("/schemas/{name}"), "CREATE TABLE e (a);");
        assert!(
            status == 400 || status == 404,
            "PUT /schemas/{name}: {status} {body}"
        );
    }
    let (_, list) = s.get_json("/schemas");
    assert_eq!(list["schemas"].as_array().map(Vec::len), Some(2), "{list}");
}

#[test]
fn provision_forms_idempotence_and_listing() {
    let s = TestServer::in_process();
    let node = s.node_name();
    s.put_text("/schemas/pages", SCHEMA);

    // By schema name.
    let doc = s.provision("w.named", &json!({"schema": "pages"}));
    assert_eq!(doc["id"], "w.named");
    assert_eq!(doc["writable"], true, "{doc}");
    assert_eq!(doc["writer"], node.as_str(), "{doc}");
    assert!(
        doc["versions"].is_array() && doc["replicas"].is_array() && doc.get("latest").is_some(),
        "{doc}"
    );
    assert_eq!(
        s.query_ok(
            "w.named",
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        ),
        vec![json!({"name": "page"})]
    );

    // Inline schema SQL, and empty.
    let doc = s.provision(
        "w.inline",
        &json!({"schema_sql": "CREATE TABLE a (x); CREATE TABLE b (y);"}),
    );
    assert_eq!(doc["writable"], true, "{doc}");
    assert_eq!(
        s.query_ok(
            "w.inline",
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ),
        vec![json!({"name": "a"}), json!({"name": "b"})]
    );
    let doc = s.provision("w.empty", &json!({}));
    assert_eq!(doc["writable"], true, "{doc}");
    assert_eq!(
        s.query_ok("w.empty", "SELECT count(*) AS n FROM sqlite_master"),
        vec![json!({"n": 0})]
    );

    // GET /segments/{id} and /segments: never promoted → version 0, nulls.
    let (status, got) = s.get_json("/segments/w.named");
    assert_eq!(status, 200);
    assert_eq!(got["writable"], true);
    assert_eq!(got["writer"], node.as_str());
    assert_eq!(got["versions"], json!([]));
    assert!(got["latest"].is_null(), "{got}");
    let (_, list) = s.get_json("/segments");
    let e = list["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "w.named")
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(e["version"], 0, "{e}");
    assert!(
        e["sha256"].is_null() && e["size"].is_null() && e["created_at"].is_null(),
        "{e}"
    );
    assert_eq!(e["writable"], true);
    assert_eq!(e["writer"], node.as_str());

    // /health: live copy.
    let (_, health) = s.get_json(HEALTH_SEGMENTS);
    let h = health["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "w.named")
        .cloned()
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(h["live"], true, "{h}");

    // Again → 200, same state, data kept.
    s.execute_ok("w.named", "INSERT INTO page (url) VALUES ('http://a/')");
    let (status, doc) = s.post_json("/segments/w.named/provision", &json!({"schema": "pages"}));
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["writable"], true);
    assert_eq!(
        s.query_ok("w.named", "SELECT url FROM page"),
        vec![json!({"url": "http://a/"})]
    );

    // Invalid inline schema SQL: 400, nothing created.
    let (status, body) = s.post_json(
        "/segments/w.badsql/provision",
        &json!({"schema_sql": "CREATE TABLE (oops"}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.get_json("/segments/w.badsql").0, 404);

    // Unknown schema.
    let (status, body) = s.post_json("/segments/w.x/provision", &json!({"schema": "nope"}));
    assert_error(status, &body, 404, "schema_not_found");
    let (status, _) = s.get_json("/segments/w.x");
    assert_eq!(
        status, 404,
        "a failed provision must not create the segment"
    );
}

#[test]
fn provision_stored_read_only_segment_starts_from_latest_content() {
    let s = TestServer::in_process();
    let v1 = SqliteFile::new(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'old');",
    );
    let v2 = SqliteFile::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'new'), (2, 'newer');");
    s.publish("w.ro", v1.bytes());
    let m2 = s.publish("w.ro", v2.bytes());

    // Read-only: execute and promote are 409.
    let (status, body) = s.execute_text("w.ro", "INSERT INTO t VALUES (3, 'x')");
    assert_error(status, &body, 409, "segment_not_writable");
    let (status, body) = s.post_json("/segments/w.ro/promote", &json!({}));
    assert_error(status, &body, 409, "segment_not_writable");

    let doc = s.provision("w.ro", &json!({}));
    assert_eq!(doc["writable"], true, "{doc}");
    assert_eq!(doc["latest"], m2, "{doc}");
    let sql = "SELECT * FROM t ORDER BY id";
    assert_rows_eq(&s.query_ok("w.ro", sql), &v2.rows(sql, &json!([])));
    s.execute_ok("w.ro", "INSERT INTO t VALUES (3, 'written')");
    let promoted = promote(&s, "w.ro");
    assert_eq!(promoted["version"], 3, "{promoted}");
    assert_eq!(promoted["writable"], true);
    assert_eq!(
        s.query_ok("w.ro", "SELECT v FROM t WHERE id = 3"),
        vec![json!({"v": "written"})]
    );
    check_promoted_object(
        &s,
        &promoted,
        sql,
        &[
            json!({"id": 1, "v": "new"}),
            json!({"id": 2, "v": "newer"}),
            json!({"id": 3, "v": "written"}),
        ],
    );
}

/// When the default object store under the data dir holds the promoted object, it must hash to
/// the manifest's sha256 and hold exactly what the live segment held at promotion time.
fn check_promoted_object(s: &TestServer, m: &Value, sql: &str, want: &[Value]) {
    let path = s
        .data_dir()
        .join("objects")
        .join(m["key"].as_str().unwrap());
    if !path.exists() {
        eprintln!(
            "object {} not under the data dir; skipped content check",
            path.display()
        );
        return;
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        m["sha256"].as_str().unwrap(),
        "stored object vs manifest sha256"
    );
    assert_eq!(bytes.len() as u64, m["size"].as_u64().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("promoted.sqlite");
    std::fs::write(&copy, &bytes).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_rows_eq(&sqlite_rows(&conn, sql, &json!([])), want);
}

fn promote(s: &TestServer, id: &str) -> Value {
    let r = s
        .client()
        .post(s.at(&format!("/segments/{id}/promote")))
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_eq!(status, 200, "promote {id}: {body}");
    body
}

#[test]
fn execute_forms_match_sqlite_and_reads_see_writes_at_once() {
    let s = TestServer::in_process();
    provisioned(&s, "w.exec");
    let (_dir, refdb) = reference(SCHEMA);

    // JSON with positional params.
    let (status, body) = s.execute_json(
        "w.exec",
        &json!({"sql": "INSERT INTO page (url, body, score) VALUES (?, ?, ?)", "params": ["http://x/", {"$blob": "AAEC"}, 0.5]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_affected"], 1, "{body}");
    assert_eq!(body["last_insert_rowid"], 1, "{body}");
    refdb
        .execute(
            "INSERT INTO page (url, body, score) VALUES ('http://x/', x'000102', 0.5)",
            [],
        )
        .unwrap();

    // JSON with named params.
    let (status, body) = s.execute_json(
        "w.exec",
        &json!({"sql": "INSERT INTO page (id, url, score) VALUES (:id, :url, :score)", "params": {"id": 10, "url": "http://y/", "score": {"$float": "Infinity"}}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last_insert_rowid"], 10, "{body}");
    refdb
        .execute(
            "INSERT INTO page (id, url, score) VALUES (10, 'http://y/', 1e999)",
            [],
        )
        .unwrap();

    // Batch.
    let (status, body) = s.execute_json(
        "w.exec",
        &json!({"sql": "INSERT INTO page (url, score) VALUES (?, ?)", "batch": [["http://b1/", 1], ["http://b2/", 2.5], ["http://b3/", null]]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows_affected"], 3,
        "batch rows_affected is the total: {body}"
    );
    assert_eq!(body["last_insert_rowid"], 13, "{body}");
    refdb.execute_batch("INSERT INTO page (url, score) VALUES ('http://b1/', 1), ('http://b2/', 2.5), ('http://b3/', NULL);").unwrap();

    // Raw text, several statements.
    let raw = "UPDATE page SET score = score * 2 WHERE score IS NOT NULL AND score < 10; \
               DELETE FROM page WHERE url = 'http://b3/'; \
               INSERT INTO page (url) VALUES ('http://raw/');";
    let body = s.execute_ok("w.exec", raw);
    refdb.execute_batch(raw).unwrap();
    assert!(body["rows_affected"].is_u64(), "{body}");
    assert_eq!(
        body["last_insert_rowid"],
        refdb.last_insert_rowid(),
        "{body}"
    );

    // A later statement may use what an earlier one of the same request created.
    let raw =
        "CREATE TABLE tag (page_id INTEGER, tag TEXT); INSERT INTO tag VALUES (1, 'a'), (10, 'b');";
    let body = s.execute_ok("w.exec", raw);
    refdb.execute_batch(raw).unwrap();
    assert_eq!(
        body["last_insert_rowid"],
        refdb.last_insert_rowid(),
        "{body}"
    );
    let sql = "SELECT * FROM tag ORDER BY page_id";
    assert_rows_eq(
        &s.query_ok("w.exec", sql),
        &sqlite_rows(&refdb, sql, &json!([])),
    );

    // UPDATE rows_affected.
    let body = s.execute_ok("w.exec", "UPDATE page SET body = x'ff' WHERE id > 10");
    let n = refdb
        .execute("UPDATE page SET body = x'ff' WHERE id > 10", [])
        .unwrap();
    assert_eq!(body["rows_affected"], n, "{body}");

    // Reads see writes at once, identical to SQLite.
    let sql = "SELECT * FROM page ORDER BY id";
    assert_rows_eq(
        &s.query_ok("w.exec", sql),
        &sqlite_rows(&refdb, sql, &json!([])),
    );
}

#[test]
fn execute_is_atomic() {
    let s = TestServer::in_process();
    provisioned(&s, "w.atomic");
    s.execute_ok(
        "w.atomic",
        "INSERT INTO page (id, url) VALUES (1, 'http://existing/')",
    );
    let count =
        |s: &TestServer| s.query_ok("w.atomic", "SELECT count(*) AS n FROM page")[0]["n"].clone();
    assert_eq!(count(&s), 1);

    // Raw text: the second statement fails → the first is not persisted.
    let (status, body) = s.execute_text(
        "w.atomic",
        "INSERT INTO page (url) VALUES ('http://first/'); INSERT INTO page (id, url) VALUES (1, 'dup-pk');",
    );
    assert_error(status, &body, 400, "sql_error");
    assert_eq!(
        count(&s),
        1,
        "first statement of a failed execute persisted"
    );

    let (status, body) = s.execute_text(
        "w.atomic",
        "INSERT INTO page (url) VALUES ('http://first/'); SELEC oops;",
    );
    assert_error(status, &body, 400, "sql_error");
    assert_eq!(count(&s), 1);

    let (status, body) = s.execute_text(
        "w.atomic",
        "INSERT INTO page (url) VALUES ('http://first/'); INSERT INTO nowhere VALUES (1);",
    );
    assert_error(status, &body, 400, "sql_error");
    assert_eq!(count(&s), 1);

    // Batch: second entry fails (NOT NULL) → none of the batch persists.
    let (status, body) = s.execute_json(
        "w.atomic",
        &json!({"sql": "INSERT INTO page (url) VALUES (?)", "batch": [["http://b1/"], [null], ["http://b3/"]]}),
    );
    assert_error(status, &body, 400, "sql_error");
    assert_eq!(count(&s), 1);
    // Batch: UNIQUE violation inside the batch.
    let (status, body) = s.execute_json(
        "w.atomic",
        &json!({"sql": "INSERT INTO page (url) VALUES (?)", "batch": [["http://same/"], ["http://same/"]]}),
    );
    assert_error(status, &body, 400, "sql_error");
    assert_eq!(count(&s), 1);

    // Transaction control inside the request must not split its transaction.
    for sql in [
        "INSERT INTO page (url) VALUES ('http://c1/'); COMMIT; INSERT INTO page (id, url) VALUES (1, 'dup-pk');",
        "INSERT INTO page (url) VALUES ('http://c2/'); END; INSERT INTO page (id, url) VALUES (1, 'dup-pk');",
        "COMMIT; INSERT INTO page (url) VALUES ('http://c3/'); INSERT INTO page (id, url) VALUES (1, 'dup-pk');",
        "INSERT INTO page (url) VALUES ('http://c4/'); COMMIT; BEGIN; INSERT INTO page (id, url) VALUES (1, 'dup-pk');",
    ] {
        let (status, body) = s.execute_text("w.atomic", sql);
        assert_error_any(status, &body, 400, &["sql_error", "forbidden_statement"]);
        assert_eq!(count(&s), 1, "{sql}");
    }
    let (status, body) = s.execute_text(
        "w.atomic",
        "BEGIN; INSERT INTO page (url) VALUES ('http://c5/');",
    );
    assert_eq!(
        status.as_u16() == 200,
        count(&s) == 2,
        "acknowledged iff persisted: {body}"
    );
    if status == 200 {
        s.execute_ok("w.atomic", "DELETE FROM page WHERE url = 'http://c5/'");
    }

    // Forbidden statements inside execute: 400 and nothing persists, nothing created outside.
    let outside = tempfile::tempdir().unwrap();
    let p = outside.path().join("evil.db");
    for sql in [
        format!("INSERT INTO page (url) VALUES ('http://f/'); ATTACH '{}' AS evil;", p.display()),
        format!("INSERT INTO page (url) VALUES ('http://f/'); VACUUM INTO '{}';", p.display()),
        "INSERT INTO page (url) VALUES ('http://f/'); SELECT load_extension('/nonexistent/libevil');".to_owned(),
        "INSERT INTO page (url) VALUES ('http://f/'); PRAGMA writable_schema=1;".to_owned(),
        "PRAGMA writable_schema=1; INSERT INTO page (url) VALUES ('http://f/');".to_owned(),
    ] {
        let (status, body) = s.execute_text("w.atomic", &sql);
        assert_error_any(status, &body, 400, &["forbidden_statement", "sql_error"]);
        assert_eq!(count(&s), 1, "{sql}");
    }
    assert!(!p.exists());

    // Still writable and consistent afterwards.
    s.execute_ok(
        "w.atomic",
        "INSERT INTO page (url) VALUES ('http://after/')",
    );
    assert_eq!(count(&s), 2);
}

#[test]
fn execute_errors_not_writable_unknown_and_bad_body() {
    let s = TestServer::in_process();
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("w.stored", f.bytes());
    let (status, body) = s.execute_text("w.stored", "DELETE FROM t");
    assert_error(status, &body, 409, "segment_not_writable");
    let (status, body) = s.execute_json("w.stored", &json!({"sql": "DELETE FROM t"}));
    assert_error(status, &body, 409, "segment_not_writable");
    let sql = "SELECT * FROM t ORDER BY id";
    assert_rows_eq(&s.query_ok("w.stored", sql), &f.rows(sql, &json!([])));

    let (status, body) = s.execute_text("w.unknown", "CREATE TABLE x (a)");
    assert_error(status, &body, 404, "segment_not_found");

    provisioned(&s, "w.bad");
    let r = s
        .client()
        .post(s.at("/segments/w.bad/execute"))
        .header("content-type", "text/plain")
        .body(vec![b'I', b'N', b'S', 0xff, 0xfe])
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "invalid_body");
    let (status, body) = s.execute_text("w.bad", "INSRT INTO page VALUES (1)");
    assert_error(status, &body, 400, "sql_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("near \"INSRT\": syntax error"),
        "{body}"
    );
}

#[test]
fn promote_creates_new_versions() {
    let s = TestServer::in_process();
    provisioned(&s, "w.promo");
    s.execute_ok(
        "w.promo",
        "INSERT INTO page (url, score) VALUES ('http://1/', 1.0)",
    );
    let m1 = promote(&s, "w.promo");
    assert_eq!(m1["id"], "w.promo");
    assert_eq!(m1["version"], 1, "{m1}");
    assert_eq!(m1["writable"], true);
    assert!(
        m1["sha256"].as_str().is_some_and(|h| h.len() == 64
            && h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())),
        "{m1}"
    );
    assert!(m1["size"].as_u64().is_some_and(|n| n > 0), "{m1}");
    assert!(
        m1["created_at"].is_string() && m1["key"].is_string(),
        "{m1}"
    );

    let (_, doc) = s.get_json("/segments/w.promo");
    assert_eq!(doc["versions"], json!([m1]), "{doc}");
    assert_eq!(doc["latest"], m1);
    assert_eq!(doc["writable"], true);

    let sql = "SELECT * FROM page ORDER BY id";
    check_promoted_object(&s, &m1, sql, &s.query_ok("w.promo", sql));

    s.execute_ok("w.promo", "INSERT INTO page (url) VALUES ('http://2/')");
    let at_promotion = s.query_ok("w.promo", sql);
    let m2 = promote(&s, "w.promo");
    check_promoted_object(&s, &m2, sql, &at_promotion);
    assert_eq!(m2["version"], 2, "{m2}");
    assert_ne!(m1["sha256"], m2["sha256"]);
    let (_, doc) = s.get_json("/segments/w.promo");
    assert_eq!(doc["versions"], json!([m1, m2]), "{doc}");
    let (_, list) = s.get_json("/segments");
    let e = list["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "w.promo")
        .cloned()
        .unwrap();
    assert_eq!(e["version"], 2);
    assert_eq!(e["sha256"], m2["sha256"]);
    // Writes continue after promotion and stay readable.
    s.execute_ok("w.promo", "INSERT INTO page (url) VALUES ('http://3/')");
    assert_eq!(
        s.query_ok("w.promo", "SELECT count(*) AS n FROM page"),
        vec![json!({"n": 3})]
    );

    let r = s
        .client()
        .post(s.at("/segments/w.none/promote"))
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 404, "segment_not_found");
}

#[test]
fn auto_promote_after_writes() {
    let s = TestServer::in_process_with(&[("TROUGH_WRITER__AUTO_PROMOTE_SECS", "1")]);
    provisioned(&s, "w.auto");
    s.execute_ok("w.auto", "INSERT INTO page (url) VALUES ('http://auto/')");
    let ok = wait_until(Duration::from_secs(20), || {
        let (_, doc) = s.get_json("/segments/w.auto");
        doc["latest"]["version"].as_u64().is_some_and(|v| v >= 1)
    });
    assert!(
        ok,
        "no automatic promotion within 20 s: {}",
        s.get_json("/segments/w.auto").1
    );
    // Without new writes, no new versions pile up. Instead of sleeping through a few ticks of
    // the promotion loop, count them: a write to another segment is promoted by the next pass
    // over all dirty segments, so two promotions of `w.tick` prove two passes ran since.
    let (_, doc) = s.get_json("/segments/w.auto");
    let n = doc["versions"].as_array().unwrap().len();
    provisioned(&s, "w.tick");
    for pass in 1..=2u64 {
        s.execute_ok(
            "w.tick",
            &format!("INSERT INTO page (url) VALUES ('http://tick/{pass}')"),
        );
        let promoted = wait_until(Duration::from_secs(20), || {
            let (_, doc) = s.get_json("/segments/w.tick");
            doc["latest"]["version"].as_u64().is_some_and(|v| v >= pass)
        });
        assert!(
            promoted,
            "write {pass} to w.tick not auto-promoted within 20 s: {}",
            s.get_json("/segments/w.tick").1
        );
    }
    let (_, doc) = s.get_json("/segments/w.auto");
    assert_eq!(
        doc["versions"].as_array().unwrap().len(),
        n,
        "promoted without writes: {doc}"
    );
}

#[test]
fn trough_wire_format() {
    let s = TestServer::in_process();
    provisioned(&s, "w.wire");
    let post = |sql: &str| {
        let r = s
            .client()
            .post(s.at("/?segment=w.wire"))
            .body(sql.to_owned())
            .send()
            .unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, r.text().unwrap())
    };
    let (status, ct, text) = post("INSERT INTO page (url, score) VALUES ('http://wire/', 2.5)");
    assert_eq!(status, 200, "{text}");
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    assert_eq!(text.trim(), "OK");
    let (status, _, text) = post("UPDATE page SET score = score + 0 WHERE id = 1");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.trim(), "OK");

    let (status, _, text) = post("SELECT id, url, score FROM page");
    assert_eq!(status, 200, "{text}");
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got, json!([{"id": 1, "url": "http://wire/", "score": 2.5}]));
    assert_eq!(
        got.as_array().unwrap(),
        &s.query_ok("w.wire", "SELECT id, url, score FROM page")
    );

    // Reads work on a stored read-only segment; writes there are refused.
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("w.wire-ro", f.bytes());
    s.query_ok("w.wire-ro", "SELECT 1");
    let r = s
        .client()
        .post(s.at("/?segment=w.wire-ro"))
        .body("SELECT * FROM t ORDER BY id")
        .send()
        .unwrap();
    let (status, got) = json_of(r);
    assert_eq!(status, 200, "{got}");
    assert_rows_eq(
        got.as_array().unwrap(),
        &f.rows("SELECT * FROM t ORDER BY id", &json!([])),
    );
    let r = s
        .client()
        .post(s.at("/?segment=w.wire-ro"))
        .body("DELETE FROM t")
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 409, "segment_not_writable");
    assert_eq!(
        s.query_ok("w.wire-ro", "SELECT count(*) AS n FROM t"),
        vec![json!({"n": 5})]
    );

    // Errors keep the JSON error document.
    let r = s
        .client()
        .post(s.at("/?segment=w.wire"))
        .body("SELEC 1")
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "sql_error");
    let r = s
        .client()
        .post(s.at("/?segment=..%2Fetc"))
        .body("SELECT 1")
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "invalid_segment_id");
    let r = s
        .client()
        .post(s.at("/?segment=w.missing"))
        .body("SELECT 1")
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 404, "segment_not_found");
}

#[test]
fn concurrent_executes_all_persist() {
    let s = TestServer::in_process();
    provisioned(&s, "w.conc");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..25 {
                    let (status, body) = s.execute_json(
                        "w.conc",
                        &json!({"sql": "INSERT INTO page (url) VALUES (?)", "params": [format!("http://{t}/{i}")]}),
                    );
                    assert_eq!(status, 200, "thread {t} insert {i}: {body}");
                }
            });
        }
        for _ in 0..20 {
            let (status, body) = s.query_text("w.conc", "SELECT count(*) AS n FROM page");
            assert_eq!(status, 200, "{body}");
        }
    });
    assert_eq!(
        s.query_ok("w.conc", "SELECT count(*) AS n FROM page"),
        vec![json!({"n": 100})]
    );
}

#[test]
fn query_on_writable_segment_stays_read_only() {
    let s = TestServer::in_process();
    provisioned(&s, "w.rq");
    s.execute_ok("w.rq", "INSERT INTO page (url) VALUES ('http://keep/')");
    let before = s.query_ok("w.rq", "SELECT * FROM page");
    for sql in [
        "INSERT INTO page (url) VALUES ('http://sneaky/')",
        "DELETE FROM page",
        "DROP TABLE page",
        "UPDATE page SET url = 'x'",
    ] {
        let (status, body) = s.query_text("w.rq", sql);
        assert_error(status, &body, 400, "not_read_only");
    }
    let outside = tempfile::tempdir().unwrap();
    let p = outside.path().join("x.db");
    for sql in [
        format!("ATTACH '{}' AS x", p.display()),
        format!("VACUUM INTO '{}'", p.display()),
        "PRAGMA writable_schema=1".to_owned(),
        "SELECT load_extension('/nonexistent/libevil')".to_owned(),
    ] {
        let (status, body) = s.query_text("w.rq", &sql);
        assert_eq!(status, 400, "{sql}: {body}");
    }
    assert!(!p.exists());
    let (status, body) = s.query_text("w.rq", "SELECT 1; DELETE FROM page");
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.query_ok("w.rq", "SELECT * FROM page"), before);
}

#[test]
fn trough_wire_format_multi_statement_write() {
    // Several write statements in one request are "anything else": executed like /execute, `OK`.
    let s = TestServer::in_process();
    provisioned(&s, "w.wire2");
    let r = s
        .client()
        .post(s.at("/?segment=w.wire2"))
        .body("INSERT INTO page (url) VALUES ('http://1/'); INSERT INTO page (url) VALUES ('http://2/');")
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "two INSERTs via wire format: {text}");
    assert_eq!(text.trim(), "OK");
    assert_eq!(
        s.query_ok("w.wire2", "SELECT count(*) AS n FROM page"),
        vec![json!({"n": 2})]
    );
    let r = s
        .client()
        .post(s.at("/?segment=w.wire2"))
        .body("CREATE TABLE extra (a); INSERT INTO extra VALUES (1);")
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "multi-statement write via wire format: {text}");
    assert_eq!(text.trim(), "OK");
    assert_eq!(
        s.query_ok("w.wire2", "SELECT a FROM extra"),
        vec![json!({"a": 1})]
    );
}
