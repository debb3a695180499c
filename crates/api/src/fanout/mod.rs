//! Cluster-wide queries: choose segments, fan out, spool the answers, merge, stream the result.
//!
//! `POST /query` runs one SQL statement over many segments as if they were one database. The
//! exact rewriting and merging is [`trough_scatter`]'s job (pure planning, bounded-memory
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
//!    Every segment also answers the plan's one-row guard query (concurrently); the answers are
//!    judged before anything is merged, and may ask for a new plan (an alias that is a column).
//! 4. Failures are typed errors. A segment's client error (bad SQL for its schema, integer
//!    overflow) is the query's: 400 as the segment said it. If any segment is unavailable or
//!    timed out, the default is an error naming every failed segment (503). With
//!    `"partial": "allow"`, the answer carries the rows of the segments that answered and says
//!    exactly which did not. A partial answer is never silent. (`settle`)
//! 5. The merge runs off the async runtime and streams rows out. An error before the first row
//!    gets a proper status; a later one breaks the stream visibly (decision 0003).
//!
//! `"mode": "per_segment"` ([`per_segment`]) skips planning and merging: the statement runs as it
//! is on each segment, with the same selection, fan-out and failure contract.
//!
//! Not here: SQL rewriting (scatter), single-segment queries (handlers::sql).

pub mod per_segment;
pub mod select;
pub mod spool;
pub mod tables;

use std::sync::Arc;
use std::time::{Duration, Instant};
use trough_types::error::codes;

use crate::http::HttpError;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use trough_sqlite::{Params, RowFormat, SqlRequest};
use trough_types::{ApiError, Error, ErrorKind, SegmentId};

use crate::replicas::Step;
use crate::Node;
use axum::http::HeaderValue;
pub use select::Selector;
use spool::Spool;
use trough_cluster::forward::FORWARDED_HEADER;
use trough_scatter::SegmentFacts;

/// A cluster-wide query.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScatterRequest {
    /// One SELECT statement.
    pub sql: String,
    /// Its parameters (used unchanged by every segment and by the merge).
    #[serde(default)]
    pub params: Params,
    /// Which segments to query, by id (all of them when absent and `schema` or `labels` is
    /// given).
    #[serde(default)]
    pub segments: Option<Selector>,
    /// Only segments provisioned or published from this schema.
    #[serde(default)]
    pub schema: Option<String>,
    /// Only segments with all these labels (`key → value`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `"deny"` (default): any failed segment fails the query; `"allow"`: answer with the
    /// segments that answered and list the others.
    #[serde(default)]
    pub partial: Partial,
    /// `"exact"` (default): one answer, as one database would give it; `"per_segment"`: the
    /// statement as it is in each segment, rows tagged with their segment ([`per_segment`]).
    #[serde(default)]
    pub mode: Mode,
    /// Who asks (set by the handler from the request; the default reads nothing).
    #[serde(skip)]
    pub access: crate::auth::Access,
    /// The selected segments the caller may read and how many it may not, once resolved.
    #[serde(skip)]
    pub resolved: Option<(Vec<SegmentId>, usize)>,
}

impl ScatterRequest {
    /// The selected segments the caller may read, and how many selected segments it may not
    /// (computed once, then kept in [`ScatterRequest::resolved`]).
    pub async fn permitted(&self, node: &Node) -> Result<(Vec<SegmentId>, usize), HttpError> {
        if let Some(r) = &self.resolved {
            return Ok(r.clone());
        }
        let filters = crate::handlers::manage::Filters {
            schema: self.schema.clone(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            writable: None,
        };
        let selector = match (&self.segments, filters.is_set()) {
            (Some(s), _) => s.clone(),
            (None, true) => Selector::Pattern("*".into()),
            (None, false) => {
                return Err(HttpError::new(
                    ErrorKind::InvalidInput,
                    trough_types::error::codes::INVALID_SELECTOR,
                    "say which segments to query: `segments`, `schema` or `labels`",
                ))
            }
        };
        let catalog: Vec<SegmentId> = node.cluster_catalog_ids().await?;
        let mut ids = select::select(&catalog, &selector)?;
        if filters.is_set() {
            ids = node.filter_segments(ids, &filters).await?;
        }
        Ok(self.access.readable(ids))
    }

    /// How many selected segments the caller may not read (0 until resolved).
    pub fn not_permitted(&self) -> usize {
        self.resolved.as_ref().map_or(0, |r| r.1)
    }

    /// The credential to send with each segment's query.
    pub(crate) fn credential(&self) -> Option<axum::http::HeaderValue> {
        self.access.credential.clone()
    }
}

/// How a cluster-wide query is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Exactly as one database holding every chosen segment's rows (planned and merged).
    #[default]
    Exact,
    /// Each segment answers the statement on its own rows; rows are tagged with the segment.
    PerSegment,
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
    /// Selected segments left out because the caller may not read them (also in the
    /// `X-Trough-Segments-Not-Permitted` header).
    pub not_permitted: usize,
}

/// Everything the merge needs once every segment has answered or failed.
pub struct Gathered {
    /// The plan.
    pub plan: trough_scatter::ScatterPlan,
    /// The answers, in segment-id order.
    pub answers: Vec<(SegmentId, Spool)>,
    /// The summary.
    pub summary: Summary,
    /// The table's declared columns (from the first segment's guard answer), to name the result
    /// columns of an answer without rows.
    pub table_columns: Vec<String>,
}

/// What the fan-out of a planned query came to.
pub enum FanOut {
    /// Every segment answered (or failed within the partial contract): merge these.
    Merge(Box<Gathered>),
    /// The segments' schemas make this plan inexact (a view, a declared COLLATE, segments that
    /// disagree on an alias): the error says why. The query is still answerable by gathering
    /// its tables (`handlers::gather`), which runs it as written in one database.
    Refused(Error),
}

/// Plans, selects and fans out; returns the spooled answers, or the error to send.
///
/// Every segment answers the plan's guard query besides its data query (both at once); the
/// guard answers are judged before anything is merged (`ScatterPlan::check_segments`), and a
/// plan that took a result alias for what the segments say is a column is replaced, its data
/// query run again.
pub async fn gather(node: &Arc<Node>, req: &ScatterRequest) -> Result<FanOut, HttpError> {
    let started = Instant::now();
    let mut plan = trough_scatter::plan(&req.sql)?;
    let (ids, _) = req.permitted(node).await?;
    let cred = req.credential();
    let guard_body = request_body(plan.guard_sql(), &Params::None)?;
    let body = request_body(plan.segment_sql(), &req.params)?;
    let pairs = fan_out_pairs(node, &ids, guard_body, body, cred.clone()).await;
    let mut failures: Vec<(SegmentId, Error)> = Vec::new();
    let mut facts = Vec::new();
    let mut results = Vec::with_capacity(pairs.len());
    for (id, guard, data) in pairs {
        match guard.and_then(read_facts) {
            Ok(f) => facts.push((id.clone(), f)),
            Err(e) => failures.push((id.clone(), e)),
        }
        results.push((id, data));
    }
    let named: Vec<(String, SegmentFacts)> = facts
        .iter()
        .map(|(id, f)| (id.to_string(), f.clone()))
        .collect();
    let checked = match plan.check_segments(&named) {
        Ok(c) => c,
        Err(refusal) => return Ok(FanOut::Refused(refusal)),
    };
    if let Some(columns) = checked {
        plan = trough_scatter::plan_with_columns(&req.sql, &columns)?;
        if let Err(refusal) = plan.check_segments(&named) {
            return Ok(FanOut::Refused(refusal));
        }
        let body = request_body(plan.segment_sql(), &req.params)?;
        let answered: Vec<SegmentId> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| id.clone())
            .collect();
        let mut again = fan_out(node, &answered, body, cred.clone()).await;
        again.extend(results.into_iter().filter(|(_, r)| r.is_err()));
        results = again;
    }
    let (answers, summary) = settle(req, ids.len(), results, failures)?;
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
    let table_columns = facts
        .into_iter()
        .next()
        .map(|(_, f)| f.columns)
        .unwrap_or_default();
    Ok(FanOut::Merge(Box::new(Gathered {
        plan,
        answers,
        summary,
        table_columns,
    })))
}

/// Sorts the segments' outcomes into answers and failures and applies the failure contract:
/// a segment's client error is the query's (400, as the segment said it) unless `partial` allows
/// an answer from the others; any other failure is 503 `segments_failed` unless `partial` is
/// `"allow"`. `failures` are segments already known to have failed.
#[allow(clippy::type_complexity)]
pub(crate) fn settle(
    req: &ScatterRequest,
    queried: usize,
    results: Vec<(SegmentId, Result<Spool, Error>)>,
    mut failures: Vec<(SegmentId, Error)>,
) -> Result<(Vec<(SegmentId, Spool)>, Summary), HttpError> {
    let mut answers = Vec::with_capacity(results.len());
    for (id, r) in results {
        match r {
            Ok(s) if !failures.iter().any(|(f, _)| *f == id) => answers.push((id, s)),
            Ok(_) => {}
            Err(e) => failures.push((id, e)),
        }
    }
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    // A segment's own client error (bad SQL for its schema, integer overflow, a missing
    // parameter) is the query's fault, the same on every replica: the client's error as SQLite
    // said it (400), not an unavailability. Only with `"partial": "allow"` and other segments
    // answering is it listed among the failed segments like any other failure.
    let partial_answer = req.partial == Partial::Allow && !answers.is_empty();
    if let Some((id, e)) = failures
        .iter()
        .find(|(_, e)| e.kind() == ErrorKind::InvalidInput && !partial_answer)
    {
        tracing::info!(segment = %id, code = e.code(), "scatter query failed on a segment: {}", e.message());
        return Err(HttpError::new(e.kind(), e.code(), e.message()));
    }
    let mut failed: Vec<Failure> = failures
        .into_iter()
        .map(|(id, e)| Failure {
            id,
            error: e.message().to_owned(),
        })
        .collect();
    failed.dedup_by(|a, b| a.id == b.id);
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    let summary = Summary {
        queried,
        answered: answers.len(),
        failed,
        not_permitted: req.not_permitted(),
    };
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
            codes::SEGMENTS_FAILED,
            format!(
                "{} of {} segments failed: {}{}; send \"partial\": \"allow\" to get the rows of the others",
                summary.failed.len(),
                summary.queried,
                names.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
        ));
    }
    Ok((answers, summary))
}

pub(crate) fn request_body(sql: &str, params: &Params) -> Result<Bytes, HttpError> {
    Ok(Bytes::from(
        serde_json::to_vec(&SqlRequest {
            sql: sql.to_owned(),
            params: params.clone(),
        })
        .map_err(|e| HttpError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))?,
    ))
}

/// The one row of a guard answer.
fn read_facts(spool: Spool) -> Result<SegmentFacts, Error> {
    let mut rows = spool.rows();
    let row = match rows.next_pairs() {
        Some(Ok(pairs)) => pairs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        Some(Err(e)) => return Err(Error::internal(e)),
        None => return Err(Error::internal("the scatter guard query returned no row")),
    };
    SegmentFacts::from_row(&row)
}

/// Runs `body` on every segment of `ids`, at most `limits.scatter.concurrency` at a time, each
/// within `limits.scatter.segment_timeout_ms`.
pub(crate) async fn fan_out(
    node: &Arc<Node>,
    ids: &[SegmentId],
    body: Bytes,
    credential: Option<HeaderValue>,
) -> Vec<(SegmentId, Result<Spool, Error>)> {
    let limits = &node.limits.scatter;
    let segment_timeout = Duration::from_millis(limits.segment_timeout_ms.max(1));
    let concurrency = limits.concurrency.max(1);
    futures::stream::iter(ids.to_vec())
        .map(|id| {
            let body = body.clone();
            let node = node.clone();
            let credential = credential.clone();
            async move {
                let t0 = Instant::now();
                let fetched = fetch(&node, &id, body, credential.as_ref());
                let r = match tokio::time::timeout(segment_timeout, fetched).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::new(
                        ErrorKind::Timeout,
                        codes::SEGMENT_TIMEOUT,
                        format!("timed out after {} ms", segment_timeout.as_millis()),
                    )),
                };
                metrics::histogram!("trough_scatter_segment_seconds")
                    .record(t0.elapsed().as_secs_f64());
                (id, r)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Runs `guard` and then `data` on every segment of `ids` (each pair counts once against
/// `limits.scatter.concurrency`, and together against `limits.scatter.segment_timeout_ms`).
///
/// One after the other on purpose: a segment held here then opens one SQLite connection for both
/// (the guard's connection is idle again when the data query asks), where two concurrent queries
/// would open two. Opening and closing connections is most of what a cluster-wide query over
/// many small segments costs (issue 12's profile). A guard failure skips the data query.
pub(crate) async fn fan_out_pairs(
    node: &Arc<Node>,
    ids: &[SegmentId],
    guard: Bytes,
    data: Bytes,
    credential: Option<HeaderValue>,
) -> Vec<(SegmentId, Result<Spool, Error>, Result<Spool, Error>)> {
    let limits = &node.limits.scatter;
    let segment_timeout = Duration::from_millis(limits.segment_timeout_ms.max(1));
    let concurrency = limits.concurrency.max(1);
    futures::stream::iter(ids.to_vec())
        .map(|id| {
            let (guard, data) = (guard.clone(), data.clone());
            let node = node.clone();
            let credential = credential.clone();
            async move {
                let t0 = Instant::now();
                let both = async {
                    if node.reads_locally(&id) {
                        return fetch_local_pair(&node, &id, &guard, &data).await;
                    }
                    let g = fetch(&node, &id, guard, credential.as_ref()).await;
                    let d = match &g {
                        Ok(_) => fetch(&node, &id, data, credential.as_ref()).await,
                        Err(e) => Err(e.clone()),
                    };
                    (g, d)
                };
                let (g, d) = match tokio::time::timeout(segment_timeout, both).await {
                    Ok(r) => r,
                    Err(_) => {
                        let e = Error::new(
                            ErrorKind::Timeout,
                            codes::SEGMENT_TIMEOUT,
                            format!("timed out after {} ms", segment_timeout.as_millis()),
                        );
                        (Err(e.clone()), Err(e))
                    }
                };
                metrics::histogram!("trough_scatter_segment_seconds")
                    .record(t0.elapsed().as_secs_f64());
                (id, g, d)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Runs the guard and the data query on a segment held here, on one connection in one blocking
/// task ([`trough_reader::Reader::query_collect`]). A failure is both answers'.
async fn fetch_local_pair(
    node: &Node,
    id: &SegmentId,
    guard: &Bytes,
    data: &Bytes,
) -> (Result<Spool, Error>, Result<Spool, Error>) {
    let reader = node
        .reader
        .as_ref()
        .expect("reads_locally implies a reader");
    let parse = |b: &Bytes| {
        serde_json::from_slice::<SqlRequest>(b).map_err(|e| Error::internal(e.to_string()))
    };
    let reqs = match (parse(guard), parse(data)) {
        (Ok(g), Ok(d)) => vec![g, d],
        (Err(e), _) | (_, Err(e)) => return (Err(e.clone()), Err(e)),
    };
    let spool_mem = node.limits.scatter.spool_memory_bytes;
    match reader
        .query_collect(id, reqs, RowFormat::Ndjson, move || {
            spool::SpoolWriter::new(spool_mem)
        })
        .await
    {
        Ok(answers) => {
            let mut it = answers.into_iter();
            match (it.next(), it.next()) {
                (Some(g), Some(d)) => (Ok(g), Ok(d)),
                _ => {
                    let e = Error::internal("a segment answered fewer statements than asked");
                    (Err(e.clone()), Err(e))
                }
            }
        }
        Err(e) => {
            let e = reader_error(e);
            (Err(e.clone()), Err(e))
        }
    }
}

/// Runs the per-segment SQL on one segment (here, or on a replica) and spools its NDJSON answer.
/// The error keeps its kind: the query's own fault (`InvalidInput`, as the segment said it) or
/// the segment's unavailability.
pub(crate) async fn fetch(
    node: &Node,
    id: &SegmentId,
    body: Bytes,
    credential: Option<&HeaderValue>,
) -> Result<Spool, Error> {
    let spool_mem = node.limits.scatter.spool_memory_bytes;
    if node.reads_locally(id) {
        let reader = node
            .reader
            .as_ref()
            .expect("reads_locally implies a reader");
        let req: SqlRequest =
            serde_json::from_slice(&body).map_err(|e| Error::internal(e.to_string()))?;
        let stream = reader
            .query(id, req, RowFormat::Ndjson)
            .await
            .map_err(reader_error)?;
        return Spool::collect(stream.map(|r| r.map_err(reader_error)), spool_mem).await;
    }
    let attempt = |t: trough_cluster::Target| {
        let body = body.clone();
        async move {
            let url = format!("{}/segments/{id}/query", t.address.trim_end_matches('/'));
            let mut request = node.forwarder.client().post(&url);
            // The caller's credential: the replica checks it again (never wider than asked).
            if let Some(c) = credential {
                request = request.header(axum::http::header::AUTHORIZATION, c.clone());
            }
            let sent = request
                .header(FORWARDED_HEADER, "1")
                .header("content-type", "application/json")
                .header("accept", "application/x-ndjson")
                .body(body)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Step::Next(e.to_string()),
            };
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                let body = serde_json::from_str::<trough_types::wire::ErrorBody>(&text).ok();
                // A 4xx is the query's own fault and the same on every replica.
                if status.is_client_error() {
                    let kind = trough_types::error::kind_for_status(status.as_u16());
                    return Step::Done(Err(match body {
                        Some(b) => Error::new(kind, b.error.code, b.error.message),
                        None => Error::new(kind, codes::SEGMENT_ERROR, text),
                    }));
                }
                let msg = body.map(|b| b.error.message).unwrap_or(text);
                return Step::Next(format!("{status} {msg}"));
            }
            match Spool::collect(
                resp.bytes_stream()
                    .map(|r| r.map_err(|e| unavailable(e.to_string()))),
                spool_mem,
            )
            .await
            {
                Ok(s) => Step::Done(Ok(s)),
                // The replica said why it stopped: the query's own error (decision 0003's last
                // line), the same on every replica.
                Err(e) if e.kind() == ErrorKind::InvalidInput => Step::Done(Err(e)),
                Err(e) => Step::Next(format!("answer cut off: {e}")),
            }
        }
    };
    match node.each_replica(id, attempt).await {
        Ok(answer) => answer,
        Err(failures) if failures.is_empty() => {
            Err(unavailable("no healthy replica holds it".into()))
        }
        Err(failures) => Err(unavailable(failures.join("; "))),
    }
}

fn reader_error(e: trough_reader::Error) -> Error {
    match e {
        trough_reader::Error::Core(e) => e,
        e => Error::new(e.kind(), e.code(), e.to_string()),
    }
}

fn unavailable(msg: String) -> Error {
    Error::new(ErrorKind::Unavailable, codes::SEGMENT_UNAVAILABLE, msg)
}

impl Node {
    /// Every segment id in the catalog (the cluster view, or the coordinator if the view is
    /// empty, e.g. right after start).
    /// The segments of `ids` that match `filters` (schema, labels), from the catalog.
    async fn filter_segments(
        &self,
        ids: Vec<SegmentId>,
        filters: &crate::handlers::manage::Filters,
    ) -> Result<Vec<SegmentId>, HttpError> {
        if let Some(s) = &filters.schema {
            if let Err(e) = trough_types::SchemaName::new(s) {
                return Err(HttpError::new(
                    ErrorKind::InvalidInput,
                    trough_types::error::codes::INVALID_SELECTOR,
                    format!("schema: {e}"),
                ));
            }
        }
        for (k, _) in &filters.labels {
            if !crate::handlers::manage::valid_label_key(k) {
                return Err(HttpError::new(
                    ErrorKind::InvalidInput,
                    trough_types::error::codes::INVALID_SELECTOR,
                    format!("label key {k:?} is not a valid label key"),
                ));
            }
        }
        let infos = self.coordinator.list_segment_info().await?;
        // The cluster view's catalog (no I/O); the coordinator's when the view is empty.
        let snap = self.cluster.snapshot();
        let catalog: std::collections::BTreeMap<SegmentId, Arc<trough_types::SegmentEntry>> =
            if snap.catalog.is_empty() {
                self.coordinator
                    .list_segments()
                    .await?
                    .into_iter()
                    .map(|e| (e.id.clone(), Arc::new(e)))
                    .collect()
            } else {
                snap.catalog.clone()
            };
        Ok(ids
            .into_iter()
            .filter(|id| {
                catalog
                    .get(id)
                    .is_some_and(|e| crate::handlers::manage::matches(e, infos.get(id), filters))
            })
            .collect())
    }

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
