//! The JSON error document on the wire: the body of every error answer, and the single line
//! that ends a stream whose query failed after output started (decision 0003).
//!
//! Not here: turning an error into a response (`trough_api::http`).

use serde::{Deserialize, Serialize};

use crate::error::{kind_for_status, status_for, Error, ErrorKind};

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
        status: status_for(kind),
    })
    .unwrap_or_else(|_| {
        "{\"error\":{\"code\":\"internal\",\"message\":\"\"},\"status\":500}".to_owned()
    })
}

/// Reads a line written by [`error_line`] back into the error (its kind from the status).
pub fn parse_error_line(line: &str) -> Option<Error> {
    let l: ErrorLine = serde_json::from_str(line.trim()).ok()?;
    Some(Error::new(
        kind_for_status(l.status),
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
            ErrorKind::Unauthenticated,
            ErrorKind::Forbidden,
        ] {
            assert_eq!(kind_for_status(status_for(kind)), kind);
        }
    }
}
