//! Request bodies: SQL as text or JSON, with size limits and clear errors.
//!
//! A body is JSON when its `Content-Type` is `application/json`; anything else is SQL text, which
//! must be UTF-8. Oversized bodies are refused with 413 before they are fully read, and a client
//! that stops sending gets 408 (the idle timeout is set up in [`crate::http_guard`]). JSON bodies
//! are strict: one object, known keys only. SQL text must not contain NUL. This module only
//! parses; it does not run anything.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use std::collections::BTreeMap;
use trough_types::error::codes;

use crate::http::HttpError;
use serde::de::{DeserializeOwned, IgnoredAny};
use trough_types::ErrorKind;

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, HttpError> {
    if let Some(len) = content_length(headers) {
        if len > limit {
            return Err(too_large(limit));
        }
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|e| read_error(&e, limit, "could not read the body"))
}

/// The error for a body that could not be read: 413 over `limit`, 408 when the client paused
/// longer than the body idle timeout, else 400 `invalid_body` (`context` starts its message).
pub fn read_error(e: &(dyn std::error::Error + 'static), limit: u64, context: &str) -> HttpError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return too_large(limit);
        }
        if c.is::<tower_http::timeout::TimeoutError>() {
            return HttpError::new(
                ErrorKind::ClientTimeout,
                codes::BODY_TIMEOUT,
                "the client stopped sending the request body (see limits.http.body_idle_timeout_ms)",
            );
        }
        cause = c.source();
    }
    HttpError::new(
        ErrorKind::InvalidInput,
        codes::INVALID_BODY,
        format!("{context}: {e}"),
    )
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
        codes::BODY_TOO_LARGE,
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
            codes::INVALID_BODY,
            format!(
                "the body is not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses a JSON body into `T`, strictly: the body must be one JSON object (400
/// `invalid_json` otherwise, an array included), and every key must be a field of `T` (400
/// `unknown_field` naming it).
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let invalid = |msg: String| HttpError::new(ErrorKind::InvalidInput, codes::INVALID_JSON, msg);
    // Keys only: values are skipped without being built.
    let keys: Vec<String> = serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(bytes)
        .map_err(|e| invalid(format!("the body must be one JSON object: {e}")))?
        .into_keys()
        .collect();
    if let Some(fields) = fields_of::<T>() {
        if let Some(unknown) = keys.iter().find(|k| !fields.contains(&k.as_str())) {
            return Err(HttpError::new(
                ErrorKind::InvalidInput,
                codes::UNKNOWN_FIELD,
                format!(
                    "unknown field `{unknown}`; expected one of: {}",
                    fields.join(", ")
                ),
            ));
        }
    }
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON body: {e}")))
}

/// The field names of a struct deserialized with `#[derive(Deserialize)]`, found by asking it to
/// deserialize itself from a probe that records what it is asked for. `None` for anything else.
fn fields_of<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(serde::de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Refuses SQL text containing a NUL character: SQLite would stop reading at it and silently
/// ignore the rest (`INSERT ...;\0 DELETE ...` would answer 200 having run only the insert).
pub fn sql_text(sql: &str) -> Result<(), HttpError> {
    match sql.find('\0') {
        None => Ok(()),
        Some(at) => Err(HttpError::new(
            ErrorKind::InvalidInput,
            codes::NUL_IN_SQL,
            format!("the SQL text contains a NUL character (at byte {at})"),
        )),
    }
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
