//! Running a node: any set of roles, on embedded or Consul coordination.
//!
//! [`run`] builds a [`Node`] from a [`Config`] and a set of [`Roles`]. The object store is local
//! files under the data directory unless configured, and coordination is embedded (a SQLite
//! file) unless `consul` is set. The roles decide what else runs: the reader with its local
//! synchronizer, the writer (which reopens its writable segments), the synchronizer leader
//! candidate, and always the HTTP front door, which answers locally where it can and forwards
//! otherwise. `trough serve` is every role on embedded coordination.
//!
//! Startup order matters. A lost (empty) catalog is rebuilt from the object store before anything
//! reads it (otherwise the store is reconciled in the background: see `reconcile`), local copies are re-verified before they are served, and the node registers before the
//! leader assigns. The data directory is locked (an exclusive `flock` on `<data_dir>/.lock`) so
//! that two processes cannot share it.
//!
//! # Background workers
//!
//! Everything that runs in the background is a named [`trough_worker::Worker`], started here
//! after start-up and stopped together at shutdown: `cluster-view` (keeps the routing view
//! fresh), `heartbeat` (re-registers the node), `sync-leader` (assignment rounds, sync servers),
//! `local-sync` (copies, readers), `write-leases` and `auto-promote` (writers), `retention`
//! (retention and garbage collection, sync servers; see [`retention`]). A worker that
//! panics is logged with its name and counted (`trough_worker_panics_total`); the others keep
//! running, and [`run`] returns an error naming it when the node stops.
//!
//! # Shutdown order
//!
//! When `shutdown` turns `true`:
//! 1. the listener stops accepting connections and drains the open ones (each finishes its
//!    current request; at most 10 s), so no request is cut off by what follows;
//! 2. the workers are cancelled together and joined with one deadline
//!    (`WORKER_STOP_DEADLINE`, 5 s): each finishes the round it is in, the leader releases its
//!    lock so another candidate takes over at once; workers still running at the deadline are
//!    named in a warning and left behind;
//! 3. the data-directory lock is released, only once nothing of this process writes there.
//!
//! The process-level grace period (`limits.shutdown_grace_ms`, enforced by the binary) bounds
//! all of this.
//!
//! The reader and the local synchronizer always run in one process. The synchronizer hands
//! verified copies straight to the reader's pools, which makes the swap atomic and lets the
//! reader delete a superseded file only after its last query finished (decision 0007).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use trough_config::Config;
use trough_coord::embedded::EmbeddedCoordinator;
use trough_coord::Coordinator;
use trough_placement::{TierRule, TierSpec};
use trough_reader::Reader;
use trough_store::publish::Publisher;
use trough_store::SegmentStore;
use trough_sync::leader::{self, LeaderConfig};
use trough_sync::local::{LocalSync, NodeIdentity};
use trough_types::{Error, NodeName, Result};
use trough_worker::Workers;
use trough_writer::workers::{AutoPromoter, LeaseKeeper};
use trough_writer::Writer;

use trough_api::Node;
use trough_cluster::ClusterView;

pub mod auth;
mod heartbeat;
mod reconcile;
pub mod retention;
use heartbeat::{heartbeat, HeartbeatWorker};

/// How long shutdown waits for the background workers to stop, all together.
const WORKER_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Which parts a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Serve reads from local copies (with the local synchronizer that keeps them).
    pub reader: bool,
    /// Hold writable segments.
    pub writer: bool,
    /// Be a candidate for synchronizer leader (computes assignments while leading).
    pub sync_server: bool,
}

impl Roles {
    /// Every role: what `trough serve` runs.
    pub const ALL: Roles = Roles {
        reader: true,
        writer: true,
        sync_server: true,
    };

    /// Role names as published in the node registry.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.reader {
            v.push("reader".to_owned());
            v.push("sync".to_owned());
        }
        if self.writer {
            v.push("writer".to_owned());
        }
        if self.sync_server {
            v.push("sync-server".to_owned());
        }
        v.push("router".to_owned());
        v
    }
}

/// Opens the coordinator the configuration asks for.
pub fn coordinator(config: &Config, data_dir: &std::path::Path) -> Result<Arc<dyn Coordinator>> {
    match &config.consul {
        Some(url) => {
            use trough_coord::consul::{ConsulCoordinator, ConsulOptions};
            let name = NodeName::new(&config.node_name)?;
            let read = |p: &std::path::Path, what: &str| {
                std::fs::read(p).map_err(|e| {
                    Error::invalid("invalid_config", format!("{what} {}: {e}", p.display()))
                })
            };
            let ca_pem = match &config.consul_ca_file {
                Some(p) => Some(read(p, "consul_ca_file")?),
                None => None,
            };
            let token = match &config.consul_token_file {
                Some(p) => Some(
                    String::from_utf8_lossy(&read(p, "consul_token_file")?)
                        .trim()
                        .to_owned(),
                ),
                None => None,
            };
            let opts = ConsulOptions {
                token,
                ca_pem,
                prefix: config.consul_prefix.clone(),
                session_ttl: Duration::from_secs(config.consul_session_ttl_secs),
                lock_delay: Duration::from_secs(config.consul_lock_delay_secs),
                node_ttl: Duration::from_secs(config.consul_node_ttl_secs),
                ..ConsulOptions::default()
            };
            Ok(Arc::new(ConsulCoordinator::connect_with(url, &name, opts)?))
        }
        None => Ok(Arc::new(EmbeddedCoordinator::open(
            &data_dir.join("coordinator.sqlite"),
        )?)),
    }
}

/// Runs the given roles until `shutdown` turns `true`. Calls `ready` with the bound address once
/// the server accepts connections.
pub async fn run(
    config: Config,
    roles: Roles,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    trough_api::metrics::install();
    let data_dir = trough_config::absolute(&config.data_dir)?;
    std::fs::create_dir_all(&data_dir)?;
    let lock = lock_data_dir(&data_dir)?;
    let tmp_dir = data_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::create_dir_all(&tmp_dir)?;
    // Before any SQLite use: the process-wide limits, and SQLite's own temporary files (sorts
    // and temporary b-trees that spill) under the data dir instead of $TMPDIR.
    trough_sqlite::limits::configure(&config.limits.sqlite, &tmp_dir.join("sqlite"))?;

    let name = NodeName::new(&config.node_name)?;
    let leader = match roles.sync_server {
        true => {
            let lc = leader_config(&config);
            trough_placement::TierMatcher::new(&lc.tier_rules)
                .map_err(|e| Error::invalid("invalid_config", e.to_string()))?;
            Some(lc)
        }
        false => None,
    };
    let store = SegmentStore::from_url(
        &config.object_store_url()?,
        &config.object_store_option_pairs(),
    )?;
    let coordinator = coordinator(&config, &data_dir)?;
    // A lost catalog is rebuilt before anything reads it; otherwise the listing runs in the
    // background (see `reconcile`).
    let reconcile_later = !reconcile::must_block(coordinator.as_ref()).await?;
    if !reconcile_later {
        trough_store::publish::reconcile(&store, coordinator.as_ref()).await?;
    }
    let publisher = Publisher::new(store.clone(), coordinator.clone());

    // A writer serves the reads of its writable segments from their live databases, so it has a
    // reader too (without a local synchronizer unless it is also a read node).
    let reader =
        (roles.reader || roles.writer).then(|| Arc::new(Reader::new(config.limits.query.clone())));
    let writer = if roles.writer {
        let w = Writer::open(
            name.clone(),
            data_dir.join("writable"),
            coordinator.clone(),
            publisher.clone(),
            trough_writer::WriterOptions {
                synchronous: config.writer.synchronous,
                write_timeout: config.limits.write_timeout(),
                schema_check: trough_writer::SchemaCheck::new(&config.limits, tmp_dir.clone()),
            },
        )
        .await
        .map_err(|e| Error::internal(format!("opening writable segments: {e}")))?;
        Some(Arc::new(w))
    } else {
        None
    };
    if let (Some(r), Some(w)) = (&reader, &writer) {
        for (id, path) in w.live() {
            r.install_live(id, path)
                .map_err(|e| Error::internal(e.to_string()))?;
        }
    }

    auth::check_exposure(&config)?;
    let (tls, forwarder) = auth::tls(&config.tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = trough_api::auth::Gate::new(auth::settings(&config.auth)?);
    if let auth::Bootstrap::Created(secret) =
        auth::bootstrap(&config.auth, coordinator.as_ref()).await?
    {
        // Shown once, on stdout only (never through the log).
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "bootstrap admin token (shown once, keep it safe): {}",
            secret.expose()
        );
        let _ = out.flush();
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| {
            Error::invalid(
                "listen_failed",
                format!("cannot listen on {}: {e}", config.listen),
            )
        })?;
    let addr = listener.local_addr()?;
    let identity = NodeIdentity {
        name: name.clone(),
        address: config
            .node
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}")),
        tier: config.node.tier.clone(),
        quota_bytes: config.node.quota_bytes,
        roles: roles.names(),
    };
    let sync = match reader.as_ref().filter(|_| roles.reader) {
        Some(r) => {
            let s = Arc::new(LocalSync::new(
                identity.clone(),
                data_dir.join("copies"),
                store.clone(),
                coordinator.clone(),
                r.clone(),
                config.sync.clone(),
            ));
            let adopted = s.adopt_existing().await?;
            tracing::info!(adopted, "re-verified local copies");
            Some(s)
        }
        None => None,
    };
    heartbeat(coordinator.as_ref(), &identity, sync.as_deref()).await?;
    tracing::info!(node = %name, roles = ?roles.names(), data_dir = %data_dir.display(), store = store.url(), consul = ?config.consul, "node ready");

    let cluster = Arc::new(ClusterView::new());
    cluster.refresh(coordinator.as_ref()).await?;

    // Background workers, stopped together at shutdown (see the module docs for the order).
    let workers = Workers::new();
    if reconcile_later {
        workers.spawn(reconcile::ReconcileWorker {
            store: store.clone(),
            coordinator: coordinator.clone(),
        });
    }
    workers.spawn(cluster.clone().worker(coordinator.clone()));
    workers.spawn(HeartbeatWorker {
        coordinator: coordinator.clone(),
        identity: identity.clone(),
        sync: sync.clone(),
    });
    if let (Some(lc), true) = (&leader, config.retention.interval_secs > 0) {
        let r = &config.retention;
        workers.spawn(retention::RetentionWorker {
            name: name.clone(),
            store: store.clone(),
            coordinator: coordinator.clone(),
            policies: retention::Policies::new(r, &lc.tier_rules).map_err(|e| {
                Error::invalid(trough_types::error::codes::INVALID_CONFIG, e.to_string())
            })?,
            grace: Duration::from_secs(r.gc_grace_secs),
            interval: Duration::from_secs(r.interval_secs),
        });
    }
    if let Some(lc) = leader {
        workers.spawn(leader::worker(name.clone(), coordinator.clone(), lc));
    }
    if let Some(s) = &sync {
        workers.spawn(s.clone().worker());
    }
    if let Some(w) = &writer {
        workers.spawn(LeaseKeeper::new(w.clone(), Duration::from_secs(1)));
    }
    if let (Some(w), true) = (&writer, config.writer.auto_promote_secs > 0) {
        workers.spawn(AutoPromoter::new(
            w.clone(),
            Duration::from_secs(config.writer.auto_promote_secs),
        ));
    }

    let node = Arc::new(Node {
        name,
        coordinator,
        publisher,
        reader,
        writer,
        sync,
        cluster,
        forwarder,
        limits: config.limits.clone(),
        tmp_dir,
        auth: Arc::new(auth),
    });
    ready(addr);
    let app = trough_api::app(node.clone());
    // 1. Stop accepting connections and drain the open ones (the listener returns when done).
    let stop_accepting = CancellationToken::new();
    let signal = async {
        let _ = shutdown.wait_for(|s| *s).await;
        stop_accepting.cancel();
    };
    let serve = trough_api::listener::serve(
        listener,
        app,
        node.limits.http.clone(),
        stop_accepting.clone(),
        tls,
    );
    tokio::join!(signal, serve);
    // 2. Stop the background workers (each finishes the round it is in), with one deadline.
    let report = workers.shutdown(WORKER_STOP_DEADLINE).await;
    // 3. Release the data directory only now that nothing of this process writes to it.
    drop(lock);
    if !report.panicked.is_empty() {
        let which: Vec<String> = report
            .panicked
            .iter()
            .map(|p| format!("{} ({})", p.worker, p.message))
            .collect();
        return Err(Error::internal(format!(
            "background workers panicked while the node ran: {}",
            which.join(", ")
        )));
    }
    Ok(())
}

/// The leader's tier configuration.
fn leader_config(config: &Config) -> LeaderConfig {
    LeaderConfig {
        tiers: config
            .assignment
            .tiers
            .iter()
            .map(|t| TierSpec {
                name: t.name.clone(),
                replication_factor: t.replication_factor,
            })
            .collect(),
        tier_rules: config
            .assignment
            .tier_rules
            .iter()
            .map(|r| TierRule {
                pattern: r.pattern.clone(),
                tier: r.tier.clone(),
            })
            .collect(),
        interval: config.sync.interval(),
    }
}

/// Takes an exclusive lock on the data directory, held until the returned file is dropped.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(
            "data_dir_locked",
            format!("{} is in use by another trough process", dir.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}
