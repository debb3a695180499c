//! The garbage collector of data objects: mark, wait out a grace period, sweep.
//!
//! A data object (`segments/<id>/data/<sha256>.sqlite`) is garbage when no manifest references
//! it: neither a catalog version nor a manifest object in the store (both are read, so a version
//! that is in one and not yet, or no longer, in the other keeps its object). A round
//! ([`collect`]):
//!
//! 1. lists the data objects and the marks, and reads the references;
//! 2. **marks** each unreferenced object that has no mark yet: it writes
//!    `gc/marks/<id>/<sha256>.json` recording the key and the time it was marked;
//! 3. **sweeps** each object whose mark, and the object itself, are older than the grace period
//!    and that is still unreferenced: it deletes the object, then its mark (a publish stores its
//!    data object before the manifest referencing it, and has the grace period to finish);
//! 4. drops the marks of objects that are referenced again (a restore or a re-publish of the
//!    same bytes) or gone.
//!
//! The marks live in the store, so the grace period is counted from a recorded time whatever
//! happens to the process: a crash after marking loses nothing (the next round, on any node,
//! sees the marks and their times), a crash after deleting an object leaves a mark that the
//! next round drops. An object is deleted only after it was unreferenced for the whole grace
//! period: a node that started downloading a version before retention or a delete removed it
//! finishes, as long as downloads take less than the grace period (docs/operations.md). Copies
//! nodes already hold are files of their own and do not need the object. A publish of the same
//! bytes that races a sweep uploads them again (`Publisher::publish_file`).
//!
//! Not here: which versions to remove (`crate::retention`, `crate::lifecycle`), when rounds run
//! and which node runs them (`trough_node`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trough_coord::Coordinator;
use trough_types::error::Result;

use crate::SegmentStore;

/// Where marks live, relative to the store's root.
pub const MARKS_DIR: &str = "gc/marks";

/// What a mark records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The data object's key.
    pub key: String,
    /// When it was found unreferenced.
    pub marked_at: DateTime<Utc>,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Objects marked now.
    pub marked: usize,
    /// Objects deleted now.
    pub swept: usize,
    /// Marked objects still within their grace period.
    pub waiting: usize,
    /// Marks dropped (the object is referenced again, or gone).
    pub unmarked: usize,
}

/// The mark key of a data object key: `segments/<id>/data/<sha>.sqlite` →
/// `gc/marks/<id>/<sha>.json`.
pub fn mark_key(data_key: &str) -> Option<String> {
    let rest = data_key.strip_prefix("segments/")?;
    let (id, file) = rest.split_once("/data/")?;
    let sha = file.strip_suffix(".sqlite")?;
    Some(format!("{MARKS_DIR}/{id}/{sha}.json"))
}

/// The data keys every manifest references: the catalog's and the store's.
pub async fn referenced(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
) -> Result<BTreeSet<String>> {
    let mut keys: BTreeSet<String> = coordinator
        .list_segments()
        .await?
        .into_iter()
        .flat_map(|e| e.versions.into_iter().map(|m| m.key))
        .collect();
    keys.extend(store.list_manifests().await?.into_iter().map(|m| m.key));
    Ok(keys)
}

/// Only the marking half of a round: what a round does before it sweeps. Returns how many
/// objects it marked. (A round is [`collect`]; this exists so that a crash between marking and
/// sweeping can be reproduced exactly.)
pub async fn mark(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let refs = referenced(store, coordinator).await?;
    let marks = read_marks(store).await?;
    let mut marked = 0;
    for obj in store.list_data_objects().await? {
        if refs.contains(&obj.key) {
            continue;
        }
        let Some(mk) = mark_key(&obj.key) else {
            continue;
        };
        if marks.contains_key(&mk) {
            continue;
        }
        let m = Mark {
            key: obj.key.clone(),
            marked_at: now,
        };
        store.write_small(&mk, serde_json::to_vec(&m)?).await?;
        marked += 1;
    }
    Ok(marked)
}

async fn read_marks(store: &SegmentStore) -> Result<BTreeMap<String, Option<Mark>>> {
    let mut out = BTreeMap::new();
    for k in store.list_keys(MARKS_DIR).await? {
        let m = store
            .read_small(&k)
            .await?
            .and_then(|b| serde_json::from_slice::<Mark>(&b).ok());
        out.insert(k, m);
    }
    Ok(out)
}

/// One round: mark, sweep what waited `grace`, drop stale marks.
pub async fn collect(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Report> {
    let mut report = Report {
        marked: mark(store, coordinator, now).await?,
        ..Report::default()
    };
    let objects: BTreeMap<String, DateTime<Utc>> = store
        .list_data_objects()
        .await?
        .into_iter()
        .map(|o| (o.key, o.last_modified))
        .collect();
    let marks = read_marks(store).await?;
    if marks.is_empty() {
        return Ok(report);
    }
    // Read again after marking: a version recorded meanwhile keeps its object.
    let refs = referenced(store, coordinator).await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    for (mk, m) in marks {
        let Some(m) = m.filter(|m| mark_key(&m.key).as_deref() == Some(mk.as_str())) else {
            // Unreadable or not ours: a mark that names no object.
            store.delete_key(&mk).await?;
            report.unmarked += 1;
            continue;
        };
        let Some(written) = objects.get(&m.key).copied() else {
            store.delete_key(&mk).await?;
            report.unmarked += 1;
            continue;
        };
        if refs.contains(&m.key) {
            store.delete_key(&mk).await?;
            report.unmarked += 1;
            continue;
        }
        // Also as old as the grace period: a publish stores its data object before the
        // manifest that references it, and has the grace period to finish.
        if now.signed_duration_since(m.marked_at) < grace
            || now.signed_duration_since(written) < grace
        {
            report.waiting += 1;
            continue;
        }
        store.delete_key(&m.key).await?;
        store.delete_key(&mk).await?;
        report.swept += 1;
        tracing::info!(key = %m.key, marked_at = %m.marked_at, "garbage collector deleted an unreferenced data object");
    }
    metrics::counter!("trough_gc_swept_objects_total").increment(report.swept as u64);
    Ok(report)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
