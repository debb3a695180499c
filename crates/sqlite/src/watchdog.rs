//! The deadline watchdog: interrupts running SQLite statements at their deadline, and every
//! running statement when the process shuts down.
//!
//! A progress handler alone overshoots a deadline whenever single virtual-machine steps are slow
//! (one `hex()` of a 20 MB blob is one step), so every statement trough runs for a client is
//! [`arm`]ed: its connection's [`InterruptHandle`] is registered with its deadline, and one
//! background thread calls `sqlite3_interrupt` when the deadline passes. SQLite checks for an
//! interrupt inside its loops, so the statement stops right away and fails with
//! `SQLITE_INTERRUPT` (a write transaction is rolled back).
//!
//! An interrupt that lands between two statements is forgotten by SQLite (it clears the flag when
//! no statement is running), so callers also install a progress handler that asks
//! [`Armed::should_stop`]: the watchdog is what makes the deadline prompt, the progress handler
//! what makes it certain.
//!
//! [`interrupt_all`] is for shutdown: it interrupts every armed statement and makes later ones
//! stop at once. Not here: what error a caller reports (see [`Armed::fired`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use rusqlite::{Connection, InterruptHandle};

/// Why an armed statement was interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Its deadline passed.
    Deadline,
    /// The process is shutting down.
    Shutdown,
}

const NOT_FIRED: u8 = 0;
const FIRED_DEADLINE: u8 = 1;
const FIRED_SHUTDOWN: u8 = 2;

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

struct Entry {
    deadline: Option<Instant>,
    handle: InterruptHandle,
    state: Arc<AtomicU8>,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    armed: BTreeMap<u64, Entry>,
    /// When the watchdog thread wakes up next on its own (`None`: only when notified).
    next_wake: Option<Instant>,
}

struct Watchdog {
    entries: Mutex<Entries>,
    wake: Condvar,
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<Watchdog> = OnceLock::new();
    static STARTED: OnceLock<()> = OnceLock::new();
    let w = W.get_or_init(|| Watchdog {
        entries: Mutex::new(Entries::default()),
        wake: Condvar::new(),
    });
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("trough-sql-watchdog".into())
            .spawn(move || run(w))
            .expect("spawn the SQL watchdog thread");
    });
    w
}

/// The watchdog thread: fires expired entries, sleeps until the next deadline or a change.
fn run(w: &'static Watchdog) {
    let mut entries = w.lock();
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for e in entries.armed.values() {
            if e.state.load(Ordering::Acquire) != NOT_FIRED {
                continue;
            }
            match e.deadline {
                Some(d) if d <= now => {
                    e.state.store(FIRED_DEADLINE, Ordering::Release);
                    e.handle.interrupt();
                }
                Some(d) => next = Some(next.map_or(d, |n: Instant| n.min(d))),
                None => {}
            }
        }
        entries.next_wake = next;
        entries = match next {
            Some(d) => {
                w.wake
                    .wait_timeout(entries, d.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => w.wake.wait(entries).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// A statement (or a transaction of several) registered with the watchdog; disarmed on drop.
///
/// Once dropped, the watchdog will not interrupt the connection any more (dropping waits for a
/// firing in progress), so a caller can disarm before `COMMIT` and know the commit runs in peace.
pub struct Armed {
    id: u64,
    deadline: Option<Instant>,
    state: Arc<AtomicU8>,
}

/// Registers `conn` with the watchdog until the returned [`Armed`] is dropped: it is interrupted
/// at `deadline` (never, if `None`) or when the process shuts down.
pub fn arm(conn: &Connection, deadline: Option<Instant>) -> Armed {
    let w = watchdog();
    let state = Arc::new(AtomicU8::new(NOT_FIRED));
    let handle = conn.get_interrupt_handle();
    let mut entries = w.lock();
    if SHUTTING_DOWN.load(Ordering::Acquire) {
        state.store(FIRED_SHUTDOWN, Ordering::Release);
    }
    let id = entries.next_id;
    entries.next_id += 1;
    // Wake the thread only if this deadline comes before the one it sleeps until (most
    // statements finish long before theirs; no wake-up per statement).
    let wake = deadline.is_some_and(|d| entries.next_wake.is_none_or(|w| d < w));
    entries.armed.insert(
        id,
        Entry {
            deadline,
            handle,
            state: state.clone(),
        },
    );
    drop(entries);
    if wake {
        w.wake.notify_one();
    }
    Armed {
        id,
        deadline,
        state,
    }
}

impl Armed {
    /// Why the statement must stop, if it must: fired by the watchdog or at shutdown, or past its
    /// deadline (the watchdog may not have woken yet).
    pub fn fired(&self) -> Option<Fired> {
        match self.state.load(Ordering::Acquire) {
            FIRED_SHUTDOWN => return Some(Fired::Shutdown),
            FIRED_DEADLINE => return Some(Fired::Deadline),
            _ => {}
        }
        if SHUTTING_DOWN.load(Ordering::Acquire) {
            return Some(Fired::Shutdown);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(Fired::Deadline),
            _ => None,
        }
    }

    /// A cheap, `'static` check for a progress handler: true once the statement must stop.
    pub fn stop_check(&self) -> impl FnMut() -> bool + Send + 'static {
        let state = self.state.clone();
        let deadline = self.deadline;
        move || {
            state.load(Ordering::Acquire) != NOT_FIRED
                || SHUTTING_DOWN.load(Ordering::Relaxed)
                || deadline.is_some_and(|d| Instant::now() >= d)
        }
    }

    /// Whether the statement must stop now.
    pub fn should_stop(&self) -> bool {
        self.fired().is_some()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        watchdog().lock().armed.remove(&self.id);
    }
}

/// Shutdown: interrupts every armed statement now and every statement armed later.
pub fn interrupt_all() {
    SHUTTING_DOWN.store(true, Ordering::Release);
    let w = watchdog();
    let entries = w.lock();
    for e in entries.armed.values() {
        if e.state.load(Ordering::Acquire) == NOT_FIRED {
            e.state.store(FIRED_SHUTDOWN, Ordering::Release);
        }
        e.handle.interrupt();
    }
}

/// Whether [`interrupt_all`] was called.
pub fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn interrupts_a_statement_at_its_deadline() {
        let conn = Connection::open_in_memory().unwrap();
        let started = Instant::now();
        let armed = arm(&conn, Some(started + Duration::from_millis(200)));
        let err = conn
            .query_row(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) \
                 SELECT count(*) FROM c",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted)
        );
        assert_eq!(armed.fired(), Some(Fired::Deadline));
        drop(armed);
        // Disarmed: the connection runs normally afterwards.
        let n: i64 = conn.query_row("SELECT 41 + 1", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 42);
    }

    #[test]
    fn without_deadline_nothing_fires() {
        let conn = Connection::open_in_memory().unwrap();
        let armed = arm(&conn, None);
        let n: i64 = conn
            .query_row(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000) \
                 SELECT count(*) FROM c",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(armed.fired(), None);
    }
}
