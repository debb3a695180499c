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
    /// No valid credential (401).
    Unauthenticated,
    /// A valid credential that does not allow the request (403).
    Forbidden,
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
        Self::new(ErrorKind::Internal, codes::INTERNAL, message)
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
        Error::new(ErrorKind::Internal, codes::IO_ERROR, e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Internal, codes::JSON_ERROR, e.to_string())
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
        ErrorKind::Unauthenticated => 401,
        ErrorKind::Forbidden => 403,
    }
}

/// The inverse of [`status_for`], used by clients (CLI, router proxying to nodes).
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 405 | 415 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
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
    /// The client paused sending the request body longer than the idle timeout (408).
    pub const BODY_TIMEOUT: &str = "body_timeout";
    /// The request body is over its limit (413).
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// A stored or downloaded file does not hash to its manifest's SHA-256 (500).
    pub const CHECKSUM_MISMATCH: &str = "checksum_mismatch";
    /// The request head is over `limits.http.max_header_bytes` or 100 fields (431).
    pub const HEADERS_TOO_LARGE: &str = "headers_too_large";
    /// A bug or an unexpected environment failure (500).
    pub const INTERNAL: &str = "internal";
    /// The request body could not be read or is not valid for the endpoint (400).
    pub const INVALID_BODY: &str = "invalid_body";
    /// The configuration is invalid (start-up).
    pub const INVALID_CONFIG: &str = "invalid_config";
    /// The body is not one JSON object (400).
    pub const INVALID_JSON: &str = "invalid_json";
    /// An object-store option is not understood (start-up).
    pub const INVALID_OBJECT_STORE_OPTION: &str = "invalid_object_store_option";
    /// The object-store URL is not understood (start-up).
    pub const INVALID_OBJECT_STORE_URL: &str = "invalid_object_store_url";
    /// Query parameters do not match the statement (400).
    pub const INVALID_PARAMS: &str = "invalid_params";
    /// A URL query parameter is malformed (400).
    pub const INVALID_QUERY_PARAMETER: &str = "invalid_query_parameter";
    /// A segment list or pattern of `POST /query` is malformed (400).
    pub const INVALID_SELECTOR: &str = "invalid_selector";
    /// A local file operation failed (500).
    pub const IO_ERROR: &str = "io_error";
    /// Encoding or decoding JSON failed inside trough (500).
    pub const JSON_ERROR: &str = "json_error";
    /// The request could not be parsed as HTTP/1.1 (400).
    pub const MALFORMED_REQUEST: &str = "malformed_request";
    /// The merge database of a cluster-wide query failed (500).
    pub const MERGE_ERROR: &str = "merge_error";
    /// A cluster-wide query's merge database is over its disk budget (400).
    pub const MERGE_TOO_LARGE: &str = "merge_too_large";
    /// A Trough-style request names no segment (400).
    pub const MISSING_SEGMENT: &str = "missing_segment";
    /// No live node holds the segment right now (503).
    pub const NO_HEALTHY_REPLICA: &str = "no_healthy_replica";
    /// No route has this path (404).
    pub const NO_SUCH_ROUTE: &str = "no_such_route";
    /// No live writer can take the segment (503).
    pub const NO_WRITER: &str = "no_writer";
    /// The path given is not a regular file (400).
    pub const NOT_A_FILE: &str = "not_a_file";
    /// The upload is not a SQLite database (400).
    pub const NOT_SQLITE: &str = "not_sqlite";
    /// SQL text contains a NUL character (400).
    pub const NUL_IN_SQL: &str = "nul_in_sql";
    /// The object already exists: a lost create-if-absent race (409).
    pub const OBJECT_EXISTS: &str = "object_exists";
    /// The object is not in the store (404).
    pub const OBJECT_NOT_FOUND: &str = "object_not_found";
    /// The object store failed or is unreachable (503).
    pub const OBJECT_STORE_ERROR: &str = "object_store_error";
    /// Segments answered a per-segment query with different columns (400).
    pub const PER_SEGMENT_COLUMNS_DIFFER: &str = "per_segment_columns_differ";
    /// The reader has no connection free within the wait (503).
    pub const READER_BUSY: &str = "reader_busy";
    /// An answer is over the row or byte limit; never truncated (400).
    pub const RESULT_TOO_LARGE: &str = "result_too_large";
    /// No schema has this name (404).
    pub const SCHEMA_NOT_FOUND: &str = "schema_not_found";
    /// One segment of a cluster-wide query failed (the kind is kept).
    pub const SEGMENT_ERROR: &str = "segment_error";
    /// A segment's local file is gone (404).
    pub const SEGMENT_FILE_MISSING: &str = "segment_file_missing";
    /// No segment has this id (404).
    pub const SEGMENT_NOT_FOUND: &str = "segment_not_found";
    /// A segment's file could not be opened (500).
    pub const SEGMENT_OPEN_FAILED: &str = "segment_open_failed";
    /// One segment of a cluster-wide query did not answer in time (504).
    pub const SEGMENT_TIMEOUT: &str = "segment_timeout";
    /// This node holds no verified copy of the segment yet: retry (503).
    pub const SEGMENT_UNAVAILABLE: &str = "segment_unavailable";
    /// The operation needs a read-only segment, but it is writable (409).
    pub const SEGMENT_WRITABLE: &str = "segment_writable";
    /// Another operation (a promotion, a restore) holds the segment; retry (409).
    pub const SEGMENT_BUSY: &str = "segment_busy";
    /// A version number that the segment does not have (404).
    pub const VERSION_NOT_FOUND: &str = "version_not_found";
    /// Labels or description over their limits, or a bad label key (400).
    pub const INVALID_LABELS: &str = "invalid_labels";
    /// Segments of a cluster-wide query failed for reasons of their own (503).
    pub const SEGMENTS_FAILED: &str = "segments_failed";
    /// SQLite refused the statement: syntax, missing table or column, constraint (400).
    pub const SQL_ERROR: &str = "sql_error";
    /// A JSON body has a key the endpoint does not take (400).
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    /// The request target is over `limits.http.max_uri_bytes` (414).
    pub const URI_TOO_LONG: &str = "uri_too_long";
    /// Another publisher took the version number first (409).
    pub const VERSION_RACE: &str = "version_race";
    /// The segment's writer cannot be reached (503).
    pub const WRITER_UNAVAILABLE: &str = "writer_unavailable";
    /// A path segment is not valid UTF-8 once decoded (400).
    pub const INVALID_PATH: &str = "invalid_path";
    /// Schema SQL fails validation (400).
    pub const INVALID_SCHEMA: &str = "invalid_schema";
    /// A segment id, schema or node name breaks the naming rule (400).
    pub const INVALID_SEGMENT_ID: &str = "invalid_segment_id";
    /// The route exists but not with this method (405).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The segment is not writable here, or its write lease is held elsewhere (409).
    pub const SEGMENT_NOT_WRITABLE: &str = "segment_not_writable";
    /// The server is at its connection limit: retry (503).
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
    /// The node is at its bound of requests of this class in flight: retry after `Retry-After`
    /// (503).
    pub const OVERLOADED: &str = "overloaded";
    /// A request axum rejected before a handler ran (400, 422).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The request needs a Content-Length (411).
    pub const LENGTH_REQUIRED: &str = "length_required";
    /// The body's Content-Type is not accepted (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// Any other error status produced outside the handlers.
    pub const HTTP_ERROR: &str = "http_error";
    /// No credential, or one that is not a valid token (401).
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The token expired (401).
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// The credential is valid but does not allow this request (403).
    pub const FORBIDDEN: &str = "forbidden";
    /// A token would be broader than the token creating it (403).
    pub const TOKEN_TOO_BROAD: &str = "token_too_broad";
    /// No token with this accessor id, or not one the caller may see (404).
    pub const TOKEN_NOT_FOUND: &str = "token_not_found";
    /// A token with this accessor id exists already (409).
    pub const TOKEN_EXISTS: &str = "token_exists";
    /// A grant, pattern or cluster right that does not parse (400).
    pub const INVALID_GRANT: &str = "invalid_grant";
}

/// Shorthand for results of core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
