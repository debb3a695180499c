//! Route handlers, one module per resource. Each handler validates its inputs, calls one part of
//! the node, and returns a value or an error that `crate::http` renders.

mod gather;
pub mod legacy;
pub mod manage;
pub mod ops;
pub mod pages;
mod per_segment;
pub mod scatter;
pub mod schemas;
pub mod segments;
pub mod sql;
pub mod tokens;

use crate::http::HttpError;
use trough_types::error::codes;
use trough_types::SegmentId;

/// Validates a segment id from the path (400 before anything else happens).
pub fn segment_id(raw: &str) -> Result<SegmentId, HttpError> {
    Ok(SegmentId::new(raw)?)
}

/// The 404 for an unknown segment.
pub fn segment_not_found(id: &SegmentId) -> HttpError {
    HttpError::new(
        trough_types::ErrorKind::NotFound,
        codes::SEGMENT_NOT_FOUND,
        format!("segment {id} not found"),
    )
}

/// A path parameter, like axum's `Path`, whose rejection (e.g. a segment that is not UTF-8 once
/// percent-decoded) is the JSON 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, HttpError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| {
                HttpError::new(
                    trough_types::ErrorKind::InvalidInput,
                    codes::INVALID_PATH,
                    e.body_text(),
                )
            })
    }
}

/// The query string, like axum's `Query`, whose rejection (e.g. not UTF-8 once percent-decoded)
/// is the JSON 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, HttpError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| {
                HttpError::new(
                    trough_types::ErrorKind::InvalidInput,
                    "invalid_query",
                    e.body_text(),
                )
            })
    }
}
