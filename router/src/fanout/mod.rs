//! Cluster-wide queries: choose segments, fan out, spool the answers, merge, stream the result.
//!
//! `POST /query` runs one SQL statement over many segments as if they were one database. The
//! exact rewriting and merging is [`crate::scatter`]'s job (pure planning, bounded-memory
//! merging). This module is the I/O around it:
//!
//! 1. [`select`] turns the request's segment selector (`[ids]`, `"*"`, `"prefix*"`,
//!    `{"regex": ...}`) into ids from the catalog. It is pure.
//! 2. Every chosen segment runs the plan's per-segment SQL, at most `limits.scatter.concurrency`
//!    at a time, each within `limits.scatter.segment_timeout_ms`. Segments held here run locally;
//!    the others go to a replica, and then to the next replica if one fails before answering.
//! 3. Each answer is spooled as it arrives ([`spool`]): in memory up to
//!    `limits.scatter.spool_memory_bytes`, then in a temporary file. Memory therefore stays
//!    bounded whatever the number of rows, and a slow merge never holds connections open.
//! 4. If any segment failed, the default is an error naming every failed segment (503). With
//!    `"partial": "allow"`, the answer carries the rows of the segments that answered and says
//!    exactly which did not. A partial answer is never silent.
//! 5. The merge runs off the async runtime and streams rows out. An error before the first row
//!    gets a proper status; a later one breaks the stream visibly (decision 0003).
//!
//! Not here: SQL rewriting (scatter), single-segment queries (handlers::sql).

pub mod select;
pub mod spool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use trough_core::http::HttpError;
use trough_core::sql::{Params, RowFormat, SqlRequest};
use trough_core::{ErrorKind, SegmentId};

use crate::forward::FORWARDED_HEADER;
use crate::Node;
pub use select::Selector;
use spool::Spool;

/// A cluster-wide query.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScatterRequest {
    /// One SELECT statement.
    pub sql: String,
    /// Its parameters (used unchanged by every segment and by the merge).
    #[serde(default)]
    pub params: Params,
    /// Which segments to query.
    pub segments: Selector,
    /// `"deny"` (default): any failed segment fails the query; `"allow"`: answer with the
    /// segments that answered and list the others.
    #[serde(default)]
    pub partial: Partial,
}

/// What to do when some segments fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Partial {
    /// Fail the whole query (503) naming the failed segments.
    #[default]
    Deny,
    /// Answer with what answered, and say exactly what did not.
    Allow,
}

/// A segment that did not answer.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The segment.
    pub id: SegmentId,
    /// Why.
    pub error: String,
}

/// The fan-out summary sent with every answer.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Segments chosen by the selector.
    pub queried: usize,
    /// Segments that answered.
    pub answered: usize,
    /// Segments that did not, and why.
    pub failed: Vec<Failure>,
}

/// Everything the merge needs once every segment has answered or failed.
pub struct Gathered {
    /// The plan.
    pub plan: crate::scatter::ScatterPlan,
    /// The answers, in segment-id order.
    pub answers: Vec<(SegmentId, Spool)>,
    /// The summary.
    pub summary: Summary,
}

/// Plans, selects and fans out; returns the spooled answers, or the error to send.
pub async fn gather(node: &Arc<Node>, req: &ScatterRequest) -> Result<Gathered, HttpError> {
    let started = Instant::now();
    let plan = crate::scatter::plan(&req.sql)?;
    let catalog: Vec<SegmentId> = node.cluster_catalog_ids().await?;
    let ids = select::select(&catalog, &req.segments)?;
    let limits = &node.limits.scatter;
    let segment_timeout = Duration::from_millis(limits.segment_timeout_ms.max(1));
    let body = Bytes::from(
        serde_json::to_vec(&SqlRequest {
            sql: plan.segment_sql().to_owned(),
            params: req.params.clone(),
        })
        .map_err(|e| HttpError::new(ErrorKind::Internal, "internal", e.to_string()))?,
    );
    let concurrency = limits.concurrency.max(1);
    let results: Vec<(SegmentId, Result<Spool, String>)> = futures::stream::iter(ids.clone())
        .map(|id| {
            let body = body.clone();
            let node = node.clone();
            async move {
                let t0 = Instant::now();
                let r = match tokio::time::timeout(segment_timeout, fetch(&node, &id, body)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "timed out after {} ms",
                        segment_timeout.as_millis()
                    )),
                };
                metrics::histogram!("trough_scatter_segment_seconds")
                    .record(t0.elapsed().as_secs_f64());
                (id, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut answers = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (id, r) in results {
        match r {
            Ok(s) => answers.push((id, s)),
            Err(error) => failed.push(Failure { id, error }),
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    failed.sort_by(|a, b| a.id.cmp(&b.id));
    let summary = Summary {
        queried: ids.len(),
        answered: answers.len(),
        failed,
    };
    metrics::histogram!("trough_scatter_fanout_segments").record(ids.len() as f64);
    tracing::info!(
        segments = summary.queried,
        answered = summary.answered,
        failed = summary.failed.len(),
        strategy = ?plan.strategy(),
        gather_ms = started.elapsed().as_millis() as u64,
        sql = %req.sql,
        "scatter query"
    );
    if !summary.failed.is_empty() && req.partial == Partial::Deny {
        metrics::counter!("trough_scatter_queries_total", "outcome" => "failed_segments")
            .increment(1);
        let names: Vec<String> = summary
            .failed
            .iter()
            .take(20)
            .map(|f| format!("{} ({})", f.id, f.error))
            .collect();
        let more = summary.failed.len().saturating_sub(20);
        return Err(HttpError::new(
            ErrorKind::Unavailable,
            "segments_failed",
            format!(
                "{} of {} segments failed: {}{}; send \"partial\": \"allow\" to get the rows of the others",
                summary.failed.len(),
                summary.queried,
                names.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
        ));
    }
    Ok(Gathered {
        plan,
        answers,
        summary,
    })
}

/// Runs the per-segment SQL on one segment (here, or on a replica) and spools its NDJSON answer.
async fn fetch(node: &Node, id: &SegmentId, body: Bytes) -> Result<Spool, String> {
    let spool_mem = node.limits.scatter.spool_memory_bytes;
    if node.reads_locally(id) {
        let reader = node
            .reader
            .as_ref()
            .expect("reads_locally implies a reader");
        let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let stream = reader
            .query(id, req, RowFormat::Ndjson)
            .await
            .map_err(|e| e.to_string())?;
        return Spool::collect(stream.map(|r| r.map_err(|e| e.to_string())), spool_mem).await;
    }
    let targets: Vec<_> = node
        .cluster
        .read_targets(id)
        .into_iter()
        .filter(|t| t.name != node.name)
        .collect();
    let targets = if targets.is_empty() {
        // The cached view may predate this segment's placement: refresh once and look again.
        let _ = node.cluster.refresh_segment(&node.coordinator, id).await;
        node.cluster
            .read_targets(id)
            .into_iter()
            .filter(|t| t.name != node.name)
            .collect()
    } else {
        targets
    };
    if targets.is_empty() {
        return Err("no healthy replica holds it".into());
    }
    let mut errors = Vec::new();
    for t in targets {
        let url = format!("{}/segments/{id}/query", t.address.trim_end_matches('/'));
        let sent = node
            .forwarder
            .client()
            .post(&url)
            .header(FORWARDED_HEADER, "1")
            .header("content-type", "application/json")
            .header("accept", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                node.cluster.penalize(&t.name);
                errors.push(format!("{}: {e}", t.name));
                continue;
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<trough_core::http::ErrorBody>(&text)
                .map(|b| b.error.message)
                .unwrap_or(text);
            // A 4xx is the query's own fault and the same on every replica.
            if status.is_client_error() {
                return Err(msg);
            }
            node.cluster.penalize(&t.name);
            errors.push(format!("{}: {status} {msg}", t.name));
            continue;
        }
        match Spool::collect(
            resp.bytes_stream().map(|r| r.map_err(|e| e.to_string())),
            spool_mem,
        )
        .await
        {
            Ok(s) => return Ok(s),
            Err(e) => {
                node.cluster.penalize(&t.name);
                errors.push(format!("{}: answer cut off: {e}", t.name));
            }
        }
    }
    Err(errors.join("; "))
}

impl Node {
    /// Every segment id in the catalog (the cluster view, or the coordinator if the view is
    /// empty, e.g. right after start).
    async fn cluster_catalog_ids(&self) -> Result<Vec<SegmentId>, HttpError> {
        let snap = self.cluster.snapshot();
        if !snap.catalog.is_empty() {
            return Ok(snap.catalog.keys().cloned().collect());
        }
        Ok(self
            .coordinator
            .list_segments()
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }
}
