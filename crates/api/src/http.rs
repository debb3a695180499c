//! The one place where an error becomes an HTTP response.
//!
//! Every crate's error implements [`ApiError`]; handlers return `Result<_, HttpError>` and `?`
//! converts any of them. The status comes from [`trough_types::error::status_for`], the only
//! kind → status table. This module does not define routes ([`crate::app`] does).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trough_types::error::{status_for, ApiError, ErrorKind};
use trough_types::wire::{ErrorBody, ErrorDetail};

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
        StatusCode::from_u16(status_for(self.kind)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
