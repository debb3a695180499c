//! The five scenarios. Every comparison is interleaved: each run measures every system in turn
//! (the order rotates from run to run), so that other work on the machine affects them alike,
//! and the tables report medians over runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

use crate::load::{self, LoadResult, LoadSpec, MakeRequest};
use crate::procs::{self, Proc};
use crate::results::{Report, Target};
use crate::stats::Rng;
use crate::{data, Preset, RunArgs};

/// What every scenario needs.
struct Ctx {
    args: RunArgs,
    p: Preset,
}

impl Ctx {
    /// A fresh (emptied) directory under the work directory.
    fn scratch(&self, name: &str) -> Result<PathBuf> {
        let d = self.args.work_dir.join("run").join(name);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_file(d.with_extension("log"));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn data(&self, name: &str) -> PathBuf {
        self.args.work_dir.join("data").join(name)
    }

    fn spec(&self, concurrency: usize) -> LoadSpec {
        LoadSpec {
            concurrency,
            warmup: self.p.warmup,
            duration: self.p.duration,
        }
    }
}

/// Runs the chosen scenarios, writing the results after each and printing the tables at the end.
pub async fn run(args: RunArgs, p: Preset) -> Result<()> {
    let started = Instant::now();
    let mut rep = Report {
        preset: p.name.clone(),
        command: args.command.clone(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        machine: machine(),
        ..Report::default()
    };
    let scenarios = args.scenarios.clone();
    let ctx = Ctx { args, p };
    if let Some(d) = ctx.args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    for sc in scenarios {
        let t = Instant::now();
        eprintln!("== scenario {sc}: {}", crate::results::title(sc));
        match sc {
            1 => s1(&ctx, &mut rep).await,
            2 => s2(&ctx, &mut rep).await,
            3 => s3(&ctx, &mut rep).await,
            4 => s4(&ctx, &mut rep).await,
            5 => s5(&ctx, &mut rep),
            6 => {
                crate::scale::run(&ctx.p, &ctx.args.work_dir, &ctx.args.trough_bin, &mut rep).await
            }
            other => Err(anyhow!("no scenario {other} (1..=6)")),
        }
        .with_context(|| format!("scenario {sc}"))?;
        eprintln!(
            "== scenario {sc} done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        rep.elapsed_secs = started.elapsed().as_secs_f64();
        std::fs::write(&ctx.args.out, serde_json::to_string_pretty(&rep)?)?;
    }
    println!("{}", rep.render());
    println!("results: {}", ctx.args.out.display());
    Ok(())
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    m.insert("cores".into(), cores.to_string());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    m.insert("cpu".into(), model);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(kb) = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
    {
        m.insert(
            "memory".into(),
            format!("{:.1} GiB", kb as f64 / (1u64 << 20) as f64),
        );
    }
    if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        m.insert("kernel".into(), k.trim().to_owned());
    }
    m
}

/// Collects per-run values of one (case, system) before they are recorded.
#[derive(Default)]
struct Runs(BTreeMap<(String, String), Series>);

/// Unit, per-run values, and per-run extra figures of one (case, system).
type Series = (String, Vec<f64>, BTreeMap<String, Vec<f64>>);

impl Runs {
    fn push(&mut self, case: &str, system: &str, unit: &str, v: f64, extra: &[(&str, f64)]) {
        let e = self
            .0
            .entry((case.to_owned(), system.to_owned()))
            .or_insert_with(|| (unit.to_owned(), Vec::new(), BTreeMap::new()));
        e.1.push(v);
        for (k, x) in extra {
            e.2.entry((*k).to_owned()).or_default().push(*x);
        }
    }

    fn load(&mut self, case: &str, system: &str, r: &LoadResult) {
        eprintln!(
            "   {case:<18} {system:<12} {:>10.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
            r.throughput,
            r.p50_ms,
            r.p99_ms,
            if r.errors > 0 {
                format!(
                    "  {} ERRORS, first: {}",
                    r.errors,
                    r.first_error.as_deref().unwrap_or("")
                )
            } else {
                String::new()
            }
        );
        self.push(
            case,
            system,
            "req/s",
            r.throughput,
            &[
                ("p50_ms", r.p50_ms),
                ("p99_ms", r.p99_ms),
                ("errors", r.errors as f64),
            ],
        );
    }

    /// Records everything in `order` of cases (then systems as given).
    fn record(self, rep: &mut Report, sc: u8, cases: &[String], systems: &[&str]) {
        let mut map = self.0;
        for c in cases {
            for s in systems {
                if let Some((unit, runs, extra)) = map.remove(&(c.clone(), (*s).to_owned())) {
                    rep.add(sc, c, s, &unit, runs, extra);
                }
            }
        }
        for ((c, s), (unit, runs, extra)) in map {
            rep.add(sc, &c, &s, &unit, runs, extra);
        }
    }
}

/// The systems in a rotating order (run `run` starts with the `run`-th).
fn rotated<'a>(systems: &[&'a str], run: usize) -> Vec<&'a str> {
    let mut v = systems.to_vec();
    let n = v.len();
    v.rotate_left(run % n);
    v
}

// ---------------------------------------------------------------------------------------------
// Scenario 1: point lookup and range scan.

const POINT_SQL: &str = "SELECT * FROM pages WHERE id = :id";
const RANGE_SQL: &str = "SELECT * FROM pages WHERE id >= :id ORDER BY id LIMIT 100";

fn trough_query_body(sql: &str, id: u64) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({"sql": sql, "params": {"id": id}})).expect("json"))
}

fn datasette_path(db: &str, sql: &str, id: u64) -> String {
    let enc: String = url::form_urlencoded::byte_serialize(sql.as_bytes()).collect();
    format!("/{db}.json?sql={enc}&_shape=array&id={id}")
}

async fn s1(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let p = &ctx.p;
    let db = ctx.data(&format!("s1-{}/big.sqlite", p.s1_bytes));
    let t = Instant::now();
    let rows = data::pages(&db, p.s1_bytes, 0)?;
    let size = std::fs::metadata(&db)?.len();
    eprintln!(
        "   segment {}: {rows} rows, {:.1} MB (ready in {:.1} s)",
        db.display(),
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    rep.params.insert(
        "1".into(),
        json!({"segment_bytes": size, "rows": rows, "runs": p.runs,
               "warmup_ms": p.warmup.as_millis() as u64, "window_ms": p.duration.as_millis() as u64,
               "concurrency": p.concurrencies, "point_sql": POINT_SQL, "range_sql": RANGE_SQL,
               "load_generator": "closed loop, 1 thread (tokio current_thread), 1 HTTP/1.1 keep-alive connection per worker"}),
    );
    let datasette_bin = ctx.args.datasette_bin.clone().ok_or_else(|| {
        anyhow!("scenario 1 needs --datasette-bin (bench/setup-datasette.sh installs it)")
    })?;

    // trough
    let tdir = ctx.scratch("s1-trough")?;
    let trough = procs::trough(&ctx.args.trough_bin, &tdir, &[], &[]).await?;
    let t = Instant::now();
    procs::publish(&trough.url(), "big", &db).await?;
    procs::wait_verified(
        &trough.url(),
        1,
        Duration::from_millis(20),
        Duration::from_secs(3600),
    )
    .await?;
    eprintln!(
        "   published and verified in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Datasette, on the same file.
    let ds_log = ctx.args.work_dir.join("run/s1-datasette.log");
    let ds = procs::datasette(&datasette_bin, &db, &ds_log).await?;

    // The bare hyper server answers trough's own answers for a typical key.
    let bodies = ctx.scratch("s1-bodies")?;
    let mid = rows / 2;
    let mut answers = BTreeMap::new();
    for (name, sql) in [("point", POINT_SQL), ("range100", RANGE_SQL)] {
        let r = procs::client()
            .post(format!("{}/segments/big/query", trough.url()))
            .header("content-type", "application/json")
            .body(trough_query_body(sql, mid))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("trough query: {} {}", r.status(), r.text().await?);
        }
        let b = r.bytes().await?;
        std::fs::write(bodies.join(format!("{name}.json")), &b)?;
        // Same rows from Datasette?
        let d = procs::client()
            .get(format!("{}{}", ds.url(), datasette_path("big", sql, mid)))
            .send()
            .await?;
        let (status, dt) = (d.status(), d.text().await?);
        let tv: Value = serde_json::from_slice(&b)?;
        let dv: Value =
            serde_json::from_str(&dt).with_context(|| format!("datasette {status}: {dt}"))?;
        if tv != dv {
            bail!("trough and Datasette disagree on {sql} (id {mid}):\n{tv}\n{dv}");
        }
        answers.insert(name, b.len());
    }
    eprintln!("   trough and Datasette return the same rows; answer sizes {answers:?}");
    let fixed = procs::fixed_server(&bodies, &ctx.args.work_dir.join("run/s1-fixed.log"))?;

    let systems = ["trough", "datasette", "hyper-fixed", "rusqlite"];
    let queries = [("point", POINT_SQL), ("range100", RANGE_SQL)];
    let mut runs = Runs::default();
    let mut cases = Vec::new();
    for (q, _) in queries {
        for c in &p.concurrencies {
            cases.push(format!("{q} c={c}"));
        }
    }
    for run in 0..p.runs {
        eprintln!("   run {}/{}", run + 1, p.runs);
        for (q, sql) in queries {
            let span = if q == "point" {
                rows
            } else {
                rows.saturating_sub(100).max(1)
            };
            for &c in &p.concurrencies {
                let case = format!("{q} c={c}");
                for sys in rotated(&systems, run) {
                    let r = match sys {
                        "trough" => {
                            http(&trough, ctx.spec(c), move |rng| {
                                load::post(
                                    "/segments/big/query",
                                    "application/json",
                                    trough_query_body(sql, rng.below(span)),
                                )
                            })
                            .await?
                        }
                        "datasette" => {
                            http(&ds, ctx.spec(c), move |rng| {
                                load::get(&datasette_path("big", sql, rng.below(span)))
                            })
                            .await?
                        }
                        "hyper-fixed" => {
                            http(&fixed, ctx.spec(c), move |rng| {
                                load::post(
                                    &format!("/{q}"),
                                    "application/json",
                                    trough_query_body(sql, rng.below(span)),
                                )
                            })
                            .await?
                        }
                        _ => engine_reads(&db, sql, span, ctx.spec(c))?,
                    };
                    runs.load(&case, sys, &r);
                }
            }
        }
    }
    runs.record(rep, 1, &cases, &systems);
    for (q, _) in queries {
        for &c in &p.concurrencies {
            let case = format!("{q} c={c}");
            let (t_ds, t_hy) = if c == 16 {
                (Target::AtLeast(10.0), Target::AtLeast(0.5))
            } else {
                (Target::None, Target::None)
            };
            rep.ratio(
                1,
                &format!("trough / datasette req/s, {case}"),
                (&case, "trough"),
                (&case, "datasette"),
                t_ds,
            );
            rep.ratio(
                1,
                &format!("trough / hyper-fixed req/s, {case}"),
                (&case, "trough"),
                (&case, "hyper-fixed"),
                t_hy,
            );
            rep.ratio(
                1,
                &format!("trough / rusqlite in-process req/s, {case}"),
                (&case, "trough"),
                (&case, "rusqlite"),
                Target::None,
            );
        }
    }
    drop((trough, ds, fixed));
    Ok(())
}

async fn http(
    target: &Proc,
    spec: LoadSpec,
    make: impl Fn(&mut Rng) -> hyper::Request<http_body_util::Full<Bytes>> + Send + Sync + 'static,
) -> Result<LoadResult> {
    let make: MakeRequest = Arc::new(make);
    let r = load::http_closed_loop(target.addr, spec, make).await?;
    if r.ok == 0 {
        bail!(
            "{} at {}: no request succeeded (first error: {}); its log {}:\n{}",
            target.name,
            target.addr,
            r.first_error.as_deref().unwrap_or("none"),
            target.log.display(),
            procs::tail(&target.log)
        );
    }
    Ok(r)
}

/// The engine limit: the same query in-process, one read-only connection per worker, values
/// read but not encoded.
fn engine_reads(db: &Path, sql: &str, span: u64, spec: LoadSpec) -> Result<LoadResult> {
    load::inproc_closed_loop(
        spec,
        || {
            Ok(Connection::open_with_flags(
                db,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?)
        },
        |conn, rng| {
            let mut stmt = conn.prepare_cached(sql)?;
            let n = stmt.column_count();
            let mut rows = stmt.query(rusqlite::named_params! {":id": rng.below(span) as i64})?;
            let mut bytes = 0usize;
            while let Some(r) = rows.next()? {
                for i in 0..n {
                    bytes += match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            t.len()
                        }
                        _ => 8,
                    };
                }
            }
            std::hint::black_box(bytes);
            Ok(())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: writes.

const W_SCHEMA: &str = "CREATE TABLE w(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL)";
const W_INSERT: &str = "INSERT INTO w(a, b, c) VALUES (?, ?, ?)";

fn w_row(rng: &mut Rng) -> (String, i64, f64) {
    let x = rng.next_u64();
    (
        format!("row-{x:016x}"),
        (x >> 16) as i64 % 1_000_000,
        (x % 10_000) as f64 / 7.0,
    )
}

async fn s2(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let p = &ctx.p;
    let n = p.s2_batch;
    rep.params.insert(
        "2".into(),
        json!({"batch_rows": n, "runs": p.runs, "window_ms": p.duration.as_millis() as u64,
               "schema": W_SCHEMA, "insert": W_INSERT,
               "durability": "trough default writer.synchronous = full (WAL); the in-process peer uses WAL + synchronous=FULL too"}),
    );
    let tdir = ctx.scratch("s2-trough")?;
    let trough = procs::trough(&ctx.args.trough_bin, &tdir, &[], &[]).await?;
    let url = trough.url();
    procs::post_json(
        &format!("{url}/segments/w/provision"),
        &json!({"schema_sql": W_SCHEMA}),
    )
    .await?;
    let mut rng = Rng::new(99);
    let batch: Vec<(String, i64, f64)> = (0..n).map(|_| w_row(&mut rng)).collect();
    let body = json!({"sql": W_INSERT, "batch": batch.iter().map(|(a, b, c)| json!([a, b, c])).collect::<Vec<_>>()});
    let inproc_dir = ctx.scratch("s2-rusqlite")?;
    let open_w = |name: &str| -> Result<Connection> {
        let c = Connection::open(inproc_dir.join(name))?;
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") || sync != 2 {
            bail!(
                "in-process writer: journal_mode {mode}, synchronous {sync}; wanted wal, 2 (full)"
            );
        }
        c.busy_timeout(Duration::from_secs(10))?;
        c.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {}",
            &W_SCHEMA["CREATE TABLE ".len()..]
        ))?;
        Ok(c)
    };
    let mut runs = Runs::default();
    let batch_case = format!("batch of {n} rows");
    let systems = ["trough", "rusqlite"];
    for run in 0..p.runs {
        eprintln!("   run {}/{}", run + 1, p.runs);
        for sys in rotated(&systems, run) {
            let t = Instant::now();
            if sys == "trough" {
                let v = procs::post_json(&format!("{url}/segments/w/execute"), &body).await?;
                if v["rows_affected"] != json!(n) {
                    bail!("batch execute answered {v}");
                }
            } else {
                let mut c = open_w("batch.sqlite")?;
                let tx = c.transaction()?;
                {
                    let mut ins = tx.prepare(W_INSERT)?;
                    for (a, b, cc) in &batch {
                        ins.execute(rusqlite::params![a, b, cc])?;
                    }
                }
                tx.commit()?;
            }
            let dt = t.elapsed().as_secs_f64();
            eprintln!(
                "   {batch_case:<18} {sys:<12} {:>10.0} rows/s ({:.1} ms)",
                n as f64 / dt,
                dt * 1e3
            );
            runs.push(
                &batch_case,
                sys,
                "rows/s",
                n as f64 / dt,
                &[("p50_ms", dt * 1e3)],
            );
        }
        for c in [1usize, 16] {
            let case = format!("single INSERT c={c}");
            let order: Vec<&str> = if c == 1 {
                rotated(&systems, run)
            } else {
                vec!["trough"]
            };
            for sys in order {
                let r = if sys == "trough" {
                    http(&trough, ctx.spec(c), |rng| {
                        let (a, b, cc) = w_row(rng);
                        let body =
                            serde_json::to_vec(&json!({"sql": W_INSERT, "params": [a, b, cc]}))
                                .expect("json");
                        load::post("/segments/w/execute", "application/json", body)
                    })
                    .await?
                } else {
                    load::inproc_closed_loop(
                        ctx.spec(c),
                        || open_w("single.sqlite"),
                        |conn, rng| {
                            let (a, b, cc) = w_row(rng);
                            conn.prepare_cached(W_INSERT)?
                                .execute(rusqlite::params![a, b, cc])?;
                            Ok(())
                        },
                    )?
                };
                runs.load(&case, sys, &r);
            }
        }
    }
    let cases = vec![
        batch_case.clone(),
        "single INSERT c=1".into(),
        "single INSERT c=16".into(),
    ];
    runs.record(rep, 2, &cases, &systems);
    rep.ratio(
        2,
        &format!("trough / rusqlite rows/s, {batch_case}"),
        (&batch_case, "trough"),
        (&batch_case, "rusqlite"),
        Target::None,
    );
    rep.ratio(
        2,
        "trough / rusqlite req/s, single INSERT c=1",
        ("single INSERT c=1", "trough"),
        ("single INSERT c=1", "rusqlite"),
        Target::None,
    );
    rep.notes.push(
        "scenario 2: the in-process peer runs single INSERTs at c=1 only: SQLite has one writer, \
         and trough's c=16 figure shows what concurrent clients get from it"
            .into(),
    );
    drop(trough);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario 3: sync.

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files_under(&p, ext, out)?;
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    Ok(())
}

async fn s3(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let p = &ctx.p;
    let t = Instant::now();
    let files = data::sync_segments(
        &ctx.data(&format!("s3-{}x{}", p.s3_segments, p.s3_bytes)),
        p.s3_segments,
        p.s3_bytes,
    )?;
    eprintln!(
        "   {} segment files ready in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    let objects = ctx.scratch("s3-objects")?;
    let store = format!("file://{}", objects.canonicalize()?.display());
    let publisher = procs::trough(
        &ctx.args.trough_bin,
        &ctx.scratch("s3-publisher")?,
        &["--object-store", &store],
        &[],
    )
    .await?;
    let t = Instant::now();
    procs::publish_all(&publisher.url(), &files, 4).await?;
    procs::wait_verified(
        &publisher.url(),
        files.len(),
        Duration::from_millis(50),
        Duration::from_secs(3600),
    )
    .await?;
    eprintln!(
        "   published {} segments in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    publisher.stop();
    let mut objs = Vec::new();
    files_under(&objects, "sqlite", &mut objs)?;
    if objs.len() != files.len() {
        bail!(
            "expected {} segment objects under {}, found {}",
            files.len(),
            objects.display(),
            objs.len()
        );
    }
    let total: u64 = objs
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    rep.params.insert(
        "3".into(),
        json!({"segments": objs.len(), "total_bytes": total, "runs": p.runs,
               "object_store": "file:// (local directory; page cache warm for both systems)",
               "trough": "fresh `trough serve` on an empty data dir pointing at the object store; time from spawn until /health shows every copy verified (polled every 10 ms)",
               "peer": "cp of the same object files into an empty directory, then sha256sum of the copies"}),
    );
    let mut runs = Runs::default();
    let systems = ["trough", "cp+sha256sum"];
    for run in 0..p.runs {
        for sys in rotated(&systems, run) {
            let dst = ctx.scratch(&format!(
                "s3-{}-{run}",
                if sys == "trough" { "node" } else { "cp" }
            ))?;
            let t = Instant::now();
            let mut extra = Vec::new();
            if sys == "trough" {
                let node =
                    procs::trough(&ctx.args.trough_bin, &dst, &["--object-store", &store], &[])
                        .await?;
                extra.push(("startup_ms", t.elapsed().as_secs_f64() * 1e3));
                procs::wait_verified(
                    &node.url(),
                    objs.len(),
                    Duration::from_millis(10),
                    Duration::from_secs(3600),
                )
                .await?;
                let dt = t.elapsed().as_secs_f64();
                node.stop();
                runs.push(
                    "200 segments",
                    sys,
                    "MB/s",
                    total as f64 / dt / 1e6,
                    &[("p50_ms", dt * 1e3), extra[0]],
                );
                // The same, counted from the moment the new process answered /health.
                let after = dt - extra[0].1 / 1e3;
                runs.push(
                    "200 segments",
                    "trough, after start-up",
                    "MB/s",
                    total as f64 / after / 1e6,
                    &[("p50_ms", after * 1e3)],
                );
                eprintln!(
                    "   {sys:<14} {:>8.1} MB/s ({:.0} ms, startup {:.0} ms)",
                    total as f64 / dt / 1e6,
                    dt * 1e3,
                    extra[0].1
                );
            } else {
                let status = Command::new("sh")
                    .arg("-c")
                    .arg("dst=$1; shift; cp -- \"$@\" \"$dst\"/ && cd \"$dst\" && sha256sum -- * > /dev/null")
                    .arg("sh")
                    .arg(&dst)
                    .args(&objs)
                    .status()?;
                if !status.success() {
                    bail!("cp + sha256sum failed: {status}");
                }
                let dt = t.elapsed().as_secs_f64();
                runs.push(
                    "200 segments",
                    sys,
                    "MB/s",
                    total as f64 / dt / 1e6,
                    &[("p50_ms", dt * 1e3)],
                );
                eprintln!(
                    "   {sys:<14} {:>8.1} MB/s ({:.0} ms)",
                    total as f64 / dt / 1e6,
                    dt * 1e3
                );
            }
            let _ = std::fs::remove_dir_all(&dst);
        }
    }
    runs.record(
        rep,
        3,
        &["200 segments".into()],
        &["trough", "trough, after start-up", "cp+sha256sum"],
    );
    rep.ratio(
        3,
        "trough / (cp + sha256sum) MB/s",
        ("200 segments", "trough"),
        ("200 segments", "cp+sha256sum"),
        Target::AtLeast(0.7),
    );
    rep.ratio(
        3,
        "trough after start-up / (cp + sha256sum) MB/s",
        ("200 segments", "trough, after start-up"),
        ("200 segments", "cp+sha256sum"),
        Target::None,
    );
    rep.notes.push("scenario 3: the p50 ms column holds the median wall time of one complete sync (or copy + hash) of all segments; `trough` counts from spawning the process (start-up includes reconciling the catalog with the object store), `trough, after start-up` from its first /health answer".into());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: cluster-wide queries and router memory.

const GROUP_SQL: &str =
    "SELECT g, count(*) AS n, sum(a) AS s, avg(b) AS av FROM t GROUP BY g ORDER BY g";
const TOPN_SQL: &str = "SELECT id, g, a FROM t ORDER BY a DESC, id LIMIT 10";
const STREAM_SQL: &str = "SELECT id, g, a, b FROM t";

/// `POST /query` over every segment; checks that all `n` answered.
async fn fed(url: &str, sql: &str, n: usize) -> Result<Vec<Value>> {
    let v = procs::post_json(
        &format!("{url}/query"),
        &json!({"sql": sql, "segments": "*"}),
    )
    .await?;
    if v["segments"]["answered"] != json!(n) {
        bail!("POST /query: not every segment answered: {}", v["segments"]);
    }
    Ok(v["rows"].as_array().cloned().unwrap_or_default())
}

fn mono_rows(c: &Connection, sql: &str) -> Result<Vec<Vec<rusqlite::types::Value>>> {
    let mut stmt = c.prepare_cached(sql)?;
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| {
        (0..n)
            .map(|i| r.get::<_, rusqlite::types::Value>(i))
            .collect()
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn same(fed: &[Value], mono: &[Vec<rusqlite::types::Value>]) -> bool {
    use rusqlite::types::Value as V;
    fed.len() == mono.len()
        && fed.iter().zip(mono).all(|(f, m)| {
            let f: Vec<&Value> = f
                .as_object()
                .map(|o| o.values().collect())
                .unwrap_or_default();
            f.len() == m.len()
                && f.iter().zip(m).all(|(a, b)| match b {
                    V::Integer(i) => a.as_i64() == Some(*i),
                    V::Real(x) => a
                        .as_f64()
                        .is_some_and(|y| (x - y).abs() <= 1e-9 * x.abs().max(1.0)),
                    V::Text(s) => a.as_str() == Some(s),
                    V::Null => a.is_null(),
                    V::Blob(_) => true,
                })
        })
}

async fn s4(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let p = &ctx.p;
    let t = Instant::now();
    let (files, mono) = data::t_segments(
        &ctx.data(&format!("s4-{}x{}", p.s4_segments, p.s4_rows)),
        p.s4_segments,
        p.s4_rows,
    )?;
    let total_rows = p.s4_segments as u64 * p.s4_rows;
    eprintln!(
        "   {} segments + monolith ({total_rows} rows) ready in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    let stream_runs = p.runs.min(3);
    rep.params.insert(
        "4".into(),
        json!({"segments": files.len(), "rows_per_segment": p.s4_rows, "total_rows": total_rows,
               "runs": p.runs, "stream_runs": stream_runs,
               "group_by_sql": GROUP_SQL, "order_limit_sql": TOPN_SQL, "stream_sql": STREAM_SQL,
               "monolith_bytes": std::fs::metadata(&mono)?.len(),
               "trough": "one `trough serve` (router, reader and synchronizer in one process) holding every segment; default limits (scatter concurrency 16)",
               "memory": "VmHWM of the serve process (router + reader), restarted before each streaming run; query timeout raised to 1 h for the stream"}),
    );
    let dir = ctx.scratch("s4-trough")?;
    let trough = procs::trough(&ctx.args.trough_bin, &dir, &[], &[]).await?;
    let url = trough.url();
    let t = Instant::now();
    procs::publish_all(&url, &files, 4).await?;
    procs::wait_verified(
        &url,
        files.len(),
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )
    .await?;
    eprintln!(
        "   published {} segments in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    let conn = Connection::open_with_flags(&mono, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let queries = [("group-by", GROUP_SQL), ("order-by-limit", TOPN_SQL)];
    let n = files.len();
    // Warm both up once, and check they agree.
    for (name, sql) in queries {
        let (f, m) = (fed(&url, sql, n).await?, mono_rows(&conn, sql)?);
        if !same(&f, &m) {
            bail!(
                "{name}: federation and monolith disagree ({} vs {} rows)",
                f.len(),
                m.len()
            );
        }
    }
    eprintln!("   federation and monolith return the same rows");
    let mut runs = Runs::default();
    let systems = ["trough", "monolith"];
    for run in 0..p.runs {
        for (name, sql) in queries {
            for sys in rotated(&systems, run) {
                let t = Instant::now();
                if sys == "trough" {
                    std::hint::black_box(fed(&url, sql, n).await?);
                } else {
                    std::hint::black_box(mono_rows(&conn, sql)?);
                }
                let ms = t.elapsed().as_secs_f64() * 1e3;
                eprintln!("   {name:<16} {sys:<10} {ms:>9.1} ms");
                runs.push(name, sys, "ms", ms, &[]);
            }
        }
    }
    trough.stop();

    // Streaming every row as NDJSON, on a freshly started process each time. First one query
    // that touches every segment (so the reader's connection pools are open), then the stream.
    let stream_case = format!("stream {total_rows} rows (NDJSON)");
    for run in 0..stream_runs {
        let node = procs::trough(
            &ctx.args.trough_bin,
            &dir,
            &[],
            &[("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "3600000")],
        )
        .await?;
        procs::wait_verified(
            &node.url(),
            files.len(),
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )
        .await?;
        let started = node.vm_hwm_bytes()?;
        fed(&node.url(), COUNT_SQL, n).await?;
        let touched = node.vm_hwm_bytes()?;
        let (dt, peak) = stream(&node, &[&node], total_rows).await?;
        node.stop();
        eprintln!(
            "   stream run {} (serve): {:.0} rows/s, VmHWM {:.1} MiB (after start-up {:.1}, after one query over every segment {:.1})",
            run + 1,
            total_rows as f64 / dt,
            mib(peak[0]),
            mib(started),
            mib(touched)
        );
        runs.push(
            &stream_case,
            "serve rows/s",
            "rows/s",
            total_rows as f64 / dt,
            &[("p50_ms", dt * 1e3)],
        );
        runs.push(
            &stream_case,
            "serve VmHWM",
            "MiB",
            mib(peak[0]),
            &[
                ("startup_vmhwm_mib", mib(started)),
                ("touched_vmhwm_mib", mib(touched)),
            ],
        );
    }

    // The same stream through a router process of its own (Consul cluster: one reader node
    // holding every segment, one router), so the router's memory is measured alone.
    split_cluster(
        ctx,
        &files,
        total_rows,
        stream_runs,
        &stream_case,
        &mut runs,
    )
    .await?;

    runs.push(&stream_case, "target", "MiB", 200.0, &[]);
    let cases = vec![
        "group-by".to_owned(),
        "order-by-limit".into(),
        stream_case.clone(),
    ];
    runs.record(
        rep,
        4,
        &cases,
        &[
            "trough",
            "monolith",
            "serve rows/s",
            "serve VmHWM",
            "router rows/s",
            "router VmHWM",
            "reader VmHWM",
            "target",
        ],
    );
    for (name, _) in queries {
        rep.ratio(
            4,
            &format!("federation / monolith time, {name}"),
            (name, "trough"),
            (name, "monolith"),
            Target::AtMost(2.0),
        );
    }
    rep.ratio(
        4,
        "router process VmHWM / 200 MiB while streaming",
        (&stream_case, "router VmHWM"),
        (&stream_case, "target"),
        Target::AtMost(1.0),
    );
    rep.ratio(
        4,
        "serve process (router + reader) VmHWM / 200 MiB while streaming",
        (&stream_case, "serve VmHWM"),
        (&stream_case, "target"),
        Target::None,
    );
    Ok(())
}

const COUNT_SQL: &str = "SELECT count(*) AS n FROM t";

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Streams every row of `STREAM_SQL` from `target` as NDJSON, checks the row count, and returns
/// the time taken and the VmHWM of each of `watch` afterwards.
async fn stream(target: &Proc, watch: &[&Proc], total_rows: u64) -> Result<(f64, Vec<u64>)> {
    let t = Instant::now();
    let resp = procs::client()
        .post(format!("{}/query", target.url()))
        .header("accept", "application/x-ndjson")
        .json(&json!({"sql": STREAM_SQL, "segments": "*"}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("stream: {} {}", resp.status(), resp.text().await?);
    }
    let mut lines = 0u64;
    let mut last = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        last = chunk.to_vec();
    }
    let dt = t.elapsed().as_secs_f64();
    let peaks = watch
        .iter()
        .map(|p| p.vm_hwm_bytes())
        .collect::<Result<Vec<_>>>()?;
    if lines != total_rows + 1 {
        bail!(
            "stream: {lines} lines for {total_rows} rows; tail: {}",
            String::from_utf8_lossy(&last)
        );
    }
    Ok((dt, peaks))
}

/// Scenario 4's stream through `trough router` alone: Consul (`consul agent -dev`, from the test
/// tools), one `trough node --roles reader,sync-server` holding every segment, and a router
/// started afresh for each run. All share one `file://` object store.
async fn split_cluster(
    ctx: &Ctx,
    files: &[(String, PathBuf)],
    total_rows: u64,
    stream_runs: usize,
    stream_case: &str,
    runs: &mut Runs,
) -> Result<()> {
    let consul = std::panic::catch_unwind(trough_testkit::ConsulAgent::start).map_err(|_| {
        anyhow!("could not start Consul (scripts/install-test-deps.sh installs it); scenario 4 needs it to run a router alone")
    })?;
    let objects = ctx.scratch("s4-cluster-objects")?;
    let store = format!("file://{}", objects.canonicalize()?.display());
    let curl = consul.url();
    let common = ["--consul", curl.as_str(), "--object-store", store.as_str()];
    let env = [("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "3600000")];
    let reader = procs::trough_cmd(
        &ctx.args.trough_bin,
        &["node", "--roles", "reader,sync-server"],
        &ctx.scratch("s4-cluster-reader")?,
        &[&common[..], &["--node-name", "reader-1"]].concat(),
        &env,
    )
    .await?;
    let t = Instant::now();
    procs::publish_all(&reader.url(), files, 4).await?;
    procs::wait_verified(
        &reader.url(),
        files.len(),
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )
    .await?;
    eprintln!(
        "   cluster: published {} segments to the reader node in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    for run in 0..stream_runs {
        let name = format!("router-{}", run + 1);
        let router = procs::trough_cmd(
            &ctx.args.trough_bin,
            &["router"],
            &ctx.scratch(&format!("s4-cluster-{name}"))?,
            &[&common[..], &["--node-name", name.as_str()]].concat(),
            &env,
        )
        .await?;
        // Until the router's view of the cluster has the reader, the query fails: retry.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match fed(&router.url(), COUNT_SQL, files.len()).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context("router never answered"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let touched = router.vm_hwm_bytes()?;
        let (dt, peaks) = stream(&router, &[&router, &reader], total_rows).await?;
        router.stop();
        eprintln!(
            "   stream run {} (router alone): {:.0} rows/s, router VmHWM {:.1} MiB (after one query {:.1}), reader VmHWM {:.1} MiB",
            run + 1,
            total_rows as f64 / dt,
            mib(peaks[0]),
            mib(touched),
            mib(peaks[1])
        );
        runs.push(
            stream_case,
            "router rows/s",
            "rows/s",
            total_rows as f64 / dt,
            &[("p50_ms", dt * 1e3)],
        );
        runs.push(
            stream_case,
            "router VmHWM",
            "MiB",
            mib(peaks[0]),
            &[("touched_vmhwm_mib", mib(touched))],
        );
        runs.push(stream_case, "reader VmHWM", "MiB", mib(peaks[1]), &[]);
    }
    reader.stop();
    drop(consul);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario 5: assignment.

fn s5(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let p = &ctx.p;
    if p.s5_cargo_bench {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let cmd = "cargo bench -p trough-placement --bench assign";
        eprintln!("   {cmd}");
        let out = Command::new(&cargo)
            .args(["bench", "-p", "trough-placement", "--bench", "assign"])
            .current_dir(&ctx.args.repo)
            .output()
            .with_context(|| format!("run {cmd}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{cmd} failed: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprint!("{text}");
        rep.params
            .insert("5".into(), json!({"command": cmd, "output": text}));
        for case in ["fresh", "unchanged", "one node joins", "one node leaves"] {
            let line = text
                .lines()
                .find(|l| l.starts_with(case) && l[case.len()..].starts_with(' '))
                .ok_or_else(|| anyhow!("no {case:?} line in the bench output"))?;
            let f: Vec<&str> = line[case.len()..].split_whitespace().collect();
            // median ms min ms max ms moves ideal under spread
            let num = |i: usize| {
                f.get(i)
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            runs_single(
                rep,
                case,
                num(0),
                &[("min_ms", num(2)), ("max_ms", num(4)), ("moves", num(6))],
            );
        }
        rep.notes.push("scenario 5: figures from the existing bench (100,000 segments, 100 nodes, RF 2, median of its 5 runs)".into());
    } else {
        use trough_placement::{assign, Assignment, NodeSpec, SegmentSpec, TierSpec};
        use trough_types::{NodeName, SegmentId};
        let (ns, nn) = (p.s5_segments, p.s5_nodes);
        let segments: Vec<SegmentSpec> = (0..ns)
            .map(|i| {
                let u = (crate::stats::mix(i as u64) >> 11) as f64 / (1u64 << 53) as f64;
                SegmentSpec {
                    id: SegmentId::new(&format!("seg-{i:07}")).expect("id"),
                    tier: "default".into(),
                    size_bytes: (f64::from(1u32 << 20) * 256f64.powf(u)) as u64,
                }
            })
            .collect();
        let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
        let unit = (total as f64 * 2.0 / 0.6 / (nn as f64 * 1.5)) as u64;
        let nodes: Vec<NodeSpec> = (0..nn)
            .map(|i| NodeSpec {
                name: NodeName::new(&format!("node-{i:03}")).expect("name"),
                tier: "default".into(),
                quota_bytes: if i % 2 == 0 { unit } else { 2 * unit },
                healthy: true,
            })
            .collect();
        let tiers = [TierSpec {
            name: "default".into(),
            replication_factor: 2,
        }];
        let mut times = Vec::new();
        for _ in 0..p.runs.max(3) {
            let t = Instant::now();
            let plan =
                std::hint::black_box(assign(&nodes, &segments, &tiers, &Assignment::default()));
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if !plan.under_replicated.is_empty() {
                bail!(
                    "assignment left {} segments under-replicated",
                    plan.under_replicated.len()
                );
            }
        }
        eprintln!("   fresh assignment of {ns} segments on {nn} nodes: {times:.1?} ms");
        rep.params.insert("5".into(), json!({"segments": ns, "nodes": nn, "rf": 2, "how": "in-process, same generator as synchronizer/benches/assign.rs (smoke preset: smaller)"}));
        rep.add(5, "fresh", "trough assign", "ms", times, BTreeMap::new());
    }
    Ok(())
}

fn runs_single(rep: &mut Report, case: &str, median_ms: f64, extra: &[(&str, f64)]) {
    rep.add(
        5,
        case,
        "trough assign",
        "ms",
        vec![median_ms],
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), vec![*v]))
            .collect(),
    );
}
