//! Coordination: the catalog, schemas, node registry, assignment and locks, behind one trait.
//!
//! The [`Coordinator`] trait is what every service uses to agree with the others: which segments
//! and versions exist (the catalog), which tokens exist, which schemas are registered, which nodes are alive and what
//! they hold, what the synchronizer leader assigned to whom, and who holds a lock (the leader lock,
//! write leases). Two backends implement it:
//!
//! - [`embedded::EmbeddedCoordinator`]: in-process, persisted in one local SQLite file. The
//!   default for `trough serve`: no other process exists to coordinate with.
//! - a Consul backend (clusters; sessions, KV and blocking queries) implementing the same trait.
//!
//! [`conformance`] is one test suite every backend must pass. This module holds no policy: it
//! does not decide assignments or what to publish, it only stores and notifies.

pub mod conformance;
pub mod conformance_lifecycle;
pub mod consul;
pub mod embedded;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stored token (`trough_auth`), re-exported for implementors of [`Coordinator`].
pub use trough_auth::TokenRecord;
use trough_types::error::Result;
use trough_types::id::{NodeName, SchemaName, SegmentId};
use trough_types::manifest::{Manifest, SegmentEntry, WritableInfo};

/// A node's verified copies: segment → version ([`NodeInfo::held`]).
pub type HeldMap = imbl::OrdMap<SegmentId, u64>;

/// Segment → the nodes that must hold a read copy of its latest version.
pub type AssignmentMap = BTreeMap<SegmentId, Vec<NodeName>>;

/// What a node tells the others about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique node name.
    pub name: NodeName,
    /// Base URL other processes reach this node at (e.g. `http://10.0.0.5:6444`).
    pub address: String,
    /// The node's tier (a group of nodes with its own replication factor).
    pub tier: String,
    /// Bytes of segment copies this node may hold.
    pub quota_bytes: u64,
    /// Bytes of verified segment copies it holds now.
    pub stored_bytes: u64,
    /// The roles this node runs (`reader`, `writer`, `sync`, `router`…).
    pub roles: Vec<String>,
    /// The verified copies it holds: segment → version. A persistent map, so copying a node's
    /// registration (listing nodes, a heartbeat) copies no holdings and a holder changes it in
    /// O(log n) (a reader may hold tens of thousands of copies).
    pub held: HeldMap,
    /// When it last reported.
    pub updated_at: DateTime<Utc>,
}

/// What people say about a segment: a free-text description and labels (`key → value`),
/// shown in listings and used to select segments. Stored beside the catalog entry, changed
/// only by `PATCH /segments/{id}`; limits are checked by the API before it gets here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels, ordered by key.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl SegmentInfo {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.description.is_none() && self.labels.is_empty()
    }
}

/// A held lock (leader lock or write lease).
#[derive(Debug)]
pub struct Lease {
    /// The lock's key, e.g. `leader` or `write/<segment>`.
    pub key: String,
    /// Who holds it.
    pub holder: NodeName,
    /// Becomes `true` when the lease is lost (session invalidated); the holder must stop acting
    /// on it at once.
    pub lost: tokio::sync::watch::Receiver<bool>,
}

impl Lease {
    /// Whether the lease is still held, as far as this process knows.
    pub fn is_held(&self) -> bool {
        !*self.lost.borrow()
    }
}

/// The coordination service, as every part of trough sees it.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    // ----- catalog -----

    /// Every segment in the catalog, ordered by id.
    async fn list_segments(&self) -> Result<Vec<SegmentEntry>>;

    /// At most `limit` segments whose id starts with `prefix` and sorts after `after` (all when
    /// `None`), ordered by id: one page of the catalog. The default reads the whole catalog;
    /// backends that can, answer from an index.
    async fn list_segments_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SegmentEntry>> {
        Ok(self
            .list_segments()
            .await?
            .into_iter()
            .filter(|e| {
                e.id.as_str().starts_with(prefix) && after.is_none_or(|a| e.id.as_str() > a)
            })
            .take(limit)
            .collect())
    }

    /// One segment, if it exists.
    async fn get_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>>;

    /// Records a stored version. Idempotent for the same (id, version, sha256); a different
    /// manifest for an existing version is a `Conflict`. Versions may be recorded out of order
    /// (catalog rebuild); the entry keeps them sorted.
    async fn add_version(&self, manifest: &Manifest) -> Result<SegmentEntry>;

    /// Marks a segment writable (`Some`) or read-only (`None`). Creates the entry if needed.
    /// Making a segment writable while another node is its writer is a `Conflict`.
    async fn set_writable(
        &self,
        id: &SegmentId,
        info: Option<WritableInfo>,
    ) -> Result<SegmentEntry>;

    /// Waits until the catalog or the assignment changes after `since` (an index returned by an
    /// earlier call; 0 to get the current index at once), or until `timeout`. Returns the index.
    async fn wait_for_change(&self, since: u64, timeout: Duration) -> Result<u64>;

    /// The segments whose catalog entry or assignment changed after `since` (an index from
    /// [`Coordinator::wait_for_change`] or from an earlier call), each once, with the index they
    /// bring the caller up to. `None` when this backend cannot tell (it does not keep a change
    /// log, or `since` is older than the log): the caller then re-reads the whole catalog. Lets
    /// followers apply a change with point reads ([`Coordinator::get_segment`],
    /// [`Coordinator::get_assigned`]) instead of catalog-wide ones.
    async fn catalog_changes(&self, since: u64) -> Result<Option<(u64, Vec<SegmentId>)>> {
        let _ = since;
        Ok(None)
    }

    // ----- dataset management (docs/api.md "Managing segments") -----

    /// Removes a segment from the catalog: its entry, its assignment and its [`SegmentInfo`].
    /// Returns the removed entry, `None` when the segment is unknown (nothing changes).
    /// `Conflict` (code `segment_writable`) while it is writable: its writer must release it
    /// first. The stored objects are not touched (see `trough_store::gc`).
    async fn delete_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>>;

    /// Removes the stored versions `versions` from a segment's entry (retention). Versions the
    /// entry does not have are ignored. Returns the entry afterwards, `None` when the segment is
    /// unknown. The caller decides which versions may go (never the latest, see
    /// `trough_store::retention`).
    async fn remove_versions(
        &self,
        id: &SegmentId,
        versions: &[u64],
    ) -> Result<Option<SegmentEntry>>;

    /// A segment's description and labels (the default, empty, when none were set).
    async fn get_segment_info(&self, id: &SegmentId) -> Result<SegmentInfo>;

    /// Sets a segment's description and labels (replacing both). `NotFound` (code
    /// `segment_not_found`) when the segment is not in the catalog.
    async fn set_segment_info(&self, id: &SegmentId, info: &SegmentInfo) -> Result<()>;

    /// The description and labels of every segment that has any, by id.
    async fn list_segment_info(&self) -> Result<BTreeMap<SegmentId, SegmentInfo>>;

    // ----- schemas -----

    /// Registers (or replaces) a schema. Returns `true` when it was new.
    async fn put_schema(&self, name: &SchemaName, sql: &str) -> Result<bool>;

    /// A schema's SQL.
    async fn get_schema(&self, name: &SchemaName) -> Result<Option<String>>;

    /// Every schema, ordered by name.
    async fn list_schemas(&self) -> Result<Vec<(SchemaName, String)>>;

    // ----- nodes and assignment -----

    /// Registers or refreshes a node (a heartbeat). A node that stops refreshing for
    /// `node_ttl` drops out of [`Coordinator::list_nodes`].
    async fn register_node(&self, node: &NodeInfo) -> Result<()>;

    /// Nodes that reported recently, ordered by name.
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>>;

    /// Stores the leader's assignment.
    async fn put_assignment(&self, assignment: &AssignmentMap) -> Result<()>;

    /// The current assignment (empty when none was stored yet).
    async fn get_assignment(&self) -> Result<AssignmentMap>;

    /// The nodes assigned to hold `id` (empty when none): a point read. The default reads the
    /// whole assignment; backends that can, answer from an index.
    async fn get_assigned(&self, id: &SegmentId) -> Result<Vec<NodeName>> {
        Ok(self.get_assignment().await?.remove(id).unwrap_or_default())
    }

    /// Changes part of the assignment: each entry of `set` replaces that segment's, each of
    /// `removed` is deleted; the rest is left as it is. The default reads, changes and stores the
    /// whole assignment; backends that can, write only the named entries.
    async fn update_assignment(&self, set: &AssignmentMap, removed: &[SegmentId]) -> Result<()> {
        let mut all = self.get_assignment().await?;
        for id in removed {
            all.remove(id);
        }
        all.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.put_assignment(&all).await
    }

    // ----- locks -----

    /// Tries to take the lock `key` for `holder`. `Ok(None)` when someone else holds it. Taking a
    /// lock one already holds succeeds.
    async fn try_lock(&self, key: &str, holder: &NodeName) -> Result<Option<Lease>>;

    /// Releases a lock this holder took.
    async fn unlock(&self, key: &str, holder: &NodeName) -> Result<()>;

    /// Who holds the lock `key`, if anyone.
    async fn lock_holder(&self, key: &str) -> Result<Option<NodeName>>;

    // ----- tokens (docs/security.md) -----

    /// Stores a new token. `Conflict` (code `token_exists`) when its accessor is taken, unless
    /// the stored record has the same secret hash (storing the same token again succeeds).
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;

    /// One token by accessor id: a point read, whatever the number of tokens.
    async fn get_token(&self, accessor: &str) -> Result<Option<TokenRecord>>;

    /// Every token, ordered by accessor.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Deletes a token. Returns whether it existed.
    async fn delete_token(&self, accessor: &str) -> Result<bool>;
}

/// The one check of a token create against a stored record with the same accessor.
pub(crate) fn token_conflict(existing: &TokenRecord, new: &TokenRecord) -> Result<()> {
    if existing.secret_sha256 == new.secret_sha256 {
        Ok(())
    } else {
        Err(trough_types::error::Error::conflict(
            trough_types::error::codes::TOKEN_EXISTS,
            format!("a token with accessor {} exists", new.accessor),
        ))
    }
}

/// The lock key of a segment's write lease.
pub fn write_lease_key(id: &SegmentId) -> String {
    format!("write/{id}")
}

/// The lock key the synchronizer leader holds.
pub const LEADER_LOCK_KEY: &str = "leader";
