//! Segment ids outside `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` are rejected with 400
//! `invalid_segment_id` on every route, before anything is touched.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs).

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

/// Ids in URL-path form (percent-encoded where needed), all invalid once decoded.
fn invalid_ids() -> Vec<String> {
    vec![
        "..%2Fetc".to_owned(),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "..".to_owned() + "%2F" + "x",
        ".x".to_owned(),
        ".hidden".to_owned(),
        "-dash".to_owned(),
        "a".repeat(129),
        "a".repeat(200),
        "a%20b".to_owned(),
        "a%00b".to_owned(),
        "a%2Fb".to_owned(),
        "a%5Cb".to_owned(),
        "caf%C3%A9".to_owned(),
        "a:b".to_owned(),
        "a*".to_owned(),
    ]
}

/// All files under `dir`, relative.
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    out
}

#[test]
fn invalid_ids_rejected_on_every_route() {
    let s = TestServer::in_process();
    let file = SqliteFile::new(SAMPLE_SQL);
    let c = s.client();
    for id in invalid_ids() {
        let base = s.at(&format!("/segments/{id}"));
        let answers = vec![
            (
                "PUT",
                json_of(c.put(&base).body(file.bytes()).send().unwrap()),
            ),
            ("GET", json_of(c.get(&base).send().unwrap())),
            (
                "query",
                json_of(
                    c.post(format!("{base}/query"))
                        .header("content-type", "text/plain")
                        .body("SELECT 1")
                        .send()
                        .unwrap(),
                ),
            ),
            (
                "query json",
                json_of(
                    c.post(format!("{base}/query"))
                        .header("content-type", "application/json")
                        .body(json!({"sql": "SELECT 1"}).to_string())
                        .send()
                        .unwrap(),
                ),
            ),
            (
                "execute",
                json_of(
                    c.post(format!("{base}/execute"))
                        .header("content-type", "text/plain")
                        .body("CREATE TABLE x (a)")
                        .send()
                        .unwrap(),
                ),
            ),
            (
                "provision",
                json_of(
                    c.post(format!("{base}/provision"))
                        .header("content-type", "application/json")
                        .body("{}")
                        .send()
                        .unwrap(),
                ),
            ),
            (
                "promote",
                json_of(c.post(format!("{base}/promote")).send().unwrap()),
            ),
        ];
        for (what, (status, body)) in answers {
            assert_eq!(status, 400, "{what} /segments/{id}: {body}");
            assert_eq!(
                body["error"]["code"], "invalid_segment_id",
                "{what} /segments/{id}: {body}"
            );
            assert!(body["error"]["message"].is_string(), "{body}");
        }
    }
    // Nothing was stored anywhere.
    let (_, list) = s.get_json("/segments");
    assert_eq!(list, json!({"segments": []}));
    let files = all_files(s.data_dir());
    assert!(
        !files.iter().any(|f| f.contains("etc")
            || f.contains("passwd")
            || f.contains("hidden")
            || f.contains(&"a".repeat(129))),
        "data dir gained files for invalid ids: {files:?}"
    );
}

#[test]
fn boundary_ids() {
    let s = TestServer::in_process();
    let file = SqliteFile::new(SAMPLE_SQL);
    // 128 characters is the maximum: valid.
    let long = "a".repeat(128);
    let m = s.publish(&long, file.bytes());
    assert_eq!(m["id"], long.as_str());
    for id in ["0", "Z", "a.b-c_d", "9.._--", "A1.sqlite"] {
        let m = s.publish(id, file.bytes());
        assert_eq!(m["id"], id);
        let (status, doc) = s.get_json(&format!("/segments/{id}"));
        assert_eq!(status, 200, "{doc}");
    }
    let (status, body) = s.put_bytes(&format!("/segments/{}", "a".repeat(129)), file.bytes());
    assert_error(status, &body, 400, "invalid_segment_id");
    assert_eq!(
        s.query_ok(&long, "SELECT count(*) AS n FROM t"),
        vec![json!({"n": 5})]
    );
}

#[test]
fn empty_id_and_raw_slash_do_not_route() {
    let s = TestServer::in_process();
    let file = SqliteFile::new(SAMPLE_SQL);
    for (method, path) in [
        ("PUT", "/segments/"),
        ("POST", "/segments//query"),
        ("PUT", "/segments/a/b"),
        ("POST", "/segments/a/b/query"),
    ] {
        let r = match method {
            "PUT" => s
                .client()
                .put(s.at(path))
                .body(file.bytes())
                .send()
                .unwrap(),
            _ => s.client().post(s.at(path)).body("SELECT 1").send().unwrap(),
        };
        let st = r.status().as_u16();
        assert!(matches!(st, 400 | 404 | 405), "{method} {path}: {st}");
    }
    let (_, list) = s.get_json("/segments");
    assert_eq!(list, json!({"segments": []}));
}

#[test]
fn errors_are_json_documents() {
    let s = TestServer::in_process();
    for (status, body) in [
        s.get_json("/segments/missing"),
        s.query_text("missing", "SELECT 1"),
        s.get_json("/segments/.bad"),
        s.get_json("/schemas/missing"),
    ] {
        assert!(status.is_client_error(), "{status}");
        let obj = body
            .as_object()
            .unwrap_or_else(|| panic!("error body is not a JSON object: {body}"));
        assert_eq!(obj.len(), 1, "{body}");
        let e = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{body}"));
        assert!(e["code"].is_string() && e["message"].is_string(), "{body}");
    }
    let r = s.client().get(s.at("/segments/missing")).send().unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(ct.is_some_and(|c| c.starts_with("application/json")));
}
