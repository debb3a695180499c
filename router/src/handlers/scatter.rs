//! `POST /query`: one SQL statement over many segments (see [`crate::fanout`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use trough_core::http::{error_line, HttpError};
use trough_core::sql::Params;
use trough_core::Error;

use crate::body;
use crate::fanout::{self, spool::SpoolRows, Gathered, ScatterRequest};
use crate::scatter::{self, MergeOptions, SegmentStream};
use crate::Node;

/// Output is sent in chunks of about this size.
const CHUNK_BYTES: usize = 32 << 10;

/// `POST /query`.
pub async fn query(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let _ = body::utf8(bytes.clone())?;
    let req: ScatterRequest = body::json(&bytes)?;
    body::sql_text(&req.sql)?;
    let ndjson = super::sql::wants_ndjson(&headers);
    let gathered = fanout::gather(&node, &req).await?;
    let opts = MergeOptions {
        memory_budget_bytes: node.limits.scatter.merge_memory_budget_bytes,
        temp_dir: Some(node.tmp_dir.clone()),
        deadline: Some(Instant::now() + Duration::from_millis(node.limits.query.timeout_ms)),
        ..MergeOptions::default()
    };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Error>>(8);
    let params = req.params.clone();
    tokio::task::spawn_blocking(move || produce(gathered, &params, &opts, ndjson, &tx));
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
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}

/// A segment's spooled rows as merge input, with its first row already read.
struct Peeked {
    first: Option<Vec<(String, Value)>>,
    rows: SpoolRows,
    segment: String,
}

/// Runs the merge and sends encoded output into `tx`. Blocking.
fn produce(
    g: Gathered,
    params: &Params,
    opts: &MergeOptions,
    ndjson: bool,
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
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    if !ndjson {
        out.extend_from_slice(b"{\"rows\":[");
    }
    if let Some(columns) = columns {
        let streams: Vec<SegmentStream> = peeked
            .into_iter()
            .map(|p| {
                let Peeked {
                    first,
                    mut rows,
                    segment,
                } = p;
                let seg = segment.clone();
                let head = first.map(|f| Ok(f.into_iter().map(|(_, v)| v).collect()));
                let tail = std::iter::from_fn(move || {
                    rows.next_pairs().map(|r| {
                        r.map(|pairs| pairs.into_iter().map(|(_, v)| v).collect())
                            .map_err(|e| Error::internal(format!("segment {seg}: {e}")))
                    })
                });
                SegmentStream::new(segment, Box::new(head.into_iter().chain(tail)))
            })
            .collect();
        let merged = match scatter::merge(&g.plan, params, &columns, streams, opts) {
            Ok(m) => m,
            Err(e) => {
                send(Err(e));
                return;
            }
        };
        let names: Vec<String> = merged
            .columns()
            .iter()
            .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "\"\"".into()))
            .collect();
        let mut first_row = true;
        for row in merged {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    if !out.is_empty() {
                        send(Ok(Bytes::from(std::mem::take(&mut out))));
                    }
                    send(Err(e));
                    return;
                }
            };
            if !ndjson && !first_row {
                out.push(b',');
            }
            first_row = false;
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
            if ndjson {
                out.push(b'\n');
            }
            if out.len() >= CHUNK_BYTES && !send(Ok(Bytes::from(std::mem::take(&mut out)))) {
                return; // the client went away
            }
        }
    }
    if ndjson {
        out.extend_from_slice(format!("{{\"segments\":{summary}}}\n").as_bytes());
    } else {
        out.extend_from_slice(format!("],\"segments\":{summary}}}").as_bytes());
    }
    send(Ok(Bytes::from(out)));
}
