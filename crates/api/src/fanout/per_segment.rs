//! `"mode": "per_segment"`: the Trough shell's fan-out, labelled as what it is. The statement runs
//! unchanged inside each chosen segment (joins, subqueries, anything one segment can answer), and
//! the rows come back tagged with their segment, one segment after another. Nothing is merged:
//! an aggregate gives one row per segment, a join only joins rows of the same segment (right for
//! data sharded by a common key). Never mixed with the exact mode: no planning, no guard.
//!
//! Writes are refused by the segments themselves (`not_read_only`, a 400: the statement is
//! prepared read-only there). Failures follow the same contract as the exact mode (`settle`).

use std::sync::Arc;

use crate::http::HttpError;
use trough_types::SegmentId;

use super::{fan_out, request_body, settle, ScatterRequest, Spool, Summary};
use crate::Node;

/// The spooled answers of every segment that answered, in segment-id order.
pub struct PerSegment {
    /// The answers.
    pub answers: Vec<(SegmentId, Spool)>,
    /// The summary.
    pub summary: Summary,
}

/// Selects the segments and runs the statement, unchanged, on each.
pub async fn gather(node: &Arc<Node>, req: &ScatterRequest) -> Result<PerSegment, HttpError> {
    let (ids, _) = req.permitted(node).await?;
    let body = request_body(&req.sql, &req.params)?;
    let results = fan_out(node, &ids, body, req.credential()).await;
    let (answers, summary) = settle(req, ids.len(), results, Vec::new())?;
    tracing::info!(
        segments = summary.queried,
        answered = summary.answered,
        failed = summary.failed.len(),
        sql = %req.sql,
        "per-segment query"
    );
    Ok(PerSegment { answers, summary })
}
