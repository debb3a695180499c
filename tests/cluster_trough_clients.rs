//! Trough's clients against a Consul + S3 cluster: the segment manager's calls go to the router,
//! `POST /provision` hands out a write URL that names the writer holding the segment's lease
//! (one of two writers), writes sent there and reads sent through the router answer in Trough's
//! shapes, and promote and delete work through the router. The same calls against `trough serve`
//! (and the real PyPI clients) are in tests/trough_clients.rs.

mod common;

use common::cluster::{port_of, ClusterSpec, Kind};
use common::json_of;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[test]
fn trough_segment_manager_calls_work_through_a_cluster() {
    let c = ClusterSpec::new(2, 1).writers(2).sync_servers(1).start();
    let router = c.router_url();
    let writer_ports: Vec<u16> = c
        .names(Kind::Writer)
        .iter()
        .map(|n| port_of(&c.url(n)))
        .collect();
    assert_eq!(writer_ports.len(), 2);

    // A schema registered through the router: 201.
    let ddl =
        "CREATE TABLE dedup (digest_key varchar(100) primary key, url varchar(2100) not null);";
    let r = c
        .client()
        .put(format!("{router}/schema/dedup-v1/sql"))
        .header("content-type", "application/sql")
        .body(ddl)
        .send()
        .expect("PUT schema");
    assert_eq!(r.status(), StatusCode::CREATED);

    // Provision (twice, as clients do after a failed write): 200 and the same writer's URL.
    let provision = json!({"segment": "__unspecified__", "schema": "dedup-v1"});
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (s, doc) = c.post_json(&router, "/provision", &provision);
        assert_eq!(s, StatusCode::OK, "{doc}");
        urls.push(doc["write_url"].as_str().expect("write_url").to_owned());
    }
    assert_eq!(urls[0], urls[1], "re-provisioning names the same writer");
    let write_url = &urls[0];
    let (base, id) = write_url
        .split_once("/?segment=")
        .expect("<node>/?segment=<id>");
    assert_eq!(id, "__unspecified__");
    assert!(
        writer_ports.contains(&port_of(base)),
        "the write URL {write_url} names one of the writers ({writer_ports:?})"
    );
    // The writer named is the one holding the lease: the catalog says so too.
    let (s, doc) = c.segment("__unspecified__");
    assert_eq!(s, StatusCode::OK, "{doc}");
    let holder = doc.to_string();
    assert!(
        c.names(Kind::Writer)
            .iter()
            .any(|n| port_of(&c.url(n)) == port_of(base) && holder.contains(n.as_str())),
        "the writer at {base} holds the lease: {doc}"
    );

    // A write to the write URL (SQL text): 200.
    let r = c
        .client()
        .post(write_url)
        .header("content-type", "application/sql;charset=utf-8")
        .body("insert or ignore into dedup (digest_key, url) values ('sha1:A', 'http://a/');")
        .send()
        .expect("write");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "{}",
        r.text().unwrap_or_default()
    );

    // A read through the router, as Trough's read URL: a JSON array of row objects.
    let r = c
        .client()
        .post(format!("{router}/?segment=__unspecified__"))
        .header("content-type", "application/sql;charset=utf-8")
        .body("select * from dedup where digest_key='sha1:A';")
        .send()
        .expect("read");
    let (s, rows) = json_of(r);
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(rows, json!([{"digest_key": "sha1:A", "url": "http://a/"}]));

    // Promote through the router: 200, and a stored version exists.
    let (s, doc) = c.post_json(&router, "/promote", &json!({"segment": "__unspecified__"}));
    assert_eq!(s, StatusCode::OK, "{doc}");
    let (s, doc) = c.segment("__unspecified__");
    assert_eq!(s, StatusCode::OK, "{doc}");
    let versions = doc["versions"].as_array().cloned().unwrap_or_default();
    assert!(!versions.is_empty(), "promote stored a version: {doc}");

    // Trough's delete through the router: 204, then 404.
    let delete = || {
        c.client()
            .delete(format!("{router}/segment/__unspecified__"))
            .send()
            .expect("DELETE")
            .status()
    };
    assert_eq!(delete(), StatusCode::NO_CONTENT);
    assert_eq!(delete(), StatusCode::NOT_FOUND);
    let (s, doc): (StatusCode, Value) = c.segment("__unspecified__");
    assert_eq!(s, StatusCode::NOT_FOUND, "{doc}");
}
