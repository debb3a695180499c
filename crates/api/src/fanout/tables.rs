//! The fan-out of a gathered query ([`trough_scatter::gather`]): every selected segment first
//! reports its schema, then returns the rows of each table the query reads; the rows are loaded
//! into the merge database, which runs the query.
//!
//! Same contract as the single-statement fan-out ([`super::gather`]): at most
//! `limits.scatter.concurrency` segments at a time, each within `limits.scatter.segment_timeout_ms`
//! (for all of its statements together), answers spooled (memory, then a temporary file). A
//! segment is in or out as a whole: if any of its statements fails it contributes no row at all.
//! A failed segment fails the query (503 `segments_failed`) unless `"partial": "allow"`, in which
//! case the answer says which segments are missing.
//!
//! Not here: what to gather and the merge database (scatter::gather), HTTP (handlers::gather).

use std::sync::Arc;
use std::time::{Duration, Instant};
use trough_types::error::codes;

use crate::http::HttpError;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use trough_sqlite::{Params, SqlRequest};
use trough_types::{Error, ErrorKind, SegmentId};

use super::spool::Spool;
use super::{fetch, Failure, Partial, ScatterRequest, Summary};
use crate::Node;
use trough_scatter::gather::{self, GatheredRows, MergeDb, Schema};
use trough_scatter::MergeOptions;

/// A gathered query's answer, before it is encoded.
pub struct GatherAnswer {
    /// The rows (column names from the merge database).
    pub rows: GatheredRows,
    /// The fan-out summary.
    pub summary: Summary,
}

/// Runs `req` by gathering: schemas, analysis, rows, merge. Every error before the first row.
pub async fn gather_query(
    node: &Arc<Node>,
    req: &ScatterRequest,
) -> Result<GatherAnswer, HttpError> {
    let started = Instant::now();
    let (ids, _) = req.permitted(node).await?;
    let mut failed: Vec<(SegmentId, Error)> = Vec::new();
    let limits = &node.limits;
    let opts = MergeOptions {
        memory_budget_bytes: limits.scatter.merge_memory_budget_bytes,
        disk_budget_bytes: Some(limits.scatter.merge_disk_budget_bytes),
        temp_dir: Some(node.tmp_dir.clone()),
        deadline: Some(Instant::now() + Duration::from_millis(limits.query.timeout_ms)),
        ..MergeOptions::default()
    };
    if ids.is_empty() {
        // A pattern that matches no segment: an empty answer, as for every `/query` (there is no
        // database, hence no schema, to evaluate the query in).
        let rows = tokio::task::spawn_blocking(move || {
            MergeDb::create(&Schema::default(), &opts)?.finish(
                &Schema::default(),
                "SELECT NULL WHERE 0",
                &Params::None,
            )
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let summary = Summary {
            queried: 0,
            answered: 0,
            failed: Vec::new(),
            not_permitted: req.not_permitted(),
        };
        return Ok(GatherAnswer { rows, summary });
    }

    // 1. Schemas.
    let schema_sql = vec![gather::SCHEMA_SQL.to_owned()];
    let mut schemas: Vec<(SegmentId, Schema)> = Vec::with_capacity(ids.len());
    for (id, r) in run_each(node, &ids, &schema_sql, req).await {
        let parsed = r.and_then(|mut spools| {
            let spool = spools.pop().ok_or_else(|| Error::internal("no answer"))?;
            spool_values(spool)
                .and_then(|rows| Schema::from_rows(&rows))
                .map_err(Error::internal)
        });
        match parsed {
            Ok(s) => schemas.push((id, s)),
            Err(error) => failed.push((id, error)),
        }
    }
    check_failures(req, ids.len(), &failed)?;
    if schemas.is_empty() {
        return Err(HttpError::from(Error::unavailable(
            codes::SEGMENTS_FAILED,
            "no segment answered",
        )));
    }

    // 2. What the query reads, and what each segment runs.
    let sql = req.sql.clone();
    let named: Vec<(String, Schema)> = schemas
        .iter()
        .map(|(id, s)| (id.to_string(), s.clone()))
        .collect();
    let (loads, schema) = {
        let sql = sql.clone();
        tokio::task::spawn_blocking(move || -> Result<_, Error> { gather::prepare(&sql, &named) })
            .await
            .map_err(|e| Error::internal(e.to_string()))??
    };

    // 3. Rows.
    let answered: Vec<SegmentId> = schemas.into_iter().map(|(id, _)| id).collect();
    let statements: Vec<String> = loads.iter().map(|l| l.segment_sql.clone()).collect();
    let mut spooled: Vec<(SegmentId, Vec<Spool>)> = Vec::with_capacity(answered.len());
    if statements.is_empty() {
        spooled = answered.into_iter().map(|id| (id, Vec::new())).collect();
    } else {
        for (id, r) in run_each(node, &answered, &statements, req).await {
            match r {
                Ok(s) => spooled.push((id, s)),
                Err(error) => failed.push((id, error)),
            }
        }
        check_failures(req, ids.len(), &failed)?;
    }
    spooled.sort_by(|a, b| a.0.cmp(&b.0));
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<Failure> = failed
        .into_iter()
        .map(|(id, e)| Failure {
            id,
            error: e.message().to_owned(),
        })
        .collect();
    let summary = Summary {
        queried: ids.len(),
        answered: spooled.len(),
        failed,
        not_permitted: req.not_permitted(),
    };
    tracing::info!(
        segments = summary.queried,
        answered = summary.answered,
        failed = summary.failed.len(),
        tables = loads.len(),
        strategy = "Gather",
        gather_ms = started.elapsed().as_millis() as u64,
        sql = %req.sql,
        "scatter query"
    );

    // 4. Merge.
    let params = req.params.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<GatheredRows, Error> {
        let mut db = MergeDb::create(&schema, &opts)?;
        for (id, spools) in spooled {
            for (load, spool) in loads.iter().zip(spools) {
                let mut rows = spool.rows();
                let mut iter = std::iter::from_fn(|| {
                    rows.next_pairs().map(|r| {
                        r.map(|pairs| pairs.into_iter().map(|(_, v)| v).collect())
                            .map_err(|e| Error::internal(format!("segment {id}: {e}")))
                    })
                });
                db.insert(&load.table, &load.columns, &mut iter)?;
            }
        }
        db.finish(&schema, &sql, &params)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    Ok(GatherAnswer { rows, summary })
}

/// The failure contract of `/query` (as [`super::settle`]): a segment's client error is the
/// query's (400, as the segment said it); any other failure is 503 `segments_failed`; with
/// `"partial": "allow"`, neither stops the others' answer.
fn check_failures(
    req: &ScatterRequest,
    queried: usize,
    failed: &[(SegmentId, Error)],
) -> Result<(), HttpError> {
    if failed.is_empty() || req.partial == Partial::Allow {
        return Ok(());
    }
    if let Some((_, e)) = failed
        .iter()
        .find(|(_, e)| e.kind() == ErrorKind::InvalidInput)
    {
        return Err(HttpError::new(e.kind(), e.code(), e.message()));
    }
    metrics::counter!("trough_scatter_queries_total", "outcome" => "failed_segments").increment(1);
    let names: Vec<String> = failed
        .iter()
        .take(20)
        .map(|(id, e)| format!("{id} ({})", e.message()))
        .collect();
    let more = failed.len().saturating_sub(20);
    Err(HttpError::new(
        ErrorKind::Unavailable,
        codes::SEGMENTS_FAILED,
        format!(
            "{} of {} segments failed: {}{}; send \"partial\": \"allow\" to get the rows of the others",
            failed.len(),
            queried,
            names.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ),
    ))
}

/// Runs `statements` (without parameters), one after the other, on every segment in `ids`: at most
/// `limits.scatter.concurrency` segments at a time, each within the segment timeout for all of
/// its statements. Returns each segment's spooled answers, in statement order, or why it failed.
async fn run_each(
    node: &Arc<Node>,
    ids: &[SegmentId],
    statements: &[String],
    req: &ScatterRequest,
) -> Vec<(SegmentId, Result<Vec<Spool>, Error>)> {
    let credential = req.credential();
    let limits = &node.limits.scatter;
    let segment_timeout = Duration::from_millis(limits.segment_timeout_ms.max(1));
    let bodies: Vec<Bytes> = statements
        .iter()
        .map(|sql| {
            Bytes::from(
                serde_json::to_vec(&SqlRequest {
                    sql: sql.clone(),
                    params: Params::None,
                })
                .unwrap_or_default(),
            )
        })
        .collect();
    futures::stream::iter(ids.to_vec())
        .map(|id| {
            let node = node.clone();
            let bodies = bodies.clone();
            let credential = credential.clone();
            async move {
                let t0 = Instant::now();
                let all = async {
                    let mut out = Vec::with_capacity(bodies.len());
                    for body in bodies {
                        out.push(fetch(&node, &id, body, credential.as_ref()).await?);
                    }
                    Ok(out)
                };
                let r = match tokio::time::timeout(segment_timeout, all).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::unavailable(
                        codes::SEGMENT_TIMEOUT,
                        format!("timed out after {} ms", segment_timeout.as_millis()),
                    )),
                };
                metrics::histogram!("trough_scatter_segment_seconds")
                    .record(t0.elapsed().as_secs_f64());
                (id, r)
            }
        })
        .buffer_unordered(limits.concurrency.max(1))
        .collect()
        .await
}

/// All rows of a spooled answer, as values in column order.
fn spool_values(spool: Spool) -> Result<Vec<Vec<Value>>, String> {
    let mut rows = spool.rows();
    let mut out = Vec::new();
    while let Some(r) = rows.next_pairs() {
        out.push(r?.into_iter().map(|(_, v)| v).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(partial: &str) -> ScatterRequest {
        serde_json::from_value(serde_json::json!({
            "sql": "SELECT 1", "segments": "*", "partial": partial
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_segment_fails_the_gather_unless_partial_is_allowed() {
        let id = SegmentId::new("s-1").unwrap();
        let failed = vec![(
            id.clone(),
            Error::unavailable("segment_timeout", "timed out after 5 ms"),
        )];
        let e = check_failures(&request("deny"), 3, &failed).unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.body.error.code, "segments_failed");
        assert!(
            e.body
                .error
                .message
                .contains("1 of 3 segments failed: s-1 (timed out"),
            "{}",
            e.body.error.message
        );
        assert!(check_failures(&request("allow"), 3, &failed).is_ok());
        assert!(check_failures(&request("deny"), 3, &[]).is_ok());
        // A segment's own client error is the query's: 400, as the segment said it.
        let failed = vec![(id, Error::invalid("sql_error", "integer overflow"))];
        let e = check_failures(&request("deny"), 3, &failed).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.body.error.code, "sql_error");
    }
}
