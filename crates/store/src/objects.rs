//! Removing objects and listing data objects: what deleting a segment, retention and the
//! garbage collector ([`crate::gc`]) need from the store. Deleting an absent object succeeds
//! (every step may run again after a crash). Not here: deciding what to remove.

use object_store::ObjectStoreExt;
use trough_types::error::Result;
use trough_types::id::SegmentId;

use crate::{store_error, SegmentStore};

/// One data object in the store: `segments/<id>/data/<sha256>.sqlite`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataObject {
    /// Its key, relative to the store's root (as in [`trough_types::Manifest::key`]).
    pub key: String,
    /// The segment directory it is in.
    pub segment: SegmentId,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl SegmentStore {
    /// Deletes the object at `key` (relative to the store's root); absent is fine.
    pub async fn delete_key(&self, key: &str) -> Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Deletes the manifest of one version; absent is fine.
    pub async fn delete_manifest(&self, id: &SegmentId, version: u64) -> Result<()> {
        self.delete_key(&Self::manifest_key(id, version)).await
    }

    /// The versions whose manifests are stored for `id`, from the listing alone.
    pub async fn list_versions(&self, id: &SegmentId) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for (parts, _) in self.list_below(&format!("segments/{id}/versions")).await? {
            if let [file] = parts.as_slice() {
                if let Some(v) = file
                    .strip_suffix(".json")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    out.push(v);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Every data object in the store, ordered by key.
    pub async fn list_data_objects(&self) -> Result<Vec<DataObject>> {
        let mut out = Vec::new();
        for (parts, meta) in self.list_below("segments").await? {
            let [id, dir, file] = parts.as_slice() else {
                continue;
            };
            if dir != "data" || !file.ends_with(".sqlite") {
                continue;
            }
            let Ok(segment) = SegmentId::new(id) else {
                continue;
            };
            out.push(DataObject {
                key: format!("segments/{id}/data/{file}"),
                segment,
                last_modified: meta.last_modified,
            });
        }
        out.sort();
        Ok(out)
    }

    /// Reads a small object (a GC mark); `None` when absent.
    pub(crate) async fn read_small(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.get(&self.path(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(store_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Writes a small object (a GC mark), replacing it.
    pub(crate) async fn write_small(&self, key: &str, body: Vec<u8>) -> Result<()> {
        self.inner
            .put(&self.path(key), object_store::PutPayload::from(body))
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The keys (relative to the root) of every object under `dir`.
    pub(crate) async fn list_keys(&self, dir: &str) -> Result<Vec<String>> {
        let dir = dir.trim_end_matches('/');
        let mut out: Vec<String> = self
            .list_below(dir)
            .await?
            .into_iter()
            .map(|(parts, _)| format!("{dir}/{}", parts.join("/")))
            .collect();
        out.sort();
        Ok(out)
    }
}
