//! End-to-end: deleting segments in a Consul + S3 cluster. The router removes a read-only
//! segment from the catalog and every reader drops its copy; a writable segment's delete is
//! forwarded to its writer, which releases the lease (the id can be provisioned again); a
//! deleted id published again is served with its new content only. The same behaviour on one
//! node, and the rest of a dataset's life, is in tests/lifecycle.rs.

mod common;

use common::cluster::{health_segments, make_segment, ClusterSpec, PLACE_TIMEOUT};
use common::{json_of, wait_until, SqliteFile};
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn deletes_reach_every_node_and_release_write_leases() {
    let c = ClusterSpec::new(2, 2).sync_servers(1).start();
    let router = c.router_url();
    let delete = |path: &str| {
        json_of(
            c.client()
                .delete(format!("{router}{path}"))
                .send()
                .expect("DELETE"),
        )
    };
    c.publish("cl-del", make_segment(1).bytes());
    c.wait_replicated("cl-del", 2);
    let (status, doc) = c.post_json(
        &router,
        "/segments/cl-w/provision",
        &json!({"schema_sql": "CREATE TABLE t (x);"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let (status, body) = c.execute("cl-w", "INSERT INTO t VALUES (1)");
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = delete("/segments/cl-del");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = c.segment("cl-del");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for reader in c.running_readers() {
        let dropped = wait_until(PLACE_TIMEOUT, || {
            !health_segments(&c.health(&reader)).contains(&"cl-del".to_owned())
        });
        assert!(
            dropped,
            "{reader} still holds cl-del: {}",
            c.health(&reader)
        );
    }
    let (status, body) = delete("/segments/cl-del");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "segment_not_found");

    // Writable: forwarded to the writer, which lets the lease go.
    let (status, body) = delete("/segments/cl-w");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = c.execute("cl-w", "INSERT INTO t VALUES (2)");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, doc) = c.post_json(
        &router,
        "/segments/cl-w/provision",
        &json!({"schema_sql": "CREATE TABLE u (y);"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let (status, body) = c.execute("cl-w", "INSERT INTO u VALUES (3)");
    assert_eq!(status, StatusCode::OK, "{body}");

    // Published again: version 1, new content on every replica.
    let fresh = SqliteFile::new("CREATE TABLE fresh (v); INSERT INTO fresh VALUES ('new');");
    let m = c.publish("cl-del", fresh.bytes());
    assert_eq!(m["version"], 1, "{m}");
    c.wait_replicated("cl-del", 2);
    assert_eq!(
        c.query_ok("cl-del", "SELECT v FROM fresh"),
        [json!({"v": "new"})]
    );
}
