//! Per-query resource limits of the read path (part of the node configuration).
//!
//! Only the numbers and their defaults live here; [`super::run_query`] enforces them and the
//! reader sizes its connection pools with `pool_size`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to every `/query`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryLimits {
    /// Wall-clock limit of one query in milliseconds, from start to the last byte handed to the
    /// client (a client that reads too slowly runs into it too). Exceeding it fails the query with
    /// `query_timeout` (504). Default 30000.
    pub timeout_ms: u64,
    /// Maximum number of rows one query may return; more is a `result_too_large` error (400),
    /// never a silently truncated answer. Default 1 000 000.
    pub max_rows: u64,
    /// Maximum size in bytes of one encoded response; more is a `result_too_large` error (400).
    /// Default 1 GiB.
    pub max_response_bytes: u64,
    /// Maximum number of open SQLite connections per segment copy (connections are opened on
    /// demand and reused). Default 8.
    pub pool_size: u32,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            max_rows: 1_000_000,
            max_response_bytes: 1 << 30,
            pool_size: 8,
        }
    }
}

impl QueryLimits {
    /// [`Self::timeout_ms`] as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_deserialize() {
        let l: QueryLimits = serde_json::from_str(r#"{"timeout_ms": 200}"#).unwrap();
        assert_eq!(l.timeout(), Duration::from_millis(200));
        assert_eq!(l.max_rows, 1_000_000);
        assert_eq!(l.max_response_bytes, 1_073_741_824);
        assert_eq!(l.pool_size, 8);
    }
}
