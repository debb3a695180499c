//! Route handlers, one module per resource. Each handler validates its inputs, calls one part of
//! the node, and returns a value or an error that `core::http` renders.

mod gather;
pub mod legacy;
pub mod ops;
mod per_segment;
pub mod scatter;
pub mod schemas;
pub mod segments;
pub mod sql;

use trough_core::http::HttpError;
use trough_core::SegmentId;

/// Validates a segment id from the path (400 before anything else happens).
pub fn segment_id(raw: &str) -> Result<SegmentId, HttpError> {
    Ok(SegmentId::new(raw)?)
}

/// The 404 for an unknown segment.
pub fn segment_not_found(id: &SegmentId) -> HttpError {
    HttpError::new(
        trough_core::ErrorKind::NotFound,
        "segment_not_found",
        format!("segment {id} not found"),
    )
}
