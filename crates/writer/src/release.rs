//! Giving a writable segment up for good (`DELETE /segments/{id}`): no write is in flight or
//! can start, the catalog no longer names this node as the writer, the write lease is released
//! and the live database's files are deleted. Unpromoted writes are discarded with it: that is
//! what deleting means. Not here: removing the segment from the catalog or the store.

use std::sync::atomic::Ordering;

use trough_coord::write_lease_key;
use trough_types::SegmentId;

use crate::{path_with, Error, Result, Writer};

impl Writer {
    /// Releases `id`: `NotWritable` when this node does not write it, `Busy` while a promotion
    /// or restore of it runs, `LeaseLost` while this node waits to take its lease back.
    pub async fn release(&self, id: &SegmentId) -> Result<()> {
        if self.pending_lock().contains_key(id) {
            return Err(Error::LeaseLost(id.clone()));
        }
        let db = self.get(id).ok_or_else(|| Error::NotWritable(id.clone()))?;
        let Ok(_op) = db.op.try_lock() else {
            return Err(Error::Busy(id.clone()));
        };
        // From here on no write starts (`retired` is checked under the connection's lock) and
        // the one in flight, if any, finishes before the lock is ours.
        let d = db.clone();
        tokio::task::spawn_blocking(move || {
            let _conn = d.conn.lock().unwrap_or_else(|p| p.into_inner());
            d.retired.store(true, Ordering::Release);
        })
        .await
        .map_err(|e| trough_types::Error::internal(e.to_string()))?;
        if let Err(e) = self.coordinator.set_writable(id, None).await {
            // Still the writer in the catalog: keep taking writes.
            db.retired.store(false, Ordering::Release);
            return Err(e.into());
        }
        self.dbs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.coordinator
            .unlock(&write_lease_key(id), &self.node)
            .await?;
        drop(_op);
        let path = db.path.clone();
        // The connection closes when the last request holding the database lets go of it;
        // deleting the files of an open SQLite database is safe on Unix.
        drop(db);
        for p in [
            path_with(&path, "-wal"),
            path_with(&path, "-shm"),
            path.clone(),
        ] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "removing a released database")
                }
            }
        }
        metrics::gauge!("trough_writer_segments").set(self.live().len() as f64);
        tracing::info!(segment = %id, "released writable segment");
        Ok(())
    }
}
