//! The one launcher for `trough` processes (and anything else that announces its address the same
//! way): spawn the binary with arguments and environment, read the `http://HOST:PORT` it prints on
//! stdout, wait until `GET /health` answers 200, and stop it (SIGTERM, or SIGKILL when dropped).
//!
//! The end-to-end tests (`tests/common`: `TestServer`, `TestCluster`) and the benchmarks
//! (`bench/src/procs.rs`) all start processes through [`TroughCommand`]. Not for in-process nodes
//! (see `tests/common/in_process.rs`) and not for the third-party servers of this crate (S3,
//! Consul), which have their own readiness checks.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{http_get, wait_until};

/// Where a process's output goes.
#[derive(Clone, Debug)]
pub enum Output {
    /// Every stdout and stderr line to this process's stderr, prefixed with `[label]` (a test's
    /// stderr is shown when it fails).
    Stderr,
    /// Stderr to this file; stdout is drained.
    File(PathBuf),
}

/// Why a process could not be started.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// How to start a process: a builder over [`Command`].
#[derive(Clone, Debug)]
pub struct TroughCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    label: Option<String>,
    output: Output,
    timeout: Duration,
    health: bool,
}

impl TroughCommand {
    /// Runs `program` (the `trough` binary, usually `env!("CARGO_BIN_EXE_trough")`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            label: None,
            output: Output::Stderr,
            timeout: Duration::from_secs(30),
            health: true,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Sets environment variables of the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes an inherited environment variable from the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// The prefix of forwarded log lines (default `trough <pid>`).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Where the output goes (default [`Output::Stderr`]).
    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// How long the process may take to print its URL, and then to answer `/health`
    /// (default 30 s each).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Ready once the URL is printed, without asking `/health` (for servers that have none).
    pub fn without_health_check(mut self) -> Self {
        self.health = false;
        self
    }

    /// Spawns the process and waits until it printed its URL and (unless turned off) answers
    /// `GET /health` with 200. On failure the process is killed and the error says why.
    pub fn start(&self) -> Result<TroughProcess, StartError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        match &self.output {
            Output::Stderr => cmd.stderr(Stdio::piped()),
            Output::File(path) => cmd
                .stderr(Stdio::from(std::fs::File::create(path).map_err(|e| {
                    StartError(format!("create log file {}: {e}", path.display()))
                })?)),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError(format!("spawn {cmd:?}: {e}")))?;
        let label = self
            .label
            .clone()
            .unwrap_or_else(|| format!("trough {}", child.id()));
        if let Some(stderr) = child.stderr.take() {
            let label = label.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{label}] {line}");
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let forward = matches!(self.output, Output::Stderr).then(|| label.clone());
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(label) = &forward {
                    eprintln!("[{label} stdout] {line}");
                }
                if let (Some(pos), Some(_)) = (line.find("http://"), &tx) {
                    let url = line[pos..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_end_matches('/')
                        .to_owned();
                    let _ = tx.take().expect("sender").send(url);
                }
            }
        });
        let mut process = TroughProcess {
            child: Some(child),
            url: String::new(),
            label,
        };
        let fail = |process: &mut TroughProcess, what: String| {
            let status = process.try_wait();
            process.kill9();
            let log = match &self.output {
                Output::Stderr => "see its log above".to_owned(),
                Output::File(path) => format!("its log: {}", path.display()),
            };
            StartError(format!(
                "{} {what} (exit status: {status:?}); {log}",
                process.label
            ))
        };
        process.url = match rx.recv_timeout(self.timeout) {
            Ok(url) => url,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let what = format!("did not print its http:// URL within {:?}", self.timeout);
                return Err(fail(&mut process, what));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stdout closed without a URL: the process is exiting; give it a moment to.
                wait_until(Duration::from_secs(2), || process.try_wait().is_some());
                let what = format!("closed stdout without printing its http:// URL ({cmd:?})");
                return Err(fail(&mut process, what));
            }
        };
        if self.health {
            let addr = process.addr_string();
            let mut exited = false;
            let healthy = wait_until(self.timeout, || {
                exited = process.try_wait().is_some();
                exited || http_get(&addr, "/health").is_some()
            });
            if exited || !healthy {
                let what = if exited {
                    "exited during start-up".to_owned()
                } else {
                    format!(
                        "did not answer GET /health with 200 within {:?}",
                        self.timeout
                    )
                };
                return Err(fail(&mut process, what));
            }
        }
        Ok(process)
    }
}

/// A running process started by [`TroughCommand::start`]. Dropping it kills it (SIGKILL).
#[derive(Debug)]
pub struct TroughProcess {
    child: Option<Child>,
    url: String,
    label: String,
}

impl TroughProcess {
    /// A command for `program`; see [`TroughCommand`].
    pub fn command(program: impl Into<PathBuf>) -> TroughCommand {
        TroughCommand::new(program)
    }

    /// The URL it printed, e.g. `http://127.0.0.1:43121` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `HOST:PORT` of [`Self::url`].
    fn addr_string(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// The socket address of [`Self::url`] (panics if it is not `http://IP:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr_string()
            .parse()
            .unwrap_or_else(|e| panic!("{}: no IP:PORT in {:?}: {e}", self.label, self.url))
    }

    /// The prefix of its log lines.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its process id, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has not been killed or seen exiting.
    pub fn running(&mut self) -> bool {
        self.try_wait().is_none() && self.child.is_some()
    }

    /// Its exit status if it exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Sends SIGTERM (a graceful shutdown). Panics if `kill` fails.
    pub fn sigterm(&self) {
        let pid = self.pid().expect("process is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `timeout` for it to exit; its exit status, or `None` if it still runs (or
    /// was already reaped).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.try_wait();
            status.is_some() || self.child.is_none()
        });
        status
    }

    /// SIGKILL and reap (nothing if it is not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TroughProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
