//! One local copy of a segment (stored or live) and its connection pool.
//!
//! A [`SegmentCopy`] is shared through an `Arc`: the reader's table holds one reference and every
//! query in flight holds another. When the last reference goes (the copy was replaced or removed
//! and its last query finished), its pool is closed and, for a stored copy, its file is deleted.
//! Not here: choosing which copy serves a query (the reader) or running the query (core).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use scheduled_thread_pool::ScheduledThreadPool;
use trough_sqlite::{self as sql, Access, QueryLimits};
use trough_types::SegmentId;

/// Opens guarded connections to one file for r2d2.
#[derive(Debug)]
pub(crate) struct Manager {
    path: PathBuf,
    access: Access,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = trough_types::Error;

    fn connect(&self) -> Result<Connection, trough_types::Error> {
        sql::open(&self.path, self.access)
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), trough_types::Error> {
        // The guard denies transaction control, so this is a safety net, not an expected case.
        if conn.is_autocommit() {
            Ok(())
        } else {
            Err(trough_types::Error::internal(
                "pooled connection was left inside a transaction",
            ))
        }
    }

    fn has_broken(&self, _conn: &mut Connection) -> bool {
        false
    }
}

/// A file this reader can serve queries from.
pub(crate) struct SegmentCopy {
    pub(crate) id: SegmentId,
    pub(crate) path: PathBuf,
    /// `Some` for stored copies.
    pub(crate) version: Option<u64>,
    /// `Some` for stored copies.
    pub(crate) sha256: Option<String>,
    /// Taken in `Drop` so connections close before the file is deleted.
    pool: Option<r2d2::Pool<Manager>>,
    /// Stored copies delete their file when dropped, unless the same file was installed again.
    delete_on_drop: AtomicBool,
}

impl SegmentCopy {
    /// A copy whose pool opens connections on demand (nothing is opened here).
    pub(crate) fn new(
        id: SegmentId,
        path: PathBuf,
        stored: Option<(u64, String)>,
        limits: &QueryLimits,
        threads: &Arc<ScheduledThreadPool>,
    ) -> Self {
        let access = if stored.is_some() {
            Access::ReadOnlyImmutable
        } else {
            Access::ReadOnly
        };
        let pool = r2d2::Pool::builder()
            .max_size(limits.pool_size.max(1))
            .min_idle(Some(0))
            // No reaper: r2d2 never unschedules a pool's reaper job, so with many short-lived
            // pools on a shared thread pool they would pile up. Idle connections (at most
            // pool_size) close with the copy instead.
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(limits.timeout())
            .thread_pool(threads.clone())
            .build_unchecked(Manager {
                path: path.clone(),
                access,
            });
        let (version, sha256) = stored.map_or((None, None), |(v, s)| (Some(v), Some(s)));
        Self {
            id,
            path,
            delete_on_drop: AtomicBool::new(version.is_some()),
            version,
            sha256,
            pool: Some(pool),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.version.is_none()
    }

    pub(crate) fn pool(&self) -> &r2d2::Pool<Manager> {
        self.pool.as_ref().expect("pool is only taken in Drop")
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the file when this copy is dropped (it was installed again under the same path).
    pub(crate) fn keep_file(&self) {
        self.delete_on_drop.store(false, Ordering::SeqCst);
    }
}

impl Drop for SegmentCopy {
    fn drop(&mut self) {
        drop(self.pool.take());
        if self.delete_on_drop.load(Ordering::SeqCst) {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(
                    segment = %self.id, version = ?self.version, path = %self.path.display(),
                    "deleted replaced stored copy"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    segment = %self.id, path = %self.path.display(), error = %e,
                    "could not delete replaced stored copy"
                ),
            }
        }
    }
}
