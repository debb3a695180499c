//! `POST /query` for queries the scatter planner refuses (joins, subqueries, compound SELECTs,
//! CTEs, no FROM…): answered by gathering the rows they read into a merge database
//! ([`trough_scatter::gather`], fan-out in [`crate::fanout::tables`]). The response has the same
//! shape as every `/query` answer (JSON, NDJSON or columnar).

use std::sync::Arc;

use crate::http::HttpError;
use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use trough_types::wire::error_line;
use trough_types::Error;

use super::scatter::{write_rows, Output};
use crate::fanout::tables::{gather_query, GatherAnswer};
use crate::fanout::ScatterRequest;
use crate::Node;

/// Answers `req` by gathering. Every error up to the merge's end gets its own status; rows are
/// only read back from the finished merge database.
pub(super) async fn query(
    node: &Arc<Node>,
    req: &ScatterRequest,
    format: Output,
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
    tokio::task::spawn_blocking(move || encode(answer, format, &tx));
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
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// Encodes the rows and the summary into `tx`. Blocking (reads the merge database).
fn encode(answer: GatherAnswer, format: Output, tx: &mpsc::Sender<Result<Bytes, Error>>) {
    let GatherAnswer { rows, summary } = answer;
    let summary = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
    let names = rows.columns().to_vec();
    write_rows(&names, rows, format, &summary, tx);
}
