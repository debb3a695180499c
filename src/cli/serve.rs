//! Node processes (`trough serve`, `node`, `reader`, `writer`, `sync`, `router`): configuration
//! layering (file, environment, flags), logging, signals.

use std::path::PathBuf;

use clap::Args;
use trough_config::Config;

/// Flags shared by every node process. Each overrides the same setting from the config file and
/// `TROUGH_*` environment variables.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/operations.md for every field).
    #[arg(long, env = "TROUGH_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for all local state (segment copies, writable databases, catalog, objects).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:6444 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// This node's name.
    #[arg(long)]
    node_name: Option<String>,
    /// Object store URL (file:///dir or s3://bucket/prefix); default: <data-dir>/objects.
    /// S3 endpoint, region and credentials come from the usual AWS_* variables or
    /// `object_store_options` in the config file.
    #[arg(long)]
    object_store: Option<String>,
    /// Consul HTTP API URL (e.g. http://127.0.0.1:8500). Required for every process of a
    /// cluster; without it coordination is embedded in this one process.
    #[arg(long)]
    consul: Option<String>,
    /// The URL other processes reach this node at (default: http://<listen address>).
    #[arg(long)]
    advertise: Option<String>,
    /// This node's tier.
    #[arg(long)]
    tier: Option<String>,
    /// Bytes of segment copies this node may hold (0: no limit).
    #[arg(long)]
    quota_bytes: Option<u64>,
    /// Largest SQL or JSON request body in bytes (413 above it); `limits.max_body_bytes`.
    #[arg(long)]
    max_body_bytes: Option<u64>,
    /// Largest segment file accepted by `PUT /segments/{id}` in bytes (413 above it);
    /// `limits.max_upload_bytes`.
    #[arg(long)]
    max_upload_bytes: Option<u64>,
    /// Per-query timeout in milliseconds (504 past it); `limits.query.timeout_ms`.
    #[arg(long)]
    query_timeout_ms: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Allow listening on a non-loopback address with authorization off (`auth.insecure`):
    /// anyone who can reach the port may then read and change every segment.
    #[arg(long)]
    insecure: bool,
    /// Require a token on every request (`auth.enabled`; see docs/security.md).
    #[arg(long)]
    auth: bool,
}

/// Which roles a node process runs.
pub use trough_node::Roles;

/// Runs a node process with `roles`. Anything short of every role is a cluster member and
/// needs Consul.
pub async fn run(args: ServeArgs, roles: Roles) -> anyhow::Result<()> {
    let mut figment = Config::figment(args.config.as_deref());
    if let Some(d) = &args.data_dir {
        figment = figment.merge(("data_dir", d));
    }
    if let Some(l) = &args.listen {
        figment = figment.merge(("listen", l));
    }
    if let Some(n) = &args.node_name {
        figment = figment.merge(("node_name", n));
    }
    if let Some(o) = &args.object_store {
        figment = figment.merge(("object_store", o));
    }
    if let Some(c) = &args.consul {
        figment = figment.merge(("consul", c));
    }
    if let Some(a) = &args.advertise {
        figment = figment.merge(("node.advertise", a));
    }
    if let Some(t) = &args.tier {
        figment = figment.merge(("node.tier", t));
    }
    if let Some(q) = args.quota_bytes {
        figment = figment.merge(("node.quota_bytes", q));
    }
    if let Some(n) = args.max_body_bytes {
        figment = figment.merge(("limits.max_body_bytes", n));
    }
    if let Some(n) = args.max_upload_bytes {
        figment = figment.merge(("limits.max_upload_bytes", n));
    }
    if let Some(n) = args.query_timeout_ms {
        figment = figment.merge(("limits.query.timeout_ms", n));
    }
    if args.log_json {
        figment = figment.merge(("log.json", true));
    }
    if args.insecure {
        figment = figment.merge(("auth.insecure", true));
    }
    if args.auth {
        figment = figment.merge(("auth.enabled", true));
    }
    let config = Config::from_figment(&figment)?;
    if roles != Roles::ALL && config.consul.is_none() {
        anyhow::bail!(
            "this process runs only some roles, so it is part of a cluster and needs --consul \
             (embedded coordination works within one `trough serve` process only)"
        );
    }
    init_logging(config.log.json);

    let (tx, rx) = tokio::sync::watch::channel(false);
    let grace = config.limits.shutdown_grace();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down");
        let _ = tx.send(true);
        shutdown_deadline(grace);
    });
    let scheme = if config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    trough_node::run(config, roles, rx, move |addr| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "trough serving on {scheme}://{addr}");
        let _ = out.flush();
    })
    .await?;
    Ok(())
}

/// Enforces `limits.shutdown_grace_ms` from a plain thread (so a stuck runtime cannot delay it):
/// half-way, every running SQLite statement is interrupted (its client gets `shutting_down`);
/// at the end the process exits, whatever is still running. Committed writes are durable, so
/// exiting loses nothing that was acknowledged.
fn shutdown_deadline(grace: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(grace / 2);
        tracing::warn!("shutdown: interrupting running SQLite statements");
        trough_sqlite::watchdog::interrupt_all();
        std::thread::sleep(grace - grace / 2);
        tracing::error!(
            grace_ms = grace.as_millis() as u64,
            "shutdown grace period over; exiting with work still running"
        );
        std::process::exit(1);
    });
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
