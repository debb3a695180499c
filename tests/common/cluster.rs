//! A real trough cluster for end-to-end tests: a Consul agent (`consul agent -dev`) and an S3
//! server (s3s-fs) from `trough-testkit`, one TOML config file, and real `trough` processes
//! (readers, writers, `sync --server` leader candidates, a router; started by the shared launcher
//! in `trough_testkit::process`), each on its own data dir and a free port. Every process's log lines are forwarded to the test's stderr prefixed with its
//! node name.
//!
//! Nodes are addressed by name (`reader-1`, `writer-1`, `sync-1`, `router`). A node can be
//! killed with SIGKILL ([`TestCluster::kill9`]) and started again on the same data dir and name
//! ([`TestCluster::restart`]); it then listens on a new port.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};
use trough_testkit::process::TroughProcess;
use trough_testkit::{ConsulAgent, S3Server};

use super::{json_of, wait_until, SqliteFile, BIN, START_TIMEOUT};

/// Consul's shortest session TTL; the leader lock and write leases expire this long (up to twice
/// this long: Consul applies a 2× grace) after their holder died.
pub const SESSION_TTL_SECS: u64 = 10;
/// Lock delay after a session ends (production uses 15 s; tests 1 s).
pub const LOCK_DELAY_SECS: u64 = 1;
/// A node without a heartbeat this long leaves the node list and DNS.
pub const NODE_TTL_SECS: u64 = 10;
/// How long a published segment may take to be assigned, fetched and verified everywhere.
pub const PLACE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `trough reader`: verified copies + local sync.
    Reader,
    /// `trough writer`: writable segments.
    Writer,
    /// `trough sync --server`: leader candidate.
    SyncServer,
    /// `trough router`: forwards everything.
    Router,
}

impl Kind {
    fn args(self) -> &'static [&'static str] {
        match self {
            Kind::Reader => &["reader"],
            Kind::Writer => &["writer"],
            Kind::SyncServer => &["sync", "--server"],
            Kind::Router => &["router"],
        }
    }
}

/// One trough process of the cluster.
pub struct ClusterNode {
    pub name: String,
    pub kind: Kind,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    process: Option<TroughProcess>,
    url: String,
}

impl ClusterNode {
    /// Base URL (no trailing slash) of the current (or last) incarnation.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP port of the current (or last) incarnation.
    pub fn port(&self) -> u16 {
        port_of(&self.url)
    }

    /// Whether the process is running (not killed by the test).
    pub fn running(&self) -> bool {
        self.process.is_some()
    }

    fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }
}

/// The port of a `http://host:port` URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub readers: usize,
    pub writers: usize,
    pub sync_servers: usize,
    pub replication_factor: usize,
    /// `sync.scrub_interval_secs` (None: the default, one hour).
    pub scrub_interval_secs: Option<u64>,
    /// Per-reader quotas by reader index (1-based), in bytes.
    pub reader_quotas: BTreeMap<usize, u64>,
    /// With authorization on: the bootstrap admin secret (also sent by [`TestCluster::client`]).
    pub admin_token: Option<String>,
    /// `limits.query.timeout_ms` of every node (None: the default).
    pub query_timeout_ms: Option<u64>,
}

impl ClusterSpec {
    /// `readers` readers, one writer, two sync servers, one router; replication factor `rf`.
    pub fn new(readers: usize, rf: usize) -> Self {
        Self {
            readers,
            writers: 1,
            sync_servers: 2,
            replication_factor: rf,
            scrub_interval_secs: None,
            reader_quotas: BTreeMap::new(),
            admin_token: None,
            query_timeout_ms: None,
        }
    }

    /// Sets `limits.query.timeout_ms` of every node (which also bounds a forwarded read).
    pub fn query_timeout_ms(mut self, ms: u64) -> Self {
        self.query_timeout_ms = Some(ms);
        self
    }

    /// Turns authorization on with `secret` as the bootstrap admin token; anonymous callers
    /// keep `status` (the launcher waits on `/health`), revocations reach nodes within 1 s.
    pub fn auth(mut self, secret: &str) -> Self {
        self.admin_token = Some(secret.to_owned());
        self
    }

    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n;
        self
    }

    pub fn sync_servers(mut self, n: usize) -> Self {
        self.sync_servers = n;
        self
    }

    pub fn scrub_interval_secs(mut self, secs: u64) -> Self {
        self.scrub_interval_secs = Some(secs);
        self
    }

    /// Gives `reader-<index>` a quota.
    pub fn reader_quota(mut self, index: usize, bytes: u64) -> Self {
        self.reader_quotas.insert(index, bytes);
        self
    }

    pub fn start(self) -> TestCluster {
        TestCluster::start_spec(self)
    }
}

/// A running cluster. Dropping it kills every process.
pub struct TestCluster {
    nodes: BTreeMap<String, ClusterNode>,
    pub consul: ConsulAgent,
    pub s3: S3Server,
    dir: tempfile::TempDir,
    config: PathBuf,
    client: Client,
}

impl TestCluster {
    /// `readers` readers, 1 writer, 2 sync servers, 1 router, replication factor `rf`.
    pub fn start(readers: usize, rf: usize) -> TestCluster {
        ClusterSpec::new(readers, rf).start()
    }

    /// Starts a cluster as `spec` says.
    pub fn start_spec(spec: ClusterSpec) -> TestCluster {
        let started = Instant::now();
        let consul = ConsulAgent::start();
        let s3 = S3Server::start();
        let dir = tempfile::Builder::new()
            .prefix("trough-cluster-")
            .tempdir()
            .expect("cluster temp dir");
        let config = dir.path().join("trough.toml");
        std::fs::write(&config, config_toml(&consul, &s3, &spec)).expect("write config");
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &spec.admin_token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("header value"),
            );
        }
        let mut cluster = TestCluster {
            nodes: BTreeMap::new(),
            consul,
            s3,
            dir,
            config,
            client: Client::builder()
                .default_headers(headers)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        };
        let mut plan: Vec<(String, Kind, Vec<String>)> = Vec::new();
        for i in 1..=spec.sync_servers {
            plan.push((format!("sync-{i}"), Kind::SyncServer, vec![]));
        }
        for i in 1..=spec.readers {
            let extra = match spec.reader_quotas.get(&i) {
                Some(q) => vec!["--quota-bytes".to_owned(), q.to_string()],
                None => vec![],
            };
            plan.push((format!("reader-{i}"), Kind::Reader, extra));
        }
        for i in 1..=spec.writers {
            plan.push((format!("writer-{i}"), Kind::Writer, vec![]));
        }
        cluster.add_nodes(plan);
        // The router last, so that its first view of the cluster already has every node.
        cluster.add_nodes(vec![("router".to_owned(), Kind::Router, vec![])]);
        // The router must see every reader and writer before the test starts talking to it.
        let want: BTreeSet<String> = cluster
            .nodes
            .values()
            .filter(|n| matches!(n.kind, Kind::Reader | Kind::Writer))
            .map(|n| n.name.clone())
            .collect();
        cluster.wait_nodes_listed(&want);
        eprintln!(
            "[cluster] started {} processes in {:.1?}",
            cluster.nodes.len(),
            started.elapsed()
        );
        cluster
    }

    /// Spawns several nodes at once (in parallel; each waits for its own `/health`).
    fn add_nodes(&mut self, plan: Vec<(String, Kind, Vec<String>)>) {
        let config = self.config.clone();
        let root = self.dir.path().to_owned();
        let spawned: Vec<ClusterNode> = thread::scope(|s| {
            let handles: Vec<_> = plan
                .into_iter()
                .map(|(name, kind, extra)| {
                    let config = config.clone();
                    let data_dir = root.join(&name);
                    s.spawn(move || {
                        let mut node = ClusterNode {
                            name,
                            kind,
                            data_dir,
                            extra,
                            process: None,
                            url: String::new(),
                        };
                        spawn(&mut node, &config);
                        node
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for n in spawned {
            self.nodes.insert(n.name.clone(), n);
        }
    }

    /// Waits until Consul lists every node in `names` as a passing `trough-node` instance.
    pub fn wait_nodes_listed(&self, names: &BTreeSet<String>) {
        let ok = wait_until(START_TIMEOUT, || {
            let listed = self.consul_passing_nodes();
            names.iter().all(|n| listed.contains(n))
        });
        assert!(
            ok,
            "nodes {names:?} not all passing in Consul after {START_TIMEOUT:?}; passing: {:?}",
            self.consul_passing_nodes()
        );
    }

    /// Names of the `trough-node` service instances whose checks pass.
    pub fn consul_passing_nodes(&self) -> BTreeSet<String> {
        let url = format!(
            "{}/v1/health/service/trough-node?passing",
            self.consul.url()
        );
        let Ok(r) = self.client.get(url).send() else {
            return BTreeSet::new();
        };
        let Ok(v) = r.json::<Value>() else {
            return BTreeSet::new();
        };
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["Service"]["ID"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ---- nodes ---------------------------------------------------------------------------------

    pub fn node(&self, name: &str) -> &ClusterNode {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name} in the cluster"))
    }

    /// Base URL of node `name`.
    pub fn url(&self, name: &str) -> String {
        self.node(name).url().to_owned()
    }

    /// Base URL of the router.
    pub fn router_url(&self) -> String {
        self.url("router")
    }

    /// Names of the nodes of one kind (running or not), in name order.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.kind == kind)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Names of the running readers.
    pub fn running_readers(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.kind == Kind::Reader && n.running())
            .map(|n| n.name.clone())
            .collect()
    }

    /// SIGKILL node `name`.
    pub fn kill9(&mut self, name: &str) {
        eprintln!("[cluster] kill -9 {name}");
        self.nodes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no node {name}"))
            .kill9();
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to node `name`'s process.
    pub fn signal(&self, name: &str, signal: &str) {
        eprintln!("[cluster] kill -{signal} {name}");
        let pid = self
            .node(name)
            .process
            .as_ref()
            .and_then(|p| p.pid())
            .unwrap_or_else(|| panic!("{name} is not running"));
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// Kills `name` (if running) and starts it again on the same data dir and name (new port).
    pub fn restart(&mut self, name: &str) {
        let config = self.config.clone();
        let node = self
            .nodes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        node.kill9();
        eprintln!("[cluster] restarting {name}");
        spawn(node, &config);
    }

    /// Starts a new reader (optionally with a quota).
    pub fn add_reader(&mut self, name: &str, quota_bytes: Option<u64>) {
        let extra = quota_bytes
            .map(|q| vec!["--quota-bytes".to_owned(), q.to_string()])
            .unwrap_or_default();
        self.add_nodes(vec![(name.to_owned(), Kind::Reader, extra)]);
    }

    /// Where node `name` keeps copy `version` of segment `id` (`sha256` from the manifest).
    pub fn copy_path(&self, name: &str, id: &str, version: u64, sha256: &str) -> PathBuf {
        self.node(name)
            .data_dir
            .join("copies")
            .join(id)
            .join(format!("{version}-{sha256}.sqlite"))
    }

    // ---- HTTP ----------------------------------------------------------------------------------

    /// A blocking client (30 s timeout).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// GET `url` → (status, JSON body).
    pub fn get_json(&self, url: &str) -> (StatusCode, Value) {
        json_of(self.client.get(url).send().expect("GET"))
    }

    /// `GET /health` of node `name`.
    pub fn health(&self, name: &str) -> Value {
        let (status, v) = self.get_json(&format!("{}{}", self.url(name), super::HEALTH_SEGMENTS));
        assert_eq!(status, StatusCode::OK, "GET /health of {name}: {v}");
        v
    }

    /// `PUT /segments/{id}` through the router; asserts 201 and returns the manifest.
    pub fn publish(&self, id: &str, bytes: Vec<u8>) -> Value {
        let (status, body) = json_of(
            self.client
                .put(format!("{}/segments/{id}", self.router_url()))
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .expect("PUT segment"),
        );
        assert_eq!(status, StatusCode::CREATED, "PUT /segments/{id}: {body}");
        body
    }

    /// `GET /segments/{id}` through the router.
    pub fn segment(&self, id: &str) -> (StatusCode, Value) {
        self.get_json(&format!("{}/segments/{id}", self.router_url()))
    }

    /// Nodes listed as verified replicas of `id` (holding its latest version) by
    /// `GET /segments/{id}`, sorted.
    pub fn holders(&self, id: &str) -> Vec<String> {
        let (status, doc) = self.segment(id);
        if status != StatusCode::OK {
            return Vec::new();
        }
        verified_replicas(&doc)
    }

    /// Running readers whose own `/health` lists `id` at `version` verified, asked in name order.
    pub fn health_holders(&self, id: &str, version: u64) -> Vec<String> {
        self.running_readers()
            .into_iter()
            .filter(|n| {
                let (status, h) =
                    self.get_json(&format!("{}{}", self.url(n), super::HEALTH_SEGMENTS));
                status == StatusCode::OK && health_has(&h, id, version)
            })
            .collect()
    }

    /// Waits until `id` has at least `n` verified replicas (router view); returns them.
    pub fn wait_replicated(&self, id: &str, n: usize) -> Vec<String> {
        self.wait_replicated_within(id, n, PLACE_TIMEOUT)
    }

    /// Like [`TestCluster::wait_replicated`] with a custom timeout.
    pub fn wait_replicated_within(&self, id: &str, n: usize, timeout: Duration) -> Vec<String> {
        let mut last = Vec::new();
        let ok = wait_until(timeout, || {
            last = self.holders(id);
            last.len() >= n
        });
        assert!(
            ok,
            "segment {id} has {} verified replicas after {timeout:?}, want {n}: {last:?}; document: {}",
            last.len(),
            self.segment(id).1
        );
        last
    }

    /// POST `sql` as text to `path` on `base`.
    pub fn post_text(&self, base: &str, path: &str, sql: &str) -> (StatusCode, Value) {
        json_of(
            self.client
                .post(format!("{base}{path}"))
                .header("content-type", "text/plain")
                .body(sql.to_owned())
                .send()
                .expect("POST"),
        )
    }

    /// POST a JSON body to `path` on `base`.
    pub fn post_json(&self, base: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        json_of(
            self.client
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .expect("POST"),
        )
    }

    /// A read query through the router.
    pub fn query(&self, id: &str, sql: &str) -> (StatusCode, Value) {
        self.post_text(&self.router_url(), &format!("/segments/{id}/query"), sql)
    }

    /// A read query through the router that must answer 200; returns the rows.
    pub fn query_ok(&self, id: &str, sql: &str) -> Vec<Value> {
        let (status, body) = self.query(id, sql);
        assert_eq!(status, StatusCode::OK, "query {id} {sql:?}: {body}");
        body.as_array()
            .unwrap_or_else(|| panic!("not an array: {body}"))
            .clone()
    }

    /// A write through the router.
    pub fn execute(&self, id: &str, sql: &str) -> (StatusCode, Value) {
        self.post_text(&self.router_url(), &format!("/segments/{id}/execute"), sql)
    }

    /// The value of metric `name` (summed over its label sets) on node `node`; 0 if absent.
    pub fn metric(&self, node: &str, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url(node)))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    // ---- Consul --------------------------------------------------------------------------------

    /// The synchronizer leader: the holder of `trough/locks/leader`, if a live session holds it.
    pub fn leader(&self) -> Option<String> {
        let url = format!("{}/v1/kv/trough/locks/leader", self.consul.url());
        let r = self.client.get(url).send().ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        let v: Value = r.json().ok()?;
        let entry = v.as_array()?.first()?;
        entry["Session"].as_str().filter(|s| !s.is_empty())?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(entry["Value"].as_str()?)
            .ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Waits for a leader and returns it.
    pub fn wait_leader(&self) -> String {
        let mut leader = None;
        let ok = wait_until(START_TIMEOUT, || {
            leader = self.leader();
            leader.is_some()
        });
        assert!(ok, "no synchronizer leader after {START_TIMEOUT:?}");
        leader.expect("leader")
    }

    /// Consul's DNS interface.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.consul.dns_port))
    }

    /// Ports of the SRV answer for `<id>.trough-read.service.consul`, sorted.
    pub fn dns_read_ports(&self, id: &str) -> Vec<u16> {
        let name = format!("{id}.trough-read.service.consul");
        let answer = trough_testkit::dns::query_srv(self.dns_addr(), &name)
            .unwrap_or_else(|e| panic!("SRV {name}: {e}"));
        let mut ports: Vec<u16> = answer.srv.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        ports
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.kill9();
        }
    }
}

/// Replicas of a `GET /segments/{id}` document that are verified (hold the latest version).
pub fn verified_replicas(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["verified"] == true)
                .filter_map(|r| r["node"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a `/health` document lists `id` at `version` verified.
pub fn health_has(health: &Value, id: &str, version: u64) -> bool {
    health["segments"].as_array().is_some_and(|segs| {
        segs.iter()
            .any(|s| s["id"] == id && s["version"] == version && s["verified"] == true)
    })
}

/// Segment ids a `/health` document lists verified.
pub fn health_segments(health: &Value) -> Vec<String> {
    health["segments"]
        .as_array()
        .map(|segs| {
            segs.iter()
                .filter(|s| s["verified"] == true)
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sum of `size` over every copy a `/health` document lists (verified or not).
pub fn health_bytes(health: &Value) -> u64 {
    health["segments"]
        .as_array()
        .map(|segs| segs.iter().filter_map(|s| s["size"].as_u64()).sum())
        .unwrap_or(0)
}

fn config_toml(consul: &ConsulAgent, s3: &S3Server, spec: &ClusterSpec) -> String {
    let mut t = String::new();
    t.push_str(&format!("consul = {:?}\n", consul.url()));
    t.push_str(&format!("object_store = {:?}\n", s3.url("cluster")));
    t.push_str(&format!("consul_session_ttl_secs = {SESSION_TTL_SECS}\n"));
    t.push_str(&format!("consul_lock_delay_secs = {LOCK_DELAY_SECS}\n"));
    t.push_str(&format!("consul_node_ttl_secs = {NODE_TTL_SECS}\n"));
    t.push_str("\n[object_store_options]\n");
    for (k, v) in s3.options() {
        t.push_str(&format!("{k} = {v:?}\n"));
    }
    t.push_str("\n[sync]\ninterval_secs = 1\ndrop_grace_secs = 1\n");
    if let Some(s) = spec.scrub_interval_secs {
        t.push_str(&format!("scrub_interval_secs = {s}\n"));
    }
    t.push_str(&format!(
        "\n[[assignment.tiers]]\nname = \"default\"\nreplication_factor = {}\n",
        spec.replication_factor
    ));
    if let Some(secret) = &spec.admin_token {
        t.push_str(&format!(
            "\n[auth]\nenabled = true\nbootstrap_token = {secret:?}\nanonymous = [\"status\"]\ncache_ttl_ms = 1000\n"
        ));
    }
    if let Some(ms) = spec.query_timeout_ms {
        t.push_str(&format!("\n[limits.query]\ntimeout_ms = {ms}\n"));
    }
    t
}

/// Starts `node`'s process (the shared launcher) and waits until it prints its URL and answers
/// `/health`.
fn spawn(node: &mut ClusterNode, config: &Path) {
    std::fs::create_dir_all(&node.data_dir).expect("node data dir");
    let process = TroughProcess::command(BIN)
        .args(node.kind.args())
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--node-name")
        .arg(&node.name)
        .args(&node.extra)
        .env_remove("TROUGH_CONFIG")
        .env("NO_COLOR", "1")
        .label(&node.name)
        .timeout(START_TIMEOUT)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    node.url = process.url().to_owned();
    node.process = Some(process);
}

// ---- segments ----------------------------------------------------------------------------------

/// Rows per test segment.
pub const SEGMENT_ROWS: usize = 300;

/// A test segment: table `t(id, name, score, seg)` with [`SEGMENT_ROWS`] rows whose values depend
/// on `n`. Every segment made by this function has the same file size.
pub fn make_segment(n: usize) -> SqliteFile {
    SqliteFile::new(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, seg TEXT);
         WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < {SEGMENT_ROWS})
         INSERT INTO t SELECT k, printf('seg%04d-row%05d', {n}, k), k * 0.5 + {n} + 0.25, 'seg{n:04}' FROM c;"
    ))
}

/// The queries every test segment is checked with.
pub const CHECK_QUERIES: &[&str] = &[
    "SELECT count(*) AS n, sum(score) AS total, min(name) AS first, max(name) AS last FROM t",
    "SELECT * FROM t WHERE id % 37 = 0 ORDER BY id",
    "SELECT seg, name FROM t ORDER BY id DESC LIMIT 3",
];

/// Checks `rows` (an API answer) against SQLite run on `file`.
#[track_caller]
pub fn assert_matches_sqlite(file: &SqliteFile, sql: &str, rows: &[Value]) {
    let want = file.rows(sql, &json!([]));
    super::assert_rows_eq(rows, &want);
}

/// Whether `rows` equal what SQLite answers on `file` (for use in loops that count failures).
pub fn same_rows(file: &SqliteFile, sql: &str, rows: &[Value]) -> bool {
    let want = file.rows(sql, &json!([]));
    rows.len() == want.len() && rows.iter().zip(&want).all(|(a, b)| super::same_json(a, b))
}
