//! Scenario 6, scale: many small segments on one `trough serve`.
//!
//! Publishes N segments of about 8 KB (200 rows each), [`IN_FLIGHT`] at a time (as
//! `trough segment upload --dir` would), and reports what grows with
//! the segment count: the publish rate at the start and at the end (flat when a publish costs
//! the same whatever the catalog's size), the time until every segment is verified, RSS after
//! sync, a request for an unknown segment against one for a known one (p50), a page of
//! `GET /segments` and the `/health` summary, a cluster-wide `count(*)` (and RSS after it, and
//! the same count over the same rows in one SQLite file), and
//! restart to first answered query. Each figure is printed next to the target (for
//! 100,000 segments; smaller runs are indications).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::procs::{self, Proc};
use crate::results::{Report, Target};
use crate::stats::median;
use crate::Preset;

const SC: u8 = 6;

/// Publishes in flight. Each publish waits on several fsyncs (the object, its manifest, the
/// catalog's commit, the node's copy), so the rate is bound by latency unless publishes overlap;
/// 16 is what a bulk load would use (`trough segment upload --concurrency`).
const IN_FLIGHT: usize = 16;

/// A segment of `rows` rows of about 40 bytes each (8 KB at 200).
fn template(path: &Path, rows: u64) -> Result<Bytes> {
    let _ = std::fs::remove_file(path);
    let mut c = Connection::open(path)?;
    c.execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL)")?;
    let tx = c.transaction()?;
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            rusqlite::params![
                i as i64,
                format!("key-{i:06}-{:08x}", i * 2654435761),
                i as i64
            ],
        )?;
    }
    tx.commit()?;
    drop(c);
    Ok(Bytes::from(std::fs::read(path)?))
}

fn seg(i: usize) -> String {
    format!("scale-{i:06}")
}

async fn put(url: &str, id: &str, body: Bytes) -> Result<()> {
    let r = procs::client()
        .put(format!("{url}/segments/{id}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("publish {id}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// Milliseconds of one request; whether its status was `want`.
async fn timed(req: reqwest::RequestBuilder, want: u16) -> Result<f64> {
    let t = Instant::now();
    let r = req.send().await?;
    let status = r.status().as_u16();
    let _ = r.bytes().await?;
    if status != want {
        bail!("want {want}, got {status}");
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn rss_mib(p: &Proc) -> f64 {
    procs::proc_status_kb(p.pid(), "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

async fn verified(url: &str) -> Result<u64> {
    let h: Value = procs::client()
        .get(format!("{url}/health"))
        .send()
        .await?
        .json()
        .await?;
    // Versions before the summary listed every copy.
    Ok(match h["summary"]["verified"].as_u64() {
        Some(n) => n,
        None => h["segments"]
            .as_array()
            .map(|a| a.iter().filter(|s| s["verified"] == true).count() as u64)
            .unwrap_or(0),
    })
}

/// Seconds of `SELECT count(*)` over `total` rows of the segments' shape in one SQLite file,
/// built first (the monolith the cluster-wide count is reported next to). The file is removed.
fn monolith_count(path: &Path, total: u64) -> Result<f64> {
    let _ = std::fs::remove_file(path);
    let mut c = Connection::open(path)?;
    c.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL)")?;
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare("INSERT INTO t VALUES (?1, ?2, ?3)")?;
        for i in 0..total {
            st.execute(rusqlite::params![
                i as i64,
                format!("key-{:06}-{:08x}", i % 200, (i % 200) * 2654435761),
                i as i64
            ])?;
        }
    }
    tx.commit()?;
    drop(c);
    // A fresh connection, as the cluster-wide query opens each segment afresh.
    let t = Instant::now();
    let c = Connection::open(path)?;
    let got: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    let secs = t.elapsed().as_secs_f64();
    drop(c);
    let _ = std::fs::remove_file(path);
    if got as u64 != total {
        bail!("monolith count(*) = {got}, want {total}");
    }
    Ok(secs)
}

/// Runs scenario 6 with `n` segments.
pub async fn run(p: &Preset, work: &Path, bin: &Path, rep: &mut Report) -> Result<()> {
    let n = p.s6_segments;
    let rows = 200;
    let dir = work.join("run").join("scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let body = template(&work.join("run").join("scale-template.sqlite"), rows)?;
    let data = dir.join("node");
    let node = procs::trough(bin, &data, &[], &[]).await?;
    let url = node.url();
    eprintln!(
        "   publishing {n} segments of {} bytes, {IN_FLIGHT} at a time",
        body.len()
    );

    // Publish, recording when each one finished.
    let started = Instant::now();
    let mut done: Vec<f64> = futures::stream::iter(0..n)
        .map(|i| {
            let (url, body) = (url.clone(), body.clone());
            async move {
                put(&url, &seg(i), body).await?;
                Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let publish_secs = started.elapsed().as_secs_f64();
    done.sort_by(f64::total_cmp);
    // Rate over the first and the last tenth of the publishes.
    let tenth = (n / 10).max(2);
    let start_rate = (tenth - 1) as f64 / (done[tenth - 1] - done[0]).max(1e-9);
    let end_rate = (tenth - 1) as f64 / (done[n - 1] - done[n - tenth]).max(1e-9);
    let avg_rate = n as f64 / publish_secs;
    eprintln!("   publish: {avg_rate:.0}/s average, {start_rate:.0}/s first tenth, {end_rate:.0}/s last tenth");

    // Every segment verified.
    let t = Instant::now();
    while verified(&url).await? < n as u64 {
        if t.elapsed() > Duration::from_secs(3600) {
            bail!("not every segment verified within an hour");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify_secs = t.elapsed().as_secs_f64();
    let rss_sync = rss_mib(&node);
    eprintln!("   all verified {verify_secs:.1} s after the last publish; RSS {rss_sync:.0} MiB");

    // Known vs unknown segment, sequentially (p50 of each).
    let c = procs::client();
    let q = json!({"sql": "SELECT v FROM t WHERE id = 7"});
    let samples = 200;
    let (mut hit, mut miss) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let id = seg((i * 7919) % n);
        hit.push(timed(c.post(format!("{url}/segments/{id}/query")).json(&q), 200).await?);
        miss.push(
            timed(
                c.post(format!("{url}/segments/no-such-{i}/query")).json(&q),
                404,
            )
            .await?,
        );
    }
    let (hit50, miss50) = (median(&hit), median(&miss));
    eprintln!("   point query p50 {hit50:.2} ms; unknown segment p50 {miss50:.2} ms");

    // Listings.
    let mut list = Vec::new();
    let mut health = Vec::new();
    for i in 0..20 {
        let cursor = seg((i * 4099) % n);
        list.push(
            timed(
                c.get(format!("{url}/segments?limit=1000&cursor={cursor}")),
                200,
            )
            .await?,
        );
        health.push(timed(c.get(format!("{url}/health")), 200).await?);
    }
    let (list50, health50) = (median(&list), median(&health));
    eprintln!("   GET /segments page of 1000 p50 {list50:.1} ms; GET /health p50 {health50:.2} ms");

    // Cluster-wide count(*).
    let t = Instant::now();
    let v = procs::post_json(
        &format!("{url}/query"),
        &json!({"sql": "SELECT count(*) AS n FROM t", "segments": "*"}),
    )
    .await
    .context("cluster-wide count(*)")?;
    let count_secs = t.elapsed().as_secs_f64();
    let got = v["rows"][0]["n"].as_u64().unwrap_or(0);
    if got != n as u64 * rows {
        bail!("count(*) = {got}, want {}", n as u64 * rows);
    }
    let rss_query = rss_mib(&node);
    eprintln!("   count(*) over {n} segments {count_secs:.2} s; RSS after {rss_query:.0} MiB");
    let mono_secs = monolith_count(&dir.join("monolith.sqlite"), n as u64 * rows)?;
    eprintln!("   the same rows in one SQLite file: count(*) {mono_secs:.3} s");

    // Restart to first answered query.
    node.stop();
    let t = Instant::now();
    let node = procs::trough(bin, &data, &[], &[]).await?;
    let url = node.url();
    loop {
        let r = c
            .post(format!("{url}/segments/{}/query", seg(n / 2)))
            .json(&q)
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("no answer within 10 minutes of restarting");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart_secs = t.elapsed().as_secs_f64();
    eprintln!("   restart to first answered query {restart_secs:.2} s");
    node.stop();

    let one = |v: f64| (vec![v], Default::default());
    let mut add = |case: &str, unit: &str, v: f64| {
        let (runs, extra) = one(v);
        rep.add(SC, case, "trough", unit, runs, extra);
    };
    add("publish rate, average", "segments/s", avg_rate);
    add("publish rate, first tenth", "segments/s", start_rate);
    add("publish rate, last tenth", "segments/s", end_rate);
    add("all verified after last publish", "s", verify_secs);
    add("RSS after sync", "MiB", rss_sync);
    add("point query p50", "ms", hit50);
    add("unknown segment p50", "ms", miss50);
    add("GET /segments page (1000)", "ms", list50);
    add("GET /health summary", "ms", health50);
    add("cluster-wide count(*)", "s", count_secs);
    add("RSS after count(*)", "MiB", rss_query);
    add("restart to first query", "s", restart_secs);
    let (runs, extra) = one(mono_secs);
    rep.add(SC, "cluster-wide count(*)", "sqlite", "s", runs, extra);
    let pairs: [(&str, &str, Target); 10] = [
        (
            "publish rate, average",
            "publish rate, average (segments/s)",
            Target::AtLeast(500.0),
        ),
        (
            "publish rate, last tenth",
            "flatness: last tenth / first tenth",
            Target::AtLeast(0.8),
        ),
        (
            "all verified after last publish",
            "all verified after last publish (s)",
            Target::AtMost(120.0),
        ),
        (
            "RSS after sync",
            "RSS after sync (MiB)",
            Target::AtMost(1024.0),
        ),
        (
            "unknown segment p50",
            "unknown / known segment p50",
            Target::AtMost(2.0),
        ),
        (
            "GET /segments page (1000)",
            "GET /segments page (ms)",
            Target::None,
        ),
        (
            "cluster-wide count(*)",
            "cluster-wide count(*) (s)",
            Target::AtMost(10.0),
        ),
        (
            "cluster-wide count(*)",
            "cluster-wide count(*) / one SQLite file",
            Target::None,
        ),
        (
            "RSS after count(*)",
            "RSS after count(*) (MiB)",
            Target::AtMost(1536.0),
        ),
        (
            "restart to first query",
            "restart to first query (s)",
            Target::AtMost(5.0),
        ),
    ];
    for (case, name, target) in pairs {
        let divisor = match name {
            "flatness: last tenth / first tenth" => ("publish rate, first tenth", "trough"),
            "unknown / known segment p50" => ("point query p50", "trough"),
            "cluster-wide count(*) / one SQLite file" => ("cluster-wide count(*)", "sqlite"),
            _ => ("", ""),
        };
        if divisor.0.is_empty() {
            rep.target(SC, name, (case, "trough"), target);
        } else {
            rep.ratio(SC, name, (case, "trough"), divisor, target);
        }
    }
    rep.params.insert(
        SC.to_string(),
        json!({"segments": n, "rows_per_segment": rows, "segment_bytes": body.len(),
               "publish_concurrency": 4, "targets": "the issue's, for 100,000 segments"}),
    );
    Ok(())
}
