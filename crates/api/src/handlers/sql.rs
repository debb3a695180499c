//! SQL endpoints: `/segments/{id}/query`, `/segments/{id}/execute`, and Trough's wire format
//! `POST /?segment={id}`. Each answers locally when this node holds what is needed, and
//! otherwise forwards to a node that does (readers for reads, the lease holder for writes).

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::HttpError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use trough_auth::{Caller, Level};
use trough_sqlite::{Params, RowFormat, SqlRequest, COLUMNAR_MEDIA_TYPE};
use trough_types::error::codes;
use trough_types::{ApiError, ErrorKind, SegmentId};
use trough_writer::ExecuteRequest;

use super::{segment_id, segment_not_found, Path, Query};
use crate::body;
use crate::replicas::Step;
use crate::routing::{self, Op, Route};
use crate::Node;
use trough_cluster::forward::{Attempt, Retry, FORWARDED_HEADER};

const NDJSON: &str = "application/x-ndjson";

pub(crate) fn wants_ndjson(headers: &HeaderMap) -> bool {
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

/// Whether `Accept` asks for the columnar answer ([`COLUMNAR_MEDIA_TYPE`]).
pub(crate) fn wants_columnar(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(COLUMNAR_MEDIA_TYPE))
        })
}

/// The answer format `Accept` asks for: columnar, NDJSON, else a JSON array of row objects.
pub(crate) fn row_format(headers: &HeaderMap) -> RowFormat {
    if wants_columnar(headers) {
        RowFormat::Columnar
    } else if wants_ndjson(headers) {
        RowFormat::Ndjson
    } else {
        RowFormat::JsonArray
    }
}

/// Whether `headers` mark a request forwarded by another node.
pub(crate) fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

impl Node {
    /// Whether a read of `id` must be answered here: this node's reader holds it, and the segment
    /// is not writable on another node (whose live database would be newer).
    pub(crate) fn reads_locally(&self, id: &SegmentId) -> bool {
        let Some(reader) = &self.reader else {
            return false;
        };
        if !reader.has(id) {
            return false;
        }
        let snap = self.cluster.snapshot();
        match snap.catalog.get(id).and_then(|e| e.writable.as_ref()) {
            Some(w) => w.writer == self.name,
            None => true,
        }
    }

    /// Whether this node holds `id`'s write lease.
    fn writes_locally(&self, id: &SegmentId) -> bool {
        self.writer.as_ref().is_some_and(|w| w.holds(id))
    }

    /// Where a request `op` on `id` is answered ([`crate::routing::route`] on this node's facts).
    pub(crate) fn route(&self, id: &SegmentId, op: Op, headers: &HeaderMap) -> Route {
        routing::route(
            op,
            routing::Facts {
                reads_here: self.reads_locally(id),
                writes_here: self.writes_locally(id),
                has_writer: op == Op::Either && self.cluster.writer_of(id).is_some(),
                forwarded: is_forwarded(headers),
            },
        )
    }

    /// 404 if the segment is unknown, else the given error.
    pub(crate) async fn unknown_or(&self, id: &SegmentId, err: HttpError) -> HttpError {
        let known = self.cluster.snapshot().catalog.contains_key(id)
            || matches!(self.coordinator.get_segment(id).await, Ok(Some(_)));
        if known {
            err
        } else {
            segment_not_found(id)
        }
    }

    /// Sends a read to the replicas of `id` in turn until one answers.
    async fn forward_read(
        &self,
        id: &SegmentId,
        path: &str,
        headers: &HeaderMap,
        bytes: Bytes,
    ) -> Result<Response, HttpError> {
        self.forward_read_as(Method::POST, id, path, headers, bytes)
            .await
    }

    /// [`Node::forward_read`] with another method (`GET /segments/{id}/schema`).
    pub(crate) async fn forward_read_as(
        &self,
        method: Method,
        id: &SegmentId,
        path: &str,
        headers: &HeaderMap,
        bytes: Bytes,
    ) -> Result<Response, HttpError> {
        let failures = match self
            .each_replica(id, |t| {
                let (bytes, method) = (bytes.clone(), method.clone());
                async move {
                    match self
                        .forwarder
                        .send(&t, method, path, headers, bytes, Retry::Idempotent)
                        .await
                    {
                        Attempt::Done(r) => Step::Done(r),
                        Attempt::Retry(reason) => Step::Next(reason),
                    }
                }
            })
            .await
        {
            Ok(r) => return Ok(r),
            Err(failures) => failures,
        };
        let msg = if failures.is_empty() {
            format!("no healthy replica holds segment {id}")
        } else {
            format!(
                "no healthy replica could answer for segment {id}: {}",
                failures.join("; ")
            )
        };
        Err(self
            .unknown_or(
                id,
                HttpError::new(ErrorKind::Unavailable, codes::NO_HEALTHY_REPLICA, msg),
            )
            .await)
    }
}

/// Runs a read query on this node and streams its answer.
async fn local_query(
    node: &Node,
    id: &SegmentId,
    req: SqlRequest,
    format: RowFormat,
    forwarded: bool,
) -> Result<Response, HttpError> {
    let Some(reader) = &node.reader else {
        return Err(node
            .unknown_or(
                id,
                HttpError::new(
                    ErrorKind::Unavailable,
                    codes::SEGMENT_UNAVAILABLE,
                    format!("this node does not serve reads of {id}"),
                ),
            )
            .await);
    };
    match reader.query(id, req, format).await {
        Ok(stream) => {
            let body = if forwarded {
                // The forwarding node must see the failure as a broken body: it cannot tell a
                // final error line from a row otherwise.
                Body::from(stream)
            } else {
                // An outside client: the error line is the last thing sent, then the body ends
                // normally so it surely arrives (decision 0003).
                Body::from_stream(stream.take_while(|r| std::future::ready(r.is_ok())))
            };
            let mut resp = body.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            Ok(resp)
        }
        Err(e) if e.kind() == ErrorKind::Unavailable => Err(node.unknown_or(id, e.into()).await),
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
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    if node.route(&id, Op::Read, &headers) != Route::Local {
        let path = format!("/segments/{id}/query");
        return node.forward_read(&id, &path, &headers, bytes).await;
    }
    let req: SqlRequest = body::parse_sql(&headers, bytes, |sql| SqlRequest {
        sql,
        params: Params::None,
    })?;
    body::sql_text(&req.sql)?;
    local_query(
        &node,
        &id,
        req,
        row_format(&headers),
        is_forwarded(&headers),
    )
    .await
}

/// Runs a write request here, or explains why this node cannot take it.
async fn local_execute(
    node: &Node,
    id: &SegmentId,
    req: ExecuteRequest,
) -> Result<trough_writer::ExecuteResult, HttpError> {
    let not_writable = || trough_writer::Error::NotWritable(id.clone());
    let result = match &node.writer {
        Some(w) => w.execute(id, req).await,
        None => Err(not_writable()),
    };
    match result {
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
                _ => Err(not_writable().into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends a write to the lease holder of `id`.
pub(crate) async fn forward_write(
    node: &Node,
    id: &SegmentId,
    path: &str,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Response, HttpError> {
    forward_write_as(node, Method::POST, id, path, headers, bytes).await
}

/// [`forward_write`] with another method (`DELETE /segments/{id}`).
pub(crate) async fn forward_write_as(
    node: &Node,
    method: Method,
    id: &SegmentId,
    path: &str,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Response, HttpError> {
    let target = match node.cluster.writer_of(id) {
        Some(t) => Some(t),
        None => {
            // The cached view may predate this segment's provisioning: ask the catalog.
            let entry = node
                .coordinator
                .get_segment(id)
                .await?
                .ok_or_else(|| segment_not_found(id))?;
            let Some(w) = entry.writable else {
                return Err(trough_writer::Error::NotWritable(id.clone()).into());
            };
            if node.cluster.node(&w.writer).is_none() {
                let _ = node.cluster.refresh_nodes(&node.coordinator).await;
            }
            match node.cluster.node(&w.writer) {
                Some(t) => Some(t),
                None => {
                    return Err(HttpError::new(
                        ErrorKind::Unavailable,
                        codes::WRITER_UNAVAILABLE,
                        format!(
                            "{id} is writable on node {}, which is not available; writes resume when it returns",
                            w.writer
                        ),
                    ))
                }
            }
        }
    };
    match target {
        Some(t) if t.name != node.name => match node
            .forwarder
            .send(&t, method, path, headers, bytes, Retry::NotSent)
            .await
        {
            Attempt::Done(r) => Ok(r),
            Attempt::Retry(reason) => Err(HttpError::new(
                ErrorKind::Unavailable,
                codes::WRITER_UNAVAILABLE,
                format!("the writer of {id} cannot be reached: {reason}"),
            )),
        },
        // This node is the writer but does not hold the segment open: explain why.
        _ => Err(trough_writer::Error::NotWritable(id.clone()).into()),
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
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    if node.route(&id, Op::Write, &headers) != Route::Local {
        let path = format!("/segments/{id}/execute");
        return forward_write(&node, &id, &path, &headers, bytes).await;
    }
    let req: ExecuteRequest = body::parse_sql(&headers, bytes, ExecuteRequest::text)?;
    body::sql_text(&req.sql)?;
    let r = local_execute(&node, &id, req).await?;
    Ok(Json(r).into_response())
}

/// `POST /?segment={id}` with raw SQL: Trough's wire format. Read-only statements answer a JSON
/// array; anything else runs on the writable segment and answers `OK`.
pub async fn trough_wire(
    State(node): State<Arc<Node>>,
    caller: &Caller,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let raw = q.get("segment").ok_or_else(|| {
        HttpError::new(
            ErrorKind::InvalidInput,
            codes::MISSING_SEGMENT,
            "the `segment` query parameter is required",
        )
    })?;
    let id = segment_id(raw)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let path = format!("/?segment={id}");
    match node.route(&id, Op::Either, &headers) {
        Route::Local => {}
        Route::ForwardWrite => return forward_write(&node, &id, &path, &headers, bytes).await,
        Route::ForwardRead => return node.forward_read(&id, &path, &headers, bytes).await,
    }
    let sql = body::utf8(bytes)?;
    body::sql_text(&sql)?;
    let req = SqlRequest {
        sql: sql.clone(),
        params: Params::None,
    };
    let holds_writer = node.writes_locally(&id);
    match local_query(
        &node,
        &id,
        req,
        RowFormat::JsonArray,
        is_forwarded(&headers),
    )
    .await
    {
        // A write (SQLite says the statement is not read-only), or several statements (a read
        // runs exactly one): on a writable segment the whole body runs as one write transaction,
        // as Trough's writer did. Any other error of the read (a limit, bad SQL, a timeout)
        // stands: re-running it as a write would escape the read limits.
        Err(e)
            if e.body.error.code == codes::NOT_READ_ONLY
                || (e.body.error.code == codes::MULTIPLE_STATEMENTS && holds_writer) =>
        {
            // A read right lets this route read; a statement that writes needs write.
            if !caller.allows(id.as_str(), Level::Write) {
                return Err(crate::auth::refused(
                    caller,
                    format!("this token has no write right on segment {id}"),
                ));
            }
            local_execute(&node, &id, ExecuteRequest::text(sql)).await?;
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response())
        }
        other => other,
    }
}
