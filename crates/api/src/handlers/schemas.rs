//! `/schemas`: registering schema SQL that writable segments are provisioned from.

use std::sync::Arc;
use trough_types::error::codes;

use crate::http::HttpError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use trough_types::{ErrorKind, SchemaName};

use super::Path;

use crate::body;
use crate::Node;

/// `PUT /schemas/{name}`: body is the schema SQL; it must run on an empty database (a scratch
/// database under the data dir, within `limits.schema_timeout_ms` and `limits.schema_max_bytes`).
pub async fn put(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let name = SchemaName::new(&name)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let sql = body::utf8(bytes)?;
    body::sql_text(&sql)?;
    let check = sql.clone();
    let bounds = trough_writer::SchemaCheck::new(&node.limits, node.tmp_dir.clone());
    tokio::task::spawn_blocking(move || trough_writer::exec::validate_schema(&check, &bounds))
        .await
        .map_err(|e| HttpError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))??;
    let created = node.coordinator.put_schema(&name, &sql).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "name": name, "sql": sql }))).into_response())
}

/// `GET /schemas/{name}`.
pub async fn show(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let name = SchemaName::new(&name)?;
    let sql = node.coordinator.get_schema(&name).await?.ok_or_else(|| {
        HttpError::new(
            ErrorKind::NotFound,
            codes::SCHEMA_NOT_FOUND,
            format!("schema {name} not found"),
        )
    })?;
    Ok(Json(json!({ "name": name, "sql": sql })))
}

/// `GET /schemas`.
pub async fn list(State(node): State<Arc<Node>>) -> Result<Json<Value>, HttpError> {
    let schemas: Vec<Value> = node
        .coordinator
        .list_schemas()
        .await?
        .into_iter()
        .map(|(name, sql)| json!({ "name": name, "sql": sql }))
        .collect();
    Ok(Json(json!({ "schemas": schemas })))
}
