//! The Consul coordinator: the [`Coordinator`] trait on Consul's KV store, sessions, agent
//! services with TTL checks, health queries and blocking queries.
//!
//! A cluster runs one Consul agent per machine; every trough process talks to its local agent
//! (`consul.url`, e.g. `http://127.0.0.1:8500`). Everything trough stores lives under one KV
//! prefix (`trough` by default, `<prefix>/` below), so several clusters can share one Consul.
//! The client is a small typed layer over `reqwest` (`client.rs` here); see
//! `docs/decisions/0005-consul-client.md` for why.
//!
//! # How each operation maps to Consul
//!
//! ## Catalog: `<prefix>/catalog/<id>`
//!
//! One key per segment holds its [`SegmentEntry`] as JSON. [`Coordinator::add_version`] and
//! [`Coordinator::set_writable`] are read-modify-write cycles with check-and-set: read the key and
//! its `ModifyIndex`, compute the new entry, `PUT ?cas=<ModifyIndex>` (`?cas=0` when the key does
//! not exist yet, which creates it only if it is still absent). If another writer got there
//! first, Consul answers `false` and we start over from a fresh read, after a short randomized
//! exponential backoff, up to 64 times (then `Unavailable`). So two publishers recording different versions
//! of one segment at once never lose either version, and two nodes racing to make a segment
//! writable cannot both win: the loser re-reads, sees the other writer and gets `Conflict`.
//! A call that would change nothing (same manifest again, same writer again, read-only already)
//! writes nothing, so it wakes no watcher. An entry stays when it becomes empty (no versions,
//! not writable), as the conformance suite expects; clearing the writable flag of an unknown
//! segment writes nothing.
//!
//! **Guarantees**: each entry is linearizable (Consul's default consistency reads from the
//! leader; CAS writes go through Raft). **Not guaranteed**: atomicity across segments, and
//! listing is not a snapshot of one instant across keys either (it is one KV read, so it is in
//! practice, but nothing relies on it). One entry must stay under Consul's KV value limit
//! (`limits.kv_max_value_size`, 512 KiB by default): about 1,500 versions of one segment.
//!
//! ## Schemas and assignment: `<prefix>/schemas/<name>`, `<prefix>/assignment`
//!
//! A schema is its SQL text, as is. [`Coordinator::put_schema`] first tries `?cas=0` (create only
//! if absent) to learn, race-free, whether the schema is new, and overwrites otherwise. The
//! assignment is split into 256 buckets by a stable hash of the segment id,
//! `<prefix>/assignment/<000..255>`, each a JSON [`AssignmentMap`] rewritten only when it differs.
//! An unchanged round of the leader therefore wakes nobody, a round that moves a few segments
//! rewrites only their buckets, and no value nears Consul's 512 KiB limit: 100,000 segments at
//! two replicas make about 30 KiB per bucket. Buckets are written one by one, not atomically, so
//! a reader can briefly see some segments with the old placement and some with the new. That is
//! safe: each segment's replica list is consistent, and a node drops a copy only once the new
//! holders have the latest version.
//!
//! ## Tokens: `<prefix>/tokens/<accessor>`
//!
//! One key per token holds its record as JSON (the secret's SHA-256, never the secret).
//! [`Coordinator::create_token`] writes with `?cas=0` (only if absent); a revocation deletes
//! the key with `?cas=<ModifyIndex>`. Lookups are point reads by accessor (see `tokens.rs`).
//!
//! ## Nodes: agent services + `<prefix>/nodes/<name>`
//!
//! [`Coordinator::register_node`] is the heartbeat. It does two things.
//!
//! 1. **Agent services with TTL checks** (the liveness of record), on the *local* agent:
//!    - `<svc>-node` for every node (ID = node name). Tags: `<segment>@<version>` for each held
//!      copy. Meta: `trough_prefix`, `tier`, `quota_bytes`, `stored_bytes`, `roles`.
//!    - `<svc>-read` for nodes with the `reader` role (ID = `<name>:read`). Tags: the ids of
//!      the held segments, so that `<segment>.<svc>-read.service.consul` resolves through Consul
//!      DNS to exactly the healthy readers holding a verified copy (A records; SRV gives ports).
//!    - `<svc>-write` for nodes with the `writer` role (ID = `<name>:write`), no tags:
//!      `<svc>-write.service.consul` finds writers.
//!
//!    `<svc>` is [`ConsulOptions::service_prefix`] (`trough`). Address and port come from
//!    [`NodeInfo::address`]. Each service has its own TTL check (`service:<ID>`, TTL =
//!    [`ConsulOptions::node_ttl`], critical services deregistered after
//!    [`ConsulOptions::deregister_after`]). When the services are exactly what this process last
//!    registered, a heartbeat is only `PUT /v1/agent/check/pass/service:<ID>` per service, which
//!    changes nothing in Consul's catalog (no Raft write, no wake-up). When they differ (held
//!    copies, address, roles) or the agent forgot them (restarted), they are registered again and
//!    `register_node` waits (up to [`ConsulOptions::request_timeout`]) until the catalog shows
//!    them, so a `list_nodes` or DNS query right after sees the node. Each check is passed right after
//!    its registration: Consul keeps a critical check critical across re-registration, so a node
//!    restarted after its check expired would otherwise wait out that bound (issue 15).
//! 2. **Static facts in KV**: `<prefix>/nodes/<name>` holds the name, address, tier, quota and
//!    roles as JSON, and is written only when one of those changed, so a joining (or
//!    reconfigured) node wakes [`Coordinator::wait_for_change`] watchers, while heartbeats do not
//!    churn KV.
//!
//! [`Coordinator::list_nodes`] = `GET /v1/health/service/<svc>-node?passing` joined with the KV
//! records: a node is listed while its check passes (it heartbeated within `node_ttl`), its
//! service carries our `trough_prefix`, and it has a KV record. `held` and `stored_bytes` come
//! from the service; everything else from KV. `updated_at` is the time of the listing (Consul
//! only tells us that the node reported within its TTL, not when).
//!
//! **Not guaranteed / limits**: a node is "healthy" when it heartbeats, not when it answers
//! queries (an HTTP check could be added by the deployment). DNS is a view of the catalog, so it
//! lags a registration by the agent's sync (milliseconds) and DNS caches by their TTL (Consul's
//! `dns_config.service_ttl`, 0 by default). Segment ids that are not valid DNS labels cannot be
//! looked up by DNS, although they are listed and tagged like any other: ids containing `.`
//! (the label separator), ids longer than 63 bytes, and ids that differ only in letter case (DNS
//! and Consul's tag match are case-insensitive, so `A.…` also finds nodes holding `a`). Such
//! segments are still routed through `list_nodes` / the HTTP API.
//!
//! ## Change notification: blocking queries
//!
//! [`Coordinator::wait_for_change`] runs two Consul blocking queries at once and returns when
//! either reports a change, or both time out:
//!
//! - `GET /v1/kv/<prefix>/?keys&index=<since>&wait=<timeout>`: anything under the prefix
//!   (catalog, assignment, node records, schemas, lock acquisitions and releases). `?keys`
//!   instead of `?recurse`: the index is the same, and no values travel.
//! - `GET /v1/health/service/<svc>-node?index=<since>&wait=<timeout>`: nodes joining, leaving,
//!   changing their held copies, or turning critical.
//!
//! Both indexes are Raft indexes of the same log, so the returned index is their maximum, and a
//! change to either yields a larger one. `since = 0` (or a zero timeout) reads both once and
//! returns at once; a timeout with no change returns `since` unchanged. Consul's rules for
//! indexes are applied: an index never goes to 0 (clamped to 1), and when Consul's index goes
//! *backwards* (a snapshot restore, a rebuilt cluster, tombstones reaped), it is treated as a
//! change: the coordinator shifts all later indexes by a fixed offset so that what callers see
//! still only grows. Wake-ups are a superset of what the trait promises (a lock taken, a schema
//! added, a node reconfigured also wake), never a subset: callers re-read state, so an extra
//! wake-up costs one read. It is not tight polling: an idle watcher makes one pair of requests
//! per `timeout`. One known source of extra wake-ups: while no `<svc>-node` instance exists at
//! all, Consul 1.8 reports for the missing service the index of the last service extinction,
//! or, on a cluster where no service was ever deregistered, the index of the whole catalog, so
//! watchers then also wake on unrelated catalog writes. A cluster with nodes never sees this.
//!
//! ## Locks and write leases: sessions + `?acquire`
//!
//! Each coordinator has at most one Consul session (created on first use, on the local agent's
//! node, `Behavior = release`, TTL [`ConsulOptions::session_ttl`] = 10 s, lock-delay
//! [`ConsulOptions::lock_delay`] = 15 s), renewed by a background task every TTL/3.
//! [`Coordinator::try_lock`] is `PUT /v1/kv/<prefix>/locks/<key>?acquire=<session>` with the
//! holder's name as the value. Holders in one process share the session, so before acquiring
//! the key is read: held by our session for the same holder means re-entrant success without a
//! write; for another holder, `None`; another session, `None`. Lock operations of one process
//! are serialized so that check and acquire cannot interleave. [`Coordinator::unlock`] is
//! `?release=<session>` (only if this holder holds it); [`Coordinator::lock_holder`] reads the
//! key (held = it has a session; the holder is its value).
//!
//! The returned [`Lease::lost`] flips to `true` when
//!
//! - a renew answers 404: Consul invalidated the session (destroyed by an operator, or the
//!   agent's node failed its `serfHealth` check), or
//! - no renew succeeded for **TTL/2**, counted from when the last successful renew was *sent*
//!   (network trouble, an unreachable agent, a stalled server),
//! - or the lock is released with `unlock`, or the coordinator is closed.
//!
//! After a loss the session is forgotten (and destroyed, best effort); the next `try_lock`
//! creates a new one. Leases of the old session stay lost.
//!
//! ### Fencing argument
//!
//! The holder must consider itself fenced strictly before anyone else can take the lock.
//! Another session can acquire the key only after our session is invalidated (or we release).
//! Consul invalidates a session for TTL no earlier than TTL after it *processed* the last renew
//! (in fact it waits up to 2×TTL), and a renew is processed after it was sent, so: with `s` the
//! send time of the last successful renew, invalidation by TTL happens at ≥ `s + TTL`, and then
//! the lock-delay keeps the key unavailable a while longer. We flip at `s + TTL/2` at the latest:
//! a margin of TTL/2 (5 s) for clock-rate differences and scheduling. Invalidation by other
//! means (destroy, node failure) at time `t` happens after every renew that succeeded, so
//! `s < t`, and we flip by `s + TTL/2 < t + TTL/2`; others can acquire only at
//! `t + lock_delay`. So the holder is fenced first whenever `lock_delay ≥ TTL/2`, which the
//! defaults satisfy (15 s ≥ 5 s). A shorter lock-delay (tests use 1 s) keeps the TTL guarantee
//! but not the one for external invalidation; a warning is logged.
//!
//! **Not guaranteed**: fencing is by time. A process that checks [`Lease::is_held`] and is then
//! paused (swapped, stopped) for more than TTL/2 before acting can act after someone else took
//! over: work done under a lease should be short, or re-check the lease right before it
//! commits. The lease does not notice a lock key deleted or released by someone else while our
//! session lives (an operator action); `lock_holder` does.
//!
//! ## Closing
//!
//! [`ConsulCoordinator::close`] destroys the session (releasing its locks, subject to
//! lock-delay) and deregisters the services this coordinator registered, so a node leaves DNS
//! at once. Dropping the coordinator destroys the session best-effort (on the current Tokio
//! runtime, if any); its services then expire with their TTL.

mod client;
mod lifecycle;
mod session;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_restart;
#[cfg(test)]
mod tests_tls;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::client::{go_duration, Client, HealthEntry, ServiceRegistration, TtlCheck};
use self::session::Locks;
use super::{AssignmentMap, Coordinator, Lease, NodeInfo};
use trough_types::error::{Error, Result};
use trough_types::id::{NodeName, SchemaName, SegmentId};
use trough_types::manifest::{Manifest, SegmentEntry, WritableInfo};

/// The default KV prefix.
pub const DEFAULT_PREFIX: &str = "trough";

/// The assignment lives under `<prefix>/assignment/<bucket>`.
const ASSIGNMENT_DIR: &str = "assignment";
/// Number of assignment buckets: 100,000 segments at RF 2 make about 30 KiB per bucket.
const ASSIGNMENT_BUCKETS: u64 = 256;

/// The assignment bucket key of a segment (FNV-1a of its id, stable across versions).
fn assignment_bucket_key(id: &SegmentId) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{ASSIGNMENT_DIR}/{:03}", h % ASSIGNMENT_BUCKETS)
}

/// How many check-and-set rounds an update of one catalog entry tries before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

/// The rest after a check-and-set round lost a race, before reading again: 5 ms doubling up to
/// 100 ms, each plus up to as much again at random so that racing writers spread out.
const CAS_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(5))
    .with_max_delay(Duration::from_millis(100))
    .with_jitter()
    .with_max_times(MAX_CAS_ATTEMPTS - 1);

/// Why a check-and-set round did not write.
enum Cas {
    /// Another writer changed the entry first: read again and retry.
    Lost,
    /// Anything else: give up.
    Failed(Error),
}

/// Consul's limit on a service meta value.
const META_VALUE_MAX: usize = 512;

/// Options of a [`ConsulCoordinator`]. `Default` gives the production values.
#[derive(Clone, Debug)]
pub struct ConsulOptions {
    /// KV prefix; everything lives under `<prefix>/`. Default `trough`.
    pub prefix: String,
    /// Service names are `<service_prefix>-node`, `-read` and `-write`. Default `trough`.
    pub service_prefix: String,
    /// ACL token, sent as `X-Consul-Token`. Default none.
    pub token: Option<String>,
    /// A CA (PEM) trusted besides the system's, for an agent served over HTTPS. Default none.
    pub ca_pem: Option<Vec<u8>>,
    /// Session TTL for locks (Consul accepts 10 s to 24 h). Default 10 s.
    pub session_ttl: Duration,
    /// Session lock-delay: how long a lock stays unavailable after its session is invalidated.
    /// Default 15 s; keep it at least `session_ttl / 2` (see the fencing argument).
    pub lock_delay: Duration,
    /// TTL of node checks: a node that does not call `register_node` for this long drops out
    /// of `list_nodes` and DNS. Default 30 s.
    pub node_ttl: Duration,
    /// Consul removes a node's services after they were critical this long (Consul's minimum
    /// is one minute). Default 1 min.
    pub deregister_after: Duration,
    /// Timeout of one ordinary request (blocking queries get their wait on top). Default 10 s.
    pub request_timeout: Duration,
}

impl Default for ConsulOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            service_prefix: "trough".into(),
            token: None,
            ca_pem: None,
            session_ttl: Duration::from_secs(10),
            lock_delay: Duration::from_secs(15),
            node_ttl: Duration::from_secs(30),
            deregister_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A node's static facts, as stored in `<prefix>/nodes/<name>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeRecord {
    name: NodeName,
    address: String,
    tier: String,
    quota_bytes: u64,
    roles: Vec<String>,
    /// When these facts were last written.
    changed_at: DateTime<Utc>,
}

impl NodeRecord {
    fn of(n: &NodeInfo) -> Self {
        Self {
            name: n.name.clone(),
            address: n.address.clone(),
            tier: n.tier.clone(),
            quota_bytes: n.quota_bytes,
            roles: n.roles.clone(),
            changed_at: Utc::now(),
        }
    }

    fn same_facts(&self, o: &Self) -> bool {
        self.name == o.name
            && self.address == o.address
            && self.tier == o.tier
            && self.quota_bytes == o.quota_bytes
            && self.roles == o.roles
    }
}

/// What one catalog update decided.
enum Update {
    /// Nothing to write; this is the entry.
    Unchanged(SegmentEntry),
    /// Write this entry.
    Write(SegmentEntry),
}

/// The Consul backend of [`Coordinator`]. See the module documentation.
pub struct ConsulCoordinator {
    client: Client,
    opts: ConsulOptions,
    node: NodeName,
    locks: Arc<Locks>,
    /// Added to Consul's index after it went backwards, so that returned indexes only grow.
    index_offset: Mutex<u64>,
    /// The services this process last registered, per node name.
    registered: tokio::sync::Mutex<HashMap<NodeName, Vec<ServiceRegistration>>>,
}

impl std::fmt::Debug for ConsulCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulCoordinator")
            .field("prefix", &self.opts.prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Validates a `/`-separated path of names (`[A-Za-z0-9._-]+`, no `.`/`..` components).
fn valid_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Splits a node address (`http://host:port`, or `host:port`) into Consul's Address and Port.
fn parse_address(address: &str) -> Result<(String, u16)> {
    let bad = |why: &str| {
        Error::invalid(
            "invalid_node_address",
            format!("node address {address:?}: {why}"),
        )
    };
    let url = match url::Url::parse(address) {
        Ok(u) if u.host_str().is_some() => u,
        _ => url::Url::parse(&format!("http://{address}")).map_err(|e| bad(&e.to_string()))?,
    };
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    Ok((host, port))
}

/// The tag of a held copy on the node service: `<id>@<version>`.
fn held_tag(id: &SegmentId, version: u64) -> String {
    format!("{id}@{version}")
}

fn parse_held_tag(tag: &str) -> Option<(SegmentId, u64)> {
    let (id, v) = tag.rsplit_once('@')?;
    Some((SegmentId::new(id).ok()?, v.parse().ok()?))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl ConsulCoordinator {
    /// A coordinator on the agent at `url` (e.g. `http://127.0.0.1:8500`) with all data under
    /// `prefix` (e.g. [`DEFAULT_PREFIX`]), for this process's `node`. Production defaults for
    /// everything else ([`ConsulOptions::default`]). Does not contact Consul: see
    /// [`ConsulCoordinator::check`].
    pub fn connect(url: &str, prefix: &str, node: &NodeName) -> Result<Self> {
        Self::connect_with(
            url,
            node,
            ConsulOptions {
                prefix: prefix.to_owned(),
                ..ConsulOptions::default()
            },
        )
    }

    /// Like [`ConsulCoordinator::connect`], with every option.
    pub fn connect_with(url: &str, node: &NodeName, mut opts: ConsulOptions) -> Result<Self> {
        opts.prefix = opts.prefix.trim_matches('/').to_owned();
        if !valid_path(&opts.prefix) || opts.prefix.len() > META_VALUE_MAX {
            return Err(Error::invalid(
                "invalid_consul_prefix",
                format!(
                    "consul KV prefix {:?}: must be /-separated [A-Za-z0-9._-] names",
                    opts.prefix
                ),
            ));
        }
        let sp = &opts.service_prefix;
        if sp.is_empty()
            || sp.len() > 50
            || !sp
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::invalid(
                "invalid_consul_service_prefix",
                format!("consul service prefix {sp:?}: must be a DNS label ([a-z0-9-], ≤ 50)"),
            ));
        }
        if opts.session_ttl < Duration::from_secs(10) {
            return Err(Error::invalid(
                "invalid_consul_session_ttl",
                "consul session TTL must be at least 10s",
            ));
        }
        if opts.node_ttl.is_zero() || opts.request_timeout.is_zero() {
            return Err(Error::invalid(
                "invalid_consul_options",
                "consul node TTL and request timeout must be positive",
            ));
        }
        if opts.lock_delay < opts.session_ttl / 2 {
            tracing::warn!(
                lock_delay = ?opts.lock_delay,
                session_ttl = ?opts.session_ttl,
                "consul lock-delay is shorter than TTL/2: a lease holder may learn of an external \
                 session invalidation after another process took the lock"
            );
        }
        let client = Client::new(
            url,
            opts.token.clone(),
            opts.request_timeout,
            opts.ca_pem.as_deref(),
        )?;
        let locks = Locks::new(client.clone(), node, opts.session_ttl, opts.lock_delay);
        Ok(Self {
            client,
            opts,
            node: node.clone(),
            locks,
            index_offset: Mutex::new(0),
            registered: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Checks that the agent answers and its cluster has a leader.
    pub async fn check(&self) -> Result<()> {
        let leader = self.client.leader().await?;
        if leader.is_empty() {
            return Err(Error::unavailable(
                "consul_no_leader",
                "the consul cluster has no leader",
            ));
        }
        Ok(())
    }

    /// The options in effect.
    pub fn options(&self) -> &ConsulOptions {
        &self.opts
    }

    /// The id of this coordinator's current lock session, if one exists (diagnostics, tests).
    pub fn session_id(&self) -> Option<String> {
        self.locks.session_id()
    }

    /// Ends this coordinator's presence: destroys its session (every lease flips to lost; the
    /// locks are released, subject to lock-delay) and deregisters the services it registered.
    /// Best effort; returns the first error. Using the coordinator for locks afterwards starts a
    /// new session.
    pub async fn close(&self) -> Result<()> {
        let mut first_err = None;
        if let Some(id) = self.locks.shutdown() {
            if let Err(e) = self.client.session_destroy(&id).await {
                first_err.get_or_insert(e);
            }
        }
        let regs = std::mem::take(&mut *self.registered.lock().await);
        for svc in regs.into_values().flatten() {
            if let Err(e) = self.client.service_deregister(&svc.id).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The names of the three services.
    fn service_name(&self, kind: &str) -> String {
        format!("{}-{kind}", self.opts.service_prefix)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.opts.prefix)
    }

    fn catalog_key(&self, id: &SegmentId) -> String {
        self.key(&format!("catalog/{id}"))
    }

    fn lock_key(&self, key: &str) -> Result<String> {
        if !valid_path(key) {
            return Err(Error::invalid(
                "invalid_lock_key",
                format!("lock key {key:?}: must be /-separated [A-Za-z0-9._-] names"),
            ));
        }
        Ok(self.key(&format!("locks/{key}")))
    }

    fn parse_entry(key: &str, value: &[u8]) -> Result<SegmentEntry> {
        serde_json::from_slice(value)
            .map_err(|e| Error::internal(format!("catalog entry {key} is not valid: {e}")))
    }

    /// Read-modify-write of one catalog entry with check-and-set (see the module docs): rounds
    /// that lose a race are retried after [`CAS_BACKOFF`].
    async fn update_entry<F>(&self, id: &SegmentId, f: F) -> Result<SegmentEntry>
    where
        F: Fn(Option<SegmentEntry>) -> Result<Update>,
    {
        let key = self.catalog_key(id);
        let round = || async {
            match self.cas_round(&key, &f).await {
                Ok(Some(e)) => Ok(e),
                Ok(None) => Err(Cas::Lost),
                Err(e) => Err(Cas::Failed(e)),
            }
        };
        match round
            .retry(CAS_BACKOFF)
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, Cas::Lost))
            .await
        {
            Ok(e) => Ok(e),
            Err(Cas::Failed(e)) => Err(e),
            Err(Cas::Lost) => Err(Error::unavailable(
                "catalog_contended",
                format!("{id}: too many concurrent catalog updates, try again"),
            )),
        }
    }

    /// One check-and-set round on `key`: `None` if another writer changed the entry first.
    async fn cas_round<F>(&self, key: &str, f: &F) -> Result<Option<SegmentEntry>>
    where
        F: Fn(Option<SegmentEntry>) -> Result<Update>,
    {
        let cur = self.client.kv_get(key).await?;
        let (entry, cas) = match &cur {
            Some(p) => (Some(Self::parse_entry(key, &p.value)?), p.modify_index),
            None => (None, 0),
        };
        match f(entry)? {
            Update::Unchanged(e) => Ok(Some(e)),
            Update::Write(e) => {
                let written = self
                    .client
                    .kv_put(key, serde_json::to_vec(&e)?, Some(cas))
                    .await?;
                Ok(written.then_some(e))
            }
        }
    }

    /// The services `node` should have registered.
    fn desired_services(&self, node: &NodeInfo) -> Result<Vec<ServiceRegistration>> {
        let (address, port) = parse_address(&node.address)?;
        let check = |id: &str| TtlCheck {
            check_id: format!("service:{id}"),
            name: format!("trough node {} heartbeat", node.name),
            ttl: go_duration(self.opts.node_ttl),
            status: "passing".into(),
            deregister_critical_service_after: go_duration(self.opts.deregister_after),
        };
        let prefix_meta = ("trough_prefix".to_owned(), self.opts.prefix.clone());
        let mut meta = BTreeMap::from([
            prefix_meta.clone(),
            ("tier".into(), truncate(&node.tier, META_VALUE_MAX)),
            ("quota_bytes".into(), node.quota_bytes.to_string()),
            ("stored_bytes".into(), node.stored_bytes.to_string()),
            (
                "roles".into(),
                truncate(&node.roles.join(","), META_VALUE_MAX),
            ),
        ]);
        meta.retain(|_, v| !v.is_empty());
        let id = node.name.to_string();
        let mut out = vec![ServiceRegistration {
            id: id.clone(),
            name: self.service_name("node"),
            tags: node.held.iter().map(|(s, v)| held_tag(s, *v)).collect(),
            address: address.clone(),
            port,
            meta,
            check: check(&id),
        }];
        let role_meta = BTreeMap::from([prefix_meta, ("node".into(), id.clone())]);
        let has = |r: &str| node.roles.iter().any(|x| x == r);
        if has("reader") {
            let rid = format!("{id}:read");
            out.push(ServiceRegistration {
                check: check(&rid),
                id: rid,
                name: self.service_name("read"),
                tags: node.held.keys().map(|s| s.to_string()).collect(),
                address: address.clone(),
                port,
                meta: role_meta.clone(),
            });
        }
        if has("writer") {
            let wid = format!("{id}:write");
            out.push(ServiceRegistration {
                check: check(&wid),
                id: wid,
                name: self.service_name("write"),
                tags: Vec::new(),
                address,
                port,
                meta: role_meta,
            });
        }
        Ok(out)
    }

    /// Waits (bounded) until the catalog shows each of `services` passing with its tags.
    async fn await_visible(&self, services: &[ServiceRegistration]) {
        let deadline = Instant::now() + self.opts.request_timeout;
        for svc in services {
            let mut index = 0;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    tracing::warn!(service = %svc.id, "registration not yet visible in the consul catalog");
                    return;
                }
                let wait = (deadline - now).min(Duration::from_secs(1));
                match self
                    .client
                    .health_service(&svc.name, true, Some((index, wait)))
                    .await
                {
                    Ok((entries, idx)) => {
                        let seen = entries.iter().any(|e: &HealthEntry| {
                            e.service.id == svc.id
                                && e.service.tags.as_deref().unwrap_or_default() == svc.tags
                        });
                        if seen {
                            break;
                        }
                        index = idx.max(1);
                    }
                    Err(e) => {
                        tracing::warn!(service = %svc.id, error = %e, "waiting for a registration to show");
                        return;
                    }
                }
            }
        }
    }

    /// The current combined index (KV subtree and node health), at least 1.
    async fn current_index(&self) -> Result<u64> {
        let dir = self.key("");
        let svc = self.service_name("node");
        let (kv, health) = tokio::try_join!(
            self.client.kv_index(&dir, None),
            self.client.health_index(&svc, None)
        )?;
        Ok(kv.max(health).max(1))
    }

    /// Consul's index for a caller's `since` (0: none).
    fn consul_since(&self, since: u64) -> u64 {
        let off = *self.index_offset.lock().unwrap_or_else(|p| p.into_inner());
        since.saturating_sub(off)
    }

    /// The index to return for Consul index `observed` after waiting since `since`.
    fn settle(&self, since: u64, observed: u64) -> u64 {
        let observed = observed.max(1);
        let mut off = self.index_offset.lock().unwrap_or_else(|p| p.into_inner());
        let csince = since.saturating_sub(*off);
        if since == 0 || csince == 0 || observed > csince {
            observed + *off
        } else if observed == csince {
            since
        } else {
            // Consul's index went backwards: a reset. Report a change, and shift later indexes
            // so that they keep growing from what the caller has seen.
            tracing::info!(
                since = csince,
                now = observed,
                "consul index went backwards; resetting"
            );
            *off = since + 1 - observed;
            since + 1
        }
    }
}

impl Drop for ConsulCoordinator {
    fn drop(&mut self) {
        if let Some(id) = self.locks.shutdown() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let client = self.client.clone();
                rt.spawn(async move {
                    let _ = client.session_destroy(&id).await;
                });
            }
        }
    }
}

#[async_trait]
impl Coordinator for ConsulCoordinator {
    async fn list_segments(&self) -> Result<Vec<SegmentEntry>> {
        let dir = self.key("catalog/");
        let mut out = self
            .client
            .kv_list(&dir)
            .await?
            .into_iter()
            .map(|p| Self::parse_entry(&p.key, &p.value))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn get_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>> {
        let key = self.catalog_key(id);
        self.client
            .kv_get(&key)
            .await?
            .map(|p| Self::parse_entry(&key, &p.value))
            .transpose()
    }

    async fn add_version(&self, manifest: &Manifest) -> Result<SegmentEntry> {
        self.update_entry(&manifest.id, |cur| {
            let mut e = cur.unwrap_or_else(|| SegmentEntry {
                id: manifest.id.clone(),
                versions: Vec::new(),
                writable: None,
            });
            match e
                .versions
                .binary_search_by_key(&manifest.version, |m| m.version)
            {
                Ok(i) if e.versions[i].sha256 == manifest.sha256 => Ok(Update::Unchanged(e)),
                Ok(i) => Err(Error::conflict(
                    "version_conflict",
                    format!(
                        "{} v{} is already recorded with sha256 {}",
                        manifest.id, manifest.version, e.versions[i].sha256
                    ),
                )),
                Err(i) => {
                    e.versions.insert(i, manifest.clone());
                    Ok(Update::Write(e))
                }
            }
        })
        .await
    }

    async fn set_writable(
        &self,
        id: &SegmentId,
        info: Option<WritableInfo>,
    ) -> Result<SegmentEntry> {
        self.update_entry(id, |cur| {
            let mut e = cur.unwrap_or_else(|| SegmentEntry {
                id: id.clone(),
                versions: Vec::new(),
                writable: None,
            });
            match (&e.writable, &info) {
                (Some(cur), Some(new)) if cur.writer != new.writer => Err(Error::conflict(
                    "write_lease_elsewhere",
                    format!("{id} is writable on node {}", cur.writer),
                )),
                (Some(_), Some(_)) | (None, None) => Ok(Update::Unchanged(e)),
                (_, new) => {
                    e.writable = new.clone();
                    Ok(Update::Write(e))
                }
            }
        })
        .await
    }

    async fn wait_for_change(&self, since: u64, timeout: Duration) -> Result<u64> {
        let csince = self.consul_since(since);
        if csince == 0 || timeout.is_zero() {
            let now = self.current_index().await?;
            return Ok(self.settle(since, now));
        }
        let dir = self.key("");
        let svc = self.service_name("node");
        let kv = self.client.kv_index(&dir, Some((csince, timeout)));
        let health = self.client.health_index(&svc, Some((csince, timeout)));
        tokio::pin!(kv, health);
        let (first, kv_first) = tokio::select! {
            r = &mut kv => (r?, true),
            r = &mut health => (r?, false),
        };
        if first > csince {
            return Ok(self.settle(since, first));
        }
        let second = if kv_first { health.await? } else { kv.await? };
        Ok(self.settle(since, first.max(second)))
    }

    async fn put_schema(&self, name: &SchemaName, sql: &str) -> Result<bool> {
        let key = self.key(&format!("schemas/{name}"));
        let body = sql.as_bytes().to_vec();
        if self.client.kv_put(&key, body.clone(), Some(0)).await? {
            return Ok(true);
        }
        self.client.kv_put(&key, body, None).await?;
        Ok(false)
    }

    async fn get_schema(&self, name: &SchemaName) -> Result<Option<String>> {
        let key = self.key(&format!("schemas/{name}"));
        self.client
            .kv_get(&key)
            .await?
            .map(|p| {
                String::from_utf8(p.value)
                    .map_err(|_| Error::internal(format!("schema {name} is not UTF-8")))
            })
            .transpose()
    }

    async fn list_schemas(&self) -> Result<Vec<(SchemaName, String)>> {
        let dir = self.key("schemas/");
        let mut out = Vec::new();
        for p in self.client.kv_list(&dir).await? {
            let Some(name) = p.key.strip_prefix(&dir) else {
                continue;
            };
            let name = SchemaName::new(name)?;
            let sql = String::from_utf8(p.value)
                .map_err(|_| Error::internal(format!("schema {name} is not UTF-8")))?;
            out.push((name, sql));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn register_node(&self, node: &NodeInfo) -> Result<()> {
        let desired = self.desired_services(node)?;
        {
            let mut registered = self.registered.lock().await;
            let previous = registered.get(&node.name);
            let mut register = previous != Some(&desired);
            if !register {
                for svc in &desired {
                    if !self.client.check_pass(&svc.check.check_id).await? {
                        register = true;
                        break;
                    }
                }
            }
            if register {
                for svc in &desired {
                    self.client.service_register(svc).await?;
                    // Consul keeps a check that went critical critical across re-registration
                    // (1.8), whatever status the definition asks for: pass it explicitly, so that
                    // a restarted node is listed at once instead of after its next heartbeat.
                    self.client.check_pass(&svc.check.check_id).await?;
                }
                // Role services no longer wanted: a role was dropped, or (first registration
                // here) a previous process of this node had it.
                let stale: Vec<String> = match previous {
                    Some(prev) => prev.iter().map(|s| s.id.clone()).collect(),
                    None => [":read", ":write"]
                        .iter()
                        .map(|suffix| format!("{}{suffix}", node.name))
                        .collect(),
                };
                for id in stale {
                    if !desired.iter().any(|s| s.id == id) {
                        self.client.service_deregister(&id).await?;
                    }
                }
                registered.insert(node.name.clone(), desired.clone());
                drop(registered);
                self.await_visible(&desired).await;
            }
        }
        // Static facts: written only when they changed.
        let key = self.key(&format!("nodes/{}", node.name));
        let record = NodeRecord::of(node);
        let same = self.client.kv_get(&key).await?.is_some_and(|p| {
            serde_json::from_slice::<NodeRecord>(&p.value).is_ok_and(|r| r.same_facts(&record))
        });
        if !same {
            self.client
                .kv_put(&key, serde_json::to_vec(&record)?, None)
                .await?;
        }
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        let svc = self.service_name("node");
        let dir = self.key("nodes/");
        let ((entries, _), records) = tokio::try_join!(
            self.client.health_service(&svc, true, None),
            self.client.kv_list(&dir)
        )?;
        let records: HashMap<String, NodeRecord> = records
            .into_iter()
            .filter_map(|p| {
                let name = p.key.strip_prefix(&dir)?.to_owned();
                serde_json::from_slice(&p.value).ok().map(|r| (name, r))
            })
            .collect();
        let now = Utc::now();
        let mut out: BTreeMap<NodeName, NodeInfo> = BTreeMap::new();
        for e in entries {
            let s = e.service;
            let meta = s.meta.unwrap_or_default();
            if meta.get("trough_prefix") != Some(&self.opts.prefix) {
                continue;
            }
            let Some(rec) = records.get(&s.id) else {
                continue;
            };
            let held = s
                .tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| parse_held_tag(t))
                .collect();
            out.entry(rec.name.clone()).or_insert_with(|| NodeInfo {
                name: rec.name.clone(),
                address: rec.address.clone(),
                tier: rec.tier.clone(),
                quota_bytes: rec.quota_bytes,
                stored_bytes: meta
                    .get("stored_bytes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                roles: rec.roles.clone(),
                held,
                updated_at: now,
            });
        }
        Ok(out.into_values().collect())
    }

    async fn put_assignment(&self, assignment: &AssignmentMap) -> Result<()> {
        // One key per bucket, so no value nears Consul's size limit, and a round that moves a
        // few segments rewrites only their buckets.
        let mut wanted: BTreeMap<String, AssignmentMap> = BTreeMap::new();
        for (id, nodes) in assignment {
            wanted
                .entry(self.key(&assignment_bucket_key(id)))
                .or_default()
                .insert(id.clone(), nodes.clone());
        }
        let prefix = self.key(&format!("{ASSIGNMENT_DIR}/"));
        let current: BTreeMap<String, Vec<u8>> = self
            .client
            .kv_list(&prefix)
            .await?
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect();
        for (key, part) in &wanted {
            let same = current
                .get(key)
                .and_then(|v| serde_json::from_slice::<AssignmentMap>(v).ok())
                .is_some_and(|a| &a == part);
            if !same {
                self.client
                    .kv_put(key, serde_json::to_vec(part)?, None)
                    .await?;
            }
        }
        for (key, value) in &current {
            let empty = serde_json::from_slice::<AssignmentMap>(value).is_ok_and(|a| a.is_empty());
            if !wanted.contains_key(key) && !empty {
                self.client
                    .kv_put(key, serde_json::to_vec(&AssignmentMap::new())?, None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn get_assignment(&self) -> Result<AssignmentMap> {
        let prefix = self.key(&format!("{ASSIGNMENT_DIR}/"));
        let mut out = AssignmentMap::new();
        for p in self.client.kv_list(&prefix).await? {
            let part: AssignmentMap = serde_json::from_slice(&p.value)?;
            out.extend(part);
        }
        Ok(out)
    }

    async fn try_lock(&self, key: &str, holder: &NodeName) -> Result<Option<Lease>> {
        let path = self.lock_key(key)?;
        self.locks.try_lock(&path, key, holder).await
    }

    async fn unlock(&self, key: &str, holder: &NodeName) -> Result<()> {
        let path = self.lock_key(key)?;
        self.locks.unlock(&path, holder).await
    }

    async fn create_token(&self, token: &trough_auth::TokenRecord) -> Result<()> {
        tokens::create(self, token).await
    }

    async fn get_token(&self, accessor: &str) -> Result<Option<trough_auth::TokenRecord>> {
        tokens::get(self, accessor).await
    }

    async fn list_tokens(&self) -> Result<Vec<trough_auth::TokenRecord>> {
        tokens::list(self).await
    }

    async fn delete_token(&self, accessor: &str) -> Result<bool> {
        tokens::delete(self, accessor).await
    }

    async fn delete_segment(&self, id: &SegmentId) -> Result<Option<SegmentEntry>> {
        lifecycle::delete_segment(self, id).await
    }

    async fn remove_versions(
        &self,
        id: &SegmentId,
        versions: &[u64],
    ) -> Result<Option<SegmentEntry>> {
        lifecycle::remove_versions(self, id, versions).await
    }

    async fn get_segment_info(&self, id: &SegmentId) -> Result<crate::SegmentInfo> {
        lifecycle::get_info(self, id).await
    }

    async fn set_segment_info(&self, id: &SegmentId, info: &crate::SegmentInfo) -> Result<()> {
        lifecycle::set_info(self, id, info).await
    }

    async fn list_segment_info(&self) -> Result<BTreeMap<SegmentId, crate::SegmentInfo>> {
        lifecycle::list_info(self).await
    }

    async fn lock_holder(&self, key: &str) -> Result<Option<NodeName>> {
        let path = self.lock_key(key)?;
        match self.client.kv_get(&path).await? {
            Some(p) if p.session.is_some() => {
                let name = String::from_utf8_lossy(&p.value);
                Ok(Some(NodeName::new(&name).map_err(|e| {
                    Error::internal(format!("lock {key} has an invalid holder: {e}"))
                })?))
            }
            _ => Ok(None),
        }
    }
}
