//! # trough-bench: trough against its peers, side by side
//!
//! `bench/run.sh [--preset smoke|small|full] [--scenarios 1,2,...]` builds everything, then runs
//! `trough-bench run`, which generates the data, starts each server on 127.0.0.1, drives it with
//! the closed-loop load generator in [`load`], and prints tables of medians and ratios (also
//! written as JSON; `trough-bench report FILE` prints them again). See BENCHMARKS.md.
//!
//! Scenarios: 1 point lookup and range scan (trough, Datasette, a bare hyper server, rusqlite
//! in-process); 2 writes; 3 sync vs `cp` + `sha256sum`; 4 cluster-wide queries vs one monolithic
//! SQLite file, and router memory while streaming; 5 assignment; 6 scale (many small segments on
//! one node, see [`scale`]).

mod data;
mod fixed;
mod load;
mod procs;
mod results;
mod scale;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trough-bench",
    about = "Benchmarks of trough against its peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and print the tables (use bench/run.sh, which builds and sets up first).
    Run(RunArgs),
    /// The bare hyper server: answers `/NAME` with the file NAME.json of --bodies.
    FixedServer {
        /// Directory of NAME.json bodies.
        #[arg(long)]
        bodies: PathBuf,
    },
    /// Drive `POST /segments/{id}/query` of a running trough with a keyed query (`:id` bound to
    /// a random key below --keys), closed loop, and print throughput and latency. For profiling
    /// a server by hand (e.g. under `perf record -p PID`).
    Load {
        /// Address of the trough server, e.g. 127.0.0.1:6444.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Segment id.
        #[arg(long)]
        segment: String,
        /// SQL with a `:id` parameter.
        #[arg(long, default_value = "SELECT * FROM pages WHERE id = :id")]
        sql: String,
        /// Keys are drawn from 0..keys.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Measuring window, milliseconds (after 500 ms of warm-up).
        #[arg(long, default_value_t = 10_000)]
        duration_ms: u64,
    },
    /// Print the tables of a results file again.
    Report {
        /// A JSON file written by `run`.
        file: PathBuf,
    },
}

/// Options of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Sizes and durations: smoke (CI, about a minute), small, full (by hand; 1 GB segment).
    #[arg(long, default_value = "small")]
    preset: String,
    /// Scenarios to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6")]
    scenarios: Vec<u8>,
    /// The trough binary.
    #[arg(long)]
    trough_bin: PathBuf,
    /// The datasette executable (needed by scenario 1).
    #[arg(long)]
    datasette_bin: Option<PathBuf>,
    /// Where generated data and server data directories go (generated data is reused).
    #[arg(long)]
    work_dir: PathBuf,
    /// Results JSON file.
    #[arg(long)]
    out: PathBuf,
    /// Repository root (for `cargo bench` in scenario 5).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    repo: PathBuf,
    /// Override the preset's number of runs.
    #[arg(long)]
    runs: Option<usize>,
    /// Override the preset's measuring window per load run, in milliseconds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Override the number of segments of scenario 6 (e.g. 100000).
    #[arg(long)]
    scale_segments: Option<usize>,
    /// The command line to record in the results.
    #[arg(long, default_value = "")]
    command: String,
}

/// Sizes and durations of one preset.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Preset {
    /// Name.
    pub name: String,
    /// Runs per measurement (medians are over these).
    pub runs: usize,
    /// Warm-up before each load measurement.
    pub warmup: Duration,
    /// Measuring window of each load measurement.
    pub duration: Duration,
    /// Scenario 1: size of the large segment.
    pub s1_bytes: u64,
    /// Scenario 1: concurrencies.
    pub concurrencies: Vec<usize>,
    /// Scenario 2: rows per batch.
    pub s2_batch: usize,
    /// Scenario 3: segments and size of each.
    pub s3_segments: usize,
    /// Scenario 3: approximate size of each segment.
    pub s3_bytes: u64,
    /// Scenario 4: segments.
    pub s4_segments: usize,
    /// Scenario 4: rows per segment.
    pub s4_rows: u64,
    /// Scenario 5: run `cargo bench -p trough-placement --bench assign` (100,000 segments on
    /// 100 nodes); otherwise the same planner in-process on `s5_segments` / `s5_nodes`.
    pub s5_cargo_bench: bool,
    /// Scenario 5 (in-process): segments.
    pub s5_segments: usize,
    /// Scenario 5 (in-process): nodes.
    pub s5_nodes: usize,
    /// Scenario 6: segments published (`--scale-segments` overrides).
    pub s6_segments: usize,
}

impl Preset {
    fn named(name: &str) -> Result<Self> {
        const MB: u64 = 1_000_000;
        let p = match name {
            "smoke" => Preset {
                name: name.into(),
                runs: 2,
                warmup: Duration::from_millis(100),
                duration: Duration::from_millis(300),
                s1_bytes: 2 * MB,
                concurrencies: vec![1, 16, 64],
                s2_batch: 10_000,
                s3_segments: 200,
                s3_bytes: 32_000,
                s4_segments: 50,
                s4_rows: 2_000,
                s5_cargo_bench: false,
                s5_segments: 10_000,
                s5_nodes: 20,
                s6_segments: 300,
            },
            "small" => Preset {
                name: name.into(),
                runs: 5,
                warmup: Duration::from_millis(500),
                duration: Duration::from_secs(2),
                s1_bytes: 50 * MB,
                concurrencies: vec![1, 16, 64],
                s2_batch: 10_000,
                s3_segments: 200,
                s3_bytes: 500_000,
                s4_segments: 1_000,
                s4_rows: 1_000,
                s5_cargo_bench: true,
                s5_segments: 100_000,
                s5_nodes: 100,
                s6_segments: 2_000,
            },
            "full" => Preset {
                name: name.into(),
                runs: 5,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(5),
                s1_bytes: 1_000 * MB,
                concurrencies: vec![1, 16, 64],
                s2_batch: 10_000,
                s3_segments: 200,
                s3_bytes: 5 * MB,
                s4_segments: 1_000,
                s4_rows: 10_000,
                s5_cargo_bench: true,
                s5_segments: 100_000,
                s5_nodes: 100,
                s6_segments: 10_000,
            },
            other => bail!("unknown preset {other:?} (smoke, small, full)"),
        };
        Ok(p)
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::FixedServer { bodies } => fixed::run(&bodies),
        Cmd::Load {
            addr,
            segment,
            sql,
            keys,
            concurrency,
            duration_ms,
        } => {
            let spec = load::LoadSpec {
                concurrency: concurrency.max(1),
                warmup: Duration::from_millis(500),
                duration: Duration::from_millis(duration_ms.max(1)),
            };
            let path = format!("/segments/{segment}/query");
            let make: load::MakeRequest = std::sync::Arc::new(move |rng: &mut stats::Rng| {
                let body = serde_json::json!({"sql": sql, "params": {"id": rng.below(keys)}});
                load::post(
                    &path,
                    "application/json",
                    serde_json::to_vec(&body).expect("json"),
                )
            });
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(load::http_closed_loop(addr, spec, make))?;
            println!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} errors{}",
                r.throughput,
                r.p50_ms,
                r.p99_ms,
                r.ok,
                r.errors,
                r.first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Report { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let r: results::Report = serde_json::from_str(&text)?;
            print!("{}", r.render());
            Ok(())
        }
        Cmd::Run(args) => {
            let mut preset = Preset::named(&args.preset)?;
            if let Some(r) = args.runs {
                preset.runs = r.max(1);
            }
            if let Some(n) = args.scale_segments {
                preset.s6_segments = n.max(20);
            }
            if let Some(d) = args.duration_ms {
                preset.duration = Duration::from_millis(d.max(1));
            }
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(scenarios::run(args, preset))
        }
    }
}
