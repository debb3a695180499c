//! HTTP plumbing shared by every service: the one place where an error becomes a response.
//!
//! Every crate's error implements [`ApiError`]; handlers return `Result<_, HttpError>` and `?`
//! converts any of them. [`status_for`] is the only kind → status table in the codebase. This
//! module does not define routes; the router and the node services do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorKind};

/// The HTTP status for each kind of failure.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The inverse of [`status_for`], used by clients (CLI, router proxying to nodes).
pub fn kind_for_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
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

/// The JSON error document: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Any crate's error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct HttpError {
    /// The kind (decides the status).
    pub kind: ErrorKind,
    /// The body.
    pub body: ErrorBody,
}

impl HttpError {
    /// Builds an error response from parts.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            body: ErrorBody {
                error: ErrorDetail {
                    code: code.into(),
                    message: message.into(),
                },
            },
        }
    }
    /// The status this error will be sent with.
    pub fn status(&self) -> StatusCode {
        status_for(self.kind)
    }
}

impl<E: ApiError> From<E> for HttpError {
    fn from(e: E) -> Self {
        HttpError::new(e.kind(), e.code(), e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.kind == ErrorKind::Internal {
            tracing::error!(code = %self.body.error.code, message = %self.body.error.message, "internal error");
        }
        let mut resp = (self.status(), axum::Json(self.body)).into_response();
        if matches!(
            self.kind,
            ErrorKind::PayloadTooLarge | ErrorKind::ClientTimeout
        ) {
            // The rest of the body was not read; the server will close the connection (after
            // draining what the client still sends), so tell the client not to reuse it.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// The line that ends a stream whose query failed after output started (decision 0003): the
/// error document plus the HTTP status the error would have had, so a node reading another
/// node's answer (the router's fan-out) keeps the error's kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorLine {
    /// The error.
    pub error: ErrorDetail,
    /// The status it would have had before output started.
    pub status: u16,
}

/// Serializes an error as the single-line JSON document used in streams (NDJSON trailers):
/// `{"error":{"code":…,"message":…},"status":400}`.
pub fn error_line(kind: ErrorKind, code: &str, message: &str) -> String {
    serde_json::to_string(&ErrorLine {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
        status: status_for(kind).as_u16(),
    })
    .unwrap_or_else(|_| {
        "{\"error\":{\"code\":\"internal\",\"message\":\"\"},\"status\":500}".to_owned()
    })
}

/// Reads a line written by [`error_line`] back into the error (its kind from the status).
pub fn parse_error_line(line: &str) -> Option<crate::error::Error> {
    let l: ErrorLine = serde_json::from_str(line.trim()).ok()?;
    let status = StatusCode::from_u16(l.status).ok()?;
    Some(crate::error::Error::new(
        kind_for_status(status),
        l.error.code,
        l.error.message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_keep_the_kind() {
        let line = error_line(ErrorKind::InvalidInput, "sql_error", "integer overflow");
        let e = parse_error_line(&line).unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!((e.code(), e.message()), ("sql_error", "integer overflow"));
        // Still an error document.
        let b: ErrorBody = serde_json::from_str(&line).unwrap();
        assert_eq!(b.error.code, "sql_error");
        assert!(parse_error_line("{\"v\":1}").is_none());
    }

    #[test]
    fn status_round_trips() {
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::PayloadTooLarge,
            ErrorKind::Timeout,
            ErrorKind::ClientTimeout,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            assert_eq!(kind_for_status(status_for(kind)), kind);
        }
    }
}
