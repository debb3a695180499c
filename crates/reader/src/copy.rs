//! One local copy of a segment (stored or live) and its connections.
//!
//! A [`SegmentCopy`] is shared through an `Arc`: the reader's table holds one reference and every
//! query in flight holds another. When the last reference goes (the copy was replaced or removed
//! and its last query finished), its idle connections are closed (connections in use close when their query ends) and, for a stored copy, its file is deleted.
//! Not here: choosing which copy serves a query (the reader) or running the query (core).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use trough_sqlite::{Access, QueryLimits};

use crate::pool::{Budget, CopyConns};
use trough_types::SegmentId;

/// A file this reader can serve queries from.
pub(crate) struct SegmentCopy {
    pub(crate) id: SegmentId,
    pub(crate) path: PathBuf,
    /// `Some` for stored copies.
    pub(crate) version: Option<u64>,
    /// `Some` for stored copies.
    pub(crate) sha256: Option<String>,
    /// Taken in `Drop` so connections close before the file is deleted.
    conns: Option<Arc<CopyConns>>,
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
        budget: &Arc<Budget>,
    ) -> Self {
        let access = if stored.is_some() {
            Access::ReadOnlyImmutable
        } else {
            Access::ReadOnly
        };
        let conns = CopyConns::new(
            path.clone(),
            access,
            limits.pool_size as usize,
            budget.clone(),
        );
        let (version, sha256) = stored.map_or((None, None), |(v, s)| (Some(v), Some(s)));
        Self {
            id,
            path,
            delete_on_drop: AtomicBool::new(version.is_some()),
            version,
            sha256,
            conns: Some(conns),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.version.is_none()
    }

    pub(crate) fn conns(&self) -> &Arc<CopyConns> {
        self.conns.as_ref().expect("taken only in Drop")
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
        drop(self.conns.take());
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
