//! Releasing and restoring writable segments, on a real writer (embedded coordinator, file
//! object store).

use std::sync::Arc;
use std::time::Duration;

use trough_coord::embedded::EmbeddedCoordinator;
use trough_coord::{write_lease_key, Coordinator};
use trough_store::publish::Publisher;
use trough_store::SegmentStore;
use trough_types::{ApiError, NodeName, SegmentId};

use crate::{ExecuteRequest, ProvisionRequest, SchemaCheck, Writer, WriterOptions};

async fn writer(dir: &std::path::Path) -> (Writer, Arc<dyn Coordinator>) {
    let store = SegmentStore::from_url(&format!("file://{}/obj", dir.display()), &[]).unwrap();
    let coord: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory().unwrap());
    let w = Writer::open(
        NodeName::new("w1").unwrap(),
        dir.join("writable"),
        coord.clone(),
        Publisher::new(store, coord.clone()),
        WriterOptions {
            synchronous: trough_sqlite::Synchronous::Full,
            write_timeout: Duration::from_secs(5),
            schema_check: SchemaCheck::new(&trough_config::Limits::default(), dir.join("scratch")),
        },
    )
    .await
    .unwrap();
    (w, coord)
}

async fn provisioned(w: &Writer, id: &SegmentId) {
    w.provision(
        id,
        ProvisionRequest {
            schema: None,
            schema_sql: Some("CREATE TABLE t (x);".into()),
        },
    )
    .await
    .unwrap();
    w.execute(id, ExecuteRequest::text("INSERT INTO t VALUES (1)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_release_waits_for_no_promotion_and_then_takes_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let (w, coord) = writer(dir.path()).await;
    let id = SegmentId::new("rel").unwrap();
    provisioned(&w, &id).await;
    let v1 = w.promote(&id).await.unwrap();

    // A promotion holds the segment: the release and a restore are refused, nothing changes.
    let db = w.get(&id).unwrap();
    let promoting = db.op.lock().await;
    let err = w.release(&id).await.unwrap_err();
    assert_eq!(err.kind(), trough_types::ErrorKind::Conflict);
    assert_eq!(err.code(), trough_types::error::codes::SEGMENT_BUSY);
    let err = w.restore(&id, &v1).await.unwrap_err();
    assert_eq!(err.code(), trough_types::error::codes::SEGMENT_BUSY);
    w.execute(&id, ExecuteRequest::text("INSERT INTO t VALUES (2)"))
        .await
        .unwrap();
    drop(promoting);
    drop(db);

    let path = w.db_path(&id);
    w.release(&id).await.unwrap();
    assert!(!path.exists(), "the live database is deleted");
    assert!(!w.holds(&id));
    let entry = coord.get_segment(&id).await.unwrap().unwrap();
    assert!(entry.writable.is_none(), "the catalog names no writer");
    assert!(coord
        .lock_holder(&write_lease_key(&id))
        .await
        .unwrap()
        .is_none());
    let err = w
        .execute(&id, ExecuteRequest::text("INSERT INTO t VALUES (3)"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "segment_not_writable");
    assert_eq!(
        w.release(&id).await.unwrap_err().code(),
        "segment_not_writable"
    );
}

#[tokio::test]
async fn a_restore_replaces_the_live_content_and_promotes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (w, coord) = writer(dir.path()).await;
    let id = SegmentId::new("res").unwrap();
    provisioned(&w, &id).await;
    let v1 = w.promote(&id).await.unwrap();
    w.execute(&id, ExecuteRequest::text("INSERT INTO t VALUES (2)"))
        .await
        .unwrap();
    let v2 = w.restore(&id, &v1).await.unwrap();
    assert_eq!(v2.version, 2);
    let conn = rusqlite::Connection::open(w.db_path(&id)).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the row written after version 1 is gone");
    assert_eq!(
        coord.get_segment(&id).await.unwrap().unwrap().latest(),
        Some(&v2)
    );
}
