//! Operational endpoints: `/health`, `/metrics`, and the JSON answers for unknown routes.

use std::collections::BTreeMap;
use std::sync::Arc;
use trough_types::error::codes;

use crate::http::HttpError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use trough_types::ErrorKind;

use super::pages::{self, PageParams};
use crate::Node;

/// `GET /health`: the node, its roles and a summary of its copies; with `segments=true`, one
/// page (`limit`, `cursor`, `prefix`; see [`super::pages`]) of its copies: whether each local
/// copy is verified, and its live (writable) databases.
pub async fn health(
    State(node): State<Arc<Node>>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let p = PageParams::parse(query)?;
    let detail = match p.rest.get("segments").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(HttpError::new(
                ErrorKind::InvalidInput,
                codes::INVALID_QUERY_PARAMETER,
                format!("segments must be true or false, not {other:?}"),
            ))
        }
    };
    let live = node.writer.as_ref().map(|w| w.live()).unwrap_or_default();
    let summary = node.sync.as_ref().map(|s| s.summary()).unwrap_or_default();
    let mut roles = Vec::new();
    if node.sync.is_some() {
        roles.push("reader");
    }
    if node.writer.is_some() {
        roles.push("writer");
    }
    let mut doc = json!({
        "status": "ok",
        "node": node.name,
        "roles": roles,
        "summary": {
            "copies": summary.copies,
            "verified": summary.verified,
            "unverified": summary.copies - summary.verified,
            "verified_bytes": summary.verified_bytes,
            "errors": summary.errors,
            "live": live.len(),
        },
    });
    if !detail {
        return Ok(Json(doc));
    }
    // One page of the union of copies and live databases: each source gives at most
    // `limit + 1` ids after the cursor, which is all the page can need from it.
    let mut segments: BTreeMap<String, Value> = BTreeMap::new();
    let copies = node
        .sync
        .as_ref()
        .map(|s| s.status_page(&p.prefix, p.cursor.as_deref(), p.limit + 1))
        .unwrap_or_default();
    for (id, s) in copies {
        segments.insert(
            id.to_string(),
            json!({
                "id": id, "version": s.version, "sha256": s.sha256, "size": s.size,
                "verified": s.verified, "live": false, "error": s.error,
            }),
        );
    }
    for (id, _) in live.into_iter().filter(|(id, _)| p.admits(id.as_str())) {
        let entry = segments.entry(id.to_string()).or_insert_with(
            || json!({ "id": id, "version": null, "sha256": null, "verified": false }),
        );
        entry["live"] = Value::Bool(true);
    }
    let (items, next) = pages::page(segments, |(id, _)| id.as_str(), &p);
    doc["segments"] = Value::Array(items.into_iter().map(|(_, v)| v).collect());
    if let Some(c) = next {
        doc["next_cursor"] = Value::String(c);
    }
    Ok(Json(doc))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// Unknown route: a JSON 404.
pub async fn not_found() -> HttpError {
    HttpError::new(
        ErrorKind::NotFound,
        codes::NO_SUCH_ROUTE,
        "no such endpoint; see docs/api.md",
    )
}

/// Known route, wrong method: a JSON 405.
pub async fn method_not_allowed() -> impl IntoResponse {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        Json(
            json!({"error": {"code": codes::METHOD_NOT_ALLOWED, "message": "method not allowed on this endpoint; see docs/api.md"}}),
        ),
    )
}
