//! Tests of the reader: serving, swapping and deleting copies, errors before and after output,
//! cancellation and the live-database view.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rusqlite::Connection;
use trough_sqlite::{self as sql, QueryLimits, RowFormat, SqlRequest, Synchronous};
use trough_types::{ApiError, ErrorKind, SegmentId};

use crate::{Error, HeldCopy, QueryStream, Reader};

const OVERFLOW_AT_5000: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c \
     LIMIT 100000) SELECT CASE WHEN x > 5000 THEN abs(-9223372036854775808) ELSE x END AS v FROM c";

fn id(s: &str) -> SegmentId {
    SegmentId::new(s).unwrap()
}

/// A stored-copy-like file with `t(x INTEGER, label TEXT)` holding `rows` rows labelled `label`.
fn make_db(path: &Path, rows: i64, label: &str) -> PathBuf {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE t(x INTEGER, label TEXT)")
        .unwrap();
    conn.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT ?1) \
         INSERT INTO t SELECT x, ?2 FROM c",
        rusqlite::params![rows, label],
    )
    .unwrap();
    path.to_owned()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a stream to its end: (all bytes, the stream error if it ended with one).
async fn drain(mut s: QueryStream) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                assert!(s.next().await.is_none(), "nothing after the error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

async fn query_json(reader: &Reader, seg: &str, sql: &str) -> serde_json::Value {
    let s = reader
        .query(&id(seg), SqlRequest::new(sql), RowFormat::JsonArray)
        .await
        .unwrap();
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_stored_copy_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits::default());
    let p = make_db(&dir.path().join("a.v1.db"), 3, "one");
    reader
        .install_stored(id("a"), 1, "00".repeat(32), p)
        .unwrap();
    assert!(reader.has(&id("a")));
    let v = query_json(&reader, "a", "SELECT x, label FROM t ORDER BY x").await;
    assert_eq!(
        v,
        serde_json::json!([{"x":1,"label":"one"},{"x":2,"label":"one"},{"x":3,"label":"one"}])
    );
    let s = reader
        .query(
            &id("a"),
            SqlRequest::new("SELECT x FROM t"),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    assert_eq!(s.content_type(), "application/x-ndjson");
    let (bytes, err) = drain(s).await;
    assert!(err.is_none());
    assert_eq!(bytes, b"{\"x\":1}\n{\"x\":2}\n{\"x\":3}\n");
    // Empty ndjson answer: a clean, empty stream.
    let s = reader
        .query(
            &id("a"),
            SqlRequest::new("SELECT x FROM t WHERE 0"),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    assert_eq!(drain(s).await.0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_output_are_errors_with_status() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits {
        timeout_ms: 200,
        max_rows: 10,
        ..QueryLimits::default()
    });
    let path = make_db(&dir.path().join("a.db"), 20, "x");
    reader
        .install_stored(id("a"), 1, "ab".repeat(32), path.clone())
        .unwrap();
    let err = |sql: &str| {
        let reader = &reader;
        let sql = sql.to_owned();
        async move {
            reader
                .query(&id("a"), SqlRequest::new(sql), RowFormat::JsonArray)
                .await
                .unwrap_err()
        }
    };
    let e = err("SELECT nope FROM t").await;
    assert_eq!((e.kind(), e.code()), (ErrorKind::InvalidInput, "sql_error"));
    let e = err("DELETE FROM t").await;
    assert_eq!(e.code(), "not_read_only");
    let e = err("ATTACH 'x.db' AS x").await;
    assert_eq!(e.code(), "forbidden_statement");
    assert!(e.to_string().contains("ATTACH is not allowed"), "{e}");
    let e = err("SELECT * FROM t").await;
    assert_eq!(e.code(), "result_too_large");
    let e =
        err("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c")
            .await;
    assert_eq!((e.kind(), e.code()), (ErrorKind::Timeout, "query_timeout"));
    let e = reader
        .query(&id("zz"), SqlRequest::new("SELECT 1"), RowFormat::JsonArray)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SegmentUnavailable(_)));
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Unavailable, "segment_unavailable")
    );
    // The DELETE changed nothing.
    let n: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 20);
}

// Default (current-thread) runtime on purpose: the blocking task's backpressure must work there too.
#[tokio::test]
async fn swap_keeps_queries_in_flight_and_deletes_old_file_after() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits::default());
    // Large enough that the query is still producing when v2 is installed.
    let v1 = make_db(&dir.path().join("s.v1.db"), 60_000, "v1");
    let v2 = make_db(&dir.path().join("s.v2.db"), 2, "v2");
    reader
        .install_stored(id("s"), 1, "11".repeat(32), v1.clone())
        .unwrap();
    let mut stream = reader
        .query(
            &id("s"),
            SqlRequest::new("SELECT x, label FROM t"),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());

    reader
        .install_stored(id("s"), 2, "22".repeat(32), v2.clone())
        .unwrap();
    assert_eq!(
        reader.held(),
        vec![HeldCopy {
            id: id("s"),
            version: Some(2),
            sha256: Some("22".repeat(32)),
            live: false
        }]
    );
    // New queries see v2 at once...
    let now = query_json(&reader, "s", "SELECT DISTINCT label FROM t").await;
    assert_eq!(now, serde_json::json!([{"label": "v2"}]));
    // ...while the old file is still there for the query in flight.
    assert!(v1.exists());

    let (rest, err) = drain(stream).await;
    assert!(err.is_none(), "{err:?}");
    let all = [first.as_ref(), rest.as_slice()].concat();
    let lines: Vec<&[u8]> = all
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 60_000, "the in-flight query finished on v1");
    for line in [lines[0], lines[59_999]] {
        let row: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(row["label"], "v1");
    }
    wait_until("v1 deleted", || !v1.exists()).await;
    assert!(v2.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_cancels_and_returns_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    // One connection: a leaked one would make the second query wait for the whole timeout.
    let reader = Reader::new(QueryLimits {
        pool_size: 1,
        timeout_ms: 5_000,
        ..QueryLimits::default()
    });
    let v1 = make_db(&dir.path().join("c.db"), 100, "v1");
    reader
        .install_stored(id("c"), 1, "33".repeat(32), v1.clone())
        .unwrap();
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c";
    let mut stream = reader
        .query(&id("c"), SqlRequest::new(endless), RowFormat::Ndjson)
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    let start = Instant::now();
    let v = query_json(&reader, "c", "SELECT count(*) AS n FROM t").await;
    assert_eq!(v, serde_json::json!([{"n": 100}]));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Same for a query dropped while it computes without output.
    let counting =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let c = id("c");
    let q = reader.query(&c, SqlRequest::new(counting), RowFormat::Ndjson);
    assert!(tokio::time::timeout(Duration::from_millis(100), q)
        .await
        .is_err());
    let start = Instant::now();
    query_json(&reader, "c", "SELECT 1").await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    reader.remove_stored(&id("c"));
    assert!(!reader.has(&id("c")));
    assert!(reader.held().is_empty());
    wait_until("removed copy deleted", || !v1.exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_error_ends_body_with_error_line_and_err() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits::default());
    let p = make_db(&dir.path().join("m.db"), 1, "x");
    reader
        .install_stored(id("m"), 1, "44".repeat(32), p)
        .unwrap();
    // Directly as a stream.
    let s = reader
        .query(
            &id("m"),
            SqlRequest::new(OVERFLOW_AT_5000),
            RowFormat::JsonArray,
        )
        .await
        .expect("output started before the error");
    let (bytes, err) = drain(s).await;
    let err = err.expect("the stream ends with an error");
    assert_eq!(err.code(), "sql_error");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("[{\"v\":1},{\"v\":2}"));
    let last = text.trim_end().rsplit('\n').next().unwrap();
    let doc: trough_types::wire::ErrorBody = serde_json::from_str(last).unwrap();
    assert_eq!(doc.error.code, "sql_error");
    assert!(
        doc.error.message.contains("integer overflow"),
        "{}",
        doc.error.message
    );
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());

    // Through an axum body: the data stream ends in an Err.
    let s = reader
        .query(
            &id("m"),
            SqlRequest::new(OVERFLOW_AT_5000),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    let mut body = axum::body::Body::from(s).into_data_stream();
    let mut frames: Vec<Result<Bytes, axum::Error>> = Vec::new();
    while let Some(f) = body.next().await {
        frames.push(f);
    }
    assert!(frames.last().unwrap().is_err(), "body aborts");
    let data: Vec<u8> = frames
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .flat_map(|b| b.to_vec())
        .collect();
    let text = String::from_utf8(data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1000);
    assert!(lines
        .last()
        .unwrap()
        .starts_with("{\"error\":{\"code\":\"sql_error\""));
    assert_eq!(lines[lines.len() - 2], "{\"v\":5000}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_for_the_time_limit_gets_a_timeout_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits {
        timeout_ms: 300,
        ..QueryLimits::default()
    });
    let p = make_db(&dir.path().join("slow.db"), 100_000, "x");
    reader
        .install_stored(id("slow"), 1, "55".repeat(32), p)
        .unwrap();
    let mut s = reader
        .query(
            &id("slow"),
            SqlRequest::new("SELECT * FROM t"),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (bytes, err) = drain(s).await;
    assert_eq!(err.expect("aborted").code(), "query_timeout");
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.trim_end().ends_with("\"},\"status\":504}"),
        "ends with the error line, with the status the error would have had"
    );
    assert!(text.contains("{\"error\":{\"code\":\"query_timeout\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_database_takes_precedence_and_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits::default());
    let stored = make_db(&dir.path().join("w.v1.db"), 1, "stored");
    let live = dir.path().join("w.live.db");
    let writer = sql::open_writable(&live, Synchronous::Normal).unwrap();
    writer
        .execute_batch("CREATE TABLE t(x INTEGER, label TEXT); INSERT INTO t VALUES (1, 'live');")
        .unwrap();
    reader
        .install_stored(id("w"), 1, "66".repeat(32), stored.clone())
        .unwrap();
    reader.install_live(id("w"), live.clone()).unwrap();
    assert_eq!(
        reader.held().iter().map(|h| h.live).collect::<Vec<_>>(),
        [false, true]
    );
    let v = query_json(&reader, "w", "SELECT label FROM t").await;
    assert_eq!(v, serde_json::json!([{"label": "live"}]));
    // Later commits are visible (not an immutable view).
    writer
        .execute("INSERT INTO t VALUES (2, 'more')", [])
        .unwrap();
    let v = query_json(&reader, "w", "SELECT count(*) AS n FROM t").await;
    assert_eq!(v, serde_json::json!([{"n": 2}]));
    // And the live view is read-only too.
    let e = reader
        .query(
            &id("w"),
            SqlRequest::new("UPDATE t SET label = 'x'"),
            RowFormat::JsonArray,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_read_only");

    reader.remove_live(&id("w"));
    let v = query_json(&reader, "w", "SELECT label FROM t").await;
    assert_eq!(v, serde_json::json!([{"label": "stored"}]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(live.exists(), "the reader never deletes a live database");
    let n: i64 = writer
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstalling_the_same_path_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Reader::new(QueryLimits::default());
    let b = make_db(&dir.path().join("b.db"), 1, "b");
    let a = make_db(&dir.path().join("a.db"), 1, "a");
    reader
        .install_stored(id("b"), 1, "77".repeat(32), b.clone())
        .unwrap();
    reader
        .install_stored(id("a"), 1, "88".repeat(32), a.clone())
        .unwrap();
    let ids: Vec<String> = reader.held().iter().map(|h| h.id.to_string()).collect();
    assert_eq!(ids, ["a", "b"]);
    // Exactly the same copy again, then the same file under a new version.
    reader
        .install_stored(id("a"), 1, "88".repeat(32), a.clone())
        .unwrap();
    reader
        .install_stored(id("a"), 2, "99".repeat(32), a.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a.exists());
    assert_eq!(
        query_json(&reader, "a", "SELECT label FROM t").await[0]["label"],
        "a"
    );
    assert_eq!(reader.held()[0].version, Some(2));
    // Removing then reinstalling the same path while a query still holds the old copy.
    let mut s = reader
        .query(
            &id("a"),
            SqlRequest::new(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
            ),
            RowFormat::Ndjson,
        )
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    reader.remove_stored(&id("a"));
    reader
        .install_stored(id("a"), 3, "aa".repeat(32), a.clone())
        .unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        a.exists(),
        "the retired copy did not delete the reinstalled file"
    );
    // Missing files are refused.
    let e = reader
        .install_stored(id("x"), 1, "00".repeat(32), dir.path().join("missing.db"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!reader.has(&id("x")));
}

#[test]
fn reader_and_query_future_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send + 'static>(_: &T) {}
    let reader = std::sync::Arc::new(Reader::new(QueryLimits::default()));
    send_sync(&reader);
    let r = reader.clone();
    // An axum handler's future must be Send.
    let fut = async move {
        let _ = r
            .query(&id("a"), SqlRequest::new("SELECT 1"), RowFormat::JsonArray)
            .await;
    };
    send(&fut);
}
