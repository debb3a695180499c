//! Request-level HTTP limits and the JSON shape of the HTTP layer's own errors.
//!
//! [`guard`] is the outermost middleware of [`crate::app`]. Before routing it refuses request
//! targets over `limits.http.max_uri_bytes` (414 `uri_too_long`) and heads over
//! `limits.http.max_header_bytes` (431 `headers_too_large`), and it wraps the request body in an
//! idle timeout (`limits.http.body_idle_timeout_ms`; reading then fails, and the body readers in
//! [`crate::body`] answer 408 `body_timeout`). After the handler, any error response that is not
//! JSON (a rejection produced inside axum) is rewritten as the JSON error document, with a code
//! derived from its status.
//!
//! Not here: connection-level bounds (connection count, head timeout, lingering close), which are
//! in [`crate::listener`], which also gives errors hyper answers itself before a request exists (a
//! malformed request line or `Content-Length`, a head beyond the read buffer) the JSON document.

use std::time::Duration;
use trough_types::error::codes;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trough_config::HttpLimits;
use trough_types::wire::{ErrorBody, ErrorDetail};

/// The middleware; `State` is the node's HTTP limits.
pub async fn guard(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return refuse(
            StatusCode::URI_TOO_LONG,
            codes::URI_TOO_LONG,
            format!(
                "the request target is {target} bytes; the limit is {} bytes",
                limits.max_uri_bytes
            ),
        );
    }
    let head = head_bytes(&req);
    if head > limits.max_header_bytes {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            codes::HEADERS_TOO_LARGE,
            format!(
                "the request head is {head} bytes; the limit is {} bytes",
                limits.max_header_bytes
            ),
        );
    }
    let timeout = Duration::from_millis(limits.body_idle_timeout_ms.max(1));
    let req = req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(timeout, b)));
    jsonify(next.run(req).await).await
}

/// Approximate size of the request head as sent: request line and `name: value\r\n` lines.
fn head_bytes(req: &Request) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |pq| pq.as_str().len())
        + 11;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// A JSON error response with `connection: close` (the request was not read to its end).
fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let mut r = error_response(status, code, message);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The JSON error document with an explicit status.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        }),
    )
        .into_response()
}

/// The stable code for an error status produced outside the handlers.
fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => codes::INVALID_REQUEST,
        404 => codes::NO_SUCH_ROUTE,
        405 => codes::METHOD_NOT_ALLOWED,
        408 => codes::BODY_TIMEOUT,
        411 => codes::LENGTH_REQUIRED,
        413 => codes::BODY_TOO_LARGE,
        414 => codes::URI_TOO_LONG,
        415 => codes::UNSUPPORTED_MEDIA_TYPE,
        422 => codes::INVALID_REQUEST,
        431 => codes::HEADERS_TOO_LARGE,
        s if s >= 500 => codes::INTERNAL,
        _ => codes::HTTP_ERROR,
    }
}

/// Rewrites a non-JSON error response (an axum rejection) as the JSON error document; the text
/// of the rejection becomes the message.
async fn jsonify(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are short; anything longer is cut, not buffered.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let mut out = error_response(status, code_for_status(status), message);
    for name in [header::CONNECTION, header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
