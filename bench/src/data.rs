//! Data generation with rusqlite: one transaction, prepared statements, no journal. Files are
//! kept in the work directory with a stamp of their parameters and reused when it matches (the
//! 1 GB segment takes a while).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use crate::stats::mix;

/// Schema of the point-lookup / range-scan segment (scenario 1) and the sync segments
/// (scenario 3).
pub const PAGES_SCHEMA: &str = "CREATE TABLE pages(id INTEGER PRIMARY KEY, url TEXT NOT NULL, \
     status INTEGER NOT NULL, size INTEGER NOT NULL, title TEXT NOT NULL)";

/// Schema of the cluster-wide segments and the monolith (scenario 4).
pub const T_SCHEMA: &str =
    "CREATE TABLE t(id INTEGER PRIMARY KEY, g TEXT NOT NULL, a INTEGER NOT NULL, b REAL NOT NULL)";

const WORDS: [&str; 16] = [
    "archive",
    "crawl",
    "federation",
    "segment",
    "shard",
    "query",
    "sqlite",
    "object",
    "verify",
    "router",
    "replica",
    "manifest",
    "promote",
    "writer",
    "reader",
    "scrub",
];

fn fresh(path: &Path, stamp: &str) -> bool {
    path.exists() && std::fs::read_to_string(stamp_path(path)).is_ok_and(|s| s == stamp)
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".stamp");
    PathBuf::from(s)
}

fn open_for_load(path: &Path) -> Result<Connection> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path).with_context(|| format!("create {}", path.display()))?;
    c.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536;",
    )?;
    Ok(c)
}

/// A `pages` row: about 200 bytes.
fn page_row(i: u64) -> (String, i64, i64, String) {
    let h = mix(i);
    let url = format!(
        "https://host{:04}.example.org/path/{:08x}/{i}",
        h % 10_000,
        h >> 32
    );
    let status = [200, 200, 200, 200, 301, 404, 500][(h % 7) as usize];
    let size = (h >> 20) % 1_000_000;
    let mut title = String::with_capacity(128);
    let mut x = h;
    while title.len() < 110 {
        title.push_str(WORDS[(x % 16) as usize]);
        title.push(' ');
        x = mix(x);
    }
    (url, status, size as i64, title)
}

/// Creates (or reuses) a `pages` database of about `target_bytes` (it stops at the first check
/// past the target), with ids (and contents) starting at `first`. Returns the number of rows.
pub fn pages(path: &Path, target_bytes: u64, first: u64) -> Result<u64> {
    let stamp = format!("pages v1 {target_bytes} {first}");
    if fresh(path, &stamp) {
        let c = Connection::open(path)?;
        return Ok(c.query_row("SELECT count(*) FROM pages", [], |r| r.get::<_, i64>(0))? as u64);
    }
    let mut c = open_for_load(path)?;
    c.execute_batch(PAGES_SCHEMA)?;
    let page_size: u64 = c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    let tx = c.transaction()?;
    let mut rows = 0u64;
    {
        let mut ins = tx.prepare("INSERT INTO pages VALUES (?, ?, ?, ?, ?)")?;
        let check_every = (target_bytes / 200 / 50).clamp(100, 50_000);
        loop {
            for _ in 0..check_every {
                let id = first + rows;
                let (url, status, size, title) = page_row(id);
                ins.execute(params![id as i64, url, status, size, title])?;
                rows += 1;
            }
            let pages: u64 = tx.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64;
            if pages * page_size >= target_bytes {
                break;
            }
        }
    }
    tx.commit()?;
    drop(c);
    std::fs::write(stamp_path(path), stamp)?;
    Ok(rows)
}

/// A `t` row number `id`.
fn t_row(id: u64) -> (String, i64, f64) {
    let h = mix(id ^ 0xabcdef);
    (
        format!("g{:02}", h % 100),
        ((h >> 8) % 1_000_000) as i64,
        ((h >> 40) % 100_000) as f64 / 100.0,
    )
}

fn insert_t(c: &mut Connection, ids: std::ops::Range<u64>) -> Result<()> {
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare("INSERT INTO t VALUES (?, ?, ?, ?)")?;
        for id in ids {
            let (g, a, b) = t_row(id);
            ins.execute(params![id as i64, g, a, b])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Scenario 4's data: `n` segment files of `rows` rows each (`dir/seg-NNNNN.sqlite`) and one
/// monolith holding every row (`dir/monolith.sqlite`). Returns the segment files as
/// `(id, path)`.
pub fn t_segments(dir: &Path, n: usize, rows: u64) -> Result<(Vec<(String, PathBuf)>, PathBuf)> {
    let stamp = format!("t v1 {n} {rows}");
    let mono = dir.join("monolith.sqlite");
    let files: Vec<(String, PathBuf)> = (0..n)
        .map(|i| {
            let id = format!("seg-{i:05}");
            let p = dir.join(format!("{id}.sqlite"));
            (id, p)
        })
        .collect();
    if fresh(&mono, &stamp) && files.iter().all(|(_, p)| p.exists()) {
        return Ok((files, mono));
    }
    for (i, (_, p)) in files.iter().enumerate() {
        let mut c = open_for_load(p)?;
        c.execute_batch(T_SCHEMA)?;
        let first = i as u64 * rows;
        insert_t(&mut c, first..first + rows)?;
    }
    let mut c = open_for_load(&mono)?;
    c.execute_batch(T_SCHEMA)?;
    insert_t(&mut c, 0..n as u64 * rows)?;
    drop(c);
    std::fs::write(stamp_path(&mono), stamp)?;
    Ok((files, mono))
}

/// Scenario 3's data: `n` `pages` files of about `bytes` each (`dir/sync-NNN.sqlite`).
pub fn sync_segments(dir: &Path, n: usize, bytes: u64) -> Result<Vec<(String, PathBuf)>> {
    (0..n)
        .map(|i| {
            let id = format!("sync-{i:03}");
            let p = dir.join(format!("{id}.sqlite"));
            pages(&p, bytes, i as u64 * 1_000_000_000)?;
            Ok((id, p))
        })
        .collect()
}
