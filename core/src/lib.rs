//! # trough-core: the shared vocabulary of trough
//!
//! Everything more than one part of trough needs lives here, bottom-up:
//!
//! - [`id`]: validated names (segment ids, schema and node names). Nothing unvalidated reaches a
//!   path, key or URL.
//! - [`error`] and [`http`]: one error vocabulary ([`error::ErrorKind`]) and the one place that maps
//!   it to HTTP statuses.
//! - [`manifest`]: what the catalog says about a segment and its immutable versions.
//! - [`store`]: segment files in object storage (local files or S3) through `object_store`.
//! - [`coord`]: the [`coord::Coordinator`] trait (catalog, schemas, nodes, assignment, locks) and
//!   its embedded backend.
//! - [`publish`]: validating, hashing, storing and cataloguing a new segment version.
//! - [`sql`]: the SQLite engine wrapper: guarded connections, parameter binding, JSON encoding of
//!   values and streaming query execution.
//! - [`config`]: the configuration file, environment and defaults.
//! - [`metrics`]: the Prometheus recorder.
//!
//! What is *not* here: HTTP routes (the router and node services own them), the assignment
//! algorithm and sync loops (synchronizer), write transactions (writer).

pub mod config;
pub mod coord;
pub mod error;
pub mod hash;
pub mod http;
pub mod id;
pub mod manifest;
pub mod metrics;
pub mod publish;
pub mod sql;
pub mod store;

pub use error::{ApiError, Error, ErrorKind, Result};
pub use id::{NodeName, SchemaName, SegmentId};
pub use manifest::{Manifest, SegmentEntry, WritableInfo};
