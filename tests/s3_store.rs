//! `trough serve` with its object store on a real S3 server (s3s-fs): publish, sync and query
//! through S3, and rebuild the whole catalog from S3 alone on a fresh data directory.

mod common;

use common::{SqliteFile, TestServer};
use serde_json::json;

#[test]
fn serve_on_s3_publishes_syncs_and_rebuilds_catalog_from_the_bucket() {
    let s3 = trough_testkit::S3Server::start();
    let url = s3.url("cluster-a");
    let mut env: Vec<(String, String)> = s3.env();
    env.push(("TROUGH_OBJECT_STORE".into(), url.clone()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let file = SqliteFile::new(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    let manifest;
    {
        let server = TestServer::start_with(&[], &env_refs);
        manifest = server.publish("s3seg", file.bytes());
        assert_eq!(manifest["version"], 1);
        let rows = server.query_ok("s3seg", "SELECT name FROM t ORDER BY id");
        assert_eq!(
            rows,
            vec![
                json!({"name": "one"}),
                json!({"name": "two"}),
                json!({"name": "three"})
            ]
        );
    }

    // A brand-new node with an empty data directory and the same bucket: the catalog is rebuilt
    // from the manifests in S3, the copy downloaded and verified again.
    let fresh = TestServer::start_with(&[], &env_refs);
    let (status, doc) = fresh.get_json("/segments/s3seg");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["latest"]["sha256"], manifest["sha256"]);
    let rows = fresh.query_ok("s3seg", "SELECT count(*) AS n FROM t");
    assert_eq!(rows, vec![json!({"n": 3})]);
}
