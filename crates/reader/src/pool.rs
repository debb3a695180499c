//! SQLite connections to segment copies, under one budget for the whole reader.
//!
//! Each copy opens connections on demand, at most `limits.query.pool_size` at once, and keeps a
//! connection idle after a query so the next one skips opening the file and reading its schema.
//! What a node may keep idle is bounded across *all* copies by one [`Budget`]
//! (`limits.query.idle_connections`): when a returned connection takes the count over it, the
//! idle connection of the copy used least recently is closed first. Each connection holds its
//! own page cache and schema, so with tens of thousands of segments the idle connections, not the
//! files, are what the reader's memory grows with; a cluster-wide query that touches every
//! segment leaves at most the budget open behind it.
//!
//! A connection comes back idle only if it is outside any transaction (the guard denies
//! transaction control; this is a safety net). Waiting for a free connection is bounded by the
//! caller's deadline.
//!
//! Not here: which copy serves a query (the reader), or running statements (`trough_sqlite`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use rusqlite::Connection;
use trough_sqlite::{self as sql, Access};

/// The reader-wide bound on idle connections, and their order of use.
pub(crate) struct Budget {
    max_idle: usize,
    idle: AtomicUsize,
    next_stamp: AtomicU64,
    /// Copies holding idle connections, least recently used first (key: the stamp of their last
    /// use; each copy appears at most once).
    lru: Mutex<BTreeMap<u64, Weak<CopyConns>>>,
}

impl Budget {
    /// A budget keeping at most `max_idle` idle connections.
    pub(crate) fn new(max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            max_idle,
            idle: AtomicUsize::new(0),
            next_stamp: AtomicU64::new(1),
            lru: Mutex::new(BTreeMap::new()),
        })
    }

    /// Idle connections across every copy.
    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }

    fn sub_idle(&self, n: usize) {
        self.idle.fetch_sub(n, Ordering::SeqCst);
        self.publish();
    }

    /// Sets the gauge to the current count. Under the LRU lock, so that the last of several
    /// concurrent updates also sets the gauge last (each update is followed by its own
    /// `publish` or [`Self::returned`], which read the count when they hold the lock).
    fn publish(&self) {
        let _order = self.lru();
        metrics::gauge!(crate::METRIC_IDLE_CONNECTIONS).set(self.idle() as f64);
    }

    fn lru(&self) -> MutexGuard<'_, BTreeMap<u64, Weak<CopyConns>>> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection `copy` just made idle and marks `copy` as the most recently used:
    /// one lock per returned connection (the gauge is set under it, see [`Self::publish`]).
    fn returned(&self, copy: &Arc<CopyConns>) {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let stamp = self.next_stamp.fetch_add(1, Ordering::SeqCst);
        let old = copy.stamp.swap(stamp, Ordering::SeqCst);
        let mut lru = self.lru();
        if old != 0 {
            lru.remove(&old);
        }
        lru.insert(stamp, Arc::downgrade(copy));
        metrics::gauge!(crate::METRIC_IDLE_CONNECTIONS).set(self.idle() as f64);
    }

    /// Closes idle connections, least recently used copy first, until the budget holds.
    fn enforce(&self) {
        loop {
            let excess = self.idle().saturating_sub(self.max_idle);
            if excess == 0 {
                return;
            }
            let Some((stamp, weak)) = self.lru().pop_first() else {
                return;
            };
            let Some(copy) = weak.upgrade() else {
                continue;
            };
            let (closed, left) = copy.close_idle(excess);
            if left > 0 {
                // Still the least recently used: back at the front, under the same stamp.
                self.lru().insert(stamp, weak);
            } else {
                // Stamp 0: not in the LRU any more (`returned` adds it again when it is used).
                let _ = copy
                    .stamp
                    .compare_exchange(stamp, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
            drop(closed);
        }
    }
}

struct State {
    open: usize,
    idle: Vec<Connection>,
}

/// The connections of one copy.
pub(crate) struct CopyConns {
    path: PathBuf,
    access: Access,
    max_open: usize,
    budget: Arc<Budget>,
    state: Mutex<State>,
    freed: Condvar,
    /// This copy's key in the budget's LRU (0: not there).
    stamp: AtomicU64,
}

/// Why no connection could be had.
pub(crate) enum GetError {
    /// Every connection stayed busy until the deadline.
    Busy,
    /// Opening the file failed.
    Open(trough_types::Error),
}

impl CopyConns {
    /// Connections to `path`, opened with `access`, at most `max_open` at once.
    pub(crate) fn new(
        path: PathBuf,
        access: Access,
        max_open: usize,
        budget: Arc<Budget>,
    ) -> Arc<Self> {
        Arc::new(Self {
            path,
            access,
            max_open: max_open.max(1),
            budget,
            state: Mutex::new(State {
                open: 0,
                idle: Vec::new(),
            }),
            freed: Condvar::new(),
            stamp: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection, idle or newly opened, waiting for one to be returned until `deadline`.
    pub(crate) fn get(self: &Arc<Self>, deadline: Instant) -> Result<Lease, GetError> {
        let mut st = self.state();
        loop {
            if let Some(conn) = st.idle.pop() {
                self.budget.sub_idle(1);
                return Ok(Lease {
                    conn: Some(conn),
                    copy: self.clone(),
                });
            }
            if st.open < self.max_open {
                st.open += 1;
                drop(st);
                return match sql::open(&self.path, self.access) {
                    Ok(conn) => Ok(Lease {
                        conn: Some(conn),
                        copy: self.clone(),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(GetError::Open(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GetError::Busy);
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes up to `n` idle connections (oldest first) to be closed by the caller outside any
    /// lock, and says how many stay idle.
    fn close_idle(&self, n: usize) -> (Vec<Connection>, usize) {
        let mut st = self.state();
        let take = n.min(st.idle.len());
        let closed: Vec<Connection> = st.idle.drain(..take).collect();
        st.open -= closed.len();
        let left = st.idle.len();
        drop(st);
        self.budget.sub_idle(closed.len());
        if !closed.is_empty() {
            self.freed.notify_all();
        }
        (closed, left)
    }

    /// Connections of this copy: (open, idle).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let st = self.state();
        (st.open, st.idle.len())
    }

    fn put_back(self: &Arc<Self>, conn: Connection) {
        if !conn.is_autocommit() {
            tracing::warn!(path = %self.path.display(), "pooled connection was left inside a transaction; closing it");
            self.state().open -= 1;
            drop(conn);
            self.freed.notify_one();
            return;
        }
        self.state().idle.push(conn);
        self.freed.notify_one();
        self.budget.returned(self);
        self.budget.enforce();
    }
}

impl Drop for CopyConns {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let n = st.idle.len();
        st.idle.clear();
        self.budget.sub_idle(n);
        let stamp = *self.stamp.get_mut();
        if stamp != 0 {
            self.budget.lru().remove(&stamp);
        }
    }
}

/// A connection in use; goes back to its copy when dropped.
pub(crate) struct Lease {
    conn: Option<Connection>,
    copy: Arc<CopyConns>,
}

impl std::ops::Deref for Lease {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("taken only in Drop")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("taken only in Drop")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.copy.put_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn db(dir: &std::path::Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        p
    }

    #[test]
    fn idle_connections_beyond_the_budget_close_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(2);
        let copies: Vec<_> = (0..4)
            .map(|i| {
                CopyConns::new(
                    db(dir.path(), &format!("s{i}.sqlite")),
                    Access::ReadOnlyImmutable,
                    4,
                    budget.clone(),
                )
            })
            .collect();
        let later = || Instant::now() + Duration::from_secs(5);
        for c in &copies {
            let lease = c.get(later()).ok().unwrap();
            let n: i64 = lease
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1);
        }
        // Four copies used once each, in order: only the last two keep an idle connection.
        assert_eq!(budget.idle(), 2);
        let counts: Vec<_> = copies.iter().map(|c| c.counts()).collect();
        assert_eq!(counts, vec![(0, 0), (0, 0), (1, 1), (1, 1)]);
        // Using copy 2 again makes copy 3 the least recently used.
        drop(copies[2].get(later()).ok().unwrap());
        drop(copies[0].get(later()).ok().unwrap());
        let counts: Vec<_> = copies.iter().map(|c| c.counts()).collect();
        assert_eq!(counts, vec![(1, 1), (0, 0), (1, 1), (0, 0)]);
        // A dropped copy gives its idle connections back to the budget.
        let [c0, _, c2, _] = <[_; 4]>::try_from(copies).ok().unwrap();
        drop(c0);
        assert_eq!(budget.idle(), 1);
        drop(c2);
        assert_eq!(budget.idle(), 0);
    }

    #[test]
    fn at_most_max_open_per_copy_and_waiters_get_a_returned_connection() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(16);
        let copy = CopyConns::new(
            db(dir.path(), "s.sqlite"),
            Access::ReadOnlyImmutable,
            1,
            budget,
        );
        let first = copy
            .get(Instant::now() + Duration::from_secs(5))
            .ok()
            .unwrap();
        // The only connection is out: a waiter with a short deadline is told "busy".
        assert!(matches!(
            copy.get(Instant::now() + Duration::from_millis(50)),
            Err(GetError::Busy)
        ));
        let waiter = {
            let copy = copy.clone();
            std::thread::spawn(move || copy.get(Instant::now() + Duration::from_secs(10)).is_ok())
        };
        drop(first);
        assert!(waiter.join().unwrap());
        assert_eq!(copy.counts(), (1, 1));
    }
}
