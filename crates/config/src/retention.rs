//! `[retention]`: how many stored versions to keep and how the garbage collector of data
//! objects runs (docs/operations.md, docs/decisions/0013-retention-and-gc.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Retention and garbage collection.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Keep the newest this many versions of each segment. Default: unset (with neither this
    /// nor `keep_for_secs`, every version is kept).
    pub keep_last: Option<u64>,
    /// Keep versions younger than this many seconds. Default: unset. With both set, a version
    /// is kept when either rule keeps it; the newest version is always kept.
    pub keep_for_secs: Option<u64>,
    /// How often retention and the garbage collector run, in seconds; 0 disables both.
    /// Default 3600.
    pub interval_secs: u64,
    /// How long a data object must have been unreferenced before the garbage collector deletes
    /// it, in seconds: longer than the slowest download of a segment. Default 86400.
    pub gc_grace_secs: u64,
    /// Per-tier rules (`[retention.tiers.<tier>]`), for the segments `assignment.tier_rules`
    /// puts in that tier: they replace the two rules above for those segments (a field left
    /// unset there is no rule). Default: none.
    pub tiers: BTreeMap<String, TierRetention>,
}

/// The retention rules of one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierRetention {
    /// As [`RetentionConfig::keep_last`].
    pub keep_last: Option<u64>,
    /// As [`RetentionConfig::keep_for_secs`].
    pub keep_for_secs: Option<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_last: None,
            keep_for_secs: None,
            interval_secs: 3600,
            gc_grace_secs: 86_400,
            tiers: BTreeMap::new(),
        }
    }
}
