//! Trough's segment-manager API, for clients written for the original Trough (warcprox's
//! `TroughDedupDb` and Heritrix's `TroughClient` both use `trough.client`): the request and
//! answer shapes those clients accept, mapped onto trough's own operations. Nothing here has
//! behaviour of its own: provisioning, promotion and schemas are the same calls as
//! `/segments/{id}/provision`, `/segments/{id}/promote` and `/schemas/{name}`.
//!
//! | Trough call | here |
//! |---|---|
//! | `POST /provision` `{"segment", "schema"}` | provision; 200 `{"write_url", "segment", "schema", …}` |
//! | `POST /` body = segment id (deprecated) | provision; 200 text: the write URL |
//! | `POST /promote` `{"segment"}` | promote; 200 with the manifest |
//! | `GET /schema`, `GET /schema/{name}`, `GET /schema/{name}/sql` | the registered schemas |
//! | `PUT /schema/{name}/sql` (SQL) or `PUT /schema/{name}` (`{"id","sql"}`) | 201 new, 204 replaced |
//!
//! Trough has a schema named `default` that is empty until an operator replaces it; so does this
//! API (an unregistered `default` provisions an empty database). The wire format for reads and
//! writes (`POST /?segment={id}`) is in [`super::sql`]; the write URL a provision returns is that
//! route on the node holding the segment's write lease.
//!
//! Not here: deleting a segment (`DELETE /segment/{id}` is `handlers::manage::delete`).

use std::collections::HashMap;
use std::sync::Arc;
use trough_types::error::codes;

use crate::http::HttpError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use trough_auth::Caller;
use trough_types::{ErrorKind, SchemaName, SegmentId};

use super::{schemas, segment_id, segments, sql, Path, Query};
use crate::body;
use crate::Node;

/// The schema Trough provisions with when none is named.
const DEFAULT_SCHEMA: &str = "default";

/// The body of `POST /provision`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionBody {
    segment: String,
    #[serde(default)]
    schema: Option<String>,
}

/// The body of `POST /promote`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    segment: String,
}

/// The body of `PUT /schema/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaBody {
    id: String,
    sql: String,
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    HttpError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string())
}

async fn json_of(resp: Response) -> Result<Value, HttpError> {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(internal)?;
    serde_json::from_slice(&bytes).map_err(internal)
}

/// Provisions `raw_id` with the named schema (Trough's `default` when none): the same call as
/// `POST /segments/{id}/provision`. Returns the segment document and the write URL.
/// A failure is the response to send as it is (an error from the provision call keeps its own
/// status and body).
async fn provision(
    node: &Arc<Node>,
    raw_id: &str,
    schema: Option<&str>,
    incoming: &HeaderMap,
) -> Result<(SegmentId, Value, String), Response> {
    provision_inner(node, raw_id, schema, incoming)
        .await
        .map_err(IntoResponse::into_response)?
}

async fn provision_inner(
    node: &Arc<Node>,
    raw_id: &str,
    schema: Option<&str>,
    incoming: &HeaderMap,
) -> Result<Result<(SegmentId, Value, String), Response>, HttpError> {
    let id = segment_id(raw_id)?;
    let schema = SchemaName::new(schema.unwrap_or(DEFAULT_SCHEMA))?;
    let registered = node.coordinator.get_schema(&schema).await?.is_some();
    let request = if registered {
        json!({ "schema": schema })
    } else if schema.as_str() == DEFAULT_SCHEMA {
        json!({})
    } else {
        return Err(HttpError::new(
            ErrorKind::NotFound,
            codes::SCHEMA_NOT_FOUND,
            format!("schema {schema} not found"),
        ));
    };
    // The caller's credential, in case the provision is forwarded to another node.
    let mut headers = crate::auth::forward_credential(incoming);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let resp = segments::provision(
        State(node.clone()),
        Path(id.to_string()),
        headers,
        Body::from(request.to_string()),
    )
    .await?;
    if !resp.status().is_success() {
        return Ok(Err(resp));
    }
    let doc = json_of(resp).await?;
    let writer = node.cluster.writer_of(&id).ok_or_else(|| {
        HttpError::new(
            ErrorKind::Unavailable,
            codes::WRITER_UNAVAILABLE,
            format!("segment {id} was provisioned but its writer is not known yet; retry"),
        )
    })?;
    let write_url = format!("{}/?segment={id}", writer.address.trim_end_matches('/'));
    Ok(Ok((id, doc, write_url)))
}

/// `POST /provision` with `{"segment": id, "schema": name}`: 200 with the write URL, also for a
/// segment that is already provisioned (Trough's clients provision again after a failed write).
pub async fn provision_json(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Response> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    let req: ProvisionBody = body::json(&bytes).map_err(IntoResponse::into_response)?;
    let (id, doc, write_url) =
        provision(&node, &req.segment, req.schema.as_deref(), &headers).await?;
    let schema = req.schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    Ok(Json(json!({
        "segment": id,
        "write_url": write_url,
        "schema": schema,
        "size": doc.get("size").cloned().unwrap_or(Value::Null),
        "writer": doc.get("writer").cloned().unwrap_or(Value::Null),
    }))
    .into_response())
}

/// `POST /`: with `?segment=`, the wire format (SQL); without, Trough's deprecated provision
/// whose body is the segment id and whose answer is the write URL as text.
pub async fn root(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, Response> {
    if q.contains_key("segment") {
        return sql::trough_wire(State(node), &caller, Query(q), headers, request_body)
            .await
            .map_err(IntoResponse::into_response);
    }
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    let raw = body::utf8(bytes).map_err(IntoResponse::into_response)?;
    let raw = raw.trim();
    if SegmentId::new(raw).is_err() {
        // Not an id: most likely SQL sent without its `?segment=`.
        return Err(HttpError::new(
            ErrorKind::InvalidInput,
            codes::MISSING_SEGMENT,
            "POST / without `?segment=` is Trough's provision call, whose body is a segment id; \
             to run SQL, send it to /?segment=<id>",
        )
        .into_response());
    }
    let (_, _, write_url) = provision(&node, raw, None, &headers).await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        write_url,
    )
        .into_response())
}

/// `POST /promote` with `{"segment": id}`: stores the live database as a new version.
pub async fn promote(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let req: PromoteBody = body::json(&bytes)?;
    segments::promote(
        State(node),
        Path(req.segment),
        crate::auth::forward_credential(&headers),
        Body::empty(),
    )
    .await
}

/// The SQL of a schema; Trough's `default` is empty until registered.
async fn schema_sql(node: &Node, raw: &str) -> Result<String, HttpError> {
    let name = SchemaName::new(raw)?;
    match node.coordinator.get_schema(&name).await? {
        Some(sql) => Ok(sql),
        None if name.as_str() == DEFAULT_SCHEMA => Ok(String::new()),
        None => Err(HttpError::new(
            ErrorKind::NotFound,
            codes::SCHEMA_NOT_FOUND,
            format!("schema {name} not found"),
        )),
    }
}

/// `GET /schema/{name}`: `{"id", "sql"}` or 404.
pub async fn schema_show(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let sql = schema_sql(&node, &name).await?;
    Ok(Json(json!({ "id": name, "sql": sql })))
}

/// `GET /schema/{name}/sql`: the SQL text (`application/sql`) or 404.
pub async fn schema_sql_show(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let sql = schema_sql(&node, &name).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sql"),
        )],
        sql,
    )
        .into_response())
}

/// `GET /schema`: every schema as `{"id", "sql"}`, `default` included.
pub async fn schema_list(State(node): State<Arc<Node>>) -> Result<Json<Value>, HttpError> {
    let mut list: Vec<Value> = Vec::new();
    let mut has_default = false;
    for (name, sql) in node.coordinator.list_schemas().await? {
        has_default |= name.as_str() == DEFAULT_SCHEMA;
        list.push(json!({ "id": name, "sql": sql }));
    }
    if !has_default {
        list.insert(0, json!({ "id": DEFAULT_SCHEMA, "sql": "" }));
    }
    Ok(Json(Value::Array(list)))
}

/// 201 for a new schema, 204 for a replaced one (Trough's answers).
async fn put_schema(node: Arc<Node>, name: String, sql: String) -> Result<Response, HttpError> {
    let resp = schemas::put(State(node), Path(name), HeaderMap::new(), Body::from(sql)).await?;
    Ok(if resp.status() == StatusCode::CREATED {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// `PUT /schema/{name}/sql`: the body is the schema SQL.
pub async fn schema_put_sql(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let sql = body::utf8(bytes)?;
    put_schema(node, name, sql).await
}

/// `PUT /schema/{name}` with `{"id": name, "sql": ...}`; the id must match the path.
pub async fn schema_put_json(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let req: SchemaBody = body::json(&bytes)?;
    if req.id != name {
        return Err(HttpError::new(
            ErrorKind::InvalidInput,
            codes::INVALID_BODY,
            format!(
                "id {:?} in the body does not match {:?} in the path",
                req.id, name
            ),
        ));
    }
    put_schema(node, name, req.sql).await
}
