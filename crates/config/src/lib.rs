//! Configuration: one typed struct, read from defaults, a TOML file, `TROUGH_*` environment
//! variables and command-line flags, in increasing order of precedence.
//!
//! Nested fields are reached from the environment with `__`: `TROUGH_LIMITS__QUERY__TIMEOUT_MS=500`
//! sets `limits.query.timeout_ms`. Every field is documented here and in `docs/operations.md`.
//! This module only loads and validates configuration; it starts nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trough_types::error::codes;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
mod inflight;
mod retention;
pub use inflight::InflightLimits;
pub use retention::{RetentionConfig, TierRetention};

use serde::{Deserialize, Serialize};

use trough_sqlite::{QueryLimits, SqliteLimits, Synchronous};
use trough_types::error::{Error, Result};

/// The whole configuration of a trough process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Directory for all local state: segment copies, writable databases, the embedded
    /// coordinator and (by default) the local object store. Default `./trough-data`.
    pub data_dir: PathBuf,
    /// Address the HTTP server listens on. Default `127.0.0.1:6444`; port 0 picks a free port.
    pub listen: String,
    /// This node's name, unique in a cluster. Default: `local`.
    pub node_name: String,
    /// Object store URL: `file:///abs/dir` or `s3://bucket/prefix`. Default:
    /// `file://<data_dir>/objects`.
    pub object_store: Option<String>,
    /// Extra object-store options (e.g. `aws_endpoint`, `aws_region`, `aws_allow_http`), in the
    /// key names `object_store` uses. Credentials are best left to the usual `AWS_*` variables.
    /// Values may be given as strings, numbers or booleans.
    #[serde(deserialize_with = "scalar_map")]
    pub object_store_options: BTreeMap<String, String>,
    /// Consul HTTP API URL (e.g. `http://127.0.0.1:8500`). Unset: embedded coordination in a
    /// SQLite file under `data_dir` (one process only).
    pub consul: Option<String>,
    /// Prefix of trough's keys in Consul KV. Default `trough`.
    pub consul_prefix: String,
    /// TTL of this process's Consul session, which holds its locks (leader lock, write leases),
    /// in seconds (Consul accepts 10 to 86400). Default 10.
    pub consul_session_ttl_secs: u64,
    /// How long a lock stays unavailable after its holder's session ends, in seconds: the fencing
    /// margin (keep it at least half the session TTL). Default 15.
    pub consul_lock_delay_secs: u64,
    /// How long a node stays listed (and in DNS) without a heartbeat, in seconds. Default 30.
    pub consul_node_ttl_secs: u64,
    /// A CA (PEM) trusted besides the system's for an `https://` Consul URL. Default none.
    pub consul_ca_file: Option<PathBuf>,
    /// A file holding the Consul ACL token sent as `X-Consul-Token`. Default none.
    pub consul_token_file: Option<PathBuf>,
    /// Tiers and replication factors used by the synchronizer leader.
    pub assignment: AssignmentConfig,
    /// Request and query limits.
    pub limits: Limits,
    /// Local synchronization of segment copies.
    pub sync: SyncConfig,
    /// Writable segments.
    pub writer: WriterConfig,
    /// This node's storage.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication and authorization (docs/security.md).
    pub auth: AuthConfig,
    /// TLS of the HTTP listener and of requests to other nodes (docs/security.md).
    pub tls: TlsConfig,
    /// Retention of stored versions and garbage collection of data objects.
    pub retention: RetentionConfig,
}

/// TLS (docs/security.md, docs/operations.md). Off unless `cert_file` and `key_file` are set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// The listener's certificate chain (PEM, leaf first); reloaded when the file changes.
    pub cert_file: Option<PathBuf>,
    /// The listener's private key (PEM); reloaded when the file changes.
    pub key_file: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA (PEM); nodes then present
    /// their own certificate when they forward.
    pub client_ca_file: Option<PathBuf>,
    /// A CA (PEM) trusted besides the system's when forwarding to other nodes.
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether the listener serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./trough-data"),
            listen: "127.0.0.1:6444".into(),
            node_name: "local".into(),
            object_store: None,
            object_store_options: BTreeMap::new(),
            consul: None,
            consul_prefix: "trough".into(),
            consul_session_ttl_secs: 10,
            consul_lock_delay_secs: 15,
            consul_node_ttl_secs: 30,
            consul_ca_file: None,
            consul_token_file: None,
            assignment: AssignmentConfig::default(),
            limits: Limits::default(),
            sync: SyncConfig::default(),
            writer: WriterConfig::default(),
            node: NodeConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Tiers and how segments map to them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AssignmentConfig {
    /// Tiers with their replication factors. Default: one tier `default` with factor 1.
    pub tiers: Vec<TierConfig>,
    /// Rules mapping a segment id to a tier; first match wins, no match means `default`.
    pub tier_rules: Vec<TierRuleConfig>,
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        Self {
            tiers: vec![TierConfig {
                name: "default".into(),
                replication_factor: 1,
            }],
            tier_rules: Vec::new(),
        }
    }
}

/// One tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TierConfig {
    /// Tier name (nodes declare theirs with `node.tier`).
    pub name: String,
    /// Distinct nodes of this tier that must hold each of its segments.
    pub replication_factor: usize,
}

/// A rule mapping segment ids to a tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TierRuleConfig {
    /// `prefix*`, an exact id, or `regex:<pattern>`.
    pub pattern: String,
    /// The tier matching segments belong to.
    pub tier: String,
}

/// Request and query limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest SQL or JSON request body, in bytes (413 above it). Default 64 MiB.
    pub max_body_bytes: u64,
    /// Largest segment file accepted by `PUT /segments/{id}`, in bytes (413 above it).
    /// Default 64 GiB.
    pub max_upload_bytes: u64,
    /// Per-query limits: timeout, rows, response bytes, connections per segment.
    pub query: QueryLimits,
    /// Wall-clock limit of one write request (`/execute`, the wire format's writes, provisioning
    /// from schema SQL), in milliseconds, from when it gets the segment's writer: at the limit the
    /// statement is interrupted, the transaction rolled back and the client gets `write_timeout`
    /// (504). Default 30000.
    pub write_timeout_ms: u64,
    /// Wall-clock limit of validating schema SQL (`PUT /schemas/{name}`, provisioning with
    /// `schema_sql`), in milliseconds; past it the schema is `invalid_schema` (400).
    /// Default 5000.
    pub schema_timeout_ms: u64,
    /// Largest database schema SQL may build while it is validated, in bytes (the scratch
    /// database's `max_page_count`); more is `invalid_schema` (400). Default 64 MiB.
    pub schema_max_bytes: u64,
    /// How long a process keeps running after SIGTERM/SIGINT, in milliseconds: running requests
    /// may finish during the first half, then running SQLite statements are interrupted
    /// (`shutting_down`, 503), and at the end the process exits whatever is left. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Limits of SQLite itself: string/blob length, parameters, heap.
    pub sqlite: SqliteLimits,
    /// Cluster-wide queries (`POST /query`).
    pub scatter: ScatterLimits,
    /// The HTTP connection layer: timeouts, connections, header sizes.
    pub http: HttpLimits,
    /// Requests served at the same time, per class (503 `overloaded` beyond).
    pub inflight: InflightLimits,
}

/// Limits of the HTTP connection layer (see `docs/operations.md`, "HTTP limits").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpLimits {
    /// Time a client has to send a request's whole head (request line and headers), in
    /// milliseconds; the connection is closed without an answer after it. Also bounds how long an
    /// idle keep-alive connection waits for its next request. Default 10000.
    pub header_read_timeout_ms: u64,
    /// Longest pause while a request body is being received, in milliseconds (408
    /// `body_timeout`). Default 30000.
    pub body_idle_timeout_ms: u64,
    /// Connections served at the same time. Beyond it a new connection gets an immediate 503
    /// `too_many_connections` and is closed. Default 1024.
    pub max_connections: usize,
    /// Largest request target (path and query), in bytes (414 `uri_too_long`). Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Largest request head (request line and all headers), in bytes (431 `headers_too_large`).
    /// The connection's read buffer is four times this (at least 8 KiB): heads beyond that are
    /// refused by the HTTP library itself with a bare 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// After answering a request whose body was not read (413, or an error found before the
    /// body was needed), keep reading and discarding the rest for at most this long, in
    /// milliseconds, so that clients that send the whole body before reading see the answer.
    /// Default 5000.
    pub linger_ms: u64,
    /// ... and at most this many bytes. Default 64 MiB.
    pub linger_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_idle_timeout_ms: 30_000,
            max_connections: 1024,
            max_uri_bytes: 8 << 10,
            max_header_bytes: 16 << 10,
            linger_ms: 5_000,
            linger_bytes: 64 << 20,
        }
    }
}

/// Limits of cluster-wide queries.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ScatterLimits {
    /// Segments queried at the same time by one cluster-wide query. Default 16.
    pub concurrency: usize,
    /// Time one segment may take to answer, in milliseconds; a slower segment counts as failed.
    /// Default 30000.
    pub segment_timeout_ms: u64,
    /// Memory the merge of grouped/aggregated answers may use before spilling to disk, in bytes.
    /// Default 64 MiB.
    pub merge_memory_budget_bytes: u64,
    /// A segment's answer is kept in memory up to this size, then spooled to a temporary file,
    /// in bytes. Default 64 KiB.
    pub spool_memory_bytes: usize,
    /// Largest temporary merge database on disk, in bytes; a merge that needs more fails with
    /// `merge_too_large` (a gathered join copies whole tables into it). Default 8 GiB.
    pub merge_disk_budget_bytes: u64,
}

impl Default for ScatterLimits {
    fn default() -> Self {
        Self {
            concurrency: 16,
            segment_timeout_ms: 30_000,
            merge_memory_budget_bytes: 64 << 20,
            spool_memory_bytes: 64 << 10,
            merge_disk_budget_bytes: 8 << 30,
        }
    }
}

impl Limits {
    /// [`Self::write_timeout_ms`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    /// [`Self::schema_timeout_ms`] as a duration.
    pub fn schema_timeout(&self) -> Duration {
        Duration::from_millis(self.schema_timeout_ms)
    }
    /// [`Self::shutdown_grace_ms`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_upload_bytes: 64 << 30,
            query: QueryLimits::default(),
            write_timeout_ms: 30_000,
            schema_timeout_ms: 5_000,
            schema_max_bytes: 64 << 20,
            shutdown_grace_ms: 10_000,
            sqlite: SqliteLimits::default(),
            scatter: ScatterLimits::default(),
            http: HttpLimits::default(),
            inflight: InflightLimits::default(),
        }
    }
}

/// Local synchronization settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Longest wait between two sync passes when nothing changes, in seconds (changes in the
    /// catalog wake the loop at once). Default 10.
    pub interval_secs: u64,
    /// Segments downloaded at the same time. Default 4.
    pub download_concurrency: usize,
    /// How often every local copy is re-hashed and compared with its manifest, in seconds;
    /// 0 disables the scrub. Default 3600.
    pub scrub_interval_secs: u64,
    /// How long a copy must stay unwanted before it is deleted, in seconds, so that a reader
    /// returning from a critical check keeps the copies it is assigned again. Default 15.
    pub drop_grace_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10,
            download_concurrency: 4,
            scrub_interval_secs: 3600,
            drop_grace_secs: 15,
        }
    }
}

impl SyncConfig {
    /// [`SyncConfig::interval_secs`] as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
    /// [`SyncConfig::drop_grace_secs`] as a duration.
    pub fn drop_grace(&self) -> Duration {
        Duration::from_secs(self.drop_grace_secs)
    }
}

/// Writable segment settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WriterConfig {
    /// Promote every writable segment that changed at most this often, in seconds; 0 (default)
    /// promotes only on request.
    pub auto_promote_secs: u64,
    /// SQLite `synchronous` level of writable databases: `full` (default: an acknowledged write
    /// survives power loss), `normal` (survives a process crash, may lose the last writes on
    /// power loss), or `extra`.
    pub synchronous: Synchronous,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            auto_promote_secs: 0,
            synchronous: Synchronous::Full,
        }
    }
}

/// This node's storage.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeConfig {
    /// The node's tier. Default `default`.
    pub tier: String,
    /// Bytes of segment copies this node may hold; 0 means no limit. Default 0.
    pub quota_bytes: u64,
    /// The URL other processes reach this node at. Default: `http://<listen address>`.
    pub advertise: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            tier: "default".into(),
            quota_bytes: 0,
            advertise: None,
        }
    }
}

/// Logging settings. The level comes from `RUST_LOG` (default `info`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Log as JSON lines instead of human-readable text.
    pub json: bool,
}

/// Authentication and authorization (docs/security.md, docs/operations.md).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Whether requests need a token (`Authorization: Bearer <secret>`). Default off.
    pub enabled: bool,
    /// What requests without a token may do when `enabled`: grants like `read:public-*` and
    /// cluster rights like `status`, as a list or one comma-separated string. Default: nothing.
    #[serde(deserialize_with = "string_or_list")]
    pub anonymous: Vec<String>,
    /// How long a node trusts a token it read from the coordinator, in milliseconds: a
    /// revocation takes effect on every node within this time. Default 2000.
    pub cache_ttl_ms: u64,
    /// The secret of the first admin token, for automation (`trough_<16 hex>_<key>`). When
    /// unset and no token exists, the first start with `enabled` creates one and prints it once.
    pub bootstrap_token: Option<String>,
    /// A file holding `bootstrap_token` (takes precedence over it).
    pub bootstrap_token_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address with `enabled` off (`--insecure`).
    pub insecure: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            anonymous: Vec::new(),
            cache_ttl_ms: 2000,
            bootstrap_token: None,
            bootstrap_token_file: None,
            insecure: false,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    /// Never shows the bootstrap secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("anonymous", &self.anonymous)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .field(
                "bootstrap_token",
                &self.bootstrap_token.as_ref().map(|_| "<redacted>"),
            )
            .field("bootstrap_token_file", &self.bootstrap_token_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl AuthConfig {
    /// The token cache lifetime.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }
}

/// A list given as a list or as one comma-separated string (environment variables).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
}

impl Config {
    /// Defaults, then the TOML file (if given), then `TROUGH_*` environment variables. Command-line
    /// flags are merged on top by the caller with [`Figment::merge`].
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        f.merge(
            Env::prefixed("TROUGH_")
                .split("__")
                .ignore(&["url", "config"]),
        )
    }

    /// Extracts and validates a configuration from a figment.
    pub fn from_figment(f: &Figment) -> Result<Self> {
        let c: Config = f
            .extract()
            .map_err(|e| Error::invalid(codes::INVALID_CONFIG, e.to_string()))?;
        trough_types::id::NodeName::new(&c.node_name)
            .map_err(|e| Error::invalid(codes::INVALID_CONFIG, format!("node_name: {e}")))?;
        Ok(c)
    }

    /// The object store URL, defaulting to `file://<data_dir>/objects`.
    pub fn object_store_url(&self) -> Result<String> {
        match &self.object_store {
            Some(u) => Ok(u.clone()),
            None => {
                let dir = absolute(&self.data_dir)?.join("objects");
                Ok(format!("file://{}", dir.display()))
            }
        }
    }

    /// Object-store options as pairs, keys lower-cased (environment variables arrive in upper case).
    pub fn object_store_option_pairs(&self) -> Vec<(String, String)> {
        self.object_store_options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    }
}

/// Deserializes a map whose values may be any scalar (environment variables like `true` or `9000`
/// arrive typed) into strings.
fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        B(bool),
        I(i64),
        U(u64),
        F(f64),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::B(b) => b.to_string(),
                Scalar::I(i) => i.to_string(),
                Scalar::U(u) => u.to_string(),
                Scalar::F(f) => f.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// `path` made absolute against the current directory (without touching the file system).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

#[cfg(test)]
// figment's `Jail` API returns its large error type by value; not ours to change.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_env_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\nnode_name = \"from-file\"\n[limits.query]\ntimeout_ms = 7\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("TROUGH_NODE_NAME", "from-env");
            jail.set_env("TROUGH_OBJECT_STORE_OPTIONS__AWS_ALLOW_HTTP", "true");
            let c = Config::from_figment(&Config::figment(Some(&file))).unwrap();
            assert_eq!(c.listen, "0.0.0.0:1");
            assert_eq!(c.node_name, "from-env");
            assert_eq!(c.limits.query.timeout_ms, 7);
            assert_eq!(c.sync.download_concurrency, 4);
            assert_eq!(
                c.object_store_option_pairs(),
                vec![("aws_allow_http".to_owned(), "true".to_owned())]
            );
            jail.set_env("TROUGH_AUTH__ANONYMOUS", "status, read:public-*");
            let c = Config::from_figment(&Config::figment(Some(&file))).unwrap();
            assert_eq!(c.auth.anonymous, ["status", "read:public-*"]);
            assert!(!c.auth.enabled);
            let f = Config::figment(Some(&file)).merge(("listen", "1.2.3.4:5"));
            assert_eq!(Config::from_figment(&f).unwrap().listen, "1.2.3.4:5");
            Ok(())
        });
    }

    #[test]
    fn rejects_bad_node_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TROUGH_NODE_NAME", "../x");
            assert!(Config::from_figment(&Config::figment(None)).is_err());
            Ok(())
        });
    }
}
