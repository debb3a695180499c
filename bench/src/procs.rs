//! The servers under test as child processes (trough, Datasette, the bare hyper server), and
//! the control-plane calls made to trough (publish, provision, health).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use trough_testkit::process::{Output, TroughCommand, TroughProcess};

/// A server process, killed and reaped when dropped.
pub struct Proc {
    inner: Inner,
    /// What it is, for messages.
    pub name: String,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

/// Servers that print their URL (trough, the bare hyper server) come from the shared launcher;
/// Datasette does not announce itself and is a plain child.
enum Inner {
    Announced(TroughProcess),
    Child(Child),
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        match &self.inner {
            Inner::Announced(p) => p.pid().expect("process is running"),
            Inner::Child(c) => c.id(),
        }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Peak resident set size (VmHWM) so far, in bytes.
    pub fn vm_hwm_bytes(&self) -> Result<u64> {
        proc_status_kb(self.pid(), "VmHWM:").map(|kb| kb * 1024)
    }

    /// Stops the process now.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        match &mut self.inner {
            Inner::Announced(p) => p.kill9(),
            Inner::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kb(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Starts `cmd` (stderr to `log`) through the shared launcher, which waits until it announces
/// its address (and, unless turned off, answers `/health`).
fn start_announcing(name: &str, cmd: TroughCommand, log: &Path) -> Result<Proc> {
    let p = cmd
        .label(name)
        .output(Output::File(log.to_owned()))
        .start()
        .map_err(|e| anyhow!("{e}; log {}:\n{}", log.display(), tail(log)))?;
    Ok(Proc {
        addr: p.addr(),
        inner: Inner::Announced(p),
        name: name.to_owned(),
        log: log.to_owned(),
    })
}

/// The last lines of a log file.
pub fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Starts `trough serve` on `data_dir` (port chosen by the OS) and waits for `/health`.
pub async fn trough(
    bin: &Path,
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc> {
    trough_cmd(bin, &["serve"], data_dir, extra, env).await
}

/// Starts `trough COMMAND...` (e.g. `serve`, `router`, `node --roles reader`) on `data_dir`
/// (port chosen by the OS) and waits for `/health`.
pub async fn trough_cmd(
    bin: &Path,
    command: &[&str],
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Proc> {
    std::fs::create_dir_all(data_dir)?;
    let cmd = TroughProcess::command(bin)
        .args(command)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .timeout(Duration::from_secs(120));
    let log = data_dir.with_extension("log");
    let name = format!("trough {}", command[0]);
    // The launcher blocks while it waits; keep the runtime's workers free.
    tokio::task::spawn_blocking(move || start_announcing(&name, cmd, &log)).await?
}

/// Starts the bare hyper server (this binary's `fixed-server` command) answering `bodies`.
pub fn fixed_server(bodies: &Path, log: &Path) -> Result<Proc> {
    let cmd = TroughProcess::command(std::env::current_exe()?)
        .arg("fixed-server")
        .arg("--bodies")
        .arg(bodies)
        .without_health_check();
    start_announcing("hyper-fixed", cmd, log)
}

/// Starts Datasette on `db` in immutable mode with its default settings and waits for it.
pub async fn datasette(bin: &Path, db: &Path, log: &Path) -> Result<Proc> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let err = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .arg("serve")
        .arg("-i")
        .arg(db)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let p = Proc {
        inner: Inner::Child(child),
        name: "datasette".into(),
        log: log.to_owned(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let url = format!("{}/-/versions.json", p.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client().get(&url).send().await {
            if r.status().is_success() {
                return Ok(p);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "datasette did not answer {url} within 60 s; log:\n{}",
                tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The control-plane HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .expect("reqwest client")
}

async fn health(url: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client().get(format!("{url}/health")).send().await {
            Ok(r) if r.status().is_success() => return Ok(r.json().await?),
            _ if Instant::now() > deadline => bail!("{url}/health did not answer in 120 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Number of verified copies `/health` reports.
pub async fn verified_count(url: &str) -> Result<usize> {
    let h = health(url).await?;
    Ok(h["summary"]["verified"].as_u64().unwrap_or(0) as usize)
}

/// Polls `/health` every `every` until at least `n` copies are verified.
pub async fn wait_verified(url: &str, n: usize, every: Duration, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = verified_count(url).await?;
        if got >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {got} of {n} segments verified after {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// `PUT /segments/{id}` with the file streamed as the body.
pub async fn publish(url: &str, id: &str, file: &Path) -> Result<Value> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("open {}", file.display()))?;
    let len = f.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
    let r = client()
        .put(format!("{url}/segments/{id}"))
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("publish {id}: {status} {v}");
    }
    Ok(v)
}

/// Publishes `(id, file)` pairs, `parallel` at a time.
pub async fn publish_all(url: &str, files: &[(String, PathBuf)], parallel: usize) -> Result<()> {
    use futures::StreamExt;
    let results: Vec<Result<Value>> = futures::stream::iter(files.iter())
        .map(|(id, f)| publish(url, id, f))
        .buffer_unordered(parallel)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// POST a JSON body, expecting a 2xx JSON answer.
pub async fn post_json(url: &str, body: &Value) -> Result<Value> {
    let r = client().post(url).json(body).send().await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("POST {url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}
