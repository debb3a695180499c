use super::*;
use chrono::Utc;
use trough_types::{Manifest, WritableInfo};

fn node(name: &str, roles: &[&str], held: &[(&str, u64)]) -> NodeInfo {
    NodeInfo {
        name: NodeName::new(name).unwrap(),
        address: format!("http://{name}"),
        tier: "default".into(),
        quota_bytes: 0,
        stored_bytes: 0,
        roles: roles.iter().map(|s| s.to_string()).collect(),
        held: held
            .iter()
            .map(|(id, v)| (SegmentId::new(id).unwrap(), *v))
            .collect(),
        updated_at: Utc::now(),
    }
}

fn entry(id: &str, latest: u64, writer: Option<&str>) -> SegmentEntry {
    let sid = SegmentId::new(id).unwrap();
    SegmentEntry {
        id: sid.clone(),
        versions: (1..=latest)
            .map(|v| Manifest {
                id: sid.clone(),
                version: v,
                sha256: String::new(),
                size: 0,
                created_at: Utc::now(),
                schema: None,
                writable: false,
                key: String::new(),
            })
            .collect(),
        writable: writer.map(|w| WritableInfo {
            writer: NodeName::new(w).unwrap(),
            schema: None,
            provisioned_at: Utc::now(),
        }),
    }
}

fn snapshot(nodes: Vec<NodeInfo>, entries: Vec<SegmentEntry>) -> Snapshot {
    Snapshot {
        nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        catalog: entries
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect(),
    }
}

#[test]
fn newest_holders_first_and_rotated() {
    let s = snapshot(
        vec![
            node("a", &["reader"], &[("s", 2)]),
            node("b", &["reader"], &[("s", 1)]),
            node("c", &["reader"], &[("s", 2)]),
            node("d", &["writer"], &[("s", 2)]),
        ],
        vec![entry("s", 2, None)],
    );
    let id = SegmentId::new("s").unwrap();
    let names = |r| {
        read_targets(&s, &id, r)
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["a", "c", "b"]);
    assert_eq!(names(1), ["c", "a", "b"]);
    assert!(read_targets(&s, &SegmentId::new("nope").unwrap(), 0).is_empty());
}

#[test]
fn writable_reads_go_to_the_writer_only() {
    let s = snapshot(
        vec![
            node("r", &["reader"], &[("w", 1)]),
            node("wr", &["writer"], &[]),
        ],
        vec![entry("w", 1, Some("wr"))],
    );
    let t = read_targets(&s, &SegmentId::new("w").unwrap(), 0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].name.as_str(), "wr");
}

#[test]
fn least_loaded_writer() {
    let s = snapshot(
        vec![node("w1", &["writer"], &[]), node("w2", &["writer"], &[])],
        vec![entry("x", 0, Some("w1")), entry("y", 0, Some("w1"))],
    );
    assert_eq!(pick_writer(&s).unwrap().name.as_str(), "w2");
}

#[test]
fn penalized_nodes_go_last() {
    let view = ClusterView::new();
    *view.snapshot.write().unwrap() = Arc::new(snapshot(
        vec![
            node("a", &["reader"], &[("s", 1)]),
            node("b", &["reader"], &[("s", 1)]),
        ],
        vec![entry("s", 1, None)],
    ));
    let id = SegmentId::new("s").unwrap();
    view.penalize(&NodeName::new("a").unwrap());
    for _ in 0..4 {
        assert_eq!(view.read_targets(&id)[0].name.as_str(), "b");
    }
}

// ----- following the coordinator: point reads, never catalog-wide reads per miss -----

use std::sync::atomic::AtomicUsize as Counter;
use std::time::Duration;

use async_trait::async_trait;
use trough_coord::embedded::EmbeddedCoordinator;
use trough_coord::{AssignmentMap, Lease};
use trough_types::SchemaName;

fn manifest(id: &str, version: u64) -> Manifest {
    Manifest {
        id: SegmentId::new(id).unwrap(),
        version,
        sha256: format!("sha-{id}-{version}"),
        size: 1,
        created_at: Utc::now(),
        schema: None,
        writable: false,
        key: String::new(),
    }
}

async fn catalog_of(n: usize) -> EmbeddedCoordinator {
    let c = EmbeddedCoordinator::in_memory().unwrap();
    for i in 0..n {
        c.add_version(&manifest(&format!("s{i:04}"), 1))
            .await
            .unwrap();
    }
    c.register_node(&node("r1", &["reader"], &[("s0000", 1)]))
        .await
        .unwrap();
    c
}

#[tokio::test]
async fn misses_cost_a_point_read_not_a_catalog_read() {
    let c = catalog_of(200).await;
    let coordinator: Arc<dyn Coordinator> = Arc::new(c.clone());
    let view = ClusterView::new();
    view.refresh(coordinator.as_ref()).await.unwrap();
    let before = c.stats();
    for i in 0..50 {
        let id = SegmentId::new(&format!("nope-{i}")).unwrap();
        view.refresh_segment(&coordinator, &id).await.unwrap();
        assert!(view.read_targets(&id).is_empty());
    }
    let after = c.stats();
    assert_eq!(after.list_segments, before.list_segments);
    assert_eq!(after.list_nodes, before.list_nodes);
    assert_eq!(after.get_segment, before.get_segment + 50);
    assert_eq!(view.full_reads(), 1);

    // A segment published after the view was read, held by a node the view has not heard of:
    // one point read and one node re-read make it routable.
    c.add_version(&manifest("fresh", 1)).await.unwrap();
    c.register_node(&node("r2", &["reader"], &[("fresh", 1)]))
        .await
        .unwrap();
    let fresh = SegmentId::new("fresh").unwrap();
    assert!(view.read_targets(&fresh).is_empty());
    view.refresh_segment(&coordinator, &fresh).await.unwrap();
    assert_eq!(view.read_targets(&fresh)[0].name.as_str(), "r2");
    let last = c.stats();
    assert_eq!(last.list_segments, before.list_segments);
    assert_eq!(last.list_nodes, before.list_nodes + 1);
    assert_eq!(view.full_reads(), 1);
}

#[tokio::test]
async fn the_view_follows_changes_with_point_reads() {
    let c = catalog_of(100).await;
    let view = ClusterView::new();
    let index = view.catch_up(&c, 0).await.unwrap();
    assert_eq!(view.snapshot().catalog.len(), 100);
    let before = c.stats();
    c.add_version(&manifest("s0001", 2)).await.unwrap();
    c.add_version(&manifest("new", 1)).await.unwrap();
    let index2 = view.catch_up(&c, index).await.unwrap();
    assert!(index2 > index);
    let snap = view.snapshot();
    assert_eq!(snap.catalog.len(), 101);
    assert_eq!(
        snap.catalog[&SegmentId::new("s0001").unwrap()].latest_version(),
        2
    );
    let after = c.stats();
    assert_eq!(after.list_segments, before.list_segments);
    assert_eq!(after.get_segment, before.get_segment + 2);
    assert_eq!(view.full_reads(), 1);
}

/// The embedded coordinator with `get_segment` held until released, to make misses overlap.
struct Gated {
    inner: EmbeddedCoordinator,
    waiting: Counter,
    open: tokio::sync::Semaphore,
}

#[async_trait]
impl Coordinator for Gated {
    async fn list_segments(&self) -> trough_types::Result<Vec<SegmentEntry>> {
        self.inner.list_segments().await
    }
    async fn get_segment(&self, id: &SegmentId) -> trough_types::Result<Option<SegmentEntry>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _permit = self.open.acquire().await;
        self.inner.get_segment(id).await
    }
    async fn add_version(&self, m: &Manifest) -> trough_types::Result<SegmentEntry> {
        self.inner.add_version(m).await
    }
    async fn set_writable(
        &self,
        id: &SegmentId,
        info: Option<WritableInfo>,
    ) -> trough_types::Result<SegmentEntry> {
        self.inner.set_writable(id, info).await
    }
    async fn wait_for_change(&self, since: u64, timeout: Duration) -> trough_types::Result<u64> {
        self.inner.wait_for_change(since, timeout).await
    }
    async fn put_schema(&self, name: &SchemaName, sql: &str) -> trough_types::Result<bool> {
        self.inner.put_schema(name, sql).await
    }
    async fn get_schema(&self, name: &SchemaName) -> trough_types::Result<Option<String>> {
        self.inner.get_schema(name).await
    }
    async fn list_schemas(&self) -> trough_types::Result<Vec<(SchemaName, String)>> {
        self.inner.list_schemas().await
    }
    async fn register_node(&self, node: &NodeInfo) -> trough_types::Result<()> {
        self.inner.register_node(node).await
    }
    async fn list_nodes(&self) -> trough_types::Result<Vec<NodeInfo>> {
        self.inner.list_nodes().await
    }
    async fn put_assignment(&self, a: &AssignmentMap) -> trough_types::Result<()> {
        self.inner.put_assignment(a).await
    }
    async fn get_assignment(&self) -> trough_types::Result<AssignmentMap> {
        self.inner.get_assignment().await
    }
    async fn try_lock(&self, key: &str, holder: &NodeName) -> trough_types::Result<Option<Lease>> {
        self.inner.try_lock(key, holder).await
    }
    async fn unlock(&self, key: &str, holder: &NodeName) -> trough_types::Result<()> {
        self.inner.unlock(key, holder).await
    }
    async fn lock_holder(&self, key: &str) -> trough_types::Result<Option<NodeName>> {
        self.inner.lock_holder(key).await
    }
    async fn create_token(&self, t: &trough_coord::TokenRecord) -> trough_types::Result<()> {
        self.inner.create_token(t).await
    }
    async fn get_token(&self, a: &str) -> trough_types::Result<Option<trough_coord::TokenRecord>> {
        self.inner.get_token(a).await
    }
    async fn list_tokens(&self) -> trough_types::Result<Vec<trough_coord::TokenRecord>> {
        self.inner.list_tokens().await
    }
    async fn delete_token(&self, a: &str) -> trough_types::Result<bool> {
        self.inner.delete_token(a).await
    }
    async fn delete_segment(&self, id: &SegmentId) -> trough_types::Result<Option<SegmentEntry>> {
        self.inner.delete_segment(id).await
    }
    async fn remove_versions(
        &self,
        id: &SegmentId,
        v: &[u64],
    ) -> trough_types::Result<Option<SegmentEntry>> {
        self.inner.remove_versions(id, v).await
    }
    async fn get_segment_info(
        &self,
        id: &SegmentId,
    ) -> trough_types::Result<trough_coord::SegmentInfo> {
        self.inner.get_segment_info(id).await
    }
    async fn set_segment_info(
        &self,
        id: &SegmentId,
        info: &trough_coord::SegmentInfo,
    ) -> trough_types::Result<()> {
        self.inner.set_segment_info(id, info).await
    }
    async fn list_segment_info(
        &self,
    ) -> trough_types::Result<std::collections::BTreeMap<SegmentId, trough_coord::SegmentInfo>>
    {
        self.inner.list_segment_info().await
    }
}

#[tokio::test]
async fn concurrent_misses_share_one_lookup() {
    let inner = catalog_of(10).await;
    let gated = Arc::new(Gated {
        inner: inner.clone(),
        waiting: Counter::new(0),
        open: tokio::sync::Semaphore::new(0),
    });
    let coordinator: Arc<dyn Coordinator> = gated.clone();
    let view = Arc::new(ClusterView::new());
    let id = SegmentId::new("nope").unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (view, coordinator, id) = (view.clone(), coordinator.clone(), id.clone());
            tokio::spawn(async move { view.refresh_segment(&coordinator, &id).await })
        })
        .collect();
    // Every caller either started the lookup or joined it.
    while gated.waiting.load(Ordering::SeqCst) + (view.shared_lookups() as usize) < 20 {
        tokio::task::yield_now().await;
    }
    gated.open.add_permits(100);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(gated.waiting.load(Ordering::SeqCst), 1);
    assert_eq!(inner.stats().get_segment, 1);
    assert_eq!(view.shared_lookups(), 19);
}
