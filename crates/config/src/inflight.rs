//! Bounds on the requests a node works on at the same time (`limits.inflight`), per class, so
//! that overload is refused early (503 `overloaded` with `Retry-After`) instead of growing queues,
//! and reads keep their latency under a write storm and vice versa (decision 0015).
//!
//! Not here: enforcing them (the api crate's `admission` middleware) or connection-level bounds
//! (`limits.http.max_connections`).

use serde::{Deserialize, Serialize};

/// Requests served at the same time, per class; `0` means unbounded. Health and metrics are
/// never counted or refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct InflightLimits {
    /// Reads: point queries, schema and catalog reads. Default 512.
    pub reads: usize,
    /// Writes: `/execute`, uploads, provisioning, management changes. Default 128.
    pub writes: usize,
    /// Cluster-wide queries (`POST /query`), each of which fans out to many segments.
    /// Default 32.
    pub fanout: usize,
    /// The `Retry-After` (seconds) of a request refused as `overloaded`. Default 1.
    pub retry_after_secs: u64,
}

impl Default for InflightLimits {
    fn default() -> Self {
        Self {
            reads: 512,
            writes: 128,
            fanout: 32,
            retry_after_secs: 1,
        }
    }
}
