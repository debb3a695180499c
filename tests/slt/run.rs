//! Runs sqllogictest records against trough's cluster-wide SQL (`POST /query`) and against one
//! monolithic SQLite database holding the same rows, and classifies every query.
//!
//! The rows of each table are split at random (seeded, so a run can be repeated) over N writable
//! segments: every `INSERT … VALUES` goes to one segment chosen at random; every other statement
//! (DDL, `INSERT … SELECT`, UPDATE, DELETE) runs in every segment, so the union of the segments
//! always holds exactly the monolith's rows. A query's answer from trough is then compared with
//! the monolith's, as a multiset unless the order is defined (an ORDER BY with `nosort`); where
//! ties make that order arbitrary, matching the test file's own expected lines also counts.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use rusqlite::Connection;
use serde_json::{json, Value};

use super::format;
use super::parse::{Record, SortMode};
use crate::common::{same_json, sql_to_json, TestServer};

/// What happened to one query.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 200 with the monolith's rows.
    Exact,
    /// The monolith failed and so did trough, with a 400.
    BothFailed,
    /// 400 `unsupported_scatter_query`: refused, with the reason.
    Refused(String),
    /// 200 with rows different from the monolith's.
    Wrong,
    /// A 4xx other than a refusal while the monolith answered.
    ClientError,
    /// 5xx, a dropped connection or an unreadable body.
    ServerError,
}

impl Outcome {
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Exact => "exact",
            Outcome::BothFailed => "both_failed",
            Outcome::Refused(_) => "refused",
            Outcome::Wrong => "wrong",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
        }
    }
}

/// Counts for a run, with details of everything that is not exact.
#[derive(Default, Debug)]
pub struct Report {
    pub queries: usize,
    pub by_class: BTreeMap<&'static str, usize>,
    pub refusal_reasons: BTreeMap<String, usize>,
    /// `file:line: class: sql — detail` for wrong answers and errors.
    pub failures: Vec<String>,
    /// Queries where the monolith disagreed with the file's expected lines (a runner check).
    pub monolith_mismatches: Vec<String>,
}

impl Report {
    pub fn count(&self, class: &str) -> usize {
        self.by_class.get(class).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: Report) {
        self.queries += other.queries;
        for (k, v) in other.by_class {
            *self.by_class.entry(k).or_default() += v;
        }
        for (k, v) in other.refusal_reasons {
            *self.refusal_reasons.entry(k).or_default() += v;
        }
        self.failures.extend(other.failures);
        self.monolith_mismatches.extend(other.monolith_mismatches);
    }

    pub fn summary(&self) -> String {
        let mut s = format!("{} queries:", self.queries);
        for (k, v) in &self.by_class {
            let pct = 100.0 * *v as f64 / self.queries.max(1) as f64;
            s.push_str(&format!(" {k} {v} ({pct:.1}%),"));
        }
        s.push_str(&format!(
            " monolith vs file mismatches {}\n",
            self.monolith_mismatches.len()
        ));
        let mut reasons: Vec<_> = self.refusal_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        for (r, n) in reasons.iter().take(15) {
            s.push_str(&format!("  refused {n:>6}: {r}\n"));
        }
        s
    }
}

/// A small deterministic random generator (xorshift64*), so runs can be repeated by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// One file's run: its segments on `server`, its monolith in memory.
pub struct FileRun<'a> {
    pub server: &'a TestServer,
    pub name: String,
    pub prefix: String,
    pub segments: usize,
    pub rng: Rng,
}

fn is_plain_insert(sql: &str) -> bool {
    let s = sql.trim_start().to_ascii_uppercase();
    s.starts_with("INSERT") && s.contains("VALUES") && !s.contains("SELECT")
}

fn monolith_rows(conn: &Connection, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let n = stmt.column_count();
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        out.push(
            (0..n)
                .map(|i| sql_to_json(r.get_ref(i).expect("column")))
                .collect(),
        );
    }
    Ok(out)
}

/// Shortens a refusal message to a reason that groups well: quoted parts and numbers removed.
fn reason_of(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '`' || c == '"' || c == '\'' => {
                quote = Some(c);
                out.push('…');
            }
            None if c.is_ascii_digit() => {}
            None => out.push(c),
        }
    }
    out.chars().take(110).collect()
}

fn canonical(row: &[Value]) -> String {
    serde_json::to_string(row).expect("row")
}

fn same_rows(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(v, w)| {
                    same_json(v, w)
                        || matches!((v.as_f64(), w.as_f64()), (Some(p), Some(q))
                            if v.is_f64() && w.is_f64() && (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-300))
                })
        })
}

fn sorted(rows: &[Vec<Value>]) -> Vec<Vec<Value>> {
    let mut r = rows.to_vec();
    r.sort_by_key(|row| canonical(row));
    r
}

/// Turns a `/query` answer into rows of values in column order. Understands the columnar form
/// (`{"columns": [...], "rows": [[...]]}`) and the object form (`{"rows": [{...}]}`).
fn answer_rows(body: &Value) -> Option<Vec<Vec<Value>>> {
    let rows = body.get("rows")?.as_array()?;
    if body.get("columns").is_some() {
        return rows.iter().map(|r| r.as_array().cloned()).collect();
    }
    rows.iter()
        .map(|r| r.as_object().map(|o| o.values().cloned().collect()))
        .collect()
}

/// Column names of the monolith's answer, to fold duplicate names as an object would.
fn fold_like_object(conn: &Connection, sql: &str, rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    let Ok(stmt) = conn.prepare(sql) else {
        return rows;
    };
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    if distinct.len() == names.len() {
        return rows;
    }
    rows.into_iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            for (k, v) in names.iter().zip(r) {
                m.insert(k.clone(), v);
            }
            m.into_iter().map(|(_, v)| v).collect()
        })
        .collect()
}

impl FileRun<'_> {
    fn segment(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Runs every record; returns the report for this file.
    pub fn run(&mut self, records: &[Record]) -> Report {
        let mono = Connection::open_in_memory().expect("monolith");
        // One more segment than the rows are split over: it only ever gets the DDL, so every
        // query also meets a segment with empty tables.
        for i in 0..=self.segments {
            self.server.provision(&self.segment(i), &json!({}));
        }
        let mut report = Report::default();
        for record in records {
            match record {
                Record::HashThreshold => {}
                Record::Statement { sql, ok, line } => {
                    let mono_ok = mono.execute_batch(sql).is_ok();
                    if mono_ok != *ok {
                        report.monolith_mismatches.push(format!(
                            "{}:{line}: statement expected ok={ok}: {sql}",
                            self.name
                        ));
                    }
                    if !mono_ok {
                        continue;
                    }
                    let targets: Vec<usize> = if is_plain_insert(sql) {
                        vec![self.rng.below(self.segments)]
                    } else {
                        (0..=self.segments).collect()
                    };
                    for i in targets {
                        let (status, body) = self.server.execute_text(&self.segment(i), sql);
                        assert_eq!(
                            status,
                            StatusCode::OK,
                            "{}:{line}: statement failed on segment {i}: {sql}: {body}",
                            self.name
                        );
                    }
                }
                Record::Query {
                    types,
                    sort,
                    sql,
                    expected,
                    line,
                } => {
                    let outcome =
                        self.query(&mono, sql, types, *sort, expected, *line, &mut report);
                    report.queries += 1;
                    *report.by_class.entry(outcome.class()).or_default() += 1;
                    match &outcome {
                        Outcome::Refused(r) => {
                            *report.refusal_reasons.entry(r.clone()).or_default() += 1
                        }
                        Outcome::Exact | Outcome::BothFailed => {}
                        _ => {}
                    }
                }
            }
        }
        report
    }

    #[allow(clippy::too_many_arguments)]
    fn query(
        &self,
        mono: &Connection,
        sql: &str,
        types: &str,
        sort: SortMode,
        expected: &[String],
        line: usize,
        report: &mut Report,
    ) -> Outcome {
        let want = monolith_rows(mono, sql);
        if let Ok(rows) = &want {
            let got = format::lines(rows, types, sort);
            if !format::matches(expected, &got) {
                report.monolith_mismatches.push(format!(
                    "{}:{line}: {sql}\n  file: {expected:?}\n  monolith: {got:?}",
                    self.name
                ));
            }
        }
        let body = json!({"sql": sql, "segments": format!("{}-*", self.prefix)});
        let sent = self
            .server
            .client()
            .post(self.server.at("/query"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send();
        let fail = |report: &mut Report, class: Outcome, detail: String| {
            report.failures.push(format!(
                "{}:{line}: {}: {sql}\n  {detail}",
                self.name,
                class.class()
            ));
            class
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return fail(report, Outcome::ServerError, format!("request failed: {e}")),
        };
        let status = resp.status();
        let text = match resp.text() {
            Ok(t) => t,
            Err(e) => return fail(report, Outcome::ServerError, format!("{status}: body: {e}")),
        };
        let Ok(answer) = serde_json::from_str::<Value>(&text) else {
            let shown: String = text.chars().take(300).collect();
            return fail(
                report,
                Outcome::ServerError,
                format!("{status}: not JSON: {shown}"),
            );
        };
        if status.is_server_error() {
            return fail(report, Outcome::ServerError, format!("{status}: {answer}"));
        }
        if status.is_client_error() {
            let code = answer["error"]["code"].as_str().unwrap_or("");
            if code == "unsupported_scatter_query" {
                let msg = answer["error"]["message"].as_str().unwrap_or("");
                return Outcome::Refused(reason_of(msg));
            }
            if want.is_err() {
                return Outcome::BothFailed;
            }
            return fail(report, Outcome::ClientError, format!("{status}: {answer}"));
        }
        let Some(got) = answer_rows(&answer) else {
            return fail(
                report,
                Outcome::ServerError,
                format!("{status}: no rows: {answer}"),
            );
        };
        let want = match want {
            Ok(w) => w,
            Err(e) => {
                return fail(
                    report,
                    Outcome::Wrong,
                    format!("monolith failed ({e}) but trough answered {answer}"),
                )
            }
        };
        let want = if answer.get("columns").is_some() {
            want
        } else {
            fold_like_object(mono, sql, want)
        };
        let ordered = sort == SortMode::NoSort && sql.to_ascii_uppercase().contains("ORDER BY");
        let equal = if ordered {
            same_rows(&got, &want)
                || (same_rows(&sorted(&got), &sorted(&want))
                    && format::matches(expected, &format::lines(&got, types, sort)))
        } else {
            same_rows(&sorted(&got), &sorted(&want))
        };
        if equal {
            Outcome::Exact
        } else {
            let show = |r: &[Vec<Value>]| -> String {
                let s = serde_json::to_string(r).unwrap_or_default();
                s.chars().take(400).collect()
            };
            fail(
                report,
                Outcome::Wrong,
                format!("trough: {}\n  monolith: {}", show(&got), show(&want)),
            )
        }
    }
}
