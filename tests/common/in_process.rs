//! In-process nodes: [`trough_node::run`] on its own tokio runtime thread inside the test
//! process, configured from the same `TROUGH_*` key/values as the binary, ready when it calls
//! back with its address, shut down (gracefully) when dropped. [`TestServer::in_process`] wraps
//! one in the usual test helpers; most single-node HTTP suites use it, because it starts in a few
//! milliseconds and costs no process.
//!
//! What needs a real process stays on [`TestServer::start`]: `kill -9`, restarts on the same data
//! dir, SIGTERM and the shutdown grace period, RSS, CPU time and open files of the server,
//! `/metrics` values, the CLI, DNS, Ansible.
//!
//! ## What in-process nodes share
//!
//! Everything a node keeps in process-global state is shared by every in-process node of one
//! test binary (tests run in parallel threads):
//! - the Prometheus recorder (`trough_api::metrics`): `/metrics` of any in-process node shows
//!   the sum over all of them, so metric values are asserted on processes only;
//! - SQLite's process-wide settings (`trough_sqlite::limits::configure`): the heap limit, the
//!   string/blob length limit and the parameter limit are the last node's. [`InProcessNode`]
//!   therefore refuses to start a node whose `limits.sqlite` differs from a running one's (use a
//!   process for such tests);
//! - SQLite's temporary-file directory (also `configure`), which is the data dir of the node
//!   started last. When that node stops, the directory is pointed at a still-running node's, so
//!   that it never names a deleted directory;
//! - the statement watchdog (`trough_sqlite::watchdog`) and its "shutting down" flag, which only
//!   the binary's signal handler sets;
//! - `tracing`: one subscriber for the test binary, installed by the first node (level from
//!   `RUST_LOG`, default `info`), writing into the output of the test that logs.
//!
//! Data dirs, ports, coordinators (embedded, one per data dir), object stores, reader pools and
//! writers are per node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use trough_config::Config;
use trough_node::Roles;
use trough_sqlite::limits::SqliteLimits;

use super::START_TIMEOUT;

/// How long a node may take to stop after its shutdown signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The running in-process nodes: data dir, SQLite limits and SQLite temp dir of each.
static LIVE: Mutex<Vec<(PathBuf, SqliteLimits, PathBuf)>> = Mutex::new(Vec::new());

/// A node running in this process. Dropping it shuts it down and waits until it stopped.
pub struct InProcessNode {
    addr: SocketAddr,
    data_dir: PathBuf,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// The configuration `trough serve --data-dir DIR --listen 127.0.0.1:0` builds when the
/// environment holds `env` (pairs like `("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "300")`, parsed and
/// nested exactly like figment's `Env::prefixed("TROUGH_").split("__")` does). The process's own
/// environment is read as the binary would, and `env` is merged over it, without changing it.
pub fn config_from_env(data_dir: &Path, env: &[(&str, &str)]) -> Config {
    let file = env
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("TROUGH_CONFIG"))
        .map(|(_, v)| PathBuf::from(v));
    let mut figment = Config::figment(file.as_deref());
    for (key, value) in env {
        let Some(name) = key
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("TROUGH_"))
            .map(|_| &key[7..])
        else {
            panic!("in-process config key {key:?} is not a TROUGH_* variable");
        };
        let name = name.to_ascii_lowercase();
        if name == "url" || name == "config" {
            continue; // ignored by the binary's environment provider too
        }
        let path = name.split("__").collect::<Vec<_>>().join(".");
        let value: figment::value::Value = value.trim().parse().expect("infallible");
        figment = figment.merge((path, value));
    }
    // The flags `TestServer::start` passes.
    figment = figment
        .merge(("data_dir", data_dir))
        .merge(("listen", "127.0.0.1:0"));
    Config::from_figment(&figment).unwrap_or_else(|e| panic!("in-process config {env:?}: {e}"))
}

impl InProcessNode {
    /// Runs every role (what `trough serve` runs) with `config` and waits until it accepts
    /// connections.
    pub fn start(config: Config) -> InProcessNode {
        install_tracing();
        let data_dir = trough_config::absolute(&config.data_dir).expect("absolute data dir");
        let sqlite_tmp = data_dir.join("tmp").join("sqlite");
        {
            let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((other, limits, _)) =
                live.iter().find(|(_, l, _)| *l != config.limits.sqlite)
            {
                panic!(
                    "in-process node {} wants limits.sqlite {:?}, but {} runs with {limits:?} and \
                     SQLite's limits are process-wide: start this server as a process \
                     (TestServer::start_with)",
                    data_dir.display(),
                    config.limits.sqlite,
                    other.display()
                );
            }
            live.push((data_dir.clone(), config.limits.sqlite.clone(), sqlite_tmp));
        }
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<SocketAddr>();
        let name = format!("trough-node {}", data_dir.display());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?;
                let result = rt.block_on(trough_node::run(config, Roles::ALL, rx, move |addr| {
                    let _ = ready_tx.send(addr);
                }));
                rt.shutdown_timeout(STOP_TIMEOUT);
                result.map_err(|e| e.to_string())
            })
            .expect("spawn the node thread");
        let mut node = InProcessNode {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            shutdown,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => node.addr = addr,
            Err(e) => {
                let outcome = match e {
                    // The node returned (an error) before it was ready.
                    mpsc::RecvTimeoutError::Disconnected => node.join(),
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("not ready within {START_TIMEOUT:?}")
                    }
                };
                panic!(
                    "in-process node {} did not start: {outcome}",
                    node.data_dir.display()
                );
            }
        }
        node
    }

    /// Base URL, e.g. `http://127.0.0.1:43121`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown and waits for the node's thread; what it returned.
    fn join(&mut self) -> String {
        let _ = self.shutdown.send(true);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) => "stopped".to_owned(),
            Some(Ok(Err(e))) => format!("error: {e}"),
            Some(Err(_)) => "panicked".to_owned(),
            None => "already stopped".to_owned(),
        }
    }
}

impl Drop for InProcessNode {
    fn drop(&mut self) {
        let outcome = self.join();
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(d, _, _)| *d != self.data_dir);
        // SQLite's temporary directory is process-wide: if it is this node's (about to be
        // deleted with its data dir), point it at a running node's.
        if trough_sqlite::limits::temp_dir().starts_with(&self.data_dir) {
            if let Some((_, limits, tmp)) = live.last() {
                let _ = trough_sqlite::limits::configure(limits, tmp);
            }
        }
        if outcome != "stopped" && !std::thread::panicking() {
            panic!("in-process node {} {outcome}", self.data_dir.display());
        }
    }
}

/// One `tracing` subscriber for the test binary, writing through the test harness's capture.
fn install_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
