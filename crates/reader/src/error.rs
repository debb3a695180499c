//! The reader's error type: a missing local copy, or a core error passed through unchanged.
//!
//! Implements [`ApiError`] so handlers can `?` it into an HTTP response. Not here: the mapping
//! from kinds to statuses (`trough_api::http`).

use trough_types::error::codes;
use trough_types::{ApiError, ErrorKind, SegmentId};

/// Why a read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node holds no copy of the segment (not assigned here, or not downloaded yet).
    #[error("this node holds no copy of segment {0}")]
    SegmentUnavailable(SegmentId),
    /// Anything from the engine: bad SQL, not read-only, timeout, limits, I/O… (kind and code kept).
    #[error(transparent)]
    Core(#[from] trough_types::Error),
}

impl ApiError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::SegmentUnavailable(_) => ErrorKind::Unavailable,
            Error::Core(e) => e.kind(),
        }
    }
    fn code(&self) -> &str {
        match self {
            Error::SegmentUnavailable(_) => codes::SEGMENT_UNAVAILABLE,
            Error::Core(e) => e.code(),
        }
    }
}
