//! # trough-types: the vocabulary every part of trough shares
//!
//! - [`id`]: validated names (segment ids, schema and node names). Nothing unvalidated reaches a
//!   path, key or URL.
//! - [`error`]: one error vocabulary ([`error::ErrorKind`] and stable codes) and the one table from
//!   a kind to an HTTP status.
//! - [`wire`]: the JSON error document and the error line that ends a failed stream.
//! - [`manifest`]: what the catalog says about a segment and its immutable versions.
//!
//! What is *not* here: anything that does I/O. SQLite is `trough-sqlite`, object storage and
//! hashing `trough-store`, coordination `trough-coord`, configuration `trough-config`.

pub mod error;
pub mod id;
pub mod manifest;
pub mod wire;

pub use error::{ApiError, Error, ErrorKind, Result};
pub use id::{NodeName, SchemaName, SegmentId};
pub use manifest::{Manifest, SegmentEntry, WritableInfo};
