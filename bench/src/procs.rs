//! The servers under test as child processes (trough, Datasette, the bare hyper server), and
//! the control-plane calls made to trough (publish, provision, health).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// A child process, killed (by its pid) and reaped when dropped.
pub struct Proc {
    child: Child,
    /// What it is, for messages.
    pub name: String,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Spawns `cmd` with stderr to `log` and waits (up to `timeout`) for a stdout line containing
/// `http://HOST:PORT`, which becomes the address. Stdout keeps being drained afterwards.
fn spawn_announcing(name: &str, mut cmd: Command, log: &Path, timeout: Duration) -> Result<Proc> {
    let err = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {name}: {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(pos) = line.find("http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(
                        line[pos + 7..]
                            .split(['/', ' '])
                            .next()
                            .unwrap_or("")
                            .to_owned(),
                    );
                }
            }
        }
    });
    let addr = match rx.recv_timeout(timeout) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{name} did not announce its address within {timeout:?}; log {}:\n{}",
                log.display(),
                tail(log)
            );
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{name} address {addr:?}"))?;
    Ok(Proc {
        child,
        name: name.to_owned(),
        log: log.to_owned(),
        addr,
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
    let mut cmd = Command::new(bin);
    cmd.args(command)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = data_dir.with_extension("log");
    let p = spawn_announcing(
        &format!("trough {}", command[0]),
        cmd,
        &log,
        Duration::from_secs(120),
    )?;
    health(&p.url()).await?;
    Ok(p)
}

/// Starts the bare hyper server (this binary's `fixed-server` command) answering `bodies`.
pub fn fixed_server(bodies: &Path, log: &Path) -> Result<Proc> {
    let me = std::env::current_exe()?;
    let mut cmd = Command::new(me);
    cmd.arg("fixed-server").arg("--bodies").arg(bodies);
    spawn_announcing("hyper-fixed", cmd, log, Duration::from_secs(30))
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
        child,
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
