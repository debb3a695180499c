//! Request bodies: SQL as text or JSON, with size limits and clear errors.
//!
//! A body is JSON when its `Content-Type` is `application/json`; anything else is SQL text, which
//! must be UTF-8. Oversized bodies are refused with 413 before they are fully read. This module
//! only parses; it does not run anything.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use trough_core::http::HttpError;
use trough_core::ErrorKind;

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, HttpError> {
    if let Some(len) = content_length(headers) {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if is_limit {
            too_large(limit)
        } else {
            HttpError::new(
                ErrorKind::InvalidInput,
                "invalid_body",
                format!("could not read the body: {e}"),
            )
        }
    })
}

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The 413 error.
pub fn too_large(limit: u64) -> HttpError {
    HttpError::new(
        ErrorKind::PayloadTooLarge,
        "body_too_large",
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// Whether the request declares a JSON body.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The body as UTF-8 text.
pub fn utf8(bytes: Bytes) -> Result<String, HttpError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        HttpError::new(
            ErrorKind::InvalidInput,
            "invalid_body",
            format!(
                "the body is not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses a JSON body into `T`.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| {
        HttpError::new(
            ErrorKind::InvalidInput,
            "invalid_json",
            format!("invalid JSON body: {e}"),
        )
    })
}

/// A SQL request from either body form: JSON `T`, or text becoming `from_text(sql)`.
pub fn parse_sql<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: Bytes,
    from_text: impl FnOnce(String) -> T,
) -> Result<T, HttpError> {
    if is_json(headers) {
        // Check UTF-8 first so a non-UTF-8 body gets the same error whatever its type claims.
        let _ = std::str::from_utf8(&bytes).map_err(|_| utf8(bytes.clone()).unwrap_err())?;
        json(&bytes)
    } else {
        Ok(from_text(utf8(bytes)?))
    }
}
