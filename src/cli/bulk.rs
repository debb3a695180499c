//! `trough segment upload --dir DIR`: loading a dataset. Every SQLite file of a directory is
//! published as the next version of the segment named after the file (`a-17.sqlite` → segment
//! `a-17`), several at a time, under one progress bar.
//!
//! Resumable: a file whose SHA-256 is already its segment's latest version is skipped, so an
//! interrupted load is finished by running the same command again. Names that are not segment
//! ids (or two files naming one segment) are reported before anything is sent. A file the server
//! refuses is reported with the server's error and the others go on; the command fails at the
//! end if any did. Connection failures and 502/503/504 answers are retried with backoff.
//!
//! Not here: the single-file upload ([`super::client::upload`]) or the server's publish path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::Digest;
use trough_types::id::SegmentId;

/// File name endings taken as SQLite files.
const EXTENSIONS: [&str; 3] = ["sqlite", "sqlite3", "db"];

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The segment it becomes a version of.
    pub id: SegmentId,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// What became of one file.
enum Outcome {
    Published,
    Unchanged,
    Failed(String),
}

/// The files of `dir` to publish, ordered by segment id. Pure apart from reading the directory
/// listing. Every problem with the names is reported at once: nothing is sent when one is bad.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<Item>> {
    let mut items: Vec<Item> = Vec::new();
    let mut problems = Vec::new();
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in listing {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !meta.is_file() || !EXTENSIONS.contains(&ext) {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        match SegmentId::new(stem) {
            Ok(id) => items.push(Item {
                id,
                path,
                size: meta.len(),
            }),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    items.sort_by(|a, b| a.id.cmp(&b.id).then(a.path.cmp(&b.path)));
    for pair in items.windows(2) {
        if pair[0].id == pair[1].id {
            problems.push(format!(
                "{} and {} both name segment {}",
                pair[0].path.display(),
                pair[1].path.display(),
                pair[0].id
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "nothing was uploaded; file names that are not segment ids:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(items)
}

/// Publishes every SQLite file of `dir` (see the module docs), `concurrency` at a time, and
/// prints a JSON summary.
pub async fn upload_dir(base: &str, dir: &Path, concurrency: usize) -> anyhow::Result<()> {
    let items = collect(dir)?;
    if items.is_empty() {
        bail!(
            "no SQLite files (*.{}) in {}",
            EXTENSIONS.join(", *."),
            dir.display()
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(super::client::auth_headers()?)
        .build()
        .context("building the HTTP client")?;
    let total: u64 = items.iter().map(|i| i.size).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )?
        .progress_chars("=> "),
    );
    let count = items.len();
    bar.set_message(format!("0/{count} files"));
    let started = Instant::now();
    let mut done = 0usize;
    let (mut published, mut unchanged) = (0u64, 0u64);
    let mut failed = Vec::new();
    let mut results = futures::stream::iter(items)
        .map(|item| {
            let (http, base) = (http.clone(), base.to_owned());
            async move {
                let outcome = upload_one(&http, &base, &item).await;
                (item, outcome)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((item, outcome)) = results.next().await {
        done += 1;
        bar.inc(item.size);
        bar.set_message(format!("{done}/{count} files"));
        match outcome {
            Outcome::Published => published += 1,
            Outcome::Unchanged => unchanged += 1,
            Outcome::Failed(error) => {
                bar.println(format!("{}: {error}", item.path.display()));
                failed.push(json!({
                    "segment": item.id,
                    "file": item.path,
                    "error": error,
                }));
            }
        }
    }
    bar.finish_and_clear();
    let summary = json!({
        "files": count,
        "published": published,
        "unchanged": unchanged,
        "failed": failed,
        "bytes": total,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if !failed.is_empty() {
        bail!("{} of {count} files were not published", failed.len());
    }
    Ok(())
}

/// A failure worth another try: the server or the network, not the file.
#[derive(Debug)]
struct Transient(String);

/// Publishes one file unless its segment's latest version already has its content.
async fn upload_one(http: &reqwest::Client, base: &str, item: &Item) -> Outcome {
    let path = item.path.clone();
    let digest = match tokio::task::spawn_blocking(move || sha256_file(&path)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Outcome::Failed(format!("cannot read the file: {e}")),
        Err(e) => return Outcome::Failed(format!("hashing failed: {e}")),
    };
    let attempt = || async {
        match latest(http, base, &item.id).await? {
            Some(sha) if sha == digest => Ok(Outcome::Unchanged),
            _ => put(http, base, item).await,
        }
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(5),
        )
        .await
        .unwrap_or_else(|Transient(e)| Outcome::Failed(e))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn endpoint(base: &str, id: &SegmentId) -> String {
    format!("{}/segments/{id}", base.trim_end_matches('/'))
}

/// Whether a status is worth retrying.
fn transient_status(s: reqwest::StatusCode) -> bool {
    matches!(s.as_u16(), 502..=504)
}

/// The SHA-256 of the segment's latest version, `None` when it has none yet.
async fn latest(
    http: &reqwest::Client,
    base: &str,
    id: &SegmentId,
) -> Result<Option<String>, Transient> {
    let resp = http
        .get(endpoint(base, id))
        .send()
        .await
        .map_err(|e| Transient(format!("cannot reach {base}: {e}")))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = resp
        .text()
        .await
        .map_err(|e| Transient(format!("reading the answer: {e}")))?;
    if !status.is_success() {
        return Err(Transient(error_message(status, &text)));
    }
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(doc["latest"]["sha256"].as_str().map(str::to_owned))
}

/// `PUT /segments/{id}` with the file, streamed.
async fn put(http: &reqwest::Client, base: &str, item: &Item) -> Result<Outcome, Transient> {
    let file = tokio::fs::File::open(&item.path)
        .await
        .map_err(|e| Transient(format!("cannot open the file: {e}")))?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    let resp = http
        .put(endpoint(base, &item.id))
        .header("content-type", "application/octet-stream")
        .header("content-length", item.size)
        .body(body)
        .send()
        .await
        .map_err(|e| Transient(format!("cannot reach {base}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(Outcome::Published);
    }
    let message = error_message(status, &text);
    if transient_status(status) {
        return Err(Transient(message));
    }
    Ok(Outcome::Failed(message))
}

/// The server's error as `STATUS: message (code)`.
fn error_message(status: reqwest::StatusCode, text: &str) -> String {
    match serde_json::from_str::<trough_types::wire::ErrorBody>(text) {
        Ok(b) => format!("{status}: {} ({})", b.error.message, b.error.code),
        Err(_) => format!("{status}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ids_and_bad_names_stop_everything() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b-2.sqlite", "a-1.db", "notes.txt", "c.sqlite3"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.sqlite")).unwrap();
        let items = collect(dir.path()).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a-1", "b-2", "c"]);

        std::fs::write(dir.path().join("bad name.sqlite"), b"x").unwrap();
        std::fs::write(dir.path().join("a-1.sqlite"), b"x").unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad name.sqlite"), "{err}");
        assert!(err.contains("both name segment a-1"), "{err}");
    }
}
