//! `[retention]`: how many stored versions to keep and how the garbage collector of data
//! objects runs (docs/operations.md, docs/decisions/0013-retention-and-gc.md).

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
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_last: None,
            keep_for_secs: None,
            interval_secs: 3600,
            gc_grace_secs: 86_400,
        }
    }
}
