//! # trough-testkit: real servers for tests
//!
//! Tests talk to a real S3 server ([`S3Server`], s3s-fs over a temp directory) and a real Consul
//! agent ([`ConsulAgent`], `consul agent -dev`), each started on free 127.0.0.1 ports in a temp
//! directory and killed when dropped. The binaries come from `$TROUGH_TOOLS_DIR/bin` (default
//! `~/.cache/trough-tools/bin`, filled by `scripts/install-test-deps.sh`) or the `PATH`.
//! Not a mock of anything: if a tool is missing, the test fails and says how to install it.
//!
//! [`process`] is the one launcher of `trough` processes for the end-to-end tests and the
//! benchmarks: spawn, read the URL it prints, wait until it answers, stop it.

pub mod dns;
pub mod process;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the installed test tools live.
pub fn tools_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TROUGH_TOOLS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/trough-tools")
}

/// The path of a test tool, from the tools directory or the `PATH`. Panics with instructions.
pub fn tool(name: &str) -> PathBuf {
    let p = tools_dir().join("bin").join(name);
    if p.exists() {
        return p;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let c = dir.join(name);
            if c.is_file() {
                return c;
            }
        }
    }
    panic!(
        "test tool `{name}` not found in {} or PATH: run scripts/install-test-deps.sh (or scripts/test.sh)",
        tools_dir().join("bin").display()
    );
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `cond` every 50 ms until it is true (→ true) or `timeout` passes (→ false). The one
/// way tests wait for something.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // The poll interval of this condition wait (the one sleep every wait goes through).
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let ok = wait_until(STARTUP_TIMEOUT, || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during startup: {status}");
        }
        ready()
    });
    if !ok {
        let _ = child.kill();
        panic!("{what} did not become ready within {STARTUP_TIMEOUT:?}");
    }
}

/// A minimal HTTP GET over a raw socket (no client library needed here). Returns the body of a
/// 200 answer.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// A real S3 server (s3s-fs) serving one bucket from a temp directory.
pub struct S3Server {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created for this server.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl S3Server {
    /// Starts s3s-fs with bucket `trough-test`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = "trough-test".to_owned();
        std::fs::create_dir_all(dir.path().join(&bucket)).expect("bucket dir");
        let port = free_port();
        let (access_key, secret_key) = (
            "trough-test-key".to_owned(),
            "trough-test-secret".to_owned(),
        );
        let mut child = Command::new(tool("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s3s-fs");
        let addr = format!("127.0.0.1:{port}");
        wait_for("s3s-fs", &mut child, || TcpStream::connect(&addr).is_ok());
        Self {
            child,
            _dir: dir,
            endpoint: format!("http://{addr}"),
            bucket,
            access_key,
            secret_key,
        }
    }

    /// An `s3://` URL for `prefix` in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix)
    }

    /// `object_store` options (endpoint, credentials, region, plain HTTP).
    pub fn options(&self) -> Vec<(String, String)> {
        vec![
            ("aws_endpoint".into(), self.endpoint.clone()),
            ("aws_access_key_id".into(), self.access_key.clone()),
            ("aws_secret_access_key".into(), self.secret_key.clone()),
            ("aws_region".into(), "us-east-1".into()),
            ("aws_allow_http".into(), "true".into()),
        ]
    }

    /// The same options as `TROUGH_OBJECT_STORE_OPTIONS__*` environment variables for a trough
    /// process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| {
                (
                    format!("TROUGH_OBJECT_STORE_OPTIONS__{}", k.to_uppercase()),
                    v,
                )
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Consul agent in dev mode (a one-node server that elects itself).
pub struct ConsulAgent {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub http_addr: String,
    /// UDP/TCP port of the DNS interface.
    pub dns_port: u16,
    /// `127.0.0.1:PORT` of the HTTPS API, when started with [`ConsulAgent::start_tls`].
    pub https_addr: Option<String>,
}

impl ConsulAgent {
    /// Starts `consul agent -dev` on free ports and waits until it has a leader. The ports are
    /// probed free over TCP only (Serf and DNS also bind UDP), so another agent starting at the
    /// same moment can take one: an agent that exits during start-up is started again on fresh
    /// ports, a few times.
    pub fn start() -> Self {
        Self::start_with_tls(None)
    }

    /// Like [`ConsulAgent::start`], also serving its API over HTTPS with this certificate and key
    /// (PEM files) on [`ConsulAgent::https_url`].
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Self {
        Self::start_with_tls(Some((cert, key)))
    }

    /// Like [`ConsulAgent::start`], with Consul's ACLs on and denying by default: every request
    /// needs a token, `management_token` (a UUID) allows everything. The agent uses it for its
    /// own registrations.
    pub fn start_acl(management_token: &str) -> Self {
        Self::start_with(None, Some(management_token))
    }

    fn start_with_tls(tls: Option<(&std::path::Path, &std::path::Path)>) -> Self {
        Self::start_with(tls, None)
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>, acl: Option<&str>) -> Self {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            if let Some(agent) = Self::try_start(tls, acl) {
                return agent;
            }
            eprintln!("consul exited during start-up (attempt {attempt}/{ATTEMPTS}); new ports");
        }
        panic!("consul exited during start-up {ATTEMPTS} times");
    }

    /// One start; `None` if the agent exited before it was ready.
    fn try_start(
        tls: Option<(&std::path::Path, &std::path::Path)>,
        acl: Option<&str>,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let [http, dns, server, lan, wan, https] = [(); 6].map(|_| free_port());
        let mut extra_args: Vec<String> = Vec::new();
        if let Some((cert, key)) = tls {
            extra_args = vec![
                "-hcl".into(),
                format!("ports {{ https = {https} }}"),
                "-hcl".into(),
                format!("cert_file = {:?}", cert.display().to_string()),
                "-hcl".into(),
                format!("key_file = {:?}", key.display().to_string()),
            ];
        }
        if let Some(token) = acl {
            // Consul 1.8 names the bootstrap token `master` (`initial_management` from 1.11).
            extra_args.extend([
                "-hcl".into(),
                format!(
                    "acl {{\n enabled = true\n default_policy = \"deny\"\n \
                     down_policy = \"extend-cache\"\n \
                     tokens {{\n master = {token:?}\n agent = {token:?}\n }}\n}}"
                ),
            ]);
        }
        let mut child = Command::new(tool("consul"))
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .args([
                "-http-port",
                &http.to_string(),
                "-dns-port",
                &dns.to_string(),
            ])
            .args(["-server-port", &server.to_string()])
            .args([
                "-serf-lan-port",
                &lan.to_string(),
                "-serf-wan-port",
                &wan.to_string(),
            ])
            .args(["-grpc-port", "-1"])
            .args(&extra_args)
            .args(["-data-dir", &dir.path().display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn consul");
        let addr = format!("127.0.0.1:{http}");
        let mut exited = false;
        let ready = wait_until(STARTUP_TIMEOUT, || {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                return true;
            }
            http_get(&addr, "/v1/status/leader").is_some_and(|b| b.trim().len() > 2)
        });
        if exited {
            return None;
        }
        if !ready {
            let _ = child.kill();
            panic!("consul did not become ready within {STARTUP_TIMEOUT:?}");
        }
        Some(Self {
            child,
            _dir: dir,
            http_addr: addr,
            dns_port: dns,
            https_addr: tls.map(|_| format!("127.0.0.1:{https}")),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `https://127.0.0.1:PORT` (started with [`ConsulAgent::start_tls`]).
    pub fn https_url(&self) -> Option<String> {
        self.https_addr.as_ref().map(|a| format!("https://{a}"))
    }
}

impl Drop for ConsulAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
