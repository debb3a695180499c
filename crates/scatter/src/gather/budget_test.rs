//! Opt-in (ignored) check that a gathered join of 10 million rows stays within the merge memory
//! budget: the rows are loaded into [`MergeDb`] as a segment's answers would be, an index is built
//! and a join runs, with a 64 MiB budget (half page cache, half SQLite's sorter; both spill to
//! disk past it); the process's peak resident memory may grow by the budget plus 16 MiB of
//! allocator and statement overhead. Run with
//! `cargo test --release -p trough-scatter --lib -- --ignored gather_join_of_10m_rows`
//! (`TROUGH_GATHER_ROWS` changes the row count); see BENCHMARKS.md.

use serde_json::{json, Value};

use super::{MergeDb, Schema};
use crate::MergeOptions;

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
#[ignore = "opt-in: 10M rows; run in release (see BENCHMARKS.md)"]
fn gather_join_of_10m_rows_stays_within_the_memory_budget() {
    let rows: u64 = std::env::var("TROUGH_GATHER_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let budget: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let schema_rows: Vec<Vec<Value>> = serde_json::from_value(json!([
        ["table", "a", "a", "CREATE TABLE a(k INTEGER, pad TEXT)"],
        ["table", "b", "b", "CREATE TABLE b(k INTEGER, v REAL)"],
        ["index", "bk", "b", "CREATE INDEX bk ON b(k)"],
    ]))
    .unwrap();
    let schema = Schema::from_rows(&schema_rows).unwrap();
    let opts = MergeOptions {
        memory_budget_bytes: budget,
        temp_dir: Some(dir.path().to_owned()),
        ..MergeOptions::default()
    };
    let before = peak_rss_bytes();
    let mut db = MergeDb::create(&schema, &opts).unwrap();
    let half = rows / 2;
    let pad = "p".repeat(40);
    let mut a = (0..half).map(|i| Ok(vec![json!(i * 7919 % half), json!(pad)]));
    db.insert("a", &["k".into(), "pad".into()], &mut a).unwrap();
    let mut b = (0..half).map(|i| Ok(vec![json!(i), json!(i as f64 / 3.0)]));
    db.insert("b", &["k".into(), "v".into()], &mut b).unwrap();
    let result = db
        .finish(
            &schema,
            "SELECT count(*) AS n, sum(b.k) AS s FROM a JOIN b ON a.k = b.k",
            &trough_sqlite::Params::None,
        )
        .unwrap();
    let got: Vec<Vec<Value>> = result.collect::<Result<_, _>>().unwrap();
    let grown = peak_rss_bytes().saturating_sub(before);
    eprintln!(
        "gathered {rows} rows, joined: {got:?}; peak RSS grew by {} MiB (budget {} MiB)",
        grown >> 20,
        budget >> 20
    );
    assert_eq!(got, vec![vec![json!(half), json!(half * (half - 1) / 2)]]);
    assert!(
        grown <= budget + (16 << 20),
        "peak RSS grew by {grown} bytes, more than the {budget}-byte budget (+16 MiB)"
    );
}
