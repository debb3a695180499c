//! Retention: which stored versions of a segment to remove ([`expired`], pure) and removing them
//! ([`apply`]). A version is kept when it is one of the newest `keep_last`, or younger than
//! `keep_for`; the newest version is always kept, and with no rule set nothing is removed.
//! Removing a version deletes its manifest, then its catalog record (a crash in between leaves
//! a catalog record without a manifest, which the next round removes; the other order would let
//! the start-up reconcile bring the version back). Its data object is left to the garbage
//! collector ([`crate::gc`]). Not here: when rounds run (`trough_node`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use trough_coord::Coordinator;
use trough_types::error::Result;
use trough_types::manifest::{Manifest, SegmentEntry};
use trough_types::SegmentId;

use crate::SegmentStore;

/// The rule (config `[retention]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Keep the newest this many versions (at least 1 is always kept).
    pub keep_last: Option<u64>,
    /// Keep versions younger than this.
    pub keep_for: Option<Duration>,
}

impl Policy {
    /// Whether any rule is set (without one nothing is ever removed).
    pub fn is_set(&self) -> bool {
        self.keep_last.is_some() || self.keep_for.is_some()
    }
}

/// The versions of `versions` (oldest first) that `policy` removes at `now`. Pure.
pub fn expired(versions: &[Manifest], policy: &Policy, now: DateTime<Utc>) -> Vec<u64> {
    if !policy.is_set() || versions.len() <= 1 {
        return Vec::new();
    }
    let keep_last = policy.keep_last.unwrap_or(0).max(1) as usize;
    let newest_kept = versions.len().saturating_sub(keep_last);
    versions[..newest_kept]
        .iter()
        .filter(|m| match policy.keep_for {
            // With only `keep_for`, `keep_last` is 1: the newest stays however old.
            Some(t) => {
                let age = now.signed_duration_since(m.created_at);
                age.to_std().is_ok_and(|age| age >= t)
            }
            None => policy.keep_last.is_some(),
        })
        .map(|m| m.version)
        .collect()
}

/// Removes the versions of `entry` that `policy` expires at `now`. Returns how many went.
pub async fn apply(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
    entry: &SegmentEntry,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<usize> {
    let gone = expired(&entry.versions, policy, now);
    if gone.is_empty() {
        return Ok(0);
    }
    for v in &gone {
        store.delete_manifest(&entry.id, *v).await?;
    }
    coordinator.remove_versions(&entry.id, &gone).await?;
    tracing::info!(segment = %entry.id, versions = ?gone, "retention removed versions");
    Ok(gone.len())
}

/// One retention round over the whole catalog, each segment under `policy_for` its id (one
/// global policy, or its tier's). Returns how many versions were removed.
pub async fn run(
    store: &SegmentStore,
    coordinator: &Arc<dyn Coordinator>,
    policy_for: &(dyn Fn(&SegmentId) -> Policy + Send + Sync),
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut removed = 0;
    for entry in coordinator.list_segments().await? {
        let policy = policy_for(&entry.id);
        removed += apply(store, coordinator, &entry, &policy, now).await?;
    }
    metrics::counter!("trough_retention_removed_versions_total").increment(removed as u64);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(ages_hours: &[i64], now: DateTime<Utc>) -> Vec<Manifest> {
        ages_hours
            .iter()
            .enumerate()
            .map(|(i, h)| Manifest {
                id: SegmentId::new("r").unwrap(),
                version: i as u64 + 1,
                sha256: format!("{i:064}"),
                size: 1,
                created_at: now - chrono::Duration::hours(*h),
                schema: None,
                writable: false,
                key: format!("segments/r/data/{i}.sqlite"),
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_n_the_young_and_always_the_latest() {
        let now = Utc::now();
        let v = versions(&[50, 40, 30, 20, 10], now);
        let p = |keep_last, hours: Option<u64>| Policy {
            keep_last,
            keep_for: hours.map(|h| Duration::from_secs(h * 3600)),
        };
        assert!(expired(&v, &Policy::default(), now).is_empty());
        assert_eq!(expired(&v, &p(Some(2), None), now), [1, 2, 3]);
        assert_eq!(expired(&v, &p(Some(0), None), now), [1, 2, 3, 4]);
        assert!(expired(&v, &p(Some(9), None), now).is_empty());
        assert_eq!(expired(&v, &p(None, Some(25)), now), [1, 2, 3]);
        // Both: kept when either rule keeps it.
        assert_eq!(expired(&v, &p(Some(4), Some(25)), now), [1]);
        assert_eq!(expired(&v, &p(Some(1), Some(35)), now), [1, 2]);
        // Everything old: the latest stays.
        assert_eq!(expired(&v, &p(None, Some(1)), now), [1, 2, 3, 4]);
        assert!(expired(&v[..1], &p(Some(1), Some(1)), now).is_empty());
    }
}
