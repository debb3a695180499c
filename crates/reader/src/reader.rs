//! The [`Reader`]: the table of local segment copies and the query entry point.
//!
//! The table maps each segment id to at most one stored copy and one live database. Swaps are
//! atomic: a query picks its copy (live first, then stored) under a short lock and keeps an `Arc`
//! to it, so installing or removing a copy never disturbs queries already running. Not here: the
//! copy's lifecycle details ([`crate::copy`]) or the response stream ([`crate::stream`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use trough_sqlite::query::{cancelled_error, timeout_error};
use trough_sqlite::{self as sql, CancelToken, QueryLimits, QueryStats, RowFormat, SqlRequest};
use trough_types::error::codes;
use trough_types::{ApiError, ErrorKind, SegmentId};

use crate::copy::SegmentCopy;
use crate::error::Error;
use crate::pool::{Budget, GetError};
use crate::stream::{CancelOnDrop, Outcome, QueryStream};

/// How many encoded chunks (about 32 KiB each) may wait in a query's channel.
const CHANNEL_CHUNKS: usize = 4;

/// One copy this reader holds, as reported by [`Reader::held`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldCopy {
    /// The segment.
    pub id: SegmentId,
    /// The stored version (`None` for a live database).
    pub version: Option<u64>,
    /// The stored version's SHA-256 (`None` for a live database).
    pub sha256: Option<String>,
    /// Whether this is a writable segment's live database.
    pub live: bool,
}

#[derive(Default)]
struct Slot {
    stored: Option<Arc<SegmentCopy>>,
    live: Option<Arc<SegmentCopy>>,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.stored.is_none() && self.live.is_none()
    }
}

/// Serves read queries from this node's local segment copies. `Send + Sync`; share it in an `Arc`.
pub struct Reader {
    limits: QueryLimits,
    table: RwLock<BTreeMap<SegmentId, Slot>>,
    /// Replaced stored copies still in use (to keep their file if the same path is installed again).
    retired: Mutex<Vec<Weak<SegmentCopy>>>,
    budget: Arc<Budget>,
}

/// Shutting the reader down is neither replacing nor dropping a copy: every copy it serves keeps
/// its file, so the next start adopts it instead of fetching it again. (Copies replaced earlier
/// and still in use by a query are garbage and are deleted when that query ends.)
impl Drop for Reader {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        for slot in table.values() {
            if let Some(copy) = &slot.stored {
                copy.keep_file();
            }
        }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("limits", &self.limits)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader holding nothing yet.
    pub fn new(limits: QueryLimits) -> Self {
        Self {
            table: RwLock::new(BTreeMap::new()),
            retired: Mutex::new(Vec::new()),
            budget: Budget::new(limits.idle_connections as usize),
            limits,
        }
    }

    /// The limits every query runs under.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Idle connections across every copy (tests).
    #[cfg(test)]
    pub(crate) fn budget_idle(&self) -> usize {
        self.budget.idle()
    }

    /// Serves the verified immutable copy at `path` as `id`'s stored copy, replacing any previous
    /// one atomically: queries in flight finish on the old copy, whose file is then deleted
    /// (unless it is this very `path`). The file is not opened here.
    pub fn install_stored(
        &self,
        id: SegmentId,
        version: u64,
        sha256: String,
        path: PathBuf,
    ) -> Result<(), Error> {
        check_file(&id, &path)?;
        let copy = Arc::new(SegmentCopy::new(
            id.clone(),
            path,
            Some((version, sha256)),
            &self.limits,
            &self.budget,
        ));
        // A retired copy of the same file must not delete it any more.
        {
            let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            retired.retain(|w| match w.upgrade() {
                Some(old) => {
                    if old.path() == copy.path() {
                        old.keep_file();
                    }
                    true
                }
                None => false,
            });
        }
        let old = {
            let mut table = self.write_table();
            let slot = table.entry(id.clone()).or_default();
            if let Some(old) = &slot.stored {
                if old.path() == copy.path()
                    && old.version == copy.version
                    && old.sha256 == copy.sha256
                {
                    // Already serving exactly this; keep the warm pool. `copy` must not delete
                    // the shared file when it is dropped below.
                    copy.keep_file();
                    return Ok(());
                }
                if old.path() == copy.path() {
                    old.keep_file();
                }
            }
            let old = slot.stored.replace(copy.clone());
            self.update_gauge(&table);
            old
        };
        tracing::debug!(segment = %id, version, path = %copy.path().display(), "serving stored copy");
        self.retire(old);
        Ok(())
    }

    /// Serves `path`, the live WAL database of writable segment `id` on this node, read-only. It
    /// takes precedence over a stored copy; the reader never deletes it.
    pub fn install_live(&self, id: SegmentId, path: PathBuf) -> Result<(), Error> {
        check_file(&id, &path)?;
        let copy = Arc::new(SegmentCopy::new(
            id.clone(),
            path,
            None,
            &self.limits,
            &self.budget,
        ));
        let mut table = self.write_table();
        let slot = table.entry(id.clone()).or_default();
        if slot.live.as_ref().is_some_and(|l| l.path() == copy.path()) {
            return Ok(());
        }
        let old = slot.live.replace(copy);
        self.update_gauge(&table);
        drop(table);
        drop(old);
        tracing::info!(segment = %id, "serving live database");
        Ok(())
    }

    /// Stops serving `id`'s live database (its file is left alone).
    pub fn remove_live(&self, id: &SegmentId) {
        let old = {
            let mut table = self.write_table();
            let old = table.get_mut(id).and_then(|s| s.live.take());
            if table.get(id).is_some_and(Slot::is_empty) {
                table.remove(id);
            }
            self.update_gauge(&table);
            old
        };
        drop(old);
    }

    /// Stops serving `id`'s stored copy; its file is deleted once no query uses it.
    pub fn remove_stored(&self, id: &SegmentId) {
        let old = {
            let mut table = self.write_table();
            let old = table.get_mut(id).and_then(|s| s.stored.take());
            if table.get(id).is_some_and(Slot::is_empty) {
                table.remove(id);
            }
            self.update_gauge(&table);
            old
        };
        self.retire(old);
    }

    /// Every copy held, sorted by id (a stored copy before the live database of the same id).
    pub fn held(&self) -> Vec<HeldCopy> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table
            .values()
            .flat_map(|slot| slot.stored.iter().chain(slot.live.iter()))
            .map(|c| HeldCopy {
                id: c.id.clone(),
                version: c.version,
                sha256: c.sha256.clone(),
                live: c.is_live(),
            })
            .collect()
    }

    /// Whether any copy of `id` is held.
    pub fn has(&self, id: &SegmentId) -> bool {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.get(id).is_some_and(|s| !s.is_empty())
    }

    /// Runs one read-only statement on `id` and streams its answer.
    ///
    /// Returns once the first chunk of output exists (or the query finished), so errors before
    /// any output (bad SQL, not read-only, timeout, limits within the first chunk) are an `Err`.
    /// Dropping the returned stream (client gone) cancels the query promptly.
    pub async fn query(
        &self,
        id: &SegmentId,
        req: SqlRequest,
        format: RowFormat,
    ) -> Result<QueryStream, Error> {
        let copy = self
            .pick(id)
            .ok_or_else(|| Error::SegmentUnavailable(id.clone()))?;
        let limits = self.limits.clone();
        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let outcome: Outcome = Arc::new(OnceLock::new());
        let cancel = CancelToken::new();
        // Cancels the query if this future or the stream is dropped before it completes.
        let cancel_guard = CancelOnDrop(cancel.clone());
        let handle = tokio::runtime::Handle::current();
        let task_outcome = outcome.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let result = run_blocking(&copy, &req, &limits, format, &cancel, started, &handle, &tx);
            record_metrics(started, &result);
            // Set before the channel closes, so the stream always finds the outcome.
            let _ = task_outcome.set(result);
            drop(tx);
            // Last: may delete a replaced copy's file.
            drop(copy);
        });
        match rx.recv().await {
            Some(first) => Ok(QueryStream::new(
                Some(first),
                rx,
                outcome,
                cancel_guard,
                format,
            )),
            None => match outcome.get() {
                Some(Ok(_)) => Ok(QueryStream::new(None, rx, outcome, cancel_guard, format)),
                Some(Err(e)) => Err(Error::Core(e.clone())),
                None => Err(Error::Core(trough_types::Error::internal(
                    "the query task ended without a result",
                ))),
            },
        }
    }

    /// The copy a query on `id` uses (see [`Reader::describe`]).
    pub(crate) fn pick_copy(&self, id: &SegmentId) -> Option<Arc<SegmentCopy>> {
        self.pick(id)
    }

    /// The copy a query on `id` uses: the live database first, else the stored copy.
    pub(crate) fn pick(&self, id: &SegmentId) -> Option<Arc<SegmentCopy>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let slot = table.get(id)?;
        slot.live.as_ref().or(slot.stored.as_ref()).cloned()
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<SegmentId, Slot>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn update_gauge(&self, table: &BTreeMap<SegmentId, Slot>) {
        metrics::gauge!(crate::METRIC_SEGMENTS_HELD).set(table.len() as f64);
    }

    /// Drops the table's reference to a replaced stored copy, remembering it while queries still
    /// use it. Called outside the table lock: the drop may close a pool and delete a file.
    fn retire(&self, old: Option<Arc<SegmentCopy>>) {
        if let Some(old) = old {
            let weak = Arc::downgrade(&old);
            drop(old);
            if weak.strong_count() > 0 {
                self.retired
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(weak);
            }
        }
    }
}

fn check_file(id: &SegmentId, path: &std::path::Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Error::Core(trough_types::Error::invalid(
            codes::NOT_A_FILE,
            format!("segment {id}: {} is not a regular file", path.display()),
        ))),
        Err(e) => Err(Error::Core(trough_types::Error::new(
            ErrorKind::NotFound,
            codes::SEGMENT_FILE_MISSING,
            format!("segment {id}: {}: {e}", path.display()),
        ))),
    }
}

/// The blocking half of a query: get a connection, run, hand chunks to the channel.
#[allow(clippy::too_many_arguments)]
fn run_blocking(
    copy: &SegmentCopy,
    req: &SqlRequest,
    limits: &QueryLimits,
    format: RowFormat,
    cancel: &CancelToken,
    started: Instant,
    handle: &tokio::runtime::Handle,
    tx: &mpsc::Sender<Bytes>,
) -> Result<QueryStats, trough_types::Error> {
    let deadline = started + limits.timeout();
    let mut conn = checkout(copy, deadline, limits, cancel)?;
    let mut slow_client = false;
    let tokio_deadline = tokio::time::Instant::from_std(deadline);
    let mut sink = |chunk: Bytes| -> bool {
        match handle.block_on(tokio::time::timeout_at(tokio_deadline, tx.send(chunk))) {
            Ok(Ok(())) => true,
            Ok(Err(_closed)) => false,
            Err(_elapsed) => {
                slow_client = true;
                false
            }
        }
    };
    let result = sql::run_query_cancellable(&mut conn, req, limits, format, cancel, &mut sink);
    drop(conn);
    match result {
        Err(_) if slow_client => Err(timeout_error(limits)),
        other => other,
    }
}

/// A connection to `copy`, waiting for one until `deadline`.
pub(crate) fn checkout(
    copy: &SegmentCopy,
    deadline: Instant,
    limits: &QueryLimits,
    cancel: &CancelToken,
) -> Result<crate::pool::Lease, trough_types::Error> {
    match copy.conns().get(deadline) {
        Ok(conn) => Ok(conn),
        Err(_) if cancel.is_cancelled() => Err(cancelled_error()),
        Err(GetError::Busy) => Err(trough_types::Error::unavailable(
            codes::READER_BUSY,
            format!(
                "all {} connections to segment {} stayed busy for the whole query time limit",
                limits.pool_size, copy.id
            ),
        )),
        Err(GetError::Open(e)) => Err(trough_types::Error::new(
            ErrorKind::Internal,
            codes::SEGMENT_OPEN_FAILED,
            format!("segment {}: {e}", copy.id),
        )),
    }
}

pub(crate) fn record_metrics(started: Instant, result: &Result<QueryStats, trough_types::Error>) {
    metrics::histogram!(crate::METRIC_QUERY_SECONDS).record(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.code() == codes::QUERY_CANCELLED => "cancelled",
        Err(e) => match ApiError::kind(e) {
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidInput => "rejected",
            _ => "error",
        },
    };
    metrics::counter!(crate::METRIC_QUERIES_TOTAL, "outcome" => outcome).increment(1);
}
