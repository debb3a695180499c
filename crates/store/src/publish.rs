//! Publishing: turning a local SQLite file into a new immutable stored version.
//!
//! The order is what makes a publish safe: check the file (SQLite header, `PRAGMA integrity_check`),
//! hash it, store the data object, allocate the next version by creating its manifest object
//! (create-if-absent), and only then point the catalog at it. A crash at any step leaves either
//! nothing visible or a manifest the catalog picks up on [`reconcile`]. Used by `PUT
//! /segments/{id}` and by the writer's promotion. It does not move copies to nodes.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::SegmentStore;
use trough_coord::Coordinator;
use trough_types::error::{codes, Error, Result};
use trough_types::id::{SchemaName, SegmentId};
use trough_types::manifest::Manifest;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How many times a publisher tries the next version number when racing another publisher.
const MAX_VERSION_ATTEMPTS: u32 = 64;

/// Publishes segment versions into a store and the catalog.
#[derive(Clone)]
pub struct Publisher {
    store: SegmentStore,
    coordinator: Arc<dyn Coordinator>,
}

/// What to record about the version being published.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// The schema the segment was provisioned from.
    pub schema: Option<SchemaName>,
    /// Whether this is a promotion of a writable segment.
    pub writable: bool,
    /// The file's SHA-256 and size, when the caller already computed them while receiving it.
    pub known_digest: Option<(String, u64)>,
}

impl Publisher {
    /// A publisher over `store` and `coordinator`.
    pub fn new(store: SegmentStore, coordinator: Arc<dyn Coordinator>) -> Self {
        Self { store, coordinator }
    }

    /// The store this publisher writes to.
    pub fn store(&self) -> &SegmentStore {
        &self.store
    }

    /// Validates `file` and publishes it as the next version of `id`.
    pub async fn publish_file(
        &self,
        id: &SegmentId,
        file: &Path,
        opts: PublishOptions,
    ) -> Result<Manifest> {
        let path = file.to_owned();
        let known = opts.known_digest.clone();
        let (sha256, size) = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
            validate_sqlite(&path)?;
            match known {
                Some(d) => Ok(d),
                None => Ok(crate::hash::sha256_file(&path)?),
            }
        })
        .await
        .map_err(|e| Error::internal(format!("validation task failed: {e}")))??;

        let key = SegmentStore::data_key(id, &sha256);
        let uploaded = self.store.put_file(&key, file).await?;
        let manifest = self.record_version(id, &key, &sha256, size, opts).await?;
        // The garbage collector may have swept an identical object nobody referenced between
        // `put_file` finding it and the manifest being stored: check, and upload it again.
        if !uploaded && !self.store.exists(&key).await? {
            tracing::warn!(segment = %id, %key, "data object swept while publishing; uploading again");
            self.store.put_file(&key, file).await?;
        }
        tracing::info!(segment = %id, version = manifest.version, %sha256, size, "published");
        metrics::counter!("trough_publishes_total").increment(1);
        Ok(manifest)
    }

    /// The coordinator this publisher records versions in.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// Allocates the next version of `id` for the stored data object `key` (create-if-absent
    /// manifest) and records it in the catalog.
    pub async fn record_version(
        &self,
        id: &SegmentId,
        key: &str,
        sha256: &str,
        size: u64,
        opts: PublishOptions,
    ) -> Result<Manifest> {
        let mut version = match self.coordinator.get_segment(id).await? {
            Some(e) => e.latest_version() + 1,
            None => 1,
        };
        for _ in 0..MAX_VERSION_ATTEMPTS {
            let manifest = Manifest {
                id: id.clone(),
                version,
                sha256: sha256.to_owned(),
                size,
                created_at: Utc::now(),
                schema: opts.schema.clone(),
                writable: opts.writable,
                key: key.to_owned(),
            };
            if self.store.create_manifest(&manifest).await? {
                self.coordinator.add_version(&manifest).await?;
                return Ok(manifest);
            }
            version += 1;
        }
        Err(Error::conflict(
            codes::VERSION_RACE,
            format!("could not allocate a version for {id}: too many concurrent publishers"),
        ))
    }
}

/// Checks that `path` is a SQLite database that passes `PRAGMA integrity_check`. Blocking.
///
/// The full check, not `quick_check`: only it compares every index with its table, and a file
/// whose index disagrees with its table would answer differently with and without the index.
/// It reads the whole file (time grows with size and indexes; see docs/operations.md).
pub fn validate_sqlite(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut header)?;
    if n < 16 || &header != SQLITE_HEADER {
        return Err(Error::invalid(
            codes::NOT_SQLITE,
            "the body is not a SQLite database (bad header)",
        ));
    }
    drop(f);
    let conn = trough_sqlite::open(path, trough_sqlite::Access::ReadOnlyImmutable)
        .map_err(|e| Error::invalid(codes::NOT_SQLITE, format!("cannot open as SQLite: {e}")))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| Error::invalid(codes::INTEGRITY_CHECK_FAILED, e.to_string()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect())
        .map_err(|e| Error::invalid(codes::INTEGRITY_CHECK_FAILED, e.to_string()))?;
    if rows != ["ok"] {
        return Err(Error::invalid(
            codes::INTEGRITY_CHECK_FAILED,
            format!(
                "PRAGMA integrity_check failed: {}",
                rows.into_iter().take(5).collect::<Vec<_>>().join("; ")
            ),
        ));
    }
    Ok(())
}

/// Records in the catalog every version found in the store but missing from the catalog (after a
/// crash between storing a manifest and cataloguing it, or to rebuild a lost catalog). Returns how
/// many versions were added.
pub async fn reconcile(store: &SegmentStore, coordinator: &dyn Coordinator) -> Result<usize> {
    let mut added = 0;
    // The listing names every version; only the ones the catalog lacks are read (a restart reads
    // no manifest when the catalog is complete).
    for (id, version, key) in store.list_manifest_keys().await? {
        let known = coordinator
            .get_segment(&id)
            .await?
            .is_some_and(|e| e.versions.iter().any(|v| v.version == version));
        if known {
            continue;
        }
        let Some(m) = store.read_manifest(&key).await? else {
            continue;
        };
        if m.id != id || m.version != version {
            tracing::warn!(key = %key, "skipping a manifest whose content does not match its key");
            continue;
        }
        coordinator.add_version(&m).await?;
        added += 1;
    }
    if added > 0 {
        tracing::info!(added, "catalog reconciled with object store");
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trough_coord::embedded::EmbeddedCoordinator;

    fn make_db(path: &Path, rows: i64) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch("CREATE TABLE t(x INTEGER)").unwrap();
        for i in 0..rows {
            c.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
    }

    #[tokio::test]
    async fn publish_versions_and_reconcile() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SegmentStore::from_url(&format!("file://{}/obj", dir.path().display()), &[]).unwrap();
        let coord: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory().unwrap());
        let p = Publisher::new(store.clone(), coord.clone());
        let id = SegmentId::new("s1").unwrap();
        let f = dir.path().join("a.sqlite");
        make_db(&f, 3);
        let m1 = p
            .publish_file(&id, &f, PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(m1.version, 1);
        assert_eq!(m1.sha256, crate::hash::sha256_file(&f).unwrap().0);
        let m2 = p
            .publish_file(&id, &f, PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(m2.version, 2);

        // A fresh catalog is rebuilt from the store alone.
        let fresh = EmbeddedCoordinator::in_memory().unwrap();
        assert_eq!(reconcile(&store, &fresh).await.unwrap(), 2);
        let e = fresh.get_segment(&id).await.unwrap().unwrap();
        assert_eq!(e.versions, vec![m1, m2]);
        assert_eq!(reconcile(&store, &fresh).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn rejects_non_sqlite_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SegmentStore::from_url(&format!("file://{}/obj", dir.path().display()), &[]).unwrap();
        let coord: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::in_memory().unwrap());
        let p = Publisher::new(store.clone(), coord.clone());
        let id = SegmentId::new("s1").unwrap();
        let f = dir.path().join("junk");
        std::fs::write(&f, b"definitely not a database, just text").unwrap();
        let err = p
            .publish_file(&id, &f, PublishOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_sqlite");
        assert!(coord.get_segment(&id).await.unwrap().is_none());
        assert!(store.list_manifests().await.unwrap().is_empty());

        // A file with a valid header but garbage pages fails the integrity check.
        let g = dir.path().join("damaged.sqlite");
        make_db(&g, 2000);
        let mut bytes = std::fs::read(&g).unwrap();
        let len = bytes.len();
        for b in &mut bytes[len / 2..] {
            *b = 0xA5;
        }
        std::fs::write(&g, &bytes).unwrap();
        let err = p
            .publish_file(&id, &g, PublishOptions::default())
            .await
            .unwrap_err();
        assert!(
            [codes::INTEGRITY_CHECK_FAILED, "not_sqlite"].contains(&err.code()),
            "{err:?}"
        );
        assert!(store.list_manifests().await.unwrap().is_empty());
    }
}
