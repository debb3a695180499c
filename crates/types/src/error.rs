//! The error vocabulary shared by every crate.
//!
//! Each crate has its own error enum, but every error answers two questions a caller can act on:
//! what *kind* of failure it is ([`ErrorKind`]: invalid input, not found, conflict, …) and a stable
//! machine-readable `code`. [`status_for`] is the one table from a kind to an HTTP status
//! (a number: this crate has no HTTP library).

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is wrong (bad id, bad SQL, not read-only, not a SQLite file…). Retrying won't help.
    InvalidInput,
    /// The named thing does not exist.
    NotFound,
    /// The request conflicts with current state (write lease held elsewhere, already exists).
    Conflict,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The work did not finish within its time limit.
    Timeout,
    /// The client was too slow sending its request (408).
    ClientTimeout,
    /// A dependency (replica, object store, coordinator) cannot serve right now; retry later.
    Unavailable,
    /// A bug or an unexpected environment failure.
    Internal,
}

/// Implemented by every crate's error enum so that `trough_api::http` can render it.
pub trait ApiError: std::error::Error {
    /// The kind of failure.
    fn kind(&self) -> ErrorKind;
    /// A stable, machine-readable code such as `invalid_segment_id` or `query_timeout`.
    fn code(&self) -> &str;
}

/// The error type of `trough-core`: a kind, a stable code and a human message.
///
/// Core operations fail in many ways (I/O, SQLite, object store, coordination), but callers only
/// ever branch on the kind, so one struct carries them all.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    code: String,
    message: String,
}

impl Error {
    /// Builds an error from its parts.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }
    /// A 400-style error.
    pub fn invalid(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }
    /// A 404-style error.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    /// A 409-style error.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    /// A 503-style error.
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }
    /// A 500-style error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }
    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Prefixes the message with context, keeping kind and code.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl ApiError for Error {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
    fn code(&self) -> &str {
        &self.code
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Internal, "io_error", e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Internal, "json_error", e.to_string())
    }
}

/// The HTTP status for each kind of failure.
pub fn status_for(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidInput => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::PayloadTooLarge => 413,
        ErrorKind::Timeout => 504,
        ErrorKind::ClientTimeout => 408,
        ErrorKind::Unavailable => 503,
        ErrorKind::Internal => 500,
    }
}

/// The inverse of [`status_for`], used by clients (CLI, router proxying to nodes).
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 405 | 415 | 422 => ErrorKind::InvalidInput,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        413 => ErrorKind::PayloadTooLarge,
        504 => ErrorKind::Timeout,
        408 => ErrorKind::ClientTimeout,
        503 | 502 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// Stable error codes that code (not only clients) acts on. Compare codes with these constants,
/// never with messages.
pub mod codes {
    /// A statement that changes something was sent where only reads are allowed (400).
    pub const NOT_READ_ONLY: &str = "not_read_only";
    /// Several statements where exactly one is allowed (400).
    pub const MULTIPLE_STATEMENTS: &str = "multiple_statements";
    /// A statement the guard refuses (ATTACH, temporary objects, most PRAGMAs…) (400).
    pub const FORBIDDEN_STATEMENT: &str = "forbidden_statement";
    /// A string or blob longer than `limits.sqlite.max_length_bytes` (400).
    pub const TOO_BIG: &str = "too_big";
    /// SQLite could not allocate memory within `limits.sqlite.heap_limit_bytes` (503).
    pub const OUT_OF_MEMORY: &str = "out_of_memory";
    /// A read ran past `limits.query.timeout_ms` (504).
    pub const QUERY_TIMEOUT: &str = "query_timeout";
    /// A write ran past `limits.write_timeout_ms` (504).
    pub const WRITE_TIMEOUT: &str = "write_timeout";
    /// The caller cancelled the statement (its client went away) (503).
    pub const QUERY_CANCELLED: &str = "query_cancelled";
    /// A query shape cluster-wide SQL cannot answer exactly (400).
    pub const UNSUPPORTED_SCATTER_QUERY: &str = "unsupported_scatter_query";
    /// The process is shutting down; the statement was interrupted (503).
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// A file that fails `PRAGMA integrity_check` (400).
    pub const INTEGRITY_CHECK_FAILED: &str = "integrity_check_failed";
}

/// Shorthand for results of core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
