//! Helpers of the authorization tests (tests/auth.rs, tests/auth_process.rs): a bootstrap admin
//! secret, requests with a bearer token, creating tokens, publishing and reading back.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::blocking::RequestBuilder;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{wait_until, SqliteFile, TestServer};

/// The bootstrap admin secret the tests configure (`auth.bootstrap_token`).
pub const ADMIN: &str =
    "trough_a0a0a0a0a0a0a0a0_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub fn auth_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TROUGH_AUTH__ENABLED", "true"),
        ("TROUGH_AUTH__BOOTSTRAP_TOKEN", ADMIN),
    ]
}

/// One request: status, JSON body (or `Null`), headers.
pub fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = s.client().request(method, s.at(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = body(req).send().expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

pub fn json_body(v: Value) -> impl FnOnce(RequestBuilder) -> RequestBuilder {
    move |r| {
        r.header("content-type", "application/json")
            .body(v.to_string())
    }
}

pub fn text_body(t: &str) -> impl FnOnce(RequestBuilder) -> RequestBuilder + '_ {
    move |r| r.header("content-type", "text/plain").body(t.to_owned())
}

pub fn no_body(r: RequestBuilder) -> RequestBuilder {
    r
}

/// Creates a token with the admin secret; returns its secret and accessor.
pub fn token(
    s: &TestServer,
    grants: &[(&str, &str)],
    cluster: &[&str],
    expires: Option<u64>,
) -> (String, String) {
    let grants: Vec<Value> = grants
        .iter()
        .map(|(right, segs)| json!({"segments": segs, "right": right}))
        .collect();
    let mut body = json!({"description": "test", "grants": grants, "cluster": cluster});
    if let Some(e) = expires {
        body["expires_in_secs"] = e.into();
    }
    let (status, doc, _) = call(s, Method::POST, "/tokens", Some(ADMIN), json_body(body));
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    (
        doc["secret"].as_str().unwrap().to_owned(),
        doc["accessor"].as_str().unwrap().to_owned(),
    )
}

pub fn publish(s: &TestServer, id: &str, token: Option<&str>, rows: u32) -> StatusCode {
    let values: Vec<String> = (0..rows).map(|i| format!("({i})")).collect();
    let sql = format!(
        "CREATE TABLE t (x INTEGER);{}",
        if rows > 0 {
            format!("INSERT INTO t VALUES {};", values.join(","))
        } else {
            String::new()
        }
    );
    let bytes = SqliteFile::new(&sql).bytes();
    let (status, body, _) = call(s, Method::PUT, &format!("/segments/{id}"), token, |r| {
        r.header("content-type", "application/octet-stream")
            .body(bytes)
    });
    assert!(
        status.is_success() || status.is_client_error(),
        "publish {id}: {status} {body}"
    );
    status
}

/// Rows of `t` in segment `id`, read with the admin token (retried while it syncs).
pub fn count(s: &TestServer, id: &str) -> i64 {
    let mut n = None;
    let ok = wait_until(Duration::from_secs(30), || {
        let (status, body, _) = call(
            s,
            Method::POST,
            &format!("/segments/{id}/query"),
            Some(ADMIN),
            text_body("SELECT count(*) AS n FROM t"),
        );
        n = body[0]["n"].as_i64();
        status == StatusCode::OK
    });
    assert!(ok, "count of {id}");
    n.unwrap()
}

pub fn version(s: &TestServer, id: &str) -> u64 {
    let (status, doc, _) = call(
        s,
        Method::GET,
        &format!("/segments/{id}"),
        Some(ADMIN),
        no_body,
    );
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc["latest"]["version"].as_u64().unwrap()
}
