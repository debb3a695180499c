//! Managing segments over their life: delete (`DELETE /segments/{id}`, Trough's
//! `DELETE /segment/{id}`), describe (`GET /segments/{id}/schema`), description and labels
//! (`PATCH /segments/{id}`), restore (`POST /segments/{id}/restore`).
//!
//! A writable segment's delete and restore run on its writer (forwarded there like a write);
//! a describe runs on a node holding a copy (forwarded like a read); the rest changes only the
//! catalog and the store, so any node answers. Not here: the order of the store and catalog
//! steps (`trough_store::lifecycle`), retention and garbage collection (`trough_node`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use trough_coord::SegmentInfo;
use trough_types::error::codes;
use trough_types::{ApiError, ErrorKind, SegmentId};

use super::{segment_id, segment_not_found, segments, sql, Path};
use crate::body;
use crate::http::HttpError;
use crate::routing::{Op, Route};
use crate::Node;

/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// The most labels a segment may have.
pub const MAX_LABELS: usize = 64;
/// The longest label key, in bytes (`[A-Za-z0-9][A-Za-z0-9_.-]*`).
pub const MAX_LABEL_KEY_BYTES: usize = 63;
/// The longest label value, in bytes (no control characters).
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

fn invalid_labels(message: String) -> HttpError {
    HttpError::new(ErrorKind::InvalidInput, codes::INVALID_LABELS, message)
}

/// Whether `key` is a valid label key.
pub fn valid_label_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_KEY_BYTES
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Checks a description and labels against the limits above (400 `invalid_labels`). Pure.
pub fn check_info(info: &SegmentInfo) -> Result<(), HttpError> {
    if let Some(d) = &info.description {
        if d.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid_labels(format!(
                "the description has {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
                d.len()
            )));
        }
    }
    if info.labels.len() > MAX_LABELS {
        return Err(invalid_labels(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            info.labels.len()
        )));
    }
    for (k, v) in &info.labels {
        if !valid_label_key(k) {
            return Err(invalid_labels(format!(
                "label key {k:?}: 1 to {MAX_LABEL_KEY_BYTES} bytes of [A-Za-z0-9_.-], starting with a letter or digit"
            )));
        }
        if v.len() > MAX_LABEL_VALUE_BYTES || v.chars().any(char::is_control) {
            return Err(invalid_labels(format!(
                "label {k}: the value must be at most {MAX_LABEL_VALUE_BYTES} bytes without control characters"
            )));
        }
    }
    Ok(())
}

async fn entry_of(node: &Node, id: &SegmentId) -> Result<trough_types::SegmentEntry, HttpError> {
    node.coordinator
        .get_segment(id)
        .await?
        .ok_or_else(|| segment_not_found(id))
}

/// `DELETE /segments/{id}` and Trough's `DELETE /segment/{id}`: 204, 404 for an unknown id, 409
/// while its writer is promoting or restoring it.
pub async fn delete(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let entry = entry_of(&node, &id).await?;
    if entry.writable.is_some() {
        if node.route(&id, Op::Write, &headers) != Route::Local {
            return sql::forward_write_as(
                &node,
                Method::DELETE,
                &id,
                uri.path(),
                &headers,
                Default::default(),
            )
            .await;
        }
        let Some(writer) = &node.writer else {
            return Err(trough_writer::Error::NotWritable(id).into());
        };
        writer.release(&id).await?;
        if let Some(reader) = &node.reader {
            reader.remove_live(&id);
        }
    }
    trough_store::lifecycle::delete_segment(node.publisher.store(), &node.coordinator, &id).await?;
    let _ = node.cluster.refresh_segment(&node.coordinator, &id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /segments/{id}/schema`: tables, columns, primary keys, indexes and row counts of the
/// copy a query would use.
pub async fn describe(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    if node.route(&id, Op::Read, &headers) != Route::Local {
        return node
            .forward_read_as(Method::GET, &id, uri.path(), &headers, Default::default())
            .await;
    }
    let Some(reader) = &node.reader else {
        return Err(trough_reader::Error::SegmentUnavailable(id).into());
    };
    let described = match reader.describe(&id).await {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::Unavailable => {
            return Err(node.unknown_or(&id, e.into()).await)
        }
        Err(e) => return Err(e.into()),
    };
    let entry = node.coordinator.get_segment(&id).await?;
    let schema = entry.as_ref().and_then(|e| {
        e.writable
            .as_ref()
            .and_then(|w| w.schema.clone())
            .or_else(|| e.latest().and_then(|m| m.schema.clone()))
    });
    let mut doc = serde_json::to_value(&described).map_err(trough_types::Error::from)?;
    doc["schema"] = json!(schema);
    doc["writable"] = json!(entry.as_ref().is_some_and(|e| e.writable.is_some()));
    Ok(Json(doc).into_response())
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The body of `PATCH /segments/{id}`: a JSON merge patch (RFC 7396) of the description and
/// labels. An absent field is unchanged, `null` clears it; a label set to `null` is removed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    /// The new description (`null` clears it).
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// Labels to set (a string) or remove (`null`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Option<String>>>,
}

/// Applies a merge patch to `info`. Pure.
pub fn merge(mut info: SegmentInfo, patch: PatchRequest) -> SegmentInfo {
    if let Some(d) = patch.description {
        info.description = d;
    }
    for (k, v) in patch.labels.unwrap_or_default() {
        match v {
            Some(v) => info.labels.insert(k, v),
            None => info.labels.remove(&k),
        };
    }
    info
}

/// `PATCH /segments/{id}`: sets the description and labels; answers the segment's document.
pub async fn patch(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let req: PatchRequest = body::json(&bytes)?;
    let entry = entry_of(&node, &id).await?;
    let info = merge(node.coordinator.get_segment_info(&id).await?, req);
    check_info(&info)?;
    node.coordinator.set_segment_info(&id, &info).await?;
    let mut doc = segments::document(&node, &entry).await?;
    doc["description"] = json!(info.description);
    doc["labels"] = json!(info.labels);
    Ok(Json(doc).into_response())
}

/// The body of `POST /segments/{id}/restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The version to make current again.
    pub version: u64,
}

/// `POST /segments/{id}/restore` with `{"version": n}`: version `n`'s content becomes a new
/// latest version (for a writable segment, its live database too). Answers the new manifest.
pub async fn restore(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let id = segment_id(&id)?;
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let req: RestoreRequest = body::json(&bytes)?;
    let entry = entry_of(&node, &id).await?;
    if entry.writable.is_some() {
        if node.route(&id, Op::Write, &headers) != Route::Local {
            return sql::forward_write(&node, &id, uri.path(), &headers, bytes).await;
        }
        let old = entry
            .versions
            .iter()
            .find(|m| m.version == req.version)
            .ok_or_else(|| version_not_found(&entry, req.version))?;
        let Some(writer) = &node.writer else {
            return Err(trough_writer::Error::NotWritable(id).into());
        };
        let m = writer.restore(&id, old).await?;
        return Ok((StatusCode::CREATED, Json(m)).into_response());
    }
    let m = trough_store::lifecycle::restore(&node.publisher, &id, req.version).await?;
    Ok((StatusCode::CREATED, Json(m)).into_response())
}

fn version_not_found(entry: &trough_types::SegmentEntry, version: u64) -> HttpError {
    HttpError::new(
        ErrorKind::NotFound,
        codes::VERSION_NOT_FOUND,
        format!(
            "{} has no version {version} (versions kept: {})",
            entry.id,
            entry
                .versions
                .iter()
                .map(|m| m.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// Whether `e` matches the listing filters `schema`, `label` (`key:value`, or `key` for any
/// value) and `writable` (`true`/`false`). Pure.
pub fn matches(e: &trough_types::SegmentEntry, info: Option<&SegmentInfo>, f: &Filters) -> bool {
    if let Some(w) = f.writable {
        if e.writable.is_some() != w {
            return false;
        }
    }
    if let Some(s) = &f.schema {
        let schema = e
            .writable
            .as_ref()
            .and_then(|w| w.schema.as_ref())
            .or_else(|| e.latest().and_then(|m| m.schema.as_ref()));
        if schema.map(|n| n.as_str()) != Some(s.as_str()) {
            return false;
        }
    }
    f.labels.iter().all(|(k, v)| {
        let have = info.and_then(|i| i.labels.get(k));
        match v {
            Some(v) => have == Some(v),
            None => have.is_some(),
        }
    })
}

/// Listing filters (`GET /segments`, `POST /query`'s `schema` and `labels`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only segments provisioned from this schema.
    pub schema: Option<String>,
    /// Only segments with each of these labels (`None`: any value).
    pub labels: Vec<(String, Option<String>)>,
    /// Only writable (`true`) or read-only (`false`) segments.
    pub writable: Option<bool>,
}

impl Filters {
    /// Whether any filter is set.
    pub fn is_set(&self) -> bool {
        self.schema.is_some() || !self.labels.is_empty() || self.writable.is_some()
    }

    /// Parses one `label` selector: `key:value` or `key` (400 `invalid_query_parameter`).
    pub fn parse_label(s: &str) -> Result<(String, Option<String>), HttpError> {
        let (k, v) = match s.split_once(':') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (s, None),
        };
        if !valid_label_key(k) {
            return Err(HttpError::new(
                ErrorKind::InvalidInput,
                codes::INVALID_QUERY_PARAMETER,
                format!("label {s:?}: expected key:value or key, with a valid label key"),
            ));
        }
        Ok((k.to_owned(), v))
    }
}

/// The `description` and `labels` fields of a listing item or document.
pub fn info_fields(doc: &mut Value, info: Option<&SegmentInfo>) {
    doc["description"] = json!(info.and_then(|i| i.description.as_ref()));
    doc["labels"] = json!(info.map(|i| &i.labels).cloned().unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_limits() {
        assert!(valid_label_key("team"));
        assert!(valid_label_key("a.b-c_1"));
        for bad in ["", "-a", "a b", "a:b", "ü", &"k".repeat(64)] {
            assert!(!valid_label_key(bad), "{bad:?}");
        }
        let mut info = SegmentInfo::default();
        info.labels.insert("k".into(), "v".repeat(256));
        assert!(check_info(&info).is_ok());
        info.labels.insert("k".into(), "v".repeat(257));
        assert!(check_info(&info).is_err());
        info.labels.insert("k".into(), "a\nb".into());
        assert!(check_info(&info).is_err());
        let many = SegmentInfo {
            description: None,
            labels: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
        };
        assert!(check_info(&many).is_err());
        let long = SegmentInfo {
            description: Some("d".repeat(4097)),
            labels: BTreeMap::new(),
        };
        assert!(check_info(&long).is_err());
    }

    #[test]
    fn merge_patch_sets_clears_and_removes() {
        let start = SegmentInfo {
            description: Some("old".into()),
            labels: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
        };
        let p: PatchRequest = serde_json::from_str(r#"{"labels": {"a": null, "c": "3"}}"#).unwrap();
        let got = merge(start.clone(), p);
        assert_eq!(got.description.as_deref(), Some("old"));
        assert_eq!(
            got.labels,
            BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
        );
        let p: PatchRequest = serde_json::from_str(r#"{"description": null}"#).unwrap();
        assert_eq!(merge(start.clone(), p).description, None);
        let p: PatchRequest = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(merge(start.clone(), p), start);
    }
}
