//! Results: what is measured, kept as JSON (`bench/results/*.json`) and rendered as tables. The
//! table can be regenerated from the JSON alone (`trough-bench report FILE`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::median;

/// One figure of one system in one case, over several runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario number (1..=5).
    pub scenario: u8,
    /// What was done, e.g. `point c=16`.
    pub case: String,
    /// Which system did it, e.g. `trough`, `datasette`.
    pub system: String,
    /// What is measured, e.g. `req/s`, `rows/s`, `ms`, `MB/s`, `MiB`.
    pub unit: String,
    /// One value per run.
    pub runs: Vec<f64>,
    /// Median of `runs`.
    pub median: f64,
    /// Other per-run figures, by name (e.g. `p50_ms`, `p99_ms`), as medians over runs.
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

/// A ratio between two systems, with its target where the issue sets one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ratio {
    /// Scenario number.
    pub scenario: u8,
    /// What is compared, e.g. `trough / datasette req/s, point c=16`.
    pub name: String,
    /// The ratio of the medians.
    pub value: f64,
    /// The target as text, e.g. `>= 10`.
    pub target: Option<String>,
    /// Whether the target is met (None: no target).
    pub met: Option<bool>,
}

/// Everything one `run` measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Preset name.
    pub preset: String,
    /// The command line that produced it.
    pub command: String,
    /// When it started (seconds since the epoch) and how long it took.
    pub started_unix: u64,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
    /// Machine: cores, CPU model, memory, kernel.
    pub machine: BTreeMap<String, String>,
    /// Parameters of each scenario (sizes, runs, durations), by scenario number.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The figures.
    pub measurements: Vec<Measurement>,
    /// The ratios.
    pub ratios: Vec<Ratio>,
    /// Remarks printed with the tables.
    pub notes: Vec<String>,
}

impl Report {
    /// Records a measurement from its runs.
    pub fn add(
        &mut self,
        scenario: u8,
        case: &str,
        system: &str,
        unit: &str,
        runs: Vec<f64>,
        extra: BTreeMap<String, Vec<f64>>,
    ) {
        self.measurements.push(Measurement {
            scenario,
            case: case.into(),
            system: system.into(),
            unit: unit.into(),
            median: median(&runs),
            runs,
            extra: extra.into_iter().map(|(k, v)| (k, median(&v))).collect(),
        });
    }

    /// The median of a recorded measurement.
    pub fn get(&self, scenario: u8, case: &str, system: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|m| m.scenario == scenario && m.case == case && m.system == system)
            .map(|m| m.median)
    }

    /// Records `a / b` of two recorded measurements; `at_least`/`at_most` set the target.
    pub fn ratio(
        &mut self,
        scenario: u8,
        name: &str,
        (case_a, sys_a): (&str, &str),
        (case_b, sys_b): (&str, &str),
        target: Target,
    ) {
        let (Some(a), Some(b)) = (
            self.get(scenario, case_a, sys_a),
            self.get(scenario, case_b, sys_b),
        ) else {
            return;
        };
        let value = a / b;
        let (target, met) = match target {
            Target::None => (None, None),
            Target::AtLeast(t) => (Some(format!(">= {t}")), Some(value >= t)),
            Target::AtMost(t) => (Some(format!("<= {t}")), Some(value <= t)),
        };
        self.ratios.push(Ratio {
            scenario,
            name: name.into(),
            value,
            target,
            met,
        });
    }

    /// Records one measurement against an absolute target.
    pub fn target(
        &mut self,
        scenario: u8,
        name: &str,
        (case, system): (&str, &str),
        target: Target,
    ) {
        let Some(value) = self.get(scenario, case, system) else {
            return;
        };
        let (target, met) = match target {
            Target::None => (None, None),
            Target::AtLeast(t) => (Some(format!(">= {t}")), Some(value >= t)),
            Target::AtMost(t) => (Some(format!("<= {t}")), Some(value <= t)),
        };
        self.ratios.push(Ratio {
            scenario,
            name: name.into(),
            value,
            target,
            met,
        });
    }

    /// The tables, as Markdown.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "trough benchmarks, preset `{}`", self.preset);
        let _ = writeln!(s);
        let m: Vec<String> = self
            .machine
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(s, "machine: {}", m.join("; "));
        let _ = writeln!(s, "command: `{}`", self.command);
        let _ = writeln!(s);
        let mut scenarios: Vec<u8> = self.measurements.iter().map(|m| m.scenario).collect();
        scenarios.dedup();
        scenarios.sort_unstable();
        scenarios.dedup();
        for sc in scenarios {
            let _ = writeln!(s, "### Scenario {sc}: {}", title(sc));
            if let Some(p) = self.params.get(&sc.to_string()) {
                let _ = writeln!(s, "parameters: `{p}`");
            }
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "| case | system | median | unit | p50 ms | p99 ms | runs | other medians |"
            );
            let _ = writeln!(s, "|---|---|---:|---|---:|---:|---|---|");
            for m in self.measurements.iter().filter(|m| m.scenario == sc) {
                let runs: Vec<String> = m.runs.iter().map(|r| fmt_num(*r)).collect();
                let other: Vec<String> = m
                    .extra
                    .iter()
                    .filter(|(k, v)| {
                        let shown = matches!(k.as_str(), "p50_ms" | "p99_ms");
                        let no_errors = k.as_str() == "errors" && **v == 0.0;
                        !(shown || no_errors)
                    })
                    .map(|(k, v)| format!("{k} {}", fmt_num(*v)))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    m.case,
                    m.system,
                    fmt_num(m.median),
                    m.unit,
                    m.extra
                        .get("p50_ms")
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_default(),
                    m.extra
                        .get("p99_ms")
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_default(),
                    runs.join(", "),
                    other.join(", ")
                );
            }
            let ratios: Vec<&Ratio> = self.ratios.iter().filter(|r| r.scenario == sc).collect();
            if !ratios.is_empty() {
                let _ = writeln!(s);
                let _ = writeln!(s, "| ratio | value | target | met |");
                let _ = writeln!(s, "|---|---:|---|---|");
                for r in ratios {
                    let _ = writeln!(
                        s,
                        "| {} | {:.3} | {} | {} |",
                        r.name,
                        r.value,
                        r.target.as_deref().unwrap_or("-"),
                        match r.met {
                            Some(true) => "yes",
                            Some(false) => "**NO**",
                            None => "-",
                        }
                    );
                }
            }
            let _ = writeln!(s);
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// A ratio's target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// No target: informational.
    None,
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

/// The scenario's title.
pub fn title(sc: u8) -> &'static str {
    match sc {
        1 => "point lookup and 100-row range scan on one large segment",
        2 => "writes: 10,000-row batch in one execute; single-statement executes",
        3 => "sync: download + verify + swap of 200 segments vs cp + sha256sum",
        4 => {
            "cluster-wide POST /query vs one monolithic SQLite file; router memory while streaming"
        }
        5 => "assignment of segments to nodes",
        6 => "scale: many 8 KB segments on one node (publish, misses, listings, restart)",
        _ => "?",
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
