//! The answer of `POST /query` with `"mode": "per_segment"` ([`crate::fanout::per_segment`]):
//! every answering segment's rows in segment-id order, each tagged with its segment in a leading
//! `_segment` column, in the format `Accept` chose (JSON, NDJSON or columnar, as for the exact
//! mode), then the fan-out summary. No merge.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use trough_types::error::codes;
use trough_types::Error;

use super::scatter::{Output, CHUNK_BYTES};
use crate::fanout::per_segment::PerSegment;

/// The name of the column that says which segment a row comes from.
pub(crate) const SEGMENT_COLUMN: &str = "_segment";

/// Encodes the rows into `tx`. Blocking (reads the spools).
pub(super) fn produce(g: PerSegment, format: Output, tx: &mpsc::Sender<Result<Bytes, Error>>) {
    let send = |b: Result<Bytes, Error>| tx.blocking_send(b).is_ok();
    let summary = serde_json::to_string(&g.summary).unwrap_or_else(|_| "{}".into());
    let tag = serde_json::to_string(SEGMENT_COLUMN).unwrap_or_default();
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut sent = false;
    let mut first_row = true;
    // Columnar: the names of the first segment that returned a row; every row must match.
    let mut columns: Option<Vec<String>> = None;
    let mut rows_of = Vec::with_capacity(g.answers.len());
    for (id, spool) in g.answers {
        let mut rows = spool.rows();
        let first = rows.next_pairs();
        rows_of.push((id, first, rows));
    }
    if format == Output::Columnar {
        let names = rows_of.iter().find_map(|(_, first, _)| match first {
            Some(Ok(p)) => Some(p.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()),
            _ => None,
        });
        let names = names.unwrap_or_default();
        out.extend_from_slice(b"{\"columns\":[");
        out.extend_from_slice(tag.as_bytes());
        for n in &names {
            out.push(b',');
            out.extend_from_slice(serde_json::to_string(n).unwrap_or_default().as_bytes());
        }
        out.extend_from_slice(b"],\"rows\":[");
        columns = Some(names);
    } else if format == Output::Json {
        out.extend_from_slice(b"{\"rows\":[");
    }
    for (id, first, mut rows) in rows_of {
        let seg = serde_json::to_string(id.as_str()).unwrap_or_default();
        let mut next = first;
        while let Some(row) = next {
            let pairs: Vec<(String, Value)> = match row {
                Ok(p) => p,
                Err(e) => {
                    if sent {
                        send(Ok(Bytes::from(std::mem::take(&mut out))));
                    }
                    send(Err(Error::internal(format!("segment {id}: {e}"))));
                    return;
                }
            };
            if format != Output::Ndjson && !first_row {
                out.push(b',');
            }
            first_row = false;
            if let Some(names) = &columns {
                if pairs.len() != names.len() || pairs.iter().zip(names).any(|((k, _), n)| k != n) {
                    if sent {
                        send(Ok(Bytes::from(std::mem::take(&mut out))));
                    }
                    send(Err(Error::invalid(
                        codes::PER_SEGMENT_COLUMNS_DIFFER,
                        format!(
                            "segment {id} answered with other columns than the first segment; \
                             the columnar format needs one list of columns (ask for JSON rows)"
                        ),
                    )));
                    return;
                }
                out.push(b'[');
                out.extend_from_slice(seg.as_bytes());
                for (_, v) in &pairs {
                    out.push(b',');
                    write_value(&mut out, v);
                }
                out.push(b']');
            } else {
                out.push(b'{');
                out.extend_from_slice(tag.as_bytes());
                out.push(b':');
                out.extend_from_slice(seg.as_bytes());
                for (k, v) in &pairs {
                    out.push(b',');
                    out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                    out.push(b':');
                    write_value(&mut out, v);
                }
                out.push(b'}');
                if format == Output::Ndjson {
                    out.push(b'\n');
                }
            }
            if out.len() >= CHUNK_BYTES {
                sent = true;
                if !send(Ok(Bytes::from(std::mem::take(&mut out)))) {
                    return; // the client went away
                }
            }
            next = rows.next_pairs();
        }
    }
    if format == Output::Ndjson {
        out.extend_from_slice(format!("{{\"segments\":{summary}}}\n").as_bytes());
    } else {
        out.extend_from_slice(format!("],\"segments\":{summary}}}").as_bytes());
    }
    send(Ok(Bytes::from(out)));
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}
