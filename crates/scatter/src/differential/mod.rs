//! The differential test: random data split over many segment files plus one monolithic database
//! holding every row; hundreds of generated queries answered both ways must agree.
//!
//! Comparison rules (see also `docs/decisions/0006-scatter-merge.md`):
//! - column names must be equal;
//! - REAL values agree within a relative 1e-9 (absolute 1e-9 near zero): the merge adds partial
//!   sums in a different order than one database does;
//! - a query whose ORDER BY determines the order (the generator appends a unique key) is compared
//!   row by row; an ORDER BY that may have ties is compared as a multiset, and the scatter answer
//!   is checked to be sorted; without ORDER BY, as multisets;
//! - LIMIT without ORDER BY may return any rows: the scatter answer must have the same number of
//!   rows, each a row of the full (unlimited) monolithic answer;
//! - "loose" queries (grouping or DISTINCT over values SQLite considers equal but that print
//!   differently, like `1` and `1.0`, or 'a' and 'A' under NOCASE) return an arbitrary
//!   representative on both sides: there, numbers compare by value and text case-insensitively.
//!
//! - `data`: the random generator, the schema and the rows;
//! - `queries`: the query generator, each query with its comparison rule;
//! - `edge`: generated queries for the constructs of issue 9 (DISTINCT aggregates over no
//!   matching row, integer constants in GROUP BY, result aliases that are also columns);
//! - `fixture`: segment files plus the monolith, and running a query both ways (shared with
//!   `tests.rs`);
//! - `check`: the comparison of two answers under those rules.

mod check;
mod data;
mod edge;
mod fixture;
mod gather_queries;
mod queries;

use check::check;
use data::{gen_data, Rng, SCHEMA};
use edge::gen_edge;
use fixture::open_ro;
pub(super) use fixture::{run_one, run_scatter, Fixture, Scatter};
use queries::generate;

use super::{plan, MergeOptions};

#[test]
fn differential_scatter_matches_monolith() {
    const SEGMENTS: usize = 12;
    const GENERAL: usize = 600;
    const EDGE: usize = 150;
    const QUERIES: usize = GENERAL + EDGE;
    let mut rng = Rng::new(0x7f0c_4a11_2026);
    let fx = Fixture::new(SEGMENTS, SCHEMA);
    fx.insert_all(&gen_data(&mut rng, SEGMENTS));
    let segs = fx.open_segments();
    let mono = open_ro(&fx.mono);
    let opts = MergeOptions {
        temp_dir: Some(fx.dir.path().to_owned()),
        memory_budget_bytes: 1024 * 1024,
        ..MergeOptions::default()
    };
    let (mut ran, mut refused, mut both_failed) = (0, 0, 0);
    let mut by_strategy = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    let mut refusals = Vec::new();
    // The general queries, then the edge cases of issue 9 from their own generator (so the
    // general stream stays what it was).
    let mut edge_rng = Rng::new(0x1550_e009);
    for i in 0..QUERIES {
        let q = if i < GENERAL {
            generate(&mut rng)
        } else {
            gen_edge(&mut edge_rng)
        };
        if let Ok(p) = plan(&q.sql) {
            *by_strategy
                .entry(format!("{:?}", p.strategy()))
                .or_insert(0) += 1;
        }
        let expected = run_one(&mono, &q.sql, &q.params);
        let got = run_scatter(&segs, &q.sql, &q.params, &opts);
        match (expected, got) {
            (_, Scatter::Refused(why)) => {
                refused += 1;
                refusals.push(format!("{}\n    -> {why}", q.sql));
            }
            (Err(e), Scatter::Failed(f)) => {
                both_failed += 1;
                if e != f {
                    failures.push(format!(
                        "#{i} {}\n    monolith error: {e}\n    scatter error: {f}",
                        q.sql
                    ));
                }
            }
            (Err(e), Scatter::Rows(..)) => failures.push(format!(
                "#{i} {}\n    monolith failed ({e}) but scatter answered",
                q.sql
            )),
            (Ok(_), Scatter::Failed(f)) => {
                failures.push(format!("#{i} {}\n    scatter failed: {f}", q.sql))
            }
            (Ok((mnames, mrows)), Scatter::Rows(names, rows)) => {
                ran += 1;
                if mnames != names {
                    failures.push(format!(
                        "#{i} {}\n    column names {names:?}, expected {mnames:?}",
                        q.sql
                    ));
                    continue;
                }
                let full = q
                    .unlimited
                    .as_ref()
                    .map(|u| run_one(&mono, u, &q.params).expect("unlimited").1);
                if let Err(why) = check(q.cmp, &mrows, full.as_deref(), &rows) {
                    failures.push(format!("#{i} {} {:?}\n    {why}", q.sql, q.params));
                }
            }
        }
    }
    eprintln!(
        "differential: {QUERIES} generated queries: {ran} planned and compared, {both_failed} \
         failed on both sides, {refused} refused by the planner; strategies: {by_strategy:?}"
    );
    for r in refusals.iter().take(20) {
        eprintln!("refused: {r}");
    }
    assert!(
        failures.is_empty(),
        "{} of {QUERIES} queries differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        refused * 10 <= QUERIES,
        "the planner refused {refused} of {QUERIES} generated queries (more than 10%)"
    );
    assert!(ran >= QUERIES * 8 / 10, "only {ran} queries compared");
}
