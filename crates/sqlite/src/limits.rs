//! Resource limits of SQL statements (part of the node configuration).
//!
//! [`QueryLimits`] are per read query: [`super::run_query`] enforces them and the reader sizes its
//! connection pools with `pool_size`. [`SqliteLimits`] bound every connection trough opens and the
//! SQLite library as a whole: [`configure`] applies the process-wide part once at start-up (heap
//! limit, temporary-file directory) and [`apply`] the per-connection part to each connection
//! ([`super::open()`] does it for segment connections; the merge database calls it itself).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use rusqlite::limits::Limit;
use rusqlite::{ffi, Connection};

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
    /// Most connections a node keeps open while idle, across all its segment copies; beyond it,
    /// the least recently used copy's idle connection is closed. Each holds SQLite's page cache
    /// and the segment's schema, so this bounds the reader's memory when it holds many segments.
    /// Default 256.
    pub idle_connections: u32,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            max_rows: 1_000_000,
            max_response_bytes: 1 << 30,
            pool_size: 8,
            idle_connections: 256,
        }
    }
}

impl QueryLimits {
    /// [`Self::timeout_ms`] as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Limits of every SQLite connection and of the SQLite library in this process
/// (`limits.sqlite`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SqliteLimits {
    /// Longest string or blob a statement may create or read, in bytes (`SQLITE_LIMIT_LENGTH`;
    /// at most 1 000 000 000). Longer fails at once with `too_big` (400). Default 16 MiB.
    pub max_length_bytes: u64,
    /// Most parameters one statement may have and a request may give
    /// (`SQLITE_LIMIT_VARIABLE_NUMBER`); more is `invalid_params` or `sql_error` (400).
    /// Default 32766.
    pub max_params: u32,
    /// Hard limit of the memory SQLite may allocate in this process, all connections together
    /// (`sqlite3_hard_heap_limit64`), in bytes; 0 for none. An allocation past it fails the
    /// statement with `out_of_memory` (503). SQLite starts to give back cache memory at half of
    /// it (the soft heap limit). Default 256 MiB.
    pub heap_limit_bytes: u64,
}

impl Default for SqliteLimits {
    fn default() -> Self {
        Self {
            max_length_bytes: DEFAULT_MAX_LENGTH as u64,
            max_params: DEFAULT_MAX_PARAMS as u32,
            heap_limit_bytes: 256 << 20,
        }
    }
}

const DEFAULT_MAX_LENGTH: i32 = 16 << 20;
const DEFAULT_MAX_PARAMS: i32 = 32766;
/// SQLite's own ceiling for `SQLITE_LIMIT_LENGTH`.
const SQLITE_MAX_LENGTH: u64 = 1_000_000_000;

static MAX_LENGTH: AtomicI32 = AtomicI32::new(DEFAULT_MAX_LENGTH);
static MAX_PARAMS: AtomicI32 = AtomicI32::new(DEFAULT_MAX_PARAMS);
static TEMP_DIR: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Applies `limits` to the whole process, and makes `temp_dir` (created if missing) the
/// directory of SQLite's temporary files (sorts and temporary b-trees that spill, statement
/// journals), instead of `$TMPDIR`. Call once at start-up, before connections are opened.
pub fn configure(limits: &SqliteLimits, temp_dir: &Path) -> trough_types::Result<()> {
    MAX_LENGTH.store(
        limits.max_length_bytes.clamp(1, SQLITE_MAX_LENGTH) as i32,
        Ordering::Relaxed,
    );
    MAX_PARAMS.store(
        limits.max_params.clamp(1, i32::MAX as u32) as i32,
        Ordering::Relaxed,
    );
    let hard = i64::try_from(limits.heap_limit_bytes).unwrap_or(i64::MAX);
    // The limit is enforced by trough's allocator when SQLite took it (`alloc::install`, before
    // SQLite initialized), else by SQLite's own statistics; both are set.
    crate::alloc::install();
    crate::alloc::set_heap_limit(hard);
    // SAFETY: plain calls into SQLite's thread-safe configuration API.
    unsafe {
        ffi::sqlite3_hard_heap_limit64(hard);
        ffi::sqlite3_soft_heap_limit64(hard / 2);
    }
    std::fs::create_dir_all(temp_dir)?;
    *TEMP_DIR.write().unwrap_or_else(|p| p.into_inner()) = Some(temp_dir.to_owned());
    let dir = CString::new(temp_dir.as_os_str().as_encoded_bytes())
        .map_err(|_| trough_types::Error::internal("the temporary directory path contains NUL"))?;
    // SAFETY: `sqlite3_temp_directory` must be set before SQLite creates temporary files and must
    // point to memory from sqlite3_malloc; it is read by SQLite only. Changing it later (tests
    // start several nodes in one process) leaks the previous string, which is a few bytes.
    unsafe {
        let copy = ffi::sqlite3_mprintf(c"%s".as_ptr(), dir.as_ptr());
        if copy.is_null() {
            return Err(trough_types::Error::internal("out of memory"));
        }
        ffi::sqlite3_temp_directory = copy;
    }
    Ok(())
}

/// The directory for this process's anonymous temporary files: the one given to [`configure`]
/// (under the data dir), `std::env::temp_dir()` before that (unit tests). SQLite's own temporary
/// files go there too; other code creating temporary files (e.g. the fan-out's spool) uses it.
pub fn temp_dir() -> PathBuf {
    TEMP_DIR
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(std::env::temp_dir)
}

/// The configured `max_params`.
pub fn max_params() -> usize {
    MAX_PARAMS.load(Ordering::Relaxed) as usize
}

/// The configured `max_length_bytes`.
pub fn max_length() -> i32 {
    MAX_LENGTH.load(Ordering::Relaxed)
}

/// Applies the per-connection limits to `conn`: string/blob length and parameter count.
pub fn apply(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, max_length())?;
    conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, max_params() as i32)?;
    Ok(())
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
        let l: SqliteLimits = serde_json::from_str(r#"{"max_params": 10}"#).unwrap();
        assert_eq!(l.max_params, 10);
        assert_eq!(l.max_length_bytes, 16 << 20);
        assert_eq!(l.heap_limit_bytes, 256 << 20);
    }
}
