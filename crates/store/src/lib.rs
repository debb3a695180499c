//! # trough-store: segment files in object storage
//!
//! - this module: segment files and manifests in object storage ([`SegmentStore`]);
//! - [`publish`]: validating, hashing, storing and cataloguing a new version, and reconciling the
//!   catalog with the store at start-up;
//! - [`hash`]: SHA-256 of files and streams.
//!
//!
//! Layout under the store's root (a local directory or an S3 prefix):
//!
//! ```text
//! segments/<id>/data/<sha256>.sqlite          the SQLite file, content-addressed, immutable
//! segments/<id>/versions/<version:020>.json   one manifest per version, created once (PutMode::Create)
//! ```
//!
//! Creating the manifest object with a create-if-absent put is what allocates a version number:
//! two publishers racing for version 7 cannot both win. Nothing is ever overwritten, and a
//! manifest is only written after its data object is completely stored, so the catalog can be
//! rebuilt from the store alone ([`SegmentStore::list_manifests`]).
//!
//! This module moves bytes and verifies them; it does not decide what to publish or who holds what.

pub mod gc;
pub mod hash;
pub mod lifecycle;
mod objects;
pub mod publish;
pub mod retention;

pub use objects::DataObject;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use trough_types::error::codes;

use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::hash::Hasher;
use trough_types::error::{Error, ErrorKind, Result};
use trough_types::id::SegmentId;
use trough_types::manifest::Manifest;

/// Where segments are stored.
#[derive(Clone)]
pub struct SegmentStore {
    inner: Arc<dyn ObjectStore>,
    root: ObjectPath,
    url: String,
}

impl std::fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStore")
            .field("url", &self.url)
            .finish()
    }
}

impl SegmentStore {
    /// Opens a store from a URL: `file:///abs/dir` (created if missing), `s3://bucket/prefix`
    /// (endpoint, region and credentials from `options` and the usual `AWS_*` environment
    /// variables), or `memory://` (tests only).
    pub fn from_url(url: &str, options: &[(String, String)]) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid(codes::INVALID_OBJECT_STORE_URL, format!("{url}: {e}")))?;
        let (inner, root): (Arc<dyn ObjectStore>, ObjectPath) = match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|_| {
                    Error::invalid(
                        codes::INVALID_OBJECT_STORE_URL,
                        format!("{url}: not a path"),
                    )
                })?;
                std::fs::create_dir_all(&dir)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(store_error)?
                    .with_automatic_cleanup(true)
                    // A publish is acknowledged once its object and manifest are written: on a
                    // local disk that means on the disk, not in the page cache (a power loss must
                    // not leave the catalog naming an object that is gone).
                    .with_fsync(true);
                (Arc::new(fs), ObjectPath::default())
            }
            "memory" => (
                Arc::new(object_store::memory::InMemory::new()),
                ObjectPath::default(),
            ),
            "s3" => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url);
                for (k, v) in options {
                    let key = k.parse().map_err(|e| {
                        Error::invalid(codes::INVALID_OBJECT_STORE_OPTION, format!("{k}: {e}"))
                    })?;
                    builder = builder.with_config(key, v);
                }
                let s3 = builder.build().map_err(store_error)?;
                let prefix = parsed.path().trim_start_matches('/');
                (Arc::new(s3), ObjectPath::from(prefix))
            }
            other => {
                return Err(Error::invalid(
                    codes::INVALID_OBJECT_STORE_URL,
                    format!("unsupported object store scheme {other:?} (use file:// or s3://)"),
                ))
            }
        };
        Ok(Self {
            inner,
            root,
            url: url.to_owned(),
        })
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, rel: &str) -> ObjectPath {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p = p.join(part);
        }
        p
    }

    /// Key of a segment's data object with the given checksum.
    pub fn data_key(id: &SegmentId, sha256: &str) -> String {
        format!("segments/{id}/data/{sha256}.sqlite")
    }

    /// Key of a segment version's manifest.
    pub fn manifest_key(id: &SegmentId, version: u64) -> String {
        format!("segments/{id}/versions/{version:020}.json")
    }

    /// Uploads a local file to `key` (multipart for large files). Overwrites nothing that differs:
    /// data keys are content-addressed, so an existing object already holds these bytes.
    /// Returns whether it uploaded (`false`: the object was there already).
    pub async fn put_file(&self, key: &str, local: &Path) -> Result<bool> {
        let path = self.path(key);
        if self.inner.head(&path).await.is_ok() {
            return Ok(false);
        }
        let mut file = tokio::fs::File::open(local).await?;
        let mut writer = BufWriter::new(self.inner.clone(), path);
        tokio::io::copy(&mut file, &mut writer).await?;
        writer.shutdown().await?;
        Ok(true)
    }

    /// Writes a manifest if no manifest exists for its version. `Ok(false)` when the version is
    /// already taken (the caller picks the next one).
    pub async fn create_manifest(&self, manifest: &Manifest) -> Result<bool> {
        let path = self.path(&Self::manifest_key(&manifest.id, manifest.version));
        let body = serde_json::to_vec_pretty(manifest)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Every manifest in the store, ordered by id then version. Used to rebuild the catalog.
    pub async fn list_manifests(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for (_, _, key) in self.list_manifest_keys().await? {
            if let Some(m) = self.read_manifest(&key).await? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The (segment, version) of every manifest in the store, from the listing alone (no
    /// object is read), ordered by id then version, with the key to read it by
    /// ([`SegmentStore::read_manifest`]). Keys that do not parse are skipped with a warning.
    pub async fn list_manifest_keys(&self) -> Result<Vec<(SegmentId, u64, ObjectPath)>> {
        let mut out = Vec::new();
        for (parts, meta) in self.list_below("segments").await? {
            // segments/<id>/versions/<version:020>.json
            let [id, dir, file] = parts.as_slice() else {
                continue;
            };
            if dir != "versions" {
                continue;
            }
            let parsed = file
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok())
                .zip(SegmentId::new(id).ok());
            match parsed {
                Some((version, id)) => out.push((id, version, meta.location)),
                None => {
                    tracing::warn!(key = %meta.location, "skipping a manifest key that does not parse")
                }
            }
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(out)
    }

    /// Every object below `prefix` (relative to the store's root), with the parts of its key
    /// below `prefix`; an absent prefix lists nothing. The one listing loop of the store's
    /// key-walking readers (manifest keys, versions, data objects).
    pub(crate) async fn list_below(
        &self,
        prefix: &str,
    ) -> Result<Vec<(Vec<String>, object_store::ObjectMeta)>> {
        let prefix = self.path(prefix);
        let mut stream = self.inner.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = match meta {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(store_error(e)),
            };
            let Some(rel) = meta.location.prefix_match(&prefix) else {
                continue;
            };
            let parts = rel.map(|p| p.as_ref().to_owned()).collect();
            out.push((parts, meta));
        }
        Ok(out)
    }

    /// Reads one manifest by its key; `None` (with a warning) when it is not a manifest.
    pub async fn read_manifest(&self, key: &ObjectPath) -> Result<Option<Manifest>> {
        let bytes = self
            .inner
            .get(key)
            .await
            .map_err(store_error)?
            .bytes()
            .await
            .map_err(store_error)?;
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "skipping unreadable manifest");
                Ok(None)
            }
        }
    }

    /// Downloads a manifest's object to `dest`, verifying size and SHA-256 while streaming.
    ///
    /// The bytes go to `<dest>.part`, are fsynced, checked, and only then renamed to `dest`; on a
    /// mismatch the partial file is removed and a `checksum_mismatch` error returned, so a file at
    /// `dest` always holds exactly the manifest's bytes.
    pub async fn download(&self, manifest: &Manifest, dest: &Path) -> Result<()> {
        let part = part_path(dest);
        let result = self.download_to(manifest, &part).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&part, dest).await?;
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn download_to(&self, manifest: &Manifest, part: &Path) -> Result<()> {
        if let Some(parent) = part.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let got = self
            .inner
            .get(&self.path(&manifest.key))
            .await
            .map_err(store_error)?;
        let mut stream = got.into_stream();
        let mut file = tokio::fs::File::create(part).await?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store_error)?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        let sha = hasher.finish_hex();
        if size != manifest.size || sha != manifest.sha256 {
            return Err(Error::new(
                ErrorKind::Internal,
                codes::CHECKSUM_MISMATCH,
                format!(
                    "{} v{}: downloaded {} bytes with sha256 {}, manifest says {} bytes with sha256 {}",
                    manifest.id, manifest.version, size, sha, manifest.size, manifest.sha256
                ),
            ));
        }
        Ok(())
    }

    /// Whether an object exists at `key` (relative to the store's root).
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Direct access for tests and tools that need to tamper with or inspect objects.
    pub fn object_store(&self) -> (Arc<dyn ObjectStore>, ObjectPath) {
        (self.inner.clone(), self.root.clone())
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// An object-store failure as trough's error: a missing object is `NotFound`, a lost
/// create-if-absent race `Conflict`, anything else `Unavailable` (the store may come back).
pub fn store_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::new(ErrorKind::NotFound, codes::OBJECT_NOT_FOUND, e.to_string())
        }
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            Error::new(ErrorKind::Conflict, codes::OBJECT_EXISTS, e.to_string())
        }
        _ => Error::new(
            ErrorKind::Unavailable,
            codes::OBJECT_STORE_ERROR,
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, version: u64, bytes: &[u8]) -> Manifest {
        let mut h = Hasher::new();
        h.update(bytes);
        let sha = h.finish_hex();
        let id = SegmentId::new(id).unwrap();
        Manifest {
            key: SegmentStore::data_key(&id, &sha),
            id,
            version,
            sha256: sha,
            size: bytes.len() as u64,
            created_at: chrono::Utc::now(),
            schema: None,
            writable: false,
        }
    }

    async fn suite(store: SegmentStore, scratch: &Path) {
        let src = scratch.join("src.bin");
        std::fs::write(&src, b"hello segment").unwrap();
        let m = manifest("seg1", 1, b"hello segment");
        store.put_file(&m.key, &src).await.unwrap();
        assert!(store.create_manifest(&m).await.unwrap());
        // The same version cannot be created twice.
        assert!(!store.create_manifest(&m).await.unwrap());
        let listed = store.list_manifests().await.unwrap();
        assert_eq!(listed, vec![m.clone()]);
        let dest = scratch.join("copies/seg1.sqlite");
        store.download(&m, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello segment");
        // A manifest that lies about the checksum never yields a file.
        let mut bad = m.clone();
        bad.sha256 = "0".repeat(64);
        let dest2 = scratch.join("copies/bad.sqlite");
        let err = store.download(&bad, &dest2).await.unwrap_err();
        assert_eq!(err.code(), "checksum_mismatch");
        assert!(!dest2.exists());
        assert!(!part_path(&dest2).exists());
    }

    #[tokio::test]
    async fn local_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        suite(SegmentStore::from_url(&url, &[]).unwrap(), dir.path()).await;
    }

    #[tokio::test]
    async fn in_memory() {
        let dir = tempfile::tempdir().unwrap();
        suite(
            SegmentStore::from_url("memory://", &[]).unwrap(),
            dir.path(),
        )
        .await;
    }

    /// The same suite against a real S3 server (s3s-fs), through the same `object_store` code.
    #[tokio::test]
    async fn real_s3() {
        let s3 = trough_testkit::S3Server::start();
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::from_url(&s3.url("prefix/a"), &s3.options()).unwrap();
        suite(store, dir.path()).await;
        // Another prefix in the same bucket sees nothing of the first.
        let other = SegmentStore::from_url(&s3.url("prefix/b"), &s3.options()).unwrap();
        assert!(other.list_manifests().await.unwrap().is_empty());
    }

    #[test]
    fn rejects_unknown_scheme() {
        assert!(SegmentStore::from_url("ftp://x/y", &[]).is_err());
    }
}
