use chrono::Utc;

use super::*;

fn sid(s: &str) -> SegmentId {
    SegmentId::new(s).unwrap()
}

fn manifest(id: &str, version: u64) -> Manifest {
    Manifest {
        key: format!("segments/{id}/data/{version}.sqlite"),
        id: sid(id),
        version,
        sha256: format!("sha-{id}-{version}"),
        size: 8192,
        created_at: Utc::now(),
        schema: None,
        writable: false,
    }
}

#[tokio::test]
async fn conformance_in_memory() {
    let c = EmbeddedCoordinator::in_memory().unwrap();
    super::super::conformance::run_all(&c).await;
}

#[tokio::test]
async fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coord.sqlite");
    let c = EmbeddedCoordinator::open(&path).unwrap();
    super::super::conformance::catalog(&c).await;
    super::super::conformance::schemas(&c).await;
    let w = WritableInfo {
        writer: NodeName::new("n1").unwrap(),
        schema: None,
        provisioned_at: Utc::now(),
    };
    c.set_writable(&sid("live"), Some(w)).await.unwrap();
    let assignment: AssignmentMap = [(sid("cat-a"), vec![NodeName::new("n1").unwrap()])]
        .into_iter()
        .collect();
    c.put_assignment(&assignment).await.unwrap();
    let before = c.list_segments().await.unwrap();
    drop(c);
    let c = EmbeddedCoordinator::open(&path).unwrap();
    let e = c.get_segment(&sid("cat-a")).await.unwrap().unwrap();
    assert_eq!(e.latest_version(), 2);
    assert_eq!(c.list_segments().await.unwrap(), before);
    assert!(c
        .get_segment(&sid("live"))
        .await
        .unwrap()
        .unwrap()
        .writable
        .is_some());
    assert_eq!(c.get_assignment().await.unwrap(), assignment);
    assert!(c
        .get_schema(&SchemaName::new("urls").unwrap())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn migrates_the_old_assignment_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coord.sqlite");
    let assignment: AssignmentMap = [(sid("a"), vec![NodeName::new("n1").unwrap()])]
        .into_iter()
        .collect();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE assignment (k INTEGER PRIMARY KEY CHECK (k = 0), doc TEXT NOT NULL)",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO assignment (k, doc) VALUES (0, ?1)",
            [serde_json::to_string(&assignment).unwrap()],
        )
        .unwrap();
    }
    let c = EmbeddedCoordinator::open(&path).unwrap();
    assert_eq!(c.get_assignment().await.unwrap(), assignment);
    drop(c);
    let c = EmbeddedCoordinator::open(&path).unwrap();
    assert_eq!(c.get_assignment().await.unwrap(), assignment);
}

/// Statements run by one publish (`add_version`) and one assignment change with a catalog of
/// `n` segments.
async fn work_of_one_change(n: usize) -> (u64, u64, u64) {
    let c = EmbeddedCoordinator::in_memory().unwrap();
    let node = NodeName::new("n1").unwrap();
    let mut assignment = AssignmentMap::new();
    for i in 0..n {
        let m = manifest(&format!("s{i:06}"), 1);
        c.add_version(&m).await.unwrap();
        assignment.insert(m.id.clone(), vec![node.clone()]);
    }
    c.put_assignment(&assignment).await.unwrap();
    let s0 = c.stats().statements;
    c.add_version(&manifest("new", 1)).await.unwrap();
    let publish = c.stats().statements - s0;
    assignment.insert(sid("new"), vec![node.clone()]);
    let s1 = c.stats().statements;
    c.put_assignment(&assignment).await.unwrap();
    let assign = c.stats().statements - s1;
    let s2 = c.stats().statements;
    c.list_segments().await.unwrap();
    c.get_segment(&sid("new")).await.unwrap();
    c.get_assignment().await.unwrap();
    let reads = c.stats().statements - s2;
    (publish, assign, reads)
}

#[tokio::test]
async fn the_work_of_a_change_does_not_grow_with_the_catalog() {
    let small = work_of_one_change(10).await;
    let large = work_of_one_change(3_000).await;
    assert_eq!(
        small, large,
        "statements per change: small {small:?}, large {large:?}"
    );
    // A publish is BEGIN, two point inserts, COMMIT; an assignment change writes one row; reads
    // run no SQL at all.
    assert_eq!(small, (4, 3, 0));
}

#[tokio::test]
async fn changes_name_the_segments_that_changed() {
    let c = EmbeddedCoordinator::in_memory().unwrap();
    let start = c.wait_for_change(0, Duration::ZERO).await.unwrap();
    c.add_version(&manifest("a", 1)).await.unwrap();
    c.add_version(&manifest("b", 1)).await.unwrap();
    c.add_version(&manifest("a", 2)).await.unwrap();
    // The same manifest again changes nothing.
    c.add_version(&manifest("a", 2)).await.unwrap();
    let (index, ids) = c.catalog_changes(start).await.unwrap().unwrap();
    assert_eq!(ids, [sid("a"), sid("b")]);
    assert_eq!(index, c.wait_for_change(0, Duration::ZERO).await.unwrap());
    let (same, none) = c.catalog_changes(index).await.unwrap().unwrap();
    assert_eq!((same, none.len()), (index, 0));
    // An assignment change names the segments whose assignment changed, and only those.
    c.put_assignment(&[(sid("a"), vec![])].into_iter().collect())
        .await
        .unwrap();
    let (later, ids) = c.catalog_changes(index).await.unwrap().unwrap();
    assert!(later > index);
    assert_eq!(ids, [sid("a")]);
    // Storing the same assignment again changes nothing and wakes nobody.
    c.put_assignment(&[(sid("a"), vec![])].into_iter().collect())
        .await
        .unwrap();
    assert_eq!(c.wait_for_change(0, Duration::ZERO).await.unwrap(), later);
}

#[tokio::test]
async fn an_index_older_than_the_change_log_asks_for_a_full_read() {
    let c = EmbeddedCoordinator::in_memory().unwrap();
    let start = c.wait_for_change(0, Duration::ZERO).await.unwrap();
    {
        let mut mem = c.mem.write().unwrap();
        for i in 0..=CHANGE_LOG_LEN {
            mem.bump(vec![sid(&format!("s{i}"))]);
        }
    }
    assert!(c.catalog_changes(start).await.unwrap().is_none());
    let recent = c.read().index - 1;
    let (_, ids) = c.catalog_changes(recent).await.unwrap().unwrap();
    assert_eq!(ids.len(), 1);
}
