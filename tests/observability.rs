//! GET /health and GET /metrics.

mod common;

use common::*;
use serde_json::json;

#[test]
fn health_lists_held_segments() {
    let s = TestServer::start();
    let (status, health) = s.get_json("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["node"].as_str().is_some_and(|n| !n.is_empty()),
        "{health}"
    );
    // The summary by default; the copies themselves on request.
    assert!(health.get("segments").is_none(), "{health}");
    assert_eq!(health["summary"]["copies"], 0, "{health}");
    assert_eq!(s.get_json(HEALTH_SEGMENTS).1["segments"], json!([]));

    let f = SqliteFile::new(SAMPLE_SQL);
    let m = s.publish("h.stored", f.bytes());
    s.provision("h.live", &json!({"schema_sql": "CREATE TABLE t (a);"}));
    s.wait_synced("h.stored", 1);
    let (_, summary) = s.get_json("/health");
    assert_eq!(summary["summary"]["verified"], 1, "{summary}");
    assert_eq!(summary["summary"]["live"], 1, "{summary}");
    let (_, health) = s.get_json(HEALTH_SEGMENTS);
    let segs = health["segments"].as_array().unwrap();
    let stored = segs
        .iter()
        .find(|e| e["id"] == "h.stored")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["sha256"], m["sha256"]);
    assert_eq!(stored["verified"], true);
    assert_eq!(stored["live"], false, "{stored}");
    let live = segs
        .iter()
        .find(|e| e["id"] == "h.live")
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(live["live"], true, "{live}");
    assert!(
        live["verified"].is_boolean()
            && live.get("version").is_some()
            && live.get("sha256").is_some(),
        "{live}"
    );

    let r = s.get("/health");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(ct.is_some_and(|c| c.starts_with("application/json")));
}

#[test]
fn metrics_expose_prometheus_names() {
    let s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish("m.seg", f.bytes());
    s.query_ok("m.seg", "SELECT * FROM t");
    s.query_text("m.none", "SELECT 1");
    s.wait_synced("m.seg", 1);

    let r = s.get("/metrics");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    let text = r.text().unwrap();
    for name in [
        "trough_http_requests_total",
        "trough_http_request_duration_seconds_bucket",
        "trough_http_request_duration_seconds_sum",
        "trough_http_request_duration_seconds_count",
        "trough_segments_held",
        "trough_bytes_stored",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "/metrics lacks {name}:\n{text}"
        );
    }
    assert!(
        text.lines().any(
            |l| l.starts_with("trough_http_request_duration_seconds_bucket")
                && l.contains("endpoint=\"")
        ),
        "duration histogram has no endpoint label:\n{text}"
    );
    // `endpoint` is the route, not the raw path: no segment id in any label.
    assert!(
        !text.contains("m.seg") && !text.contains("m.none"),
        "segment ids leak into metric labels:\n{text}"
    );
    // Held-segment gauges reflect the synced segment.
    let value_of = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    assert!(
        value_of("trough_segments_held").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value_of("trough_bytes_stored").is_some_and(|v| v >= f.bytes().len() as f64),
        "{text}"
    );
    // Every exposed sample line parses as `name{labels} value`.
    for l in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let v = l.rsplit(' ').next().unwrap();
        assert!(
            v.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&v),
            "bad sample line {l:?}"
        );
    }
}

fn requests_total(s: &TestServer) -> f64 {
    let text = s.get("/metrics").text().unwrap();
    text.lines()
        .filter(|l| l.starts_with("trough_http_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn request_counter_increases() {
    let s = TestServer::start();
    let before = requests_total(&s);
    for _ in 0..5 {
        s.get_json("/segments");
    }
    let after = requests_total(&s);
    assert!(
        after - before >= 5.0,
        "trough_http_requests_total went {before} → {after} over 5 requests"
    );
}
