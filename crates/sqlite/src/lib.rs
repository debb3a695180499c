//! The SQLite engine wrapper: every statement trough runs on a segment goes through here.
//!
//! - [`open()`] / [`open_writable()`] ([`open`](mod@open) module): hardened connections for each
//!   [`Access`] (immutable stored copy, read-only view of a live database, the writer's own).
//! - [`alloc`] — SQLite's allocator: process-wide accounting and heap limit without a lock.
//! - [`guard`] — the authorizer every connection gets (no ATTACH, extensions, dangerous PRAGMAs,
//!   transaction control…), and the way trusted internal SQL bypasses it.
//! - [`value`] — the lossless JSON encoding of SQLite values.
//! - [`params`] — request parameters ([`Params`], [`SqlRequest`]) and [`bind`].
//! - [`limits`] — [`QueryLimits`] (per read query) and [`SqliteLimits`] (every connection, and
//!   the process: heap limit, temporary-file directory).
//! - [`watchdog`] — interrupts statements at their deadline and at shutdown.
//! - [`query`] — [`run_query`], blocking, streaming one read-only statement as JSON.
//! - [`sqlite_error`] — the mapping of SQLite errors to trough errors (`sql_error`,
//!   `forbidden_statement`).
//!
//! Read-only enforcement comes from SQLite (read-only open flag, `PRAGMA query_only`,
//! `sqlite3_stmt_readonly`), never from matching keywords. Not here: connection pools and async
//! (the reader), write transactions (the writer), HTTP routes.

pub mod alloc;
pub mod guard;
pub mod limits;
pub mod open;
pub mod params;
pub mod query;
pub mod value;
pub mod watchdog;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;

pub use limits::{QueryLimits, SqliteLimits};
pub use open::{open, open_writable, Access, Synchronous, BUSY_TIMEOUT};
pub use params::{bind, Params, SqlRequest};
pub use query::{
    run_query, run_query_cancellable, CancelToken, QueryStats, RowFormat, COLUMNAR_MEDIA_TYPE,
};

use rusqlite::ErrorCode;

use trough_types::error::{codes, Error, ErrorKind};

/// Maps an SQLite error to a trough error.
///
/// - a statement the [`guard`] denied → `forbidden_statement` (400), naming what was refused;
/// - a string or blob over `limits.sqlite.max_length_bytes` → `too_big` (400);
/// - out of memory (SQLite's heap limit) → `out_of_memory` (503);
/// - errors that are not the statement's fault (I/O, corruption, full disk, out of memory, cannot
///   open, not a database) → `sqlite_error` (500);
/// - everything else (syntax, no such table, constraint, type, overflow…) → `sql_error` (400)
///   with SQLite's message.
pub fn sqlite_error(e: rusqlite::Error) -> Error {
    let denial = guard::take_denial();
    match error_code(&e) {
        Some(ErrorCode::AuthorizationForStatementDenied) => Error::invalid(
            codes::FORBIDDEN_STATEMENT,
            denial.unwrap_or_else(|| "this statement is not allowed".to_owned()),
        ),
        // Some denials (a function, or anything inside the nested prepare of a pragma_*
        // table-valued function) surface as a generic error saying "not authorized …".
        Some(ErrorCode::Unknown)
            if denial.is_some() && e.to_string().contains("not authorized") =>
        {
            Error::invalid(codes::FORBIDDEN_STATEMENT, denial.unwrap_or_default())
        }
        Some(ErrorCode::TooBig) => Error::invalid(
            codes::TOO_BIG,
            format!(
                "{e}: a string or blob would exceed limits.sqlite.max_length_bytes = {} bytes",
                limits::max_length()
            ),
        ),
        Some(ErrorCode::OutOfMemory) => Error::unavailable(
            codes::OUT_OF_MEMORY,
            format!(
                "{e}: SQLite reached its memory limit (limits.sqlite.heap_limit_bytes); \
                 retry later or use less memory"
            ),
        ),
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::NotADatabase
            | ErrorCode::InternalMalfunction
            | ErrorCode::NoLargeFileSupport
            | ErrorCode::FileLockingProtocolFailed,
        ) => Error::new(ErrorKind::Internal, "sqlite_error", e.to_string()),
        _ => Error::invalid("sql_error", e.to_string()),
    }
}

/// The SQLite error code of `e`, including prepare errors that carry an SQL offset (for which
/// `rusqlite::Error::sqlite_error_code` returns `None`).
pub fn error_code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqlInputError { error, .. } => Some(error.code),
        e => e.sqlite_error_code(),
    }
}
