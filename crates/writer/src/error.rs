//! The writer's errors, each with a kind a caller can act on (mapped to HTTP in `trough_api::http`).

use trough_types::{ApiError, ErrorKind, NodeName, SegmentId};

/// Everything that can go wrong while provisioning, writing or promoting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such segment.
    #[error("segment {0} not found")]
    NotFound(SegmentId),
    /// The segment exists but is not writable.
    #[error("segment {0} is not writable; provision it first")]
    NotWritable(SegmentId),
    /// The segment is writable on another node.
    #[error("segment {id} is writable on node {writer}")]
    LeaseElsewhere {
        /// The segment.
        id: SegmentId,
        /// Who holds its write lease.
        writer: NodeName,
    },
    /// This node does not hold the write lease right now (lost, or a previous session of this
    /// node still holds it after a restart); it refuses writes until it holds it again.
    #[error("this node does not hold the write lease of {0} right now; writes are refused until it is reacquired (retry later)")]
    LeaseLost(SegmentId),
    /// Another operation (a promotion, a restore) holds the segment right now.
    #[error("segment {0} is busy (a promotion or restore is running); retry")]
    Busy(SegmentId),
    /// The named schema is not registered.
    #[error("schema {0} not found")]
    SchemaNotFound(String),
    /// The schema SQL does not run on an empty database.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// The request body is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// An error from core (SQL errors, storage, coordination), with its own kind.
    #[error(transparent)]
    Core(#[from] trough_types::Error),
}

impl ApiError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) | Error::SchemaNotFound(_) => ErrorKind::NotFound,
            Error::NotWritable(_) | Error::LeaseElsewhere { .. } | Error::Busy(_) => {
                ErrorKind::Conflict
            }
            Error::LeaseLost(_) => ErrorKind::Unavailable,
            Error::InvalidSchema(_) | Error::InvalidRequest(_) => ErrorKind::InvalidInput,
            Error::Core(e) => e.kind(),
        }
    }

    fn code(&self) -> &str {
        match self {
            Error::NotFound(_) => "segment_not_found",
            Error::NotWritable(_) => "segment_not_writable",
            Error::LeaseElsewhere { .. } => "write_lease_elsewhere",
            Error::LeaseLost(_) => "write_lease_lost",
            Error::Busy(_) => trough_types::error::codes::SEGMENT_BUSY,
            Error::SchemaNotFound(_) => "schema_not_found",
            Error::InvalidSchema(_) => "invalid_schema",
            Error::InvalidRequest(_) => "invalid_request",
            Error::Core(e) => e.code(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Core(trough_sqlite::sqlite_error(e))
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
