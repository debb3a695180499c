//! Clients written for the original Trough work against `trough serve` unchanged.
//!
//! - `trough_segment_manager_api`: the exact requests `trough.client` and Heritrix's
//!   `TroughClient` send to Trough's segment manager and to a segment's read/write URL, and the
//!   answers they accept (status codes, content types, shapes).
//! - `real_python_clients`: the PyPI packages `trough` (TroughClient) and `warcprox`
//!   (TroughDedupDb) themselves, driven by `tests/clients/trough_clients.py`, with only their
//!   RethinkDB service discovery pointed at the server. The venv comes from
//!   `scripts/install-test-deps.sh`.

mod common;

use std::process::Command;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn text(r: reqwest::blocking::Response) -> (StatusCode, Option<String>, String) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, ct, r.text().expect("body"))
}

#[test]
fn trough_segment_manager_api() {
    let server = TestServer::start();
    let c = server.client();

    // Schemas: `default` exists from the start; PUT /schema/{name}/sql answers 201 then 204.
    let (s, _, _) = text(c.get(server.at("/schema/default")).send().unwrap());
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = text(c.get(server.at("/schema/nope")).send().unwrap());
    assert_eq!(s, StatusCode::NOT_FOUND);
    let ddl =
        "CREATE TABLE dedup (digest_key varchar(100) primary key, url varchar(2100) not null);";
    for want in [StatusCode::CREATED, StatusCode::NO_CONTENT] {
        let (s, _, body) = text(
            c.put(server.at("/schema/dedup-v1/sql"))
                .header("content-type", "application/sql")
                .body(ddl)
                .send()
                .unwrap(),
        );
        assert_eq!(s, want, "{body}");
    }
    let (s, _, body) = text(
        c.put(server.at("/schema/nocontenttype/sql"))
            .body("CREATE TABLE x (a);")
            .send()
            .unwrap(),
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, ct, body) = text(c.get(server.at("/schema/dedup-v1/sql")).send().unwrap());
    assert_eq!(
        (s, ct.as_deref()),
        (StatusCode::OK, Some("application/sql"))
    );
    assert_eq!(body, ddl);
    let (s, _, body) = text(
        c.put(server.at("/schema/bad/sql"))
            .body("CREATE TABLE (")
            .send()
            .unwrap(),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");

    // POST /provision: 200 with a write_url, again 200 for an existing segment; the id is
    // warcprox's default bucket, with leading underscores.
    let provision = json!({"segment": "__unspecified__", "schema": "dedup-v1"});
    let mut write_url = String::new();
    for _ in 0..2 {
        let (s, doc) = server.post_json("/provision", &provision);
        assert_eq!(s, StatusCode::OK, "{doc}");
        write_url = doc["write_url"].as_str().expect("write_url").to_owned();
        assert!(
            write_url.ends_with("/?segment=__unspecified__"),
            "{write_url}"
        );
        assert!(write_url.starts_with("http://"), "{write_url}");
    }

    // Writes go to the write URL as SQL text (application/sql), answer 200.
    let (s, _, body) = text(
        c.post(&write_url)
            .header("content-type", "application/sql;charset=utf-8")
            .body("insert or ignore into dedup (digest_key, url) values ('sha1:A', 'http://a/'), ('sha1:B', 'http://b/');")
            .send()
            .unwrap(),
    );
    assert_eq!(s, StatusCode::OK, "{body}");

    // Reads: one SELECT (a trailing `;` allowed) to the read URL: a JSON array of row objects.
    let read_url = server.at("/?segment=__unspecified__");
    let (s, _, body) = text(
        c.post(&read_url)
            .header("content-type", "application/sql;charset=utf-8")
            .body("select * from dedup where digest_key='sha1:A';")
            .send()
            .unwrap(),
    );
    assert_eq!(s, StatusCode::OK, "{body}");
    let rows: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(rows, json!([{"digest_key": "sha1:A", "url": "http://a/"}]));

    // Schema `default` when none is given; an unknown schema is a 404 that creates nothing.
    let (s, doc) = server.post_json("/provision", &json!({"segment": "plain"}));
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["schema"], "default");
    let (s, doc) = server.post_json("/provision", &json!({"segment": "x1", "schema": "nope"}));
    common::assert_error(s, &doc, 404, "schema_not_found");
    let (s, _) = server.get_json("/segments/x1");
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The deprecated provision: POST / with the id as the body; the write URL as text.
    let (s, ct, url) = text(c.post(server.at("/")).body("older-client").send().unwrap());
    assert_eq!(s, StatusCode::OK, "{url}");
    assert!(ct.unwrap_or_default().starts_with("text/plain"));
    assert!(url.ends_with("/?segment=older-client"), "{url}");

    // POST /promote {"segment"}: 200; the stored version then holds the rows.
    let (s, doc) = server.post_json("/promote", &json!({"segment": "__unspecified__"}));
    assert_eq!(s, StatusCode::OK, "{doc}");
    let (s, doc) = server.get_json("/segments/__unspecified__");
    assert_eq!(s, StatusCode::OK, "{doc}");
    let versions = doc["versions"].as_array().expect("versions");
    assert!(!versions.is_empty(), "promote stored a version: {doc}");

    // Bad bodies are JSON errors with codes.
    let (s, doc) = server.post_json("/provision", &json!({"segmnt": "x"}));
    common::assert_error(s, &doc, 400, "unknown_field");
    let (s, doc) = server.post_json("/provision", &json!({"segment": "../etc"}));
    common::assert_error(s, &doc, 400, "invalid_segment_id");
    let (s, doc) = server.post_json("/promote", &json!({"segment": "never-provisioned"}));
    assert_eq!(s, StatusCode::NOT_FOUND, "{doc}");
}

#[test]
fn real_python_clients() {
    let python = trough_testkit::tools_dir().join("trough-clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/install-test-deps.sh",
        python.display()
    );
    let server = TestServer::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/trough_clients.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(server.url())
        .output()
        .expect("run the Trough clients");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the original Trough clients failed against trough serve"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}
