//! One test suite that every [`Coordinator`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests with a fresh, empty coordinator. The checks
//! assert observable behaviour only (what the trait promises), so the embedded and Consul
//! backends are held to exactly the same contract. Not a benchmark, not a stress test.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use super::{AssignmentMap, Coordinator, NodeInfo};
use trough_types::error::ErrorKind;
use trough_types::id::{NodeName, SchemaName, SegmentId};
use trough_types::manifest::{Manifest, WritableInfo};

pub(crate) fn sid(s: &str) -> SegmentId {
    SegmentId::new(s).unwrap()
}

pub(crate) fn node(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

pub(crate) fn manifest(id: &str, version: u64, sha: &str) -> Manifest {
    let id = sid(id);
    Manifest {
        key: format!("segments/{id}/data/{sha}.sqlite"),
        id,
        version,
        sha256: sha.to_owned(),
        size: 10 * version,
        created_at: Utc::now(),
        schema: None,
        writable: false,
    }
}

/// Runs every check in order against one fresh coordinator.
pub async fn run_all(c: &dyn Coordinator) {
    catalog(c).await;
    writable(c).await;
    schemas(c).await;
    nodes_and_assignment(c).await;
    locks(c).await;
    change_notification(c).await;
    tokens(c).await;
    super::conformance_lifecycle::delete(c).await;
    super::conformance_lifecycle::remove_versions(c).await;
    super::conformance_lifecycle::info(c).await;
}

/// Tokens: created once (again with the same secret is fine, another secret conflicts), read
/// by accessor, listed in order, deleted.
pub async fn tokens(c: &dyn Coordinator) {
    use trough_auth::{Scope, Secret, TokenRecord};
    let secret = |b: u8| Secret::from_random(&[b; trough_auth::token::RANDOM_BYTES]);
    let scope = Scope::parse_items(&["read:pages-*", "status"]).unwrap();
    let a = TokenRecord::new(
        &secret(2),
        "a",
        Utc::now(),
        None,
        "bootstrap",
        scope.clone(),
    );
    let b = TokenRecord::new(
        &secret(1),
        "b",
        Utc::now(),
        None,
        "bootstrap",
        Scope::default(),
    );
    assert!(c.get_token(&a.accessor).await.unwrap().is_none());
    assert!(c.list_tokens().await.unwrap().is_empty());
    c.create_token(&a).await.unwrap();
    c.create_token(&b).await.unwrap();
    c.create_token(&a).await.unwrap();
    let mut other = [2u8; trough_auth::token::RANDOM_BYTES];
    other[30] = 9;
    let clash = TokenRecord::new(
        &Secret::from_random(&other),
        "c",
        Utc::now(),
        None,
        "x",
        scope,
    );
    assert_eq!(clash.accessor, a.accessor);
    let err = c.create_token(&clash).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(c.get_token(&a.accessor).await.unwrap(), Some(a.clone()));
    let all = c.list_tokens().await.unwrap();
    assert_eq!(all, vec![b.clone(), a.clone()]);
    assert!(c.delete_token(&a.accessor).await.unwrap());
    assert!(!c.delete_token(&a.accessor).await.unwrap());
    assert!(c.get_token(&a.accessor).await.unwrap().is_none());
    assert!(c.get_token("not-an-accessor").await.unwrap().is_none());
    assert_eq!(c.list_tokens().await.unwrap(), vec![b]);
}

/// Versions are recorded, sorted, idempotent, and conflicting manifests refused.
pub async fn catalog(c: &dyn Coordinator) {
    assert!(c.get_segment(&sid("cat-a")).await.unwrap().is_none());
    let v2 = manifest("cat-a", 2, "bb");
    let v1 = manifest("cat-a", 1, "aa");
    c.add_version(&v2).await.unwrap();
    let e = c.add_version(&v1).await.unwrap();
    assert_eq!(
        e.versions.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(e.latest_version(), 2);
    // Idempotent for the same manifest.
    c.add_version(&v2).await.unwrap();
    // A different manifest for an existing version is a conflict.
    let err = c
        .add_version(&manifest("cat-a", 2, "cc"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    c.add_version(&manifest("cat-b", 1, "dd")).await.unwrap();
    let all = c.list_segments().await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.id.as_str().to_owned()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted: {ids:?}");
    assert!(ids.contains(&"cat-a".to_owned()) && ids.contains(&"cat-b".to_owned()));
    let got = c.get_segment(&sid("cat-a")).await.unwrap().unwrap();
    assert_eq!(got.versions[1].sha256, "bb");
}

/// Writable flags: set, conflict on another writer, cleared.
pub async fn writable(c: &dyn Coordinator) {
    let info = WritableInfo {
        writer: node("w1"),
        schema: Some(SchemaName::new("s").unwrap()),
        provisioned_at: Utc::now(),
    };
    let e = c
        .set_writable(&sid("wr-a"), Some(info.clone()))
        .await
        .unwrap();
    assert_eq!(e.writable.as_ref().unwrap().writer, node("w1"));
    assert!(e.versions.is_empty());
    // Same writer again: fine.
    c.set_writable(&sid("wr-a"), Some(info.clone()))
        .await
        .unwrap();
    let other = WritableInfo {
        writer: node("w2"),
        ..info
    };
    let err = c.set_writable(&sid("wr-a"), Some(other)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let e = c.set_writable(&sid("wr-a"), None).await.unwrap();
    assert!(e.writable.is_none());
    assert!(c
        .get_segment(&sid("wr-a"))
        .await
        .unwrap()
        .unwrap()
        .writable
        .is_none());
}

/// Schemas: create, replace, list.
pub async fn schemas(c: &dyn Coordinator) {
    let n = SchemaName::new("urls").unwrap();
    assert!(c.get_schema(&n).await.unwrap().is_none());
    assert!(c.put_schema(&n, "CREATE TABLE a(x)").await.unwrap());
    assert!(!c.put_schema(&n, "CREATE TABLE b(x)").await.unwrap());
    assert_eq!(
        c.get_schema(&n).await.unwrap().as_deref(),
        Some("CREATE TABLE b(x)")
    );
    let all = c.list_schemas().await.unwrap();
    assert!(all.iter().any(|(name, _)| name == &n));
}

/// Nodes register and are listed; assignments round-trip.
pub async fn nodes_and_assignment(c: &dyn Coordinator) {
    let mut held: BTreeMap<SegmentId, u64> = BTreeMap::new();
    held.insert(sid("cat-a"), 2);
    let info = NodeInfo {
        name: node("n1"),
        address: "http://127.0.0.1:1".into(),
        tier: "default".into(),
        quota_bytes: 1000,
        stored_bytes: 20,
        roles: vec!["reader".into()],
        held: held.into_iter().collect(),
        updated_at: Utc::now(),
    };
    c.register_node(&info).await.unwrap();
    let nodes = c.list_nodes().await.unwrap();
    let n1 = nodes
        .iter()
        .find(|n| n.name == node("n1"))
        .expect("n1 listed");
    assert_eq!(n1.held.get(&sid("cat-a")), Some(&2));
    assert_eq!(n1.quota_bytes, 1000);

    let mut a = AssignmentMap::new();
    a.insert(sid("cat-a"), vec![node("n1")]);
    c.put_assignment(&a).await.unwrap();
    assert_eq!(c.get_assignment().await.unwrap(), a);
    assert_eq!(
        c.get_assigned(&sid("cat-a")).await.unwrap(),
        vec![node("n1")]
    );
    assert!(c.get_assigned(&sid("cat-none")).await.unwrap().is_empty());

    // A partial update changes only what it names.
    let since = c.wait_for_change(0, Duration::ZERO).await.unwrap();
    a.insert(sid("cat-b"), vec![node("n1"), node("n2")]);
    c.put_assignment(&a).await.unwrap();
    let set = AssignmentMap::from([(sid("cat-c"), vec![node("n2")])]);
    c.update_assignment(&set, &[sid("cat-b")]).await.unwrap();
    let expect = AssignmentMap::from([
        (sid("cat-a"), vec![node("n1")]),
        (sid("cat-c"), vec![node("n2")]),
    ]);
    assert_eq!(c.get_assignment().await.unwrap(), expect);
    assert_eq!(
        c.get_assigned(&sid("cat-c")).await.unwrap(),
        vec![node("n2")]
    );
    // Backends with a change log name the assignment changes too.
    if let Some((_, ids)) = c.catalog_changes(since).await.unwrap() {
        for id in ["cat-b", "cat-c"] {
            assert!(ids.contains(&sid(id)), "{id} in {ids:?}");
        }
        assert!(!ids.contains(&sid("cat-a")), "unchanged cat-a in {ids:?}");
    }
}

/// Locks are exclusive, re-entrant for their holder, and released.
pub async fn locks(c: &dyn Coordinator) {
    let l = c.try_lock("test-lock", &node("h1")).await.unwrap();
    let l = l.expect("free lock is taken");
    assert!(l.is_held());
    assert!(c
        .try_lock("test-lock", &node("h1"))
        .await
        .unwrap()
        .is_some());
    assert!(c
        .try_lock("test-lock", &node("h2"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(c.lock_holder("test-lock").await.unwrap(), Some(node("h1")));
    c.unlock("test-lock", &node("h1")).await.unwrap();
    assert_eq!(c.lock_holder("test-lock").await.unwrap(), None);
    assert!(c
        .try_lock("test-lock", &node("h2"))
        .await
        .unwrap()
        .is_some());
    c.unlock("test-lock", &node("h2")).await.unwrap();
}

/// `wait_for_change` returns early on a change and times out otherwise.
pub async fn change_notification(c: &dyn Coordinator) {
    let idx = c
        .wait_for_change(0, Duration::from_millis(10))
        .await
        .unwrap();
    // Nothing changes: the wait times out and returns an index no newer than a change would.
    let same = c
        .wait_for_change(idx, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(same, idx);
    let start = std::time::Instant::now();
    let waiter = c.wait_for_change(idx, Duration::from_secs(20));
    let writer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.add_version(&manifest("chg", 1, "ee")).await.unwrap();
    };
    let (new_idx, ()) = tokio::join!(waiter, writer);
    assert!(new_idx.unwrap() > idx);
    assert!(start.elapsed() < Duration::from_secs(15), "woke on change");
}
