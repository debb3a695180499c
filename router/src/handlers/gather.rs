//! `POST /query` for queries the scatter planner refuses (joins, subqueries, compound SELECTs,
//! CTEs, no FROM…): answered by gathering the rows they read into a merge database
//! ([`crate::scatter::gather`], fan-out in [`crate::fanout::tables`]). The response has the same
//! shape as every `/query` answer: `{"rows": [...], "segments": {...}}`, or NDJSON rows followed
//! by the summary line.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use trough_core::http::{error_line, HttpError};
use trough_core::Error;

use crate::fanout::tables::{gather_query, GatherAnswer};
use crate::fanout::ScatterRequest;
use crate::Node;

/// Output is sent in chunks of about this size.
const CHUNK_BYTES: usize = 32 << 10;

/// Answers `req` by gathering. Every error up to the merge's end gets its own status; rows are
/// only read back from the finished merge database.
pub async fn query(
    node: &Arc<Node>,
    req: &ScatterRequest,
    ndjson: bool,
) -> Result<Response, HttpError> {
    let answer = match gather_query(node, req).await {
        Ok(a) => a,
        Err(e) => {
            metrics::counter!("trough_scatter_queries_total", "outcome" => "error").increment(1);
            return Err(e);
        }
    };
    metrics::counter!("trough_scatter_queries_total", "outcome" => "ok").increment(1);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Error>>(8);
    tokio::task::spawn_blocking(move || encode(answer, ndjson, &tx));
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).flat_map(|item| {
        let items: Vec<Result<Bytes, Error>> = match item {
            Ok(b) => vec![Ok(b)],
            // After output started: make the failure visible, then break the stream.
            Err(e) => vec![
                Ok(Bytes::from(format!(
                    "\n{}\n",
                    error_line(e.kind(), e.code(), e.message())
                ))),
                Err(e),
            ],
        };
        futures::stream::iter(items)
    });
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

/// Encodes the rows and the summary into `tx`. Blocking (reads the merge database).
fn encode(answer: GatherAnswer, ndjson: bool, tx: &mpsc::Sender<Result<Bytes, Error>>) {
    let send = |b: Result<Bytes, Error>| tx.blocking_send(b).is_ok();
    let GatherAnswer { rows, summary } = answer;
    let summary = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
    let names: Vec<String> = rows
        .columns()
        .iter()
        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "\"\"".into()))
        .collect();
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    if !ndjson {
        out.extend_from_slice(b"{\"rows\":[");
    }
    let mut first_row = true;
    for row in rows {
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
    if ndjson {
        out.extend_from_slice(format!("{{\"segments\":{summary}}}\n").as_bytes());
    } else {
        out.extend_from_slice(format!("],\"segments\":{summary}}}").as_bytes());
    }
    send(Ok(Bytes::from(out)));
}
