//! Authorization on a Consul cluster of real processes: a router that holds no data forwards a
//! caller's request (reads to readers, writes to the writer, fan-out) with the caller's own
//! token, never more; a token revoked through one node stops working on every node within
//! seconds.

mod common;

use std::time::Duration;

use common::cluster::{make_segment, ClusterSpec, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use trough_testkit::wait_until;

const ADMIN: &str =
    "trough_b1b1b1b1b1b1b1b1_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn call(
    c: &TestCluster,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c
        .client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().expect("request");
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn sql(c: &TestCluster, base: &str, path: &str, token: &str, sql: &str) -> (StatusCode, Value) {
    let resp = c
        .client()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(sql.to_owned())
        .send()
        .expect("request");
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn forwarded_requests_keep_the_callers_rights_and_revocation_reaches_every_node() {
    let c = ClusterSpec::new(2, 2).auth(ADMIN).start();
    let router = c.router_url();
    for (i, id) in ["pages-1", "logs-1"].iter().enumerate() {
        c.publish(id, make_segment(i).bytes());
        c.wait_replicated(id, 2);
    }
    let (st, doc) = call(
        &c,
        &router,
        Method::POST,
        "/tokens",
        ADMIN,
        Some(json!({"grants": [{"segments": "pages-*", "right": "write"}]})),
    );
    assert_eq!(st, StatusCode::CREATED, "{doc}");
    let token = doc["secret"].as_str().unwrap().to_owned();
    let accessor = doc["accessor"].as_str().unwrap().to_owned();

    // Reads through the router (forwarded to a reader with the caller's token).
    let count = "SELECT count(*) AS n FROM t";
    let (st, rows) = sql(&c, &router, "/segments/pages-1/query", &token, count);
    assert_eq!(st, StatusCode::OK, "{rows}");
    let (st, _) = sql(&c, &router, "/segments/logs-1/query", &token, count);
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Fan-out: only pages-1 is queried, on the readers, and the answer says one was left out.
    let (st, v) = call(
        &c,
        &router,
        Method::POST,
        "/query",
        &token,
        Some(json!({"sql": count, "segments": "*"})),
    );
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rows"][0]["n"], rows[0]["n"], "{v}");
    assert_eq!(v["segments"]["not_permitted"], 1, "{v}");
    assert_eq!(v["segments"]["answered"], 1, "{v}");

    // Writes through the router (forwarded to the writer with the caller's token).
    let (st, doc) = call(
        &c,
        &router,
        Method::POST,
        "/segments/pages-w/provision",
        &token,
        Some(json!({"schema_sql": "CREATE TABLE t (x INTEGER)"})),
    );
    assert_eq!(st, StatusCode::CREATED, "{doc}");
    let (st, doc) = sql(
        &c,
        &router,
        "/segments/pages-w/execute",
        &token,
        "INSERT INTO t VALUES (1)",
    );
    assert_eq!(st, StatusCode::OK, "{doc}");
    let (st, _) = call(
        &c,
        &router,
        Method::POST,
        "/segments/logs-w/provision",
        &token,
        Some(json!({})),
    );
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A credential the cluster does not know is refused by the router and by each node.
    let bogus = format!("{}0000", &token[..token.len() - 4]);
    for n in ["router", "reader-1", "writer-1"] {
        let (st, _) = sql(&c, &c.url(n), "/segments/pages-1/query", &bogus, count);
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{n}");
    }

    // Revoked through reader-1: every node refuses it within seconds.
    let (st, doc) = call(
        &c,
        &c.url("reader-1"),
        Method::DELETE,
        &format!("/tokens/{accessor}"),
        ADMIN,
        None,
    );
    assert_eq!(st, StatusCode::OK, "{doc}");
    for n in ["reader-1", "reader-2", "router", "writer-1"] {
        let base = c.url(n);
        let refused = wait_until(Duration::from_secs(10), || {
            sql(&c, &base, "/segments/pages-1/query", &token, count).0 == StatusCode::UNAUTHORIZED
        });
        assert!(refused, "{n} still accepts the revoked token");
    }
}
