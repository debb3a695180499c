//! Manifests and catalog entries: what the federation knows about each segment.
//!
//! A [`Manifest`] describes one immutable stored version of a segment (its object key, size and
//! SHA-256). A [`SegmentEntry`] is one segment in the catalog: every stored version, plus, for a
//! writable segment, who holds its write lease. Pure data; storing and coordinating live elsewhere.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{NodeName, SchemaName, SegmentId};

/// One immutable stored version of a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The segment this version belongs to.
    pub id: SegmentId,
    /// Version number, starting at 1, strictly increasing per segment.
    pub version: u64,
    /// Lower-case hex SHA-256 of the SQLite file.
    pub sha256: String,
    /// Size of the SQLite file in bytes.
    pub size: u64,
    /// When this version was stored.
    pub created_at: DateTime<Utc>,
    /// The registered schema the segment was provisioned from, if any.
    pub schema: Option<SchemaName>,
    /// Whether the segment was writable when this version was stored (i.e. made by a promotion).
    pub writable: bool,
    /// Object-store key of the SQLite file (relative to the store's root).
    pub key: String,
}

/// A writable segment's write side: which node holds the write lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritableInfo {
    /// The node that holds the write lease and the live database.
    pub writer: NodeName,
    /// The schema it was provisioned from (`None` for inline `schema_sql`).
    pub schema: Option<SchemaName>,
    /// When it was provisioned.
    pub provisioned_at: DateTime<Utc>,
}

/// A segment in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// The segment id.
    pub id: SegmentId,
    /// Every stored version, oldest first.
    pub versions: Vec<Manifest>,
    /// Present while the segment is writable.
    pub writable: Option<WritableInfo>,
}

impl SegmentEntry {
    /// The newest stored version, if any.
    pub fn latest(&self) -> Option<&Manifest> {
        self.versions.last()
    }
    /// The newest version number, 0 when nothing is stored yet.
    pub fn latest_version(&self) -> u64 {
        self.latest().map_or(0, |m| m.version)
    }
}
