//! Operational endpoints: `/health`, `/metrics`, and the JSON answers for unknown routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use trough_core::http::HttpError;
use trough_core::ErrorKind;

use crate::Node;

/// `GET /health`: the node and, per segment, whether its local copy is verified.
pub async fn health(State(node): State<Arc<Node>>) -> Json<Value> {
    let mut segments: BTreeMap<String, Value> = BTreeMap::new();
    let copies = node.sync.as_ref().map(|s| s.status()).unwrap_or_default();
    for (id, s) in copies {
        segments.insert(
            id.to_string(),
            json!({
                "id": id, "version": s.version, "sha256": s.sha256, "size": s.size,
                "verified": s.verified, "live": false, "error": s.error,
            }),
        );
    }
    let live = node.writer.as_ref().map(|w| w.live()).unwrap_or_default();
    for (id, _) in live {
        let entry = segments.entry(id.to_string()).or_insert_with(
            || json!({ "id": id, "version": null, "sha256": null, "verified": false }),
        );
        entry["live"] = Value::Bool(true);
    }
    let mut roles = Vec::new();
    if node.sync.is_some() {
        roles.push("reader");
    }
    if node.writer.is_some() {
        roles.push("writer");
    }
    Json(json!({
        "status": "ok",
        "node": node.name,
        "roles": roles,
        "segments": segments.into_values().collect::<Vec<_>>(),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        trough_core::metrics::render(),
    )
}

/// Unknown route: a JSON 404.
pub async fn not_found() -> HttpError {
    HttpError::new(
        ErrorKind::NotFound,
        "no_such_route",
        "no such endpoint; see docs/api.md",
    )
}

/// Known route, wrong method: a JSON 405.
pub async fn method_not_allowed() -> impl IntoResponse {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        Json(
            json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this endpoint; see docs/api.md"}}),
        ),
    )
}
