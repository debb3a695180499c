//! Several statements on one segment, answers gathered off the async runtime.
//!
//! [`Reader::query_collect`] is for callers that want whole answers rather than a stream: a
//! cluster-wide query asks each segment a guard query and a data query, and spools both. Running
//! them here, one after the other on one connection in one blocking task, costs one connection
//! checkout (often one SQLite open) and one thread hand-off per segment instead of two of each,
//! and no channel: the [`Collector`] receives the encoded chunks directly. Over many small
//! segments these per-query costs are most of the work (issue 12's profile).
//!
//! Not here: streaming one answer to an HTTP client ([`Reader::query`]).

use std::time::Instant;

use bytes::Bytes;
use trough_sqlite::{self as sql, CancelToken, RowFormat, SqlRequest};
use trough_types::SegmentId;

use crate::error::Error;
use crate::reader::{checkout, record_metrics, Reader};
use crate::stream::CancelOnDrop;

/// Receives one statement's encoded answer, chunk by chunk, on a blocking thread.
pub trait Collector: Send + 'static {
    /// The whole answer.
    type Output: Send + 'static;
    /// Takes the next chunk; an error stops the statement and is its answer.
    fn push(&mut self, chunk: Bytes) -> Result<(), trough_types::Error>;
    /// Ends the answer.
    fn finish(self) -> Result<Self::Output, trough_types::Error>;
}

impl Reader {
    /// Runs `reqs` one after the other on one connection to `id`'s copy, each answer gathered by
    /// a fresh collector from `new`. Stops at the first statement that fails: its error is the
    /// result. Each statement runs under the reader's limits as [`Reader::query`] would run it;
    /// dropping the returned future cancels the statement running.
    pub async fn query_collect<C, F>(
        &self,
        id: &SegmentId,
        reqs: Vec<SqlRequest>,
        format: RowFormat,
        new: F,
    ) -> Result<Vec<C::Output>, Error>
    where
        C: Collector,
        F: Fn() -> C + Send + 'static,
    {
        let copy = self
            .pick(id)
            .ok_or_else(|| Error::SegmentUnavailable(id.clone()))?;
        let limits = self.limits().clone();
        let cancel = CancelToken::new();
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let task = tokio::task::spawn_blocking(move || {
            let first = Instant::now();
            let mut conn = match checkout(&copy, first + limits.timeout(), &limits, &cancel) {
                Ok(c) => c,
                Err(e) => {
                    let e = Err(e);
                    record_metrics(first, &e);
                    return e.map(|_| Vec::new());
                }
            };
            let mut out = Vec::with_capacity(reqs.len());
            for req in &reqs {
                let started = Instant::now();
                let mut collector = new();
                let mut refused: Option<trough_types::Error> = None;
                let mut sink = |chunk: Bytes| match collector.push(chunk) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                };
                let result =
                    sql::run_query_cancellable(&mut conn, req, &limits, format, &cancel, &mut sink);
                record_metrics(started, &result);
                match (result, refused) {
                    (_, Some(e)) | (Err(e), None) => return Err(e),
                    (Ok(_), None) => out.push(collector.finish()?),
                }
            }
            drop(conn);
            // Last: may delete a replaced copy's file.
            drop(copy);
            Ok(out)
        });
        match task.await {
            Ok(r) => r.map_err(Error::Core),
            Err(e) => Err(Error::Core(trough_types::Error::internal(format!(
                "the query task failed: {e}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trough_sqlite::QueryLimits;

    /// Collects into memory, refusing past `limit` bytes.
    struct Mem {
        bytes: Vec<u8>,
        limit: usize,
    }

    impl Collector for Mem {
        type Output = String;
        fn push(&mut self, chunk: Bytes) -> Result<(), trough_types::Error> {
            self.bytes.extend_from_slice(&chunk);
            if self.bytes.len() > self.limit {
                return Err(trough_types::Error::invalid("too_big", "over the limit"));
            }
            Ok(())
        }
        fn finish(self) -> Result<String, trough_types::Error> {
            Ok(String::from_utf8(self.bytes).unwrap())
        }
    }

    fn reader_with_segment(dir: &std::path::Path) -> (Reader, SegmentId) {
        let path = dir.join("s.sqlite");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")
            .unwrap();
        drop(c);
        let reader = Reader::new(QueryLimits::default());
        let id = SegmentId::new("s").unwrap();
        reader
            .install_stored(id.clone(), 1, "0".repeat(64), path)
            .unwrap();
        (reader, id)
    }

    fn req(sql: &str) -> SqlRequest {
        SqlRequest {
            sql: sql.into(),
            params: Default::default(),
        }
    }

    #[tokio::test]
    async fn statements_run_in_order_on_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, id) = reader_with_segment(dir.path());
        let out = reader
            .query_collect(
                &id,
                vec![
                    req("SELECT count(*) AS n FROM t"),
                    req("SELECT max(x) AS m FROM t"),
                ],
                RowFormat::Ndjson,
                || Mem {
                    bytes: Vec::new(),
                    limit: 1 << 20,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            vec!["{\"n\":3}\n".to_owned(), "{\"m\":3}\n".to_owned()]
        );
        // One connection served both and is idle again.
        assert_eq!(reader.budget_idle(), 1);
    }

    #[tokio::test]
    async fn the_first_failure_is_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, id) = reader_with_segment(dir.path());
        let err = reader
            .query_collect(
                &id,
                vec![req("SELECT * FROM nope"), req("SELECT 1")],
                RowFormat::Ndjson,
                || Mem {
                    bytes: Vec::new(),
                    limit: 1 << 20,
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        // A collector's refusal stops the statement and is its error.
        let err = reader
            .query_collect(&id, vec![req("SELECT x FROM t")], RowFormat::Ndjson, || {
                Mem {
                    bytes: Vec::new(),
                    limit: 2,
                }
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        let unknown = SegmentId::new("other").unwrap();
        assert!(matches!(
            reader
                .query_collect(&unknown, vec![req("SELECT 1")], RowFormat::Ndjson, || Mem {
                    bytes: Vec::new(),
                    limit: 10
                })
                .await,
            Err(Error::SegmentUnavailable(_))
        ));
    }
}
