//! `POST /query`: one SQL statement over many segments (see [`crate::fanout`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::enforce::AuditNote;
use crate::auth::{Access, NOT_PERMITTED_HEADER};
use crate::http::HttpError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use trough_sqlite::{Params, RowFormat, COLUMNAR_MEDIA_TYPE};
use trough_types::wire::error_line;
use trough_types::Error;

use crate::body;
use crate::fanout::{self, spool::SpoolRows, FanOut, Gathered, Mode, ScatterRequest};
use crate::Node;
use trough_scatter::{self as scatter, MergeOptions, SegmentStream};

/// Output is sent in chunks of about this size.
pub(super) const CHUNK_BYTES: usize = 32 << 10;

/// `POST /query`: over the selected segments the caller may read; how many it may not is in
/// the summary (`not_permitted`) and the `X-Trough-Segments-Not-Permitted` header.
pub async fn query(
    State(node): State<Arc<Node>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let _ = body::utf8(bytes.clone())?;
    let mut req: ScatterRequest = body::json(&bytes)?;
    body::sql_text(&req.sql)?;
    req.access = access;
    let resolved = req.permitted(&node).await?;
    let (read, left_out) = (resolved.0.len(), resolved.1);
    req.resolved = Some(resolved);
    let mut resp = answer(node, req, headers).await?;
    resp.headers_mut()
        .insert(NOT_PERMITTED_HEADER, HeaderValue::from(left_out));
    resp.extensions_mut().insert(AuditNote(format!(
        "{read} segments selected, {left_out} not permitted"
    )));
    Ok(resp)
}

async fn answer(
    node: Arc<Node>,
    req: ScatterRequest,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let format = Output::of(&headers);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Error>>(8);
    match req.mode {
        // What the scatter planner refuses is answered, exactly or with a reason, by gathering.
        Mode::Exact if scatter::plan(&req.sql).is_err() => {
            return super::gather::query(&node, &req, format).await;
        }
        Mode::Exact => {
            let gathered = match fanout::gather(&node, &req).await? {
                FanOut::Merge(g) => *g,
                // The segments' schemas make the plan inexact: gathering answers exactly.
                FanOut::Refused(why) => {
                    tracing::debug!(
                        reason = why.message(),
                        "scatter plan refused by the segments; gathering"
                    );
                    return super::gather::query(&node, &req, format).await;
                }
            };
            let opts = MergeOptions {
                memory_budget_bytes: node.limits.scatter.merge_memory_budget_bytes,
                temp_dir: Some(node.tmp_dir.clone()),
                deadline: Some(
                    Instant::now() + Duration::from_millis(node.limits.query.timeout_ms),
                ),
                ..MergeOptions::default()
            };
            let params = req.params.clone();
            tokio::task::spawn_blocking(move || produce(gathered, &params, &opts, format, &tx));
        }
        Mode::PerSegment => {
            let gathered = fanout::per_segment::gather(&node, &req).await?;
            tokio::task::spawn_blocking(move || super::per_segment::produce(gathered, format, &tx));
        }
    }
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            metrics::counter!("trough_scatter_queries_total", "outcome" => "error").increment(1);
            return Err(e.into());
        }
        None => Bytes::new(),
    };
    metrics::counter!("trough_scatter_queries_total", "outcome" => "ok").increment(1);
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).flat_map(|item| {
        let items: Vec<Result<Bytes, Error>> = match item {
            Ok(b) => vec![Ok(b)],
            // After output started: the error line is the last thing sent (the producer stops
            // after an error), and the body ends normally so the client surely receives it
            // (decision 0003).
            Err(e) => vec![Ok(Bytes::from(format!(
                "\n{}\n",
                error_line(e.kind(), e.code(), e.message())
            )))],
        };
        futures::stream::iter(items)
    });
    let stream = futures::stream::once(async move { Ok::<Bytes, Error>(first) }).chain(rest);
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// A segment's spooled rows as merge input, with its first row already read.
struct Peeked {
    first: Option<Vec<(String, Value)>>,
    rows: SpoolRows,
    segment: String,
}

/// How `/query` writes its answer (chosen by `Accept`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    /// `{"rows":[{…},…],"segments":{…}}`.
    Json,
    /// One row object per line, then `{"segments":{…}}`.
    Ndjson,
    /// `{"columns":[…],"rows":[[…],…],"segments":{…}}`.
    Columnar,
}

impl Output {
    pub(super) fn of(headers: &HeaderMap) -> Self {
        match super::sql::row_format(headers) {
            RowFormat::Columnar => Output::Columnar,
            RowFormat::Ndjson => Output::Ndjson,
            RowFormat::JsonArray => Output::Json,
        }
    }
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Output::Json => "application/json",
            Output::Ndjson => "application/x-ndjson",
            Output::Columnar => COLUMNAR_MEDIA_TYPE,
        }
    }
}

/// Runs the merge and sends encoded output into `tx`. Blocking.
fn produce(
    g: Gathered,
    params: &Params,
    opts: &MergeOptions,
    format: Output,
    tx: &mpsc::Sender<Result<Bytes, Error>>,
) {
    let send = |b: Result<Bytes, Error>| tx.blocking_send(b).is_ok();
    let summary = serde_json::to_string(&g.summary).unwrap_or_else(|_| "{}".into());
    // Find the segment SQL's column names from the first row any segment returned.
    let mut peeked = Vec::with_capacity(g.answers.len());
    let mut columns: Option<Vec<String>> = None;
    for (id, spool) in g.answers {
        let mut rows = spool.rows();
        let first = match rows.next_pairs() {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                send(Err(Error::internal(format!("segment {id}: {e}"))));
                return;
            }
        };
        if columns.is_none() {
            columns = first
                .as_ref()
                .map(|p| p.iter().map(|(k, _)| k.clone()).collect());
        }
        peeked.push(Peeked {
            first,
            rows,
            segment: id.to_string(),
        });
    }
    // No segment returned a row: nobody reported the column names. The plan names the result
    // columns from the table's declared columns, and an aggregate plan still has an answer (one
    // row over nothing), merged from placeholder segment columns.
    let no_rows = columns.is_none();
    let columns = columns.or_else(|| {
        g.plan
            .segment_width()
            .map(|w| (0..w).map(|i| format!("_c{i}")).collect())
    });
    let merged = match columns {
        Some(columns) => {
            let streams: Vec<SegmentStream> = peeked.into_iter().map(Peeked::stream).collect();
            match scatter::merge(&g.plan, params, &columns, streams, opts) {
                Ok(m) => Some(m),
                Err(e) => {
                    send(Err(e));
                    return;
                }
            }
        }
        None => None,
    };
    let names: Vec<String> = match &merged {
        Some(m) if !no_rows => m.columns().to_vec(),
        _ => g.plan.column_names_without_rows(&g.table_columns),
    };
    write_rows(&names, merged.into_iter().flatten(), format, &summary, tx);
}

/// Encodes result rows and the summary in `format` into `tx`, in chunks of about
/// [`CHUNK_BYTES`]. An error before any chunk left is sent as the error alone (the handler
/// still chooses the status); after, the output so far and then the error (the stream breaks
/// visibly, decision 0003). Used by the merge and by gathering.
pub(super) fn write_rows(
    names: &[String],
    rows: impl Iterator<Item = Result<Vec<Value>, Error>>,
    format: Output,
    summary: &str,
    tx: &mpsc::Sender<Result<Bytes, Error>>,
) {
    let send = |b: Result<Bytes, Error>| tx.blocking_send(b).is_ok();
    let names: Vec<String> = names
        .iter()
        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "\"\"".into()))
        .collect();
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    match format {
        Output::Json => out.extend_from_slice(b"{\"rows\":["),
        Output::Columnar => {
            out.extend_from_slice(b"{\"columns\":[");
            out.extend_from_slice(names.join(",").as_bytes());
            out.extend_from_slice(b"],\"rows\":[");
        }
        Output::Ndjson => {}
    }
    // Whether output was handed to the client: until then an error gets its own status.
    let mut sent = false;
    let mut first_row = true;
    for row in rows {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                if sent && !out.is_empty() {
                    send(Ok(Bytes::from(std::mem::take(&mut out))));
                }
                send(Err(e));
                return;
            }
        };
        if format != Output::Ndjson && !first_row {
            out.push(b',');
        }
        first_row = false;
        if format == Output::Columnar {
            out.push(b'[');
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if serde_json::to_writer(&mut out, v).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b']');
        } else {
            out.push(b'{');
            for (i, (name, v)) in names.iter().zip(row.iter()).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                if serde_json::to_writer(&mut out, v).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b'}');
        }
        if format == Output::Ndjson {
            out.push(b'\n');
        }
        if out.len() >= CHUNK_BYTES {
            sent = true;
            if !send(Ok(Bytes::from(std::mem::take(&mut out)))) {
                return; // the client went away
            }
        }
    }
    if format == Output::Ndjson {
        out.extend_from_slice(format!("{{\"segments\":{summary}}}\n").as_bytes());
    } else {
        out.extend_from_slice(format!("],\"segments\":{summary}}}").as_bytes());
    }
    send(Ok(Bytes::from(out)));
}

impl Peeked {
    /// This segment's rows as merge input: the peeked first row, then the rest.
    fn stream(self) -> SegmentStream {
        let Peeked {
            first,
            mut rows,
            segment,
        } = self;
        let seg = segment.clone();
        let head = first.map(|f| Ok(f.into_iter().map(|(_, v)| v).collect()));
        let tail = std::iter::from_fn(move || {
            rows.next_pairs().map(|r| {
                r.map(|pairs| pairs.into_iter().map(|(_, v)| v).collect())
                    .map_err(|e| Error::internal(format!("segment {seg}: {e}")))
            })
        });
        SegmentStream::new(segment, Box::new(head.into_iter().chain(tail)))
    }
}
