//! Single-flight lookups for the cluster view: concurrent misses share one coordinator request.
//!
//! A burst of requests for a segment the view cannot place (a new segment, or a name that does
//! not exist) must cost the coordinator one point read, not one per request. Each lookup in
//! flight is a shared future keyed by what it reads; callers that arrive while it runs await the
//! same answer. Not a cache: once answered, the next miss asks again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use trough_coord::{Coordinator, NodeInfo};
use trough_types::{SegmentEntry, SegmentId};

type Flight<T> = Shared<BoxFuture<'static, trough_types::Result<T>>>;

/// Lookups in flight, by key, each with a generation so only its own caller removes it.
struct Table<K, T> {
    next: u64,
    flights: HashMap<K, (u64, Flight<T>)>,
}

impl<K, T> Default for Table<K, T> {
    fn default() -> Self {
        Self {
            next: 0,
            flights: HashMap::new(),
        }
    }
}

/// The lookups the cluster view shares.
#[derive(Default)]
pub(super) struct Flights {
    segments: Mutex<Table<SegmentId, Option<SegmentEntry>>>,
    nodes: Mutex<Table<(), Arc<Vec<NodeInfo>>>>,
    shared: AtomicU64,
}

impl Flights {
    /// How many callers joined a lookup already in flight.
    pub fn shared(&self) -> u64 {
        self.shared.load(Ordering::Relaxed)
    }

    /// One segment's catalog entry.
    pub async fn segment(
        &self,
        coordinator: &Arc<dyn Coordinator>,
        id: &SegmentId,
    ) -> trough_types::Result<Option<SegmentEntry>> {
        let (c, key) = (coordinator.clone(), id.clone());
        self.run(&self.segments, id.clone(), async move {
            c.get_segment(&key).await
        })
        .await
    }

    /// The live nodes.
    pub async fn nodes(
        &self,
        coordinator: &Arc<dyn Coordinator>,
    ) -> trough_types::Result<Arc<Vec<NodeInfo>>> {
        let c = coordinator.clone();
        self.run(&self.nodes, (), async move {
            c.list_nodes().await.map(Arc::new)
        })
        .await
    }

    async fn run<K, T>(
        &self,
        table: &Mutex<Table<K, T>>,
        key: K,
        lookup: impl Future<Output = trough_types::Result<T>> + Send + 'static,
    ) -> trough_types::Result<T>
    where
        K: Hash + Eq + Clone,
        T: Clone + Send + Sync + 'static,
    {
        let (generation, flight) = {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            match t.flights.get(&key) {
                Some(f) => {
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("trough_cluster_view_shared_lookups_total").increment(1);
                    f.clone()
                }
                None => {
                    t.next += 1;
                    let f = (t.next, lookup.boxed().shared());
                    t.flights.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let out = flight.await;
        {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            if t.flights.get(&key).is_some_and(|(g, _)| *g == generation) {
                t.flights.remove(&key);
            }
        }
        out
    }
}
