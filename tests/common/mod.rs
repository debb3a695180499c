//! Shared harness for the end-to-end tests: start a real trough node (a `trough serve` process,
//! or the same node in-process, see [`in_process`]) on a temp data dir, talk to it over HTTP, and
//! compare its answers with SQLite itself (rusqlite).
//!
//! Every test binary includes this module with `mod common;`; not every binary uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod auth;
pub mod cluster;
pub mod in_process;
pub mod process;
pub mod raw;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use in_process::InProcessNode;
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use trough_testkit::process::TroughProcess;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trough");

/// `/health` with its per-segment detail (every copy on one page).
pub const HEALTH_SEGMENTS: &str = "/health?segments=true&limit=10000";

/// How long a server may take to print its URL and answer `/health`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a segment may take to be downloaded, verified and installed after a publish.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A trough node with every role on its own temp data dir: a `trough serve` child process
/// ([`TestServer::start`], started by the shared launcher in [`trough_testkit::process`]) or an
/// in-process node ([`TestServer::in_process`], see [`in_process`]).
pub struct TestServer {
    // Dropped first: the node stops before its data dir is deleted.
    node: Option<InProcessNode>,
    dir: tempfile::TempDir,
    process: Option<TroughProcess>,
    url: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    client: Client,
}

impl TestServer {
    /// Starts `trough serve` with default options.
    pub fn start() -> TestServer {
        Self::start_with(&[], &[])
    }

    /// Starts `trough serve` with extra command-line arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("trough-test-")
            .tempdir()
            .expect("create temp data dir");
        let mut server = TestServer {
            node: None,
            dir,
            process: None,
            url: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: http_client(),
        };
        server.spawn();
        server
    }

    /// Starts every role in this process ([`in_process`]) with default options.
    pub fn in_process() -> TestServer {
        Self::in_process_with(&[])
    }

    /// Starts every role in this process, configured as `trough serve` would be with `env`
    /// (`TROUGH_*` variables) in its environment.
    pub fn in_process_with(env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("trough-test-")
            .tempdir()
            .expect("create temp data dir");
        let node = InProcessNode::start(in_process::config_from_env(dir.path(), env));
        TestServer {
            url: node.url(),
            node: Some(node),
            dir,
            process: None,
            args: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: http_client(),
        }
    }

    fn spawn(&mut self) {
        assert!(
            self.node.is_none(),
            "an in-process node cannot be killed or restarted: use TestServer::start"
        );
        let process = TroughProcess::command(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .timeout(START_TIMEOUT)
            .start()
            .unwrap_or_else(|e| panic!("trough serve {:?}: {e}", self.args));
        self.url = process.url().to_owned();
        self.process = Some(process);
    }

    /// Base URL, e.g. `http://127.0.0.1:43121` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `url()` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// A blocking HTTP client (60 s timeout).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The data dir (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL the server and reap it (a process; panics for an in-process node).
    pub fn kill9(&mut self) {
        assert!(
            self.node.is_none(),
            "an in-process node cannot be killed: use TestServer::start"
        );
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// Kill (if running) and start again on the same data dir with the same options.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    // ---- HTTP shorthands -------------------------------------------------------------------

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.at(path)).send().expect("GET")
    }

    pub fn get_json(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.get(path))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(
            self.client
                .post(self.at(path))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .expect("POST"),
        )
    }

    pub fn post_text(&self, path: &str, body: &str) -> (StatusCode, Value) {
        json_of(
            self.client
                .post(self.at(path))
                .header("content-type", "text/plain")
                .body(body.to_owned())
                .send()
                .expect("POST"),
        )
    }

    pub fn put_bytes(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        json_of(
            self.client
                .put(self.at(path))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .expect("PUT"),
        )
    }

    pub fn put_text(&self, path: &str, body: &str) -> (StatusCode, Value) {
        json_of(
            self.client
                .put(self.at(path))
                .header("content-type", "text/plain")
                .body(body.to_owned())
                .send()
                .expect("PUT"),
        )
    }

    /// PUT a segment and assert 201; returns the manifest.
    pub fn publish(&self, id: &str, bytes: Vec<u8>) -> Value {
        let (status, body) = self.put_bytes(&format!("/segments/{id}"), bytes);
        assert_eq!(status, StatusCode::CREATED, "PUT /segments/{id}: {body}");
        body
    }

    /// Raw-text query; one attempt.
    pub fn query_text(&self, id: &str, sql: &str) -> (StatusCode, Value) {
        self.post_text(&format!("/segments/{id}/query"), sql)
    }

    /// JSON query; one attempt.
    pub fn query_json(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        self.post_json(&format!("/segments/{id}/query"), body)
    }

    /// Raw-text query, retried while the segment is not yet available (503); asserts 200.
    pub fn query_ok(&self, id: &str, sql: &str) -> Vec<Value> {
        let (status, body) = self.query_retry(id, &Value::String(sql.to_owned()));
        assert_eq!(status, StatusCode::OK, "query {id} {sql:?}: {body}");
        body.as_array()
            .unwrap_or_else(|| panic!("query answer is not an array: {body}"))
            .clone()
    }

    /// JSON-body query (`body` = `{"sql", "params"}`), retried on 503; asserts 200.
    pub fn query_json_ok(&self, id: &str, body: &Value) -> Vec<Value> {
        let (status, answer) = self.query_retry(id, body);
        assert_eq!(status, StatusCode::OK, "query {id} {body}: {answer}");
        answer
            .as_array()
            .unwrap_or_else(|| panic!("query answer is not an array: {answer}"))
            .clone()
    }

    /// Sends a query (a JSON string = raw text, an object = JSON body) until it answers
    /// something other than 503, or `SYNC_TIMEOUT` passes.
    pub fn query_retry(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        let mut last = None;
        let answered = wait_until(SYNC_TIMEOUT, || {
            let (status, answer) = match body {
                Value::String(sql) => self.query_text(id, sql),
                other => self.query_json(id, other),
            };
            let done = status != StatusCode::SERVICE_UNAVAILABLE;
            last = Some((status, answer));
            done
        });
        let (status, answer) = last.expect("at least one attempt");
        assert!(
            answered,
            "segment {id} still unavailable (503) after {SYNC_TIMEOUT:?}: {answer}"
        );
        (status, answer)
    }

    /// Execute with a JSON body; one attempt.
    pub fn execute_json(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        self.post_json(&format!("/segments/{id}/execute"), body)
    }

    /// Execute with a raw-text body; one attempt.
    pub fn execute_text(&self, id: &str, sql: &str) -> (StatusCode, Value) {
        self.post_text(&format!("/segments/{id}/execute"), sql)
    }

    /// Execute raw SQL and assert 200.
    pub fn execute_ok(&self, id: &str, sql: &str) -> Value {
        let (status, body) = self.execute_text(id, sql);
        assert_eq!(status, StatusCode::OK, "execute {id} {sql:?}: {body}");
        body
    }

    /// Provision a segment (`body` like `{"schema_sql": "..."}`), asserting 201.
    pub fn provision(&self, id: &str, body: &Value) -> Value {
        let (status, doc) = self.post_json(&format!("/segments/{id}/provision"), body);
        assert_eq!(status, StatusCode::CREATED, "provision {id} {body}: {doc}");
        doc
    }

    /// The `node` of `/health`.
    pub fn node_name(&self) -> String {
        let (status, health) = self.get_json("/health");
        assert_eq!(status, StatusCode::OK, "{health}");
        health["node"]
            .as_str()
            .unwrap_or_else(|| panic!("/health has no node name: {health}"))
            .to_owned()
    }

    /// Waits until `/health` lists segment `id` at `version` with `verified: true`.
    pub fn wait_synced(&self, id: &str, version: u64) {
        let ok = wait_until(SYNC_TIMEOUT, || {
            let (status, health) = self.get_json(HEALTH_SEGMENTS);
            status == StatusCode::OK
                && health["segments"].as_array().is_some_and(|segs| {
                    segs.iter()
                        .any(|s| s["id"] == id && s["version"] == version && s["verified"] == true)
                })
        });
        assert!(
            ok,
            "segment {id} v{version} not verified in /health after {SYNC_TIMEOUT:?}: {}",
            self.get_json(HEALTH_SEGMENTS).1
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
        // An in-process node stops when `node` is dropped, before `dir`.
    }
}

/// Status and body of a response; a body that is not JSON becomes a JSON string.
pub fn json_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().expect("read body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts the error document shape and code: `{"error": {"code": code, "message": "..."}}`.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(
        status.as_u16(),
        want_status,
        "want {want_status} {want_code}, got: {body}"
    );
    assert_eq!(body["error"]["code"], want_code, "wrong error code: {body}");
    assert!(
        body["error"]["message"].is_string(),
        "error has no message: {body}"
    );
}

/// Like [`assert_error`] but any of `codes` is acceptable.
#[track_caller]
pub fn assert_error_any(status: StatusCode, body: &Value, want_status: u16, codes: &[&str]) {
    assert_eq!(
        status.as_u16(),
        want_status,
        "want {want_status} {codes:?}, got: {body}"
    );
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"));
    assert!(
        codes.contains(&code),
        "error code {code:?} not one of {codes:?}: {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "error has no message: {body}"
    );
}

/// A blocking HTTP client with a 60 s timeout.
pub fn http_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build HTTP client")
}

/// Polls `cond` every 50 ms until it is true (→ true) or `timeout` passes (→ false).
pub use trough_testkit::wait_until;

// ---- SQLite files ------------------------------------------------------------------------------

/// A SQLite database file made by rusqlite in its own temp dir.
pub struct SqliteFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    /// Creates a database file holding the result of `sql`.
    pub fn new(sql: &str) -> SqliteFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("segment.sqlite");
        let conn = rusqlite::Connection::open(&path).expect("open sqlite");
        conn.execute_batch(sql).expect("build test database");
        conn.close().expect("close sqlite");
        SqliteFile { _dir: dir, path }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("read sqlite file")
    }

    /// Runs `sql` with `params` (same JSON forms as the HTTP API) on this file, read-only, and
    /// returns rows in the API's JSON encoding.
    pub fn rows(&self, sql: &str, params: &Value) -> Vec<Value> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open sqlite read-only");
        sqlite_rows(&conn, sql, params)
    }
}

/// Runs `sql` with `params` on `conn`, returns rows in the API's JSON encoding.
pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str, params: &Value) -> Vec<Value> {
    let mut stmt = conn.prepare(sql).expect("prepare reference query");
    let n = stmt.parameter_count();
    for i in 1..=n {
        let value = match params {
            Value::Array(list) => list.get(i - 1).cloned().unwrap_or(Value::Null),
            Value::Object(map) => {
                let name = stmt
                    .parameter_name(i)
                    .expect("positional param with named params");
                map.get(name)
                    .or_else(|| map.get(&name[1..]))
                    .cloned()
                    .unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        stmt.raw_bind_parameter(i, json_to_sql(&value))
            .expect("bind");
    }
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().expect("step") {
        let mut obj = Map::new();
        for (i, name) in names.iter().enumerate() {
            obj.insert(name.clone(), sql_to_json(row.get_ref(i).expect("column")));
        }
        out.push(Value::Object(obj));
    }
    out
}

/// SQLite value → the API's JSON encoding.
pub fn sql_to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => float_to_json(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            json!({ "$blob": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

/// f64 → JSON number, or `{"$float": "NaN" | "Infinity" | "-Infinity"}`.
pub fn float_to_json(f: f64) -> Value {
    if f.is_nan() {
        json!({"$float": "NaN"})
    } else if f == f64::INFINITY {
        json!({"$float": "Infinity"})
    } else if f == f64::NEG_INFINITY {
        json!({"$float": "-Infinity"})
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .expect("finite float")
    }
}

/// The API's JSON parameter encoding → SQLite value.
pub fn json_to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().expect("number")),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(o) if o.contains_key("$blob") => SqlValue::Blob(
            base64::engine::general_purpose::STANDARD
                .decode(o["$blob"].as_str().expect("$blob string"))
                .expect("base64"),
        ),
        Value::Object(o) if o.contains_key("$float") => {
            SqlValue::Real(match o["$float"].as_str().expect("$float string") {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => panic!("bad $float {other}"),
            })
        }
        other => panic!("no SQLite form for param {other}"),
    }
}

/// Asserts two row lists are equal, including the order of keys in each row object and the
/// integer/float distinction of numbers.
#[track_caller]
pub fn assert_rows_eq(got: &[Value], want: &[Value]) {
    assert_eq!(
        got.len(),
        want.len(),
        "row count differs\n got: {}\nwant: {}",
        Value::Array(got.to_vec()),
        Value::Array(want.to_vec())
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let gk: Vec<&String> = g.as_object().expect("row is an object").keys().collect();
        let wk: Vec<&String> = w.as_object().expect("row is an object").keys().collect();
        assert_eq!(
            gk, wk,
            "row {i}: keys / key order differ\n got: {g}\nwant: {w}"
        );
        for k in wk {
            assert!(
                same_json(&g[k.as_str()], &w[k.as_str()]),
                "row {i} column {k:?} differs\n got: {g}\nwant: {w}"
            );
        }
    }
}

/// JSON equality that also distinguishes integers from floats (1 vs 1.0).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() != y.is_f64() {
                return false;
            }
            if x.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Lower-hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes).as_slice())
}

/// A small segment with one table of mixed types, used by many tests.
pub const SAMPLE_SQL: &str = "
    CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, note TEXT);
    INSERT INTO t VALUES (1, 'alpha', 1.5, x'00ff10', NULL);
    INSERT INTO t VALUES (2, 'beta', 2.0, NULL, 'two');
    INSERT INTO t VALUES (3, 'gamma ☃ \"quoted\"', -0.25, x'', 'three');
    INSERT INTO t VALUES (4, 'delta', 1e999, x'deadbeef', NULL);
    INSERT INTO t VALUES (5, 'epsilon', -1e999, NULL, '');
";

/// Reads a child process's stdout and stderr to strings.
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
