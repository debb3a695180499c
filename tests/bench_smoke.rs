//! CI smoke test of the benchmarks: `bench/run.sh --preset smoke` with the debug `trough` binary
//! this test suite already built (TROUGH_BIN), so no release build happens here. It checks that
//! the run exits 0, printed the tables of every scenario and wrote its results as JSON. No
//! thresholds: the figures of a smoke run on a shared machine mean nothing.
//!
//! Scenario 1 compares with Datasette, which `bench/run.sh` installs from PyPI into
//! `~/.cache/trough-tools/bench-venv`; if it cannot, the run (and this test) fails loudly.

use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn smoke_preset_runs_every_scenario_and_prints_the_tables() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::Builder::new()
        .prefix("trough-bench-smoke-")
        .tempdir()
        .expect("temp dir");
    let out = tmp.path().join("smoke.json");
    let started = Instant::now();
    let run = Command::new("bash")
        .arg(format!("{root}/bench/run.sh"))
        .args(["--preset", "smoke", "--out"])
        .arg(&out)
        .arg("--work-dir")
        .arg(tmp.path().join("work"))
        .env("TROUGH_BIN", env!("CARGO_BIN_EXE_trough"))
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run bench/run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "bench/run.sh --preset smoke failed ({}); stdout:\n{stdout}",
        run.status
    );
    for sc in 1..=6 {
        assert!(
            stdout.contains(&format!("### Scenario {sc}:")),
            "no table for scenario {sc} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("| case | system | median |"), "{stdout}");
    assert!(
        stdout.contains("| ratio | value | target | met |"),
        "{stdout}"
    );
    for system in [
        "trough",
        "datasette",
        "hyper-fixed",
        "rusqlite",
        "cp+sha256sum",
        "monolith",
    ] {
        assert!(
            stdout.contains(&format!("| {system} |")),
            "no {system} row in:\n{stdout}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("results JSON written"))
            .expect("results are JSON");
    assert_eq!(json["preset"], "smoke");
    let measurements = json["measurements"].as_array().expect("measurements");
    assert!(
        measurements.len() >= 30,
        "{} measurements",
        measurements.len()
    );
    assert!(
        measurements
            .iter()
            .all(|m| m["runs"].as_array().is_some_and(|r| !r.is_empty())),
        "a measurement without runs: {json}"
    );
    // Informational only (no timing is asserted): it should take about a minute on two cores.
    println!("smoke benchmark took {:?}", started.elapsed());
}
