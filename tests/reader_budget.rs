//! The reader's one budget of idle connections across all segments (issue 12,
//! `limits.query.idle_connections`): a node holding many segments keeps at most that many
//! connections open after its queries, and every segment still answers.

mod common;

use common::*;
use serde_json::json;

/// The value of an unlabelled gauge in the Prometheus text of `GET /metrics`.
fn gauge(s: &TestServer, name: &str) -> Option<f64> {
    let text = s.get("/metrics").text().unwrap();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn idle_connections_stay_within_the_budget_across_many_segments() {
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__QUERY__IDLE_CONNECTIONS", "3")]);
    let ids: Vec<String> = (0..12).map(|i| format!("budget-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let f = SqliteFile::new(&format!(
            "CREATE TABLE t(n INTEGER); INSERT INTO t VALUES ({i});"
        ));
        let m = s.publish(id, f.bytes());
        s.wait_synced(id, m["version"].as_u64().unwrap());
    }
    // Every segment answers, twice over (the second round reopens evicted connections).
    for round in 0..2 {
        for (i, id) in ids.iter().enumerate() {
            let rows = s.query_ok(id, "SELECT n FROM t");
            assert_eq!(rows, vec![json!({"n": i})], "round {round}, {id}");
        }
        let idle = gauge(&s, "trough_reader_idle_connections").expect("gauge exported");
        assert!(
            (1.0..=3.0).contains(&idle),
            "round {round}: {idle} idle connections with a budget of 3"
        );
    }
    // A cluster-wide query touching all twelve leaves no more than the budget behind.
    let (status, body) = s.post_json(
        "/query",
        &json!({"sql": "SELECT sum(n) AS total FROM t", "segments": "budget-*"}),
    );
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["rows"][0]["total"], json!(66), "{body}");
    let idle = gauge(&s, "trough_reader_idle_connections").unwrap();
    assert!(
        idle <= 3.0,
        "{idle} idle connections after a fan-out over 12 segments"
    );
}
