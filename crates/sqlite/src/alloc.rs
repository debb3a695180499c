//! SQLite's memory allocator: process-wide accounting without a process-wide lock.
//!
//! By default SQLite keeps memory statistics (`SQLITE_CONFIG_MEMSTATUS`) and enforces its heap
//! limit (`sqlite3_hard_heap_limit64`) with them, which takes one process-wide mutex on every
//! allocation and free. Opening and closing a connection allocates hundreds of times, so a
//! cluster-wide query that opens thousands of segment copies on every core at once spent a third
//! of its CPU waiting on that mutex (issue 12's profile; decision 0014).
//!
//! [`install`] turns SQLite's statistics off and gives it this allocator instead: the system
//! allocator with a 16-byte size header, counting the bytes in use in one atomic and failing an
//! allocation that would take the count past [`set_heap_limit`] (SQLite then fails the statement
//! with `SQLITE_NOMEM`, which trough answers as `out_of_memory`, 503). The limit is the same
//! contract as SQLite's hard heap limit; SQLite's soft limit (giving back page cache near the
//! limit) is not available without its statistics.
//!
//! [`install`] must run before SQLite initializes (before the first connection is opened in the
//! process); it is a no-op afterwards, and then SQLite's own statistics and hard limit stay in
//! force ([`crate::limits::configure`] sets both), so the limit holds either way.
//!
//! Not here: per-connection limits ([`crate::limits`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Once;

use rusqlite::ffi;

/// Bytes before each block: its size (and padding to keep 16-byte alignment).
const HEADER: usize = 16;
const ALIGN: usize = 16;

/// Bytes in use and their limit.
struct Heap {
    /// Bytes allocated and not freed.
    used: AtomicI64,
    /// The limit on `used`; 0 for none.
    limit: AtomicI64,
}

impl Heap {
    const fn new() -> Self {
        Self {
            used: AtomicI64::new(0),
            limit: AtomicI64::new(0),
        }
    }

    /// Reserves `n` more bytes (negative: gives back); false, with nothing reserved, if growing
    /// would pass the limit.
    fn reserve(&self, n: i64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if limit > 0 && n > 0 && before + n > limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, n: i64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// SQLite's heap in this process.
static HEAP: Heap = Heap::new();
/// Whether SQLite took this allocator.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Makes this module SQLite's allocator, with statistics off, if SQLite has not initialized yet.
/// Returns whether this allocator is (now or already) the one in use. Call first thing in
/// `main`, before anything opens a connection.
pub fn install() -> bool {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` is only valid before `sqlite3_initialize`; afterwards it
        // returns SQLITE_MISUSE and changes nothing, which is checked. SQLite copies the methods
        // struct (so a local is fine); the functions are valid for the life of the process.
        unsafe {
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const _)
                == ffi::SQLITE_OK
            {
                let rc = ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
                debug_assert_eq!(rc, ffi::SQLITE_OK);
                INSTALLED.store(true, Ordering::SeqCst);
            }
        }
    });
    INSTALLED.load(Ordering::SeqCst)
}

/// Whether SQLite allocates through this module (see [`install`]).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Bounds the bytes SQLite may hold in the whole process (0: no bound). Takes effect at once.
pub fn set_heap_limit(bytes: i64) {
    HEAP.limit.store(bytes.max(0), Ordering::SeqCst);
}

/// Bytes SQLite holds now through this allocator.
pub fn used() -> i64 {
    HEAP.used.load(Ordering::Relaxed)
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Ok(size) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    let Some(layout) = layout(size) else {
        return std::ptr::null_mut();
    };
    if !HEAP.reserve(size as i64) {
        return std::ptr::null_mut();
    }
    // SAFETY: the layout has a non-zero size (HEADER > 0).
    let base = unsafe { System.alloc(layout) };
    if base.is_null() {
        HEAP.release(size as i64);
        return std::ptr::null_mut();
    }
    // SAFETY: `base` is valid for HEADER + size bytes and 16-byte aligned.
    unsafe {
        (base as *mut usize).write(size);
        base.add(HEADER) as *mut c_void
    }
}

/// The size stored before `p` and the block's base pointer.
///
/// # Safety
/// `p` must come from [`x_malloc`] or [`x_realloc`] and not have been freed.
unsafe fn block(p: *mut c_void) -> (usize, *mut u8) {
    // SAFETY: per the contract, HEADER bytes before `p` belong to the block.
    unsafe {
        let base = (p as *mut u8).sub(HEADER);
        ((base as *const usize).read(), base)
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what its allocator returned.
    unsafe {
        let (size, base) = block(p);
        HEAP.release(size as i64);
        System.dealloc(
            base,
            layout(size).expect("the layout it was allocated with"),
        );
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    let Ok(new) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    // SQLite never reallocates a null pointer through xRealloc, but be safe.
    if p.is_null() {
        // SAFETY: plain allocation.
        return unsafe { x_malloc(n) };
    }
    // SAFETY: SQLite reallocates only what its allocator returned.
    let (old, base) = unsafe { block(p) };
    let Some(new_layout) = layout(new) else {
        return std::ptr::null_mut();
    };
    let grow = new as i64 - old as i64;
    if !HEAP.reserve(grow) {
        return std::ptr::null_mut();
    }
    // SAFETY: `base` was allocated by System with `layout(old)`; the new size is non-zero.
    let moved = unsafe {
        System.realloc(
            base,
            layout(old).expect("the layout it was allocated with"),
            new_layout.size(),
        )
    };
    if moved.is_null() {
        HEAP.release(grow);
        return std::ptr::null_mut();
    }
    // SAFETY: `moved` is valid for HEADER + new bytes.
    unsafe {
        (moved as *mut usize).write(new);
        moved.add(HEADER) as *mut c_void
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about what its allocator returned.
    let (size, _) = unsafe { block(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // Multiples of 8, as SQLite's own allocator rounds.
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit, on a heap of its own (the process's is shared with SQLite in other tests).
    #[test]
    fn a_reservation_past_the_limit_is_refused_and_leaves_nothing() {
        let heap = Heap::new();
        assert!(heap.reserve(1 << 40), "no limit by default");
        heap.release(1 << 40);
        heap.limit.store(1000, Ordering::SeqCst);
        assert!(heap.reserve(600));
        assert!(!heap.reserve(500), "600 + 500 > 1000");
        assert_eq!(
            heap.used.load(Ordering::SeqCst),
            600,
            "a refusal reserves nothing"
        );
        assert!(heap.reserve(400), "exactly the limit");
        assert!(heap.reserve(-300), "shrinking is always allowed");
        heap.release(700);
        assert_eq!(heap.used.load(Ordering::SeqCst), 0);
    }

    /// Blocks keep their size, alignment and contents through realloc, and are counted.
    #[test]
    fn blocks_keep_size_alignment_and_contents() {
        unsafe {
            let p = x_malloc(100);
            assert!(!p.is_null());
            assert_eq!(x_size(p), 100);
            assert_eq!(p as usize % 8, 0);
            std::ptr::write_bytes(p as *mut u8, 7, 100);
            let q = x_realloc(p, 5000);
            assert!(!q.is_null());
            assert_eq!(x_size(q), 5000);
            assert_eq!(*(q as *const u8).add(99), 7, "contents kept");
            let r = x_realloc(q, 10);
            assert_eq!(x_size(r), 10);
            assert_eq!(*(r as *const u8).add(9), 7);
            x_free(r);
            assert!(x_malloc(-1).is_null());
            assert_eq!(x_roundup(13), 16);
        }
    }
}
