//! `/segments`: the catalog listing, one segment's document, publishing a file, provisioning and
//! promoting writable segments.

use std::collections::BTreeMap;
use std::sync::Arc;
use trough_types::error::codes;

use crate::http::HttpError;
use crate::routing::{Op, Route};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use trough_auth::{Caller, Level};
use trough_store::hash::Hasher;
use trough_store::publish::PublishOptions;
use trough_types::{ErrorKind, SegmentEntry, SegmentId};
use trough_writer::ProvisionRequest;

use super::pages::PageParams;
use super::{manage, segment_id, segment_not_found, sql, Path};
use crate::body;
use crate::Node;
use trough_cluster::forward::{Attempt, Retry};

/// `GET /segments`: the latest version of every segment, one page at a time (`limit`, `cursor`,
/// `prefix`; see [`super::pages`]).
///
/// Segments the caller may not read are left out of the page (its cursor still moves past them).
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let p = PageParams::parse(query)?;
    let filters = list_filters(&p)?;
    let mut entries = node
        .coordinator
        .list_segments_page(&p.prefix, p.cursor.as_deref(), p.limit + 1)
        .await?;
    let more = entries.len() > p.limit;
    entries.truncate(p.limit);
    let next_cursor = more
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let infos = node.coordinator.list_segment_info().await?;
    let segments: Vec<Value> = entries
        .iter()
        .filter(|e| caller.allows(e.id.as_str(), Level::Read))
        .filter(|e| manage::matches(e, infos.get(&e.id), &filters))
        .map(|e| {
            let latest = e.latest();
            let mut item = json!({
                "id": e.id,
                "version": e.latest_version(),
                "sha256": latest.map(|m| &m.sha256),
                "size": latest.map(|m| m.size),
                "created_at": latest.map(|m| m.created_at),
                "writable": e.writable.is_some(),
                "writer": e.writable.as_ref().map(|w| &w.writer),
                "schema": entry_schema(e),
            });
            manage::info_fields(&mut item, infos.get(&e.id));
            item
        })
        .collect();
    let mut doc = json!({ "segments": segments });
    if let Some(c) = next_cursor {
        doc["next_cursor"] = Value::String(c);
    }
    Ok(Json(doc))
}

/// The schema a segment was provisioned or published from, if any.
fn entry_schema(e: &SegmentEntry) -> Option<&trough_types::SchemaName> {
    e.writable
        .as_ref()
        .and_then(|w| w.schema.as_ref())
        .or_else(|| e.latest().and_then(|m| m.schema.as_ref()))
}

/// The filters of `GET /segments` besides `prefix`: `schema`, `label` (`key:value` or `key`;
/// several separated by commas, all must match) and `writable` (400 `invalid_query_parameter`
/// for anything else).
fn list_filters(p: &PageParams) -> Result<manage::Filters, HttpError> {
    let bad =
        |m: String| HttpError::new(ErrorKind::InvalidInput, codes::INVALID_QUERY_PARAMETER, m);
    let mut f = manage::Filters::default();
    for (k, v) in &p.rest {
        match k.as_str() {
            "schema" => match trough_types::SchemaName::new(v) {
                Ok(n) => f.schema = Some(n.to_string()),
                Err(e) => return Err(bad(format!("schema: {e}"))),
            },
            "label" => {
                for one in v.split(',') {
                    f.labels.push(manage::Filters::parse_label(one)?);
                }
            }
            "writable" => {
                f.writable = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("writable must be true or false, not {v:?}"))),
                })
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}; expected limit, cursor, prefix, schema, label, writable"
                )))
            }
        }
    }
    Ok(f)
}

/// The full document of one segment: versions, writer, replicas.
pub async fn document(node: &Node, entry: &SegmentEntry) -> Result<Value, HttpError> {
    let assigned = node.coordinator.get_assigned(&entry.id).await?;
    let nodes = node.coordinator.list_nodes().await?;
    let latest = entry.latest_version();
    let mut replicas = Vec::new();
    for n in &nodes {
        let held = n.held.get(&entry.id).copied();
        if held.is_none() && !assigned.contains(&n.name) {
            continue;
        }
        replicas.push(json!({
            "node": n.name,
            "address": n.address,
            "version": held,
            "verified": held == Some(latest),
            "assigned": assigned.contains(&n.name),
        }));
    }
    Ok(json!({
        "id": entry.id,
        "versions": entry.versions,
        "latest": entry.latest(),
        "writable": entry.writable.is_some(),
        "writer": entry.writable.as_ref().map(|w| &w.writer),
        "schema": entry_schema(entry),
        "replicas": replicas,
    }))
}

/// `GET /segments/{id}`.
pub async fn show(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let id = segment_id(&id)?;
    let entry = node
        .coordinator
        .get_segment(&id)
        .await?
        .ok_or_else(|| segment_not_found(&id))?;
    let mut doc = document(&node, &entry).await?;
    let info = node.coordinator.get_segment_info(&id).await?;
    manage::info_fields(&mut doc, Some(&info));
    Ok(Json(doc))
}

/// `PUT /segments/{id}`: publish the body (a SQLite file) as a new version.
pub async fn publish(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let limit = node.limits.max_upload_bytes;
    if body::content_length(&headers).is_some_and(|n| n > limit) {
        return Err(body::too_large(limit));
    }
    if let Some(e) = node.coordinator.get_segment(&id).await? {
        if let Some(w) = e.writable {
            return Err(HttpError::new(
                ErrorKind::Conflict,
                codes::SEGMENT_WRITABLE,
                format!(
                    "{id} is writable (on node {}); promote it instead of uploading",
                    w.writer
                ),
            ));
        }
    }
    let tmp = receive_file(&node, &id, request_body, limit).await?;
    let result = node
        .publisher
        .publish_file(
            &id,
            tmp.path(),
            PublishOptions {
                known_digest: Some(tmp.digest.clone()),
                ..Default::default()
            },
        )
        .await;
    let manifest = result?;
    Ok((StatusCode::CREATED, Json(manifest)).into_response())
}

/// An uploaded file in the scratch directory, removed on drop.
struct Upload {
    file: tempfile::TempPath,
    digest: (String, u64),
}

impl Upload {
    fn path(&self) -> &std::path::Path {
        &self.file
    }
}

/// Streams a body to a scratch file, hashing it and enforcing the size limit.
async fn receive_file(
    node: &Node,
    id: &SegmentId,
    request_body: Body,
    limit: u64,
) -> Result<Upload, HttpError> {
    tokio::fs::create_dir_all(&node.tmp_dir)
        .await
        .map_err(trough_types::Error::from)?;
    let named = tempfile::Builder::new()
        .prefix(&format!("upload-{id}-"))
        .tempfile_in(&node.tmp_dir)
        .map_err(trough_types::Error::from)?;
    let (std_file, path) = named.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut stream = request_body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body::read_error(&e, limit, "upload interrupted"))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(body::too_large(limit));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(trough_types::Error::from)?;
    }
    file.sync_all().await.map_err(trough_types::Error::from)?;
    Ok(Upload {
        file: path,
        digest: (hasher.finish_hex(), size),
    })
}

/// `POST /segments/{id}/provision`: make a segment writable, on the least-loaded writer node
/// (or on the node that already writes it: provisioning is idempotent).
pub async fn provision(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    if !sql::is_forwarded(&headers) {
        let path = format!("/segments/{id}/provision");
        let target = node
            .cluster
            .writer_of(&id)
            .or_else(|| node.cluster.pick_writer());
        match target {
            Some(t) if t.name != node.name => {
                return match node
                    .forwarder
                    .send(&t, Method::POST, &path, &headers, bytes, Retry::NotSent)
                    .await
                {
                    Attempt::Done(r) => {
                        // Routing of the next requests (and the next provision's choice of
                        // writer) must see this segment at once.
                        if r.status().is_success() {
                            let _ = node.cluster.refresh_segment(&node.coordinator, &id).await;
                        }
                        Ok(r)
                    }
                    Attempt::Retry(reason) => Err(HttpError::new(
                        ErrorKind::Unavailable,
                        codes::WRITER_UNAVAILABLE,
                        format!("writer node {} cannot be reached: {reason}", t.name),
                    )),
                };
            }
            _ => {}
        }
    }
    let Some(writer) = &node.writer else {
        return Err(HttpError::new(
            ErrorKind::Unavailable,
            codes::NO_WRITER,
            "no writer node is available to provision a writable segment",
        ));
    };
    let req: ProvisionRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ProvisionRequest::default()
    } else {
        body::json(&bytes)?
    };
    if let Some(sql) = &req.schema_sql {
        body::sql_text(sql)?;
    }
    let (entry, created) = writer.provision(&id, req).await?;
    if let Some(reader) = &node.reader {
        reader
            .install_live(id.clone(), writer.db_path(&id))
            .map_err(HttpError::from)?;
    }
    let _ = node.cluster.refresh_segment(&node.coordinator, &id).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(document(&node, &entry).await?)).into_response())
}

/// `POST /segments/{id}/promote`: snapshot a writable segment into a new stored version.
pub async fn promote(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    if node.route(&id, Op::Write, &headers) != Route::Local {
        let path = format!("/segments/{id}/promote");
        return sql::forward_write(&node, &id, &path, &headers, bytes).await;
    }
    let entry = node
        .coordinator
        .get_segment(&id)
        .await?
        .ok_or_else(|| segment_not_found(&id))?;
    let Some(writer) = node.writer.as_ref().filter(|_| entry.writable.is_some()) else {
        return Err(trough_writer::Error::NotWritable(id).into());
    };
    let manifest = writer.promote(&id).await?;
    Ok(Json(manifest).into_response())
}
