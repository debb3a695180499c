//! The adversarial suite (issue 10): hundreds of hostile inputs against one real `trough serve`,
//! table-driven. The tables are in `tests/adversarial/`: SQL escape hatches and bad bodies on every
//! endpoint ([`sql`]), HTTP framing and slow clients over raw TCP ([`framing`]), hostile segment
//! files, schemas and provisioning ([`files`]).
//!
//! For every input the runner checks:
//! - the status class the table expects (2xx, 4xx, 5xx, or a closed connection);
//! - that every error answer is the JSON error document with a `code` (including what hyper
//!   refuses before a request exists: trough_api::listener::json_errors rewrites it);
//! - that nothing changed: the catalog (ids, versions, checksums), the registered schemas, and
//!   row counts and schemas of the read-only and the writable segment, through the API;
//! - that no file appeared outside the data dir (the server's `TMPDIR` is a watched empty
//!   directory);
//! - that the server still answers a normal query within 2 s.
//!
//! At the end it checks the server's peak RSS (`VmHWM`) is below [`PEAK_RSS_BOUND`]. All
//! mismatches are collected and reported together.
//!
//! Inputs whose expectation needs issue 10's SQLite-level fixes (defects 1-7, 10, 11) or the
//! `/query` client-error fix (defect 12) are in [`sql::needs_sqlite_fixes`] and run by the
//! ignored test at the end of this file; un-ignore it once those fixes are merged.

mod common;

#[path = "adversarial/files.rs"]
mod files;
#[path = "adversarial/framing.rs"]
mod framing;
#[path = "adversarial/sql.rs"]
mod sql;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::raw;
use common::*;
use serde_json::{json, Value};

/// Peak resident memory the server may reach over the whole suite (default limits).
pub const PEAK_RSS_BOUND: u64 = 512 << 20;
/// A normal query must answer this fast after every input.
const ALIVE_WITHIN: Duration = Duration::from_secs(2);
/// Limits the suite's server runs with (short timeouts keep the suite fast).
const SERVER_ENV: &[(&str, &str)] = &[
    ("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "1000"),
    ("TROUGH_LIMITS__QUERY__MAX_ROWS", "100"),
    ("TROUGH_LIMITS__MAX_BODY_BYTES", "1048576"),
    ("TROUGH_LIMITS__MAX_UPLOAD_BYTES", "4194304"),
    ("TROUGH_LIMITS__HTTP__HEADER_READ_TIMEOUT_MS", "1000"),
    ("TROUGH_LIMITS__HTTP__BODY_IDLE_TIMEOUT_MS", "1000"),
];

/// The status class an input must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// 2xx (a harmless input that is allowed, e.g. a read with a small recursive CTE).
    Ok,
    /// Exactly this status.
    Status(u16),
    /// Any 4xx.
    Client,
    /// Any 4xx, or 504 when the work it takes to find out outlasts the (short) test deadline on
    /// a slow machine: refused or stopped in time, either way.
    ClientOrTimeout,
    /// The connection is closed, with or without an error answer first (hyper's own refusals).
    Closed,
}

/// How an input is sent.
pub enum Input {
    /// An HTTP request through a normal client.
    Http {
        method: &'static str,
        path: String,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    },
    /// Raw bytes over TCP; then read the answer.
    Raw(Vec<u8>),
    /// Raw bytes over TCP, then silence: the server must answer or close within `within`.
    Stall { bytes: Vec<u8>, within: Duration },
}

/// One hostile input.
pub struct Case {
    /// A distinct name (the report lists failures by name).
    pub name: String,
    pub input: Input,
    pub expect: Expect,
}

impl Case {
    pub fn http(
        name: impl Into<String>,
        method: &'static str,
        path: impl Into<String>,
        content_type: Option<&'static str>,
        body: impl Into<Vec<u8>>,
        expect: Expect,
    ) -> Case {
        Case {
            name: name.into(),
            input: Input::Http {
                method,
                path: path.into(),
                content_type,
                body: body.into(),
            },
            expect,
        }
    }
    pub fn text(name: impl Into<String>, path: impl Into<String>, sql: &str, e: Expect) -> Case {
        Case::http(name, "POST", path, Some("text/plain"), sql.as_bytes(), e)
    }
    pub fn json(name: impl Into<String>, path: impl Into<String>, body: Value, e: Expect) -> Case {
        Case::http(
            name,
            "POST",
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
            e,
        )
    }
    pub fn raw(name: impl Into<String>, bytes: impl Into<Vec<u8>>, e: Expect) -> Case {
        Case {
            name: name.into(),
            input: Input::Raw(bytes.into()),
            expect: e,
        }
    }
}

/// What came back.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    body: Vec<u8>,
    closed: bool,
}

fn send(s: &TestServer, input: &Input) -> Outcome {
    match input {
        Input::Http {
            method,
            path,
            content_type,
            body,
        } => {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = s.client().request(m, s.at(path)).body(body.clone());
            if let Some(ct) = content_type {
                req = req.header("content-type", *ct);
            }
            match req.send() {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
                    Outcome {
                        status: Some(status),
                        body,
                        closed: false,
                    }
                }
                Err(_) => Outcome {
                    status: None,
                    body: Vec::new(),
                    closed: true,
                },
            }
        }
        Input::Raw(bytes) => {
            let a = raw::exchange(s.url(), bytes, Duration::from_secs(10));
            let closed = a.closed || a.status.is_none() || a.header("connection") == Some("close");
            Outcome {
                status: a.status,
                body: a.body,
                closed,
            }
        }
        Input::Stall { bytes, within } => {
            let start = Instant::now();
            let mut c = raw::connect(s.url());
            use std::io::Write;
            let _ = c.write_all(bytes);
            let a = raw::read_answer(&mut c, start, *within);
            let closed = a.closed || raw::closed_within(&mut c, Duration::from_millis(100));
            Outcome {
                status: a.status,
                body: a.body,
                closed,
            }
        }
    }
}

/// Why an outcome does not meet the expectation, if it does not.
fn judge(case: &Case, o: &Outcome) -> Option<String> {
    let class_ok = match (case.expect, o.status) {
        (Expect::Ok, Some(st)) => (200..300).contains(&st),
        (Expect::Status(want), Some(st)) => st == want,
        (Expect::Client, Some(st)) => (400..500).contains(&st),
        (Expect::ClientOrTimeout, Some(st)) => (400..500).contains(&st) || st == 504,
        (Expect::Closed, None) => true,
        (Expect::Closed, Some(st)) => o.closed && (400..500).contains(&st),
        (_, None) => false,
    };
    if !class_ok {
        return Some(format!(
            "expected {:?}, got status {:?} (closed: {}) body {}",
            case.expect,
            o.status,
            o.closed,
            String::from_utf8_lossy(&o.body[..o.body.len().min(300)])
        ));
    }
    if let Some(st) = o.status {
        if st >= 400 {
            let v: Value = serde_json::from_slice(&o.body).unwrap_or(Value::Null);
            if !v["error"]["code"].is_string() || !v["error"]["message"].is_string() {
                return Some(format!(
                    "status {st} without a JSON error document: {}",
                    String::from_utf8_lossy(&o.body[..o.body.len().min(300)])
                ));
            }
        }
    }
    None
}

/// Everything an input must not change, read through the API.
fn state(s: &TestServer) -> Value {
    let (_, segs) = s.get_json("/segments");
    let segs: Vec<Value> = segs["segments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| json!([e["id"], e["version"], e["sha256"], e["writable"]]))
        .collect();
    let (_, schemas) = s.get_json("/schemas");
    let probe = "SELECT (SELECT count(*) FROM sqlite_master) AS objects, \
                 (SELECT group_concat(name || ':' || coalesce(sql, ''), ';') FROM sqlite_master) AS ddl";
    json!({
        "segments": segs,
        "schemas": schemas,
        "s": s.query_json_ok("s", &json!({"sql": format!("{probe}, (SELECT count(*) FROM t) AS rows")})),
        "w": s.query_json_ok("w", &json!({"sql": format!("{probe}, (SELECT count(*) FROM items) AS rows, (SELECT group_concat(v) FROM items) AS vals")})),
    })
}

/// Whether a normal query answers within [`ALIVE_WITHIN`].
fn alive(s: &TestServer) -> Result<(), String> {
    let start = Instant::now();
    let client = reqwest::blocking::Client::builder()
        .timeout(ALIVE_WITHIN)
        .build()
        .unwrap();
    let r = client
        .post(s.at("/segments/s/query"))
        .header("content-type", "text/plain")
        .body("SELECT count(*) AS n FROM t")
        .send()
        .map_err(|e| format!("normal query failed: {e}"))?;
    let st = r.status().as_u16();
    if st != 200 || start.elapsed() > ALIVE_WITHIN {
        return Err(format!(
            "normal query answered {st} after {:?}",
            start.elapsed()
        ));
    }
    Ok(())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Peak resident set size of `pid`, from `/proc/<pid>/status`.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A server with a read-only segment `s`, a writable segment `w` and a schema `base`, whose
/// `TMPDIR` is the returned (empty) directory.
fn setup() -> (TestServer, tempfile::TempDir) {
    let watched = tempfile::Builder::new()
        .prefix("trough-adv-tmpdir-")
        .tempdir()
        .unwrap();
    let tmp = watched.path().to_str().unwrap().to_owned();
    let mut env: Vec<(&str, &str)> = SERVER_ENV.to_vec();
    env.push(("TMPDIR", &tmp));
    env.push(("SQLITE_TMPDIR", &tmp));
    let s = TestServer::start_with(&[], &env);
    s.publish("s", SqliteFile::new(SAMPLE_SQL).bytes());
    s.wait_synced("s", 1);
    let (st, b) = s.put_text(
        "/schemas/base",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    );
    assert_eq!(st.as_u16(), 201, "{b}");
    s.provision("w", &json!({"schema": "base"}));
    s.execute_ok(
        "w",
        "INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    );
    (s, watched)
}

/// Runs `cases`; returns the list of failures. `known_tmp` names cases allowed (for now) to
/// leave files in `TMPDIR`, each with the defect that will fix it.
fn run(s: &TestServer, watched: &Path, cases: &[Case], known_tmp: &[(&str, &str)]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for case in cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case {}",
            case.name
        );
        let before = state(s);
        let outcome = send(s, &case.input);
        if let Some(why) = judge(case, &outcome) {
            failures.push(format!("{}: {why}", case.name));
        }
        if let Err(why) = alive(s) {
            failures.push(format!("{}: {why}", case.name));
            // Give it a chance to recover so that later cases are judged on their own.
            wait_until(Duration::from_secs(30), || alive(s).is_ok());
        }
        let after = state(s);
        if before != after {
            failures.push(format!(
                "{}: state changed\n before {before}\n after  {after}",
                case.name
            ));
        }
        let leaked = files_in(watched);
        if !leaked.is_empty() {
            match known_tmp.iter().find(|(n, _)| *n == case.name) {
                Some((_, defect)) => {
                    eprintln!(
                        "KNOWN ({defect}): {} left {} files in TMPDIR",
                        case.name,
                        leaked.len()
                    )
                }
                None => failures.push(format!(
                    "{}: files created outside the data dir: {leaked:?}",
                    case.name
                )),
            }
            for p in leaked {
                let _ = std::fs::remove_dir_all(&p);
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    failures
}

fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} hostile inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_inputs_change_nothing_and_wedge_nothing() {
    let (s, watched) = setup();
    let mut cases = sql::cases();
    cases.extend(files::cases());
    cases.extend(framing::cases());
    let total = cases.len();
    assert!(total >= 150, "only {total} inputs");
    let start = Instant::now();
    let failures = run(&s, watched.path(), &cases, sql::KNOWN_TMPDIR);
    eprintln!("{total} hostile inputs in {:?}", start.elapsed());
    // Many idle and half-open connections at once must not starve a normal request.
    let idle = framing::idle_sockets(&s, 300);
    let mut failures = failures;
    if let Err(why) = alive(&s) {
        failures.push(format!("300 idle sockets: {why}"));
    }
    drop(idle);
    let pid = s.pid();
    let peak = peak_rss(pid).expect("VmHWM");
    if peak > PEAK_RSS_BOUND {
        failures.push(format!(
            "peak RSS {} MiB above {} MiB",
            peak >> 20,
            PEAK_RSS_BOUND >> 20
        ));
    }
    eprintln!("peak RSS {} MiB", peak >> 20);
    report(&failures, total);
}

/// Inputs for issue 10's SQLite-level defects (1-7, 10, 11) and defect 12; defect 4 (an index
/// that disagrees with its table) is `tests/hardening.rs`, which builds such a file exactly.
#[test]
fn hostile_inputs_needing_sqlite_level_fixes() {
    let (s, watched) = setup();
    let cases = sql::needs_sqlite_fixes();
    let total = cases.len();
    let failures = run(&s, watched.path(), &cases, &[]);
    report(&failures, total);
}
