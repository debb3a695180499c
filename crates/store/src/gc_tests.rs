//! The garbage collector and the store side of delete, retention and restore, with a
//! controlled clock: a crash between marking and sweeping, a node still downloading a removed
//! version, objects referenced again before the sweep, and a rebuilt catalog after a delete.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use trough_coord::embedded::EmbeddedCoordinator;
use trough_coord::Coordinator;
use trough_types::SegmentId;

use crate::gc::{collect, mark, MARKS_DIR};
use crate::publish::{reconcile, PublishOptions, Publisher};
use crate::retention::{self, Policy};
use crate::{lifecycle, SegmentStore};

const GRACE: Duration = Duration::from_secs(3600);

fn db(dir: &Path, name: &str, value: i64) -> std::path::PathBuf {
    let p = dir.join(name);
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE t (x); INSERT INTO t VALUES ({value});"
    ))
    .unwrap();
    p
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    /// A store and a coordinator on this environment's files: opening them again is what a
    /// restarted process does.
    fn open(&self) -> (SegmentStore, Arc<dyn Coordinator>, Publisher) {
        let store =
            SegmentStore::from_url(&format!("file://{}/obj", self.dir.path().display()), &[])
                .unwrap();
        let coord: Arc<dyn Coordinator> =
            Arc::new(EmbeddedCoordinator::open(&self.dir.path().join("coord.sqlite")).unwrap());
        let p = Publisher::new(store.clone(), coord.clone());
        (store, coord, p)
    }
    fn exists(&self, key: &str) -> bool {
        self.dir.path().join("obj").join(key).exists()
    }
    fn marks(&self) -> usize {
        let d = self.dir.path().join("obj").join(MARKS_DIR);
        walk(&d)
    }
}

fn walk(d: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(d) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn a_crash_between_marking_and_sweeping_keeps_the_grace_period_and_a_download_finishes() {
    let env = Env::new();
    let id = SegmentId::new("g").unwrap();
    let (v1, v2, t0) = {
        let (store, coord, p) = env.open();
        let f1 = db(env.dir.path(), "a.sqlite", 1);
        let f2 = db(env.dir.path(), "b.sqlite", 2);
        let v1 = p
            .publish_file(&id, &f1, PublishOptions::default())
            .await
            .unwrap();
        let v2 = p
            .publish_file(&id, &f2, PublishOptions::default())
            .await
            .unwrap();
        let t0 = Utc::now();
        let policy = Policy {
            keep_last: Some(1),
            keep_for: None,
        };
        assert_eq!(
            retention::run(&store, &coord, &|_| policy, t0)
                .await
                .unwrap(),
            1
        );
        // The first half of a round, then the process dies.
        assert_eq!(mark(&store, &coord, t0).await.unwrap(), 1);
        (v1, v2, t0)
    };
    assert_eq!(env.marks(), 1);
    assert!(env.exists(&v1.key));

    // Restarted: half the grace period later, a node that started downloading v1 before it was
    // removed still gets it, and the collector waits.
    let (store, coord, _) = env.open();
    let half = t0 + chrono::Duration::from_std(GRACE / 2).unwrap();
    let r = collect(&store, &coord, GRACE, half).await.unwrap();
    assert_eq!((r.marked, r.swept, r.waiting), (0, 0, 1), "{r:?}");
    let dest = env.dir.path().join("copy.sqlite");
    store.download(&v1, &dest).await.unwrap();

    // After the grace period counted from the recorded mark: swept, mark gone, v2 intact.
    let later = t0 + chrono::Duration::from_std(GRACE).unwrap();
    let r = collect(&store, &coord, GRACE, later).await.unwrap();
    assert_eq!((r.swept, r.waiting), (1, 0), "{r:?}");
    assert!(!env.exists(&v1.key));
    assert!(env.exists(&v2.key));
    assert_eq!(env.marks(), 0);
    store
        .download(&v2, &env.dir.path().join("copy2.sqlite"))
        .await
        .unwrap();
    // Nothing left to do.
    let r = collect(&store, &coord, GRACE, later).await.unwrap();
    assert_eq!((r.marked, r.swept, r.waiting, r.unmarked), (0, 0, 0, 0));
}

#[tokio::test]
async fn a_crash_after_deleting_an_object_leaves_a_mark_the_next_round_drops() {
    let env = Env::new();
    let id = SegmentId::new("g2").unwrap();
    let (store, coord, p) = env.open();
    let f1 = db(env.dir.path(), "a.sqlite", 1);
    let f2 = db(env.dir.path(), "b.sqlite", 2);
    let v1 = p
        .publish_file(&id, &f1, PublishOptions::default())
        .await
        .unwrap();
    p.publish_file(&id, &f2, PublishOptions::default())
        .await
        .unwrap();
    let policy = Policy {
        keep_last: Some(1),
        keep_for: None,
    };
    let t0 = Utc::now();
    retention::run(&store, &coord, &|_| policy, t0)
        .await
        .unwrap();
    mark(&store, &coord, t0).await.unwrap();
    // The sweep deleted the object, then the process died before deleting the mark.
    store.delete_key(&v1.key).await.unwrap();
    assert_eq!(env.marks(), 1);
    let later = t0 + chrono::Duration::from_std(GRACE).unwrap();
    let r = collect(&store, &coord, GRACE, later).await.unwrap();
    assert_eq!((r.swept, r.unmarked), (0, 1), "{r:?}");
    assert_eq!(env.marks(), 0);
}

#[tokio::test]
async fn an_object_referenced_again_before_the_sweep_is_kept() {
    let env = Env::new();
    let id = SegmentId::new("g3").unwrap();
    let (store, coord, p) = env.open();
    let f1 = db(env.dir.path(), "a.sqlite", 1);
    let f2 = db(env.dir.path(), "b.sqlite", 2);
    let v1 = p
        .publish_file(&id, &f1, PublishOptions::default())
        .await
        .unwrap();
    p.publish_file(&id, &f2, PublishOptions::default())
        .await
        .unwrap();
    let t0 = Utc::now();
    // Only the catalog record goes (the manifest stays): still referenced, never marked.
    coord.remove_versions(&id, &[1]).await.unwrap();
    assert_eq!(mark(&store, &coord, t0).await.unwrap(), 0);
    // Both go: marked; then the same bytes are published again before the sweep.
    store.delete_manifest(&id, 1).await.unwrap();
    assert_eq!(mark(&store, &coord, t0).await.unwrap(), 1);
    let again = p
        .publish_file(&id, &f1, PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(again.key, v1.key);
    let later = t0 + chrono::Duration::from_std(GRACE).unwrap();
    let r = collect(&store, &coord, GRACE, later).await.unwrap();
    assert_eq!((r.swept, r.unmarked), (0, 1), "{r:?}");
    assert!(env.exists(&v1.key));
}

#[tokio::test]
async fn a_deleted_segment_stays_deleted_when_the_catalog_is_rebuilt_and_its_objects_go() {
    let env = Env::new();
    let id = SegmentId::new("gone").unwrap();
    let keep = SegmentId::new("kept").unwrap();
    let (store, coord, p) = env.open();
    let f1 = db(env.dir.path(), "a.sqlite", 1);
    let v1 = p
        .publish_file(&id, &f1, PublishOptions::default())
        .await
        .unwrap();
    p.publish_file(&keep, &f1, PublishOptions::default())
        .await
        .unwrap();
    let removed = lifecycle::delete_segment(&store, &coord, &id)
        .await
        .unwrap();
    assert_eq!(removed.versions, vec![v1.clone()]);
    let err = lifecycle::delete_segment(&store, &coord, &id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), trough_types::error::codes::SEGMENT_NOT_FOUND);

    // A lost catalog is rebuilt from the store: the deleted segment does not come back.
    let fresh = EmbeddedCoordinator::in_memory().unwrap();
    assert_eq!(reconcile(&store, &fresh).await.unwrap(), 1);
    assert!(fresh.get_segment(&id).await.unwrap().is_none());
    assert!(fresh.get_segment(&keep).await.unwrap().is_some());

    let t0 = Utc::now();
    collect(&store, &coord, GRACE, t0).await.unwrap();
    assert!(env.exists(&v1.key), "kept through the grace period");
    let later = t0 + chrono::Duration::from_std(GRACE).unwrap();
    let r = collect(&store, &coord, GRACE, later).await.unwrap();
    assert_eq!(r.swept, 1, "{r:?}");
    assert!(!env.exists(&v1.key));
}

#[tokio::test]
async fn restore_points_a_new_version_at_an_old_object() {
    let env = Env::new();
    let id = SegmentId::new("r").unwrap();
    let (_store, coord, p) = env.open();
    let f1 = db(env.dir.path(), "a.sqlite", 1);
    let f2 = db(env.dir.path(), "b.sqlite", 2);
    let v1 = p
        .publish_file(&id, &f1, PublishOptions::default())
        .await
        .unwrap();
    p.publish_file(&id, &f2, PublishOptions::default())
        .await
        .unwrap();
    let v3 = lifecycle::restore(&p, &id, 1).await.unwrap();
    assert_eq!((v3.version, &v3.key, &v3.sha256), (3, &v1.key, &v1.sha256));
    assert_eq!(
        coord.get_segment(&id).await.unwrap().unwrap().latest(),
        Some(&v3)
    );
    let err = lifecycle::restore(&p, &id, 7).await.unwrap_err();
    assert_eq!(err.code(), trough_types::error::codes::VERSION_NOT_FOUND);
}

#[tokio::test]
async fn an_object_younger_than_the_grace_period_is_kept_even_with_an_old_mark() {
    // A publish stores its data object, then its manifest: in between, the object is
    // unreferenced. Even a mark recorded long ago (a clock far ahead, an object deleted and
    // stored again) does not let the collector delete an object written within the grace period.
    let env = Env::new();
    let (store, coord, _) = env.open();
    let f = db(env.dir.path(), "a.sqlite", 1);
    let key = "segments/inflight/data/0123.sqlite";
    store.put_file(key, &f).await.unwrap();
    let long_ago = Utc::now() - chrono::Duration::from_std(GRACE * 2).unwrap();
    assert_eq!(mark(&store, &coord, long_ago).await.unwrap(), 1);
    let r = collect(&store, &coord, GRACE, Utc::now()).await.unwrap();
    assert_eq!((r.swept, r.waiting), (0, 1), "{r:?}");
    assert!(env.exists(key));
}
