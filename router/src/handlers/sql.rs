//! SQL endpoints: `/segments/{id}/query`, `/segments/{id}/execute`, and Trough's wire format
//! `POST /?segment={id}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use trough_core::http::HttpError;
use trough_core::sql::{Params, RowFormat, SqlRequest};
use trough_core::{ApiError, ErrorKind, SegmentId};
use trough_writer::ExecuteRequest;

use super::{segment_id, segment_not_found};
use crate::body;
use crate::Node;

const NDJSON: &str = "application/x-ndjson";

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(NDJSON))
        })
}

/// Runs a read query and streams its answer.
async fn run_query(
    node: &Node,
    id: &SegmentId,
    req: SqlRequest,
    format: RowFormat,
) -> Result<Response, HttpError> {
    match node.reader.query(id, req, format).await {
        Ok(stream) => {
            let content_type = match format {
                RowFormat::JsonArray => "application/json",
                RowFormat::Ndjson => NDJSON,
            };
            let mut resp = Body::from(stream).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(resp)
        }
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            // No local copy: an unknown segment is a 404; a known one is not served yet (503).
            if node.coordinator.get_segment(id).await?.is_none() {
                Err(segment_not_found(id))
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /segments/{id}/query`.
pub async fn query(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let req: SqlRequest =
        body::sql_body(&headers, request_body, node.limits.max_body_bytes, |sql| {
            SqlRequest {
                sql,
                params: Params::None,
            }
        })
        .await?;
    let format = if wants_ndjson(&headers) {
        RowFormat::Ndjson
    } else {
        RowFormat::JsonArray
    };
    run_query(&node, &id, req, format).await
}

/// Runs a write request, explaining why a segment cannot take it.
async fn run_execute(
    node: &Node,
    id: &SegmentId,
    req: ExecuteRequest,
) -> Result<trough_writer::ExecuteResult, HttpError> {
    match node.writer.execute(id, req).await {
        Ok(r) => Ok(r),
        Err(trough_writer::Error::NotWritable(_)) => {
            let entry = node
                .coordinator
                .get_segment(id)
                .await?
                .ok_or_else(|| segment_not_found(id))?;
            match entry.writable {
                Some(w) if w.writer != node.name => Err(trough_writer::Error::LeaseElsewhere {
                    id: id.clone(),
                    writer: w.writer,
                }
                .into()),
                _ => Err(trough_writer::Error::NotWritable(id.clone()).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /segments/{id}/execute`.
pub async fn execute(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let req: ExecuteRequest = body::sql_body(
        &headers,
        request_body,
        node.limits.max_body_bytes,
        ExecuteRequest::text,
    )
    .await?;
    let r = run_execute(&node, &id, req).await?;
    Ok(Json(r).into_response())
}

/// `POST /?segment={id}` with raw SQL: Trough's wire format. Read-only statements answer a JSON
/// array; anything else runs on the writable segment and answers `OK`.
pub async fn trough_wire(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let raw = q.get("segment").ok_or_else(|| {
        HttpError::new(
            ErrorKind::InvalidInput,
            "missing_segment",
            "the `segment` query parameter is required",
        )
    })?;
    let id = segment_id(raw)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let sql = body::utf8(bytes)?;
    let req = SqlRequest {
        sql: sql.clone(),
        params: Params::None,
    };
    match run_query(&node, &id, req, RowFormat::JsonArray).await {
        // A write, or several statements (a read path runs exactly one): on a writable segment
        // the whole body runs as one write transaction, as Trough's writer did; elsewhere the
        // reader's error stands.
        Err(e)
            if matches!(
                e.body.error.code.as_str(),
                "not_read_only" | "multiple_statements"
            ) || (e.kind == ErrorKind::InvalidInput && node.writer.holds(&id)) =>
        {
            if e.body.error.code != "not_read_only" && !node.writer.holds(&id) {
                return Err(e);
            }
            run_execute(&node, &id, ExecuteRequest::text(sql)).await?;
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response())
        }
        other => other,
    }
}
