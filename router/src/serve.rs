//! `trough serve`: every part of trough in one process, on the embedded defaults.
//!
//! Builds a [`Node`] from a [`Config`]: the object store (local files under the data directory
//! unless configured), the embedded coordinator (a SQLite file), the reader, the writer (which
//! re-opens its writable segments), the local synchronizer (which re-verifies and adopts the
//! copies already on disk), and the synchronizer leader (trivially this process). Then it serves
//! the HTTP contract until `shutdown`. Startup order matters: the catalog is reconciled with the
//! object store before anything reads it, and the node registers before the leader assigns.
//!
//! The data directory is locked (an exclusive `flock` on `<data_dir>/.lock`) so two processes
//! cannot share it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trough_core::config::Config;
use trough_core::coord::embedded::EmbeddedCoordinator;
use trough_core::coord::Coordinator;
use trough_core::publish::{reconcile, Publisher};
use trough_core::store::SegmentStore;
use trough_core::{Error, NodeName, Result};
use trough_reader::Reader;
use trough_synchronizer::leader::{self, LeaderConfig};
use trough_synchronizer::local::{LocalSync, NodeIdentity};
use trough_writer::Writer;

use crate::Node;

/// Runs everything until `shutdown` turns `true`. Calls `ready` with the bound address once the
/// server accepts connections.
pub async fn run(
    config: Config,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    trough_core::metrics::install();
    let data_dir = trough_core::config::absolute(&config.data_dir)?;
    std::fs::create_dir_all(&data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    let tmp_dir = data_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::create_dir_all(&tmp_dir)?;

    let name = NodeName::new(&config.node_name)?;
    let store = SegmentStore::from_url(
        &config.object_store_url()?,
        &config.object_store_option_pairs(),
    )?;
    let coordinator: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::open(
        &data_dir.join("coordinator.sqlite"),
    )?);
    reconcile(&store, coordinator.as_ref()).await?;

    let reader = Arc::new(Reader::new(config.limits.query.clone()));
    let publisher = Publisher::new(store.clone(), coordinator.clone());
    let writer = Arc::new(
        Writer::open(
            name.clone(),
            data_dir.join("writable"),
            coordinator.clone(),
            publisher.clone(),
            config.writer.synchronous,
        )
        .await
        .map_err(|e| Error::internal(format!("opening writable segments: {e}")))?,
    );
    for (id, path) in writer.live() {
        reader
            .install_live(id, path)
            .map_err(|e| Error::internal(e.to_string()))?;
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
            .unwrap_or_else(|| format!("http://{addr}")),
        tier: config.node.tier.clone(),
        quota_bytes: config.node.quota_bytes,
        roles: ["reader", "writer", "sync", "router"]
            .map(String::from)
            .to_vec(),
    };
    let sync = Arc::new(LocalSync::new(
        identity,
        data_dir.join("copies"),
        store.clone(),
        coordinator.clone(),
        reader.clone(),
        config.sync.clone(),
    ));
    let adopted = sync.adopt_existing().await?;
    sync.report().await?;
    tracing::info!(adopted, node = %name, data_dir = %data_dir.display(), store = store.url(), "node ready");

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(leader::run(
        name.clone(),
        coordinator.clone(),
        LeaderConfig {
            interval: config.sync.interval(),
            ..Default::default()
        },
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(sync.clone().run(shutdown.clone())));
    if config.writer.auto_promote_secs > 0 {
        tasks.push(tokio::spawn(writer.clone().auto_promote(
            Duration::from_secs(config.writer.auto_promote_secs),
            shutdown.clone(),
        )));
    }

    let node = Arc::new(Node {
        name,
        coordinator,
        publisher,
        reader,
        writer,
        sync,
        limits: config.limits.clone(),
        tmp_dir,
    });
    ready(addr);
    let served = axum::serve(listener, crate::app(node))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    served.map_err(|e| Error::internal(format!("server failed: {e}")))
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
