//! `trough serve`: configuration layering (file, environment, flags), logging, signals.

use std::path::PathBuf;

use clap::Args;
use trough_core::config::Config;

/// Flags of `trough serve`. Each overrides the same setting from the config file and `TROUGH_*`.
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
    #[arg(long)]
    object_store: Option<String>,
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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
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
    let config = Config::from_figment(&figment)?;
    init_logging(config.log.json);

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    trough_router::serve::run(config, rx, |addr| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "trough serving on http://{addr}");
        let _ = out.flush();
    })
    .await?;
    Ok(())
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
