//! Deleting and restoring segments: the store-and-catalog steps, in the order that keeps them
//! consistent across a crash.
//!
//! - [`delete_segment`]: the manifests go first, then the catalog entry. A crash in between
//!   leaves an entry whose manifests are (partly) gone; the delete can simply be repeated. Had
//!   the entry gone first, the start-up reconcile would bring the segment back from its
//!   manifests. Data objects stay: the garbage collector ([`crate::gc`]) removes them once no
//!   manifest has referenced them for its grace period, so a node still downloading one
//!   finishes. With the manifests gone, a new publish of the id starts again at version 1.
//! - [`restore`]: a new version whose manifest points at an older version's data object (no
//!   bytes move).
//!
//! Not here: releasing a writable segment (`trough_writer`), HTTP.

use std::sync::Arc;

use trough_coord::Coordinator;
use trough_types::error::{codes, Error, Result};
use trough_types::id::SegmentId;
use trough_types::manifest::{Manifest, SegmentEntry};

use crate::publish::{PublishOptions, Publisher};
use crate::SegmentStore;

fn not_found(id: &SegmentId) -> Error {
    Error::not_found(codes::SEGMENT_NOT_FOUND, format!("segment {id} not found"))
}

/// Deletes a read-only segment: its manifests, then its catalog entry. `NotFound` when unknown,
/// `Conflict` (`segment_writable`) while writable (release it first). Returns the entry removed.
pub async fn delete_segment(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
    id: &SegmentId,
) -> Result<SegmentEntry> {
    let entry = coordinator
        .get_segment(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(w) = &entry.writable {
        return Err(Error::conflict(
            codes::SEGMENT_WRITABLE,
            format!(
                "{id} is writable on node {}; it must be released first",
                w.writer
            ),
        ));
    }
    let mut versions: Vec<u64> = entry.versions.iter().map(|m| m.version).collect();
    versions.extend(store.list_versions(id).await?);
    versions.sort_unstable();
    versions.dedup();
    for v in versions {
        store.delete_manifest(id, v).await?;
    }
    let removed = coordinator
        .delete_segment(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    // A publish that raced the delete may have stored a manifest after the listing above: unless
    // it also re-created the entry (it then survives the delete), remove it too.
    if coordinator.get_segment(id).await?.is_none() {
        for v in store.list_versions(id).await? {
            store.delete_manifest(id, v).await?;
        }
    }
    tracing::info!(segment = %id, versions = removed.versions.len(), "deleted segment");
    Ok(removed)
}

/// Makes `version` of `id` current again: publishes its data object as a new version.
/// `NotFound` for an unknown segment (`segment_not_found`) or version (`version_not_found`).
pub async fn restore(publisher: &Publisher, id: &SegmentId, version: u64) -> Result<Manifest> {
    let entry = publisher
        .coordinator()
        .get_segment(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let old = entry
        .versions
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| {
            Error::not_found(
                codes::VERSION_NOT_FOUND,
                format!(
                    "{id} has no version {version} (versions kept: {})",
                    entry
                        .versions
                        .iter()
                        .map(|m| m.version.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let m = publisher
        .record_version(
            id,
            &old.key,
            &old.sha256,
            old.size,
            PublishOptions {
                schema: old.schema.clone(),
                writable: entry.writable.is_some(),
                known_digest: None,
            },
        )
        .await?;
    tracing::info!(segment = %id, from = version, version = m.version, "restored version");
    Ok(m)
}
