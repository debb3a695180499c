//! Restoring a writable segment to an older stored version: the live database's content is
//! replaced by that version's (SQLite's online backup API, into the open connection, under its
//! lock, so no write interleaves and readers of the live database see the old or the new
//! content, never a mix), then promoted, so the restored content is also the newest stored
//! version. Writes acknowledged before the restore and not promoted are replaced: that is what
//! going back means. Not here: restoring read-only segments (`trough_store::lifecycle`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use rusqlite::Connection;
use trough_types::{Manifest, SegmentId};

use crate::{Error, Result, Writer, BACKUP_PAGES_PER_STEP};

impl Writer {
    /// Replaces the live database of `id` with the stored version `old` and promotes it.
    /// `Busy` while a promotion or another restore of it runs.
    pub async fn restore(&self, id: &SegmentId, old: &Manifest) -> Result<Manifest> {
        let db = self.writable_db(id)?;
        {
            let Ok(_op) = db.op.try_lock() else {
                return Err(Error::Busy(id.clone()));
            };
            let tmp = self.dir.join(format!(
                ".{id}.restore-{}",
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ));
            self.publisher.store().download(old, &tmp).await?;
            let (d, t) = (db.clone(), tmp.clone());
            let copied = tokio::task::spawn_blocking(move || -> Result<()> {
                let src =
                    Connection::open_with_flags(&t, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let mut conn = d.conn.lock().unwrap_or_else(|p| p.into_inner());
                if d.retired.load(Ordering::Acquire) {
                    return Err(Error::NotWritable(d.id.clone()));
                }
                if !d.lease.is_held() {
                    return Err(Error::LeaseLost(d.id.clone()));
                }
                {
                    let b = rusqlite::backup::Backup::new(&src, &mut conn)?;
                    b.run_to_completion(BACKUP_PAGES_PER_STEP, Duration::ZERO, None)?;
                }
                d.dirty.store(true, Ordering::Release);
                Ok(())
            })
            .await
            .map_err(|e| trough_types::Error::internal(e.to_string()));
            let _ = tokio::fs::remove_file(&tmp).await;
            copied??;
        }
        tracing::info!(segment = %id, version = old.version, "restored the live database");
        self.promote(id).await
    }
}
