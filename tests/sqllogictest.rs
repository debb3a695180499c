//! Cluster-wide SQL checked with sqllogictest files: the project's own (`tests/slt/cases/`, in CI)
//! and, on demand, SQLite's corpus. Each file's rows are split at random over writable segments
//! of a real `trough serve`; every query's answer through `POST /query` is compared with one
//! SQLite database holding all the rows.
//!
//! The corpus run (not in CI; about a minute in release mode):
//!
//! ```text
//! TROUGH_SLT_DIR=../shared/sqllogictest cargo test --release --test sqllogictest -- --ignored --nocapture corpus
//! ```
//!
//! `TROUGH_SLT_SEED` (default 1) and `TROUGH_SLT_SEGMENTS` (default 5) choose the split;
//! `TROUGH_SLT_MAX_REFUSED_PCT` (default 10) the refusal ceiling it asserts.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs).

mod common;
mod slt;

use std::path::{Path, PathBuf};

use common::TestServer;
use slt::run::{FileRun, Report, Rng};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs every `.test` file under `dir` (sorted by name) on one server; returns the total report.
fn run_dir(dir: &Path) -> Report {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let server = TestServer::in_process();
    let seed: u64 = env_or("TROUGH_SLT_SEED", 1);
    let segments: usize = env_or("TROUGH_SLT_SEGMENTS", 5);
    let mut total = Report::default();
    for (n, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("read test file");
        let records =
            slt::parse::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut run = FileRun {
            server: &server,
            name: name.clone(),
            prefix: format!("slt{n}"),
            segments,
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(n as u64)),
        };
        let report = run.run(&records);
        eprintln!("{name}: {}", report.summary().lines().next().unwrap_or(""));
        total.merge(report);
    }
    total
}

fn show(report: &Report) {
    eprintln!("{}", report.summary());
    for f in report.failures.iter().take(60) {
        eprintln!("FAIL {f}");
    }
    for m in report.monolith_mismatches.iter().take(20) {
        eprintln!("MONOLITH≠FILE {m}");
    }
}

/// The project's own files: every query exact, refused with a reason, or failing exactly where
/// SQLite fails; and the runner's monolith agrees with every expected line.
#[test]
fn own_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt/cases");
    let report = run_dir(&dir);
    show(&report);
    assert!(report.queries > 50, "too few queries: {}", report.queries);
    assert!(
        report.monolith_mismatches.is_empty(),
        "the monolith disagrees with expected lines in the project's files"
    );
    for class in ["wrong", "server_error", "client_error"] {
        assert_eq!(
            report.count(class),
            0,
            "{class} answers; see FAIL lines above"
        );
    }
    let refused = report.count("refused");
    assert!(
        refused * 100 <= report.queries * env_or("TROUGH_SLT_MAX_REFUSED_PCT", 10),
        "{refused} of {} queries refused",
        report.queries
    );
}

/// SQLite's own corpus (a sample in `../shared/sqllogictest`), on demand.
#[test]
#[ignore = "runs SQLite's sqllogictest corpus; see the module docs for the command"]
fn corpus() {
    let dir = std::env::var("TROUGH_SLT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/sqllogictest"));
    let report = run_dir(&dir);
    show(&report);
    for class in ["wrong", "server_error"] {
        assert_eq!(
            report.count(class),
            0,
            "{class} answers; see FAIL lines above"
        );
    }
    let refused = report.count("refused");
    assert!(
        refused * 100 <= report.queries * env_or("TROUGH_SLT_MAX_REFUSED_PCT", 10),
        "{refused} of {} queries refused",
        report.queries
    );
}
