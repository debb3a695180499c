//! The record of verified local copies, so a restart does not re-hash every byte before serving.
//!
//! After a copy's SHA-256 matched its manifest, its file identity is recorded in a small SQLite
//! database next to the copies (`<copies>/.verified.sqlite`): path, size, modification time
//! (nanoseconds), inode and the SHA-256. At restart a copy whose file still has the recorded
//! size, mtime and inode (and whose recorded SHA-256 is the manifest's) is served at once and
//! re-hashed in the background; any other copy is re-hashed before it is served. A lost or
//! unreadable record only costs time: everything is then re-hashed, as before.
//!
//! What this trusts: that nothing rewrote a file in place while keeping its size, mtime and inode
//! (possible for a process that restores mtime on purpose, or for silent disk corruption). The
//! background re-hash and the periodic scrub are what catch those. Not here: the hashing itself
//! ([`trough_store::hash`]) or what to do with a mismatch ([`crate::local`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

/// A file's identity, as `stat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
}

impl FileStamp {
    /// The stamp of the file at `path`.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let md = std::fs::metadata(path)?;
        let mtime_ns = md
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&md);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            size: md.len(),
            mtime_ns,
            inode,
        })
    }
}

/// The verified-copies record.
pub struct VerifiedLog {
    conn: Mutex<Option<Connection>>,
    path: PathBuf,
}

impl VerifiedLog {
    /// Opens (creating) the record in `dir`. A record that cannot be opened is replaced by an
    /// empty one; if even that fails, nothing is recorded (and every restart re-hashes).
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(".verified.sqlite");
        let conn = Self::connect(&path).or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "verification record unreadable; starting a new one");
            let _ = std::fs::remove_file(&path);
            Self::connect(&path)
        });
        Self {
            conn: Mutex::new(conn.ok()),
            path,
        }
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let c = Connection::open(path)?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        // Losing the last records to a crash only means re-hashing those copies.
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS copies (
                path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                inode INTEGER NOT NULL, sha256 TEXT NOT NULL)",
        )?;
        Ok(c)
    }

    /// Where the record lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_ref()?;
        match f(conn) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "verification record");
                None
            }
        }
    }

    /// Records that the file at `path`, as it is now, has SHA-256 `sha256`.
    pub fn record(&self, path: &Path, sha256: &str) {
        let Ok(stamp) = FileStamp::of(path) else {
            return;
        };
        let key = path.to_string_lossy().into_owned();
        self.with(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO copies (path, size, mtime_ns, inode, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key,
                stamp.size as i64,
                stamp.mtime_ns,
                stamp.inode as i64,
                sha256
            ])
        });
    }

    /// Forgets `path` (its copy was deleted or failed verification).
    pub fn forget(&self, path: &Path) {
        let key = path.to_string_lossy().into_owned();
        self.with(|c| {
            c.prepare_cached("DELETE FROM copies WHERE path = ?1")?
                .execute([key])
        });
    }

    /// Whether the file at `path` is unchanged since it was recorded with SHA-256 `sha256` and
    /// size `size` (so it can be served before it is re-hashed).
    pub fn unchanged(&self, path: &Path, sha256: &str, size: u64) -> bool {
        let Ok(now) = FileStamp::of(path) else {
            return false;
        };
        let key = path.to_string_lossy().into_owned();
        let row = self.with(|c| {
            c.prepare_cached("SELECT size, mtime_ns, inode, sha256 FROM copies WHERE path = ?1")?
                .query_row([key], |r| {
                    Ok((
                        FileStamp {
                            size: r.get::<_, i64>(0)? as u64,
                            mtime_ns: r.get(1)?,
                            inode: r.get::<_, i64>(2)? as u64,
                        },
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()
        });
        matches!(row, Some(Some((stamp, sha))) if stamp == now && sha == sha256 && now.size == size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let log = VerifiedLog::open(dir.path());
        let f = dir.path().join("a.sqlite");
        std::fs::write(&f, b"hello").unwrap();
        assert!(!log.unchanged(&f, "sha", 5), "nothing recorded yet");
        log.record(&f, "sha");
        assert!(log.unchanged(&f, "sha", 5));
        assert!(!log.unchanged(&f, "other", 5), "another checksum");
        assert!(!log.unchanged(&f, "sha", 6), "another manifest size");
        // Reopened: the record persists.
        drop(log);
        let log = VerifiedLog::open(dir.path());
        assert!(log.unchanged(&f, "sha", 5));
        // Rewritten (same size, new mtime).
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&f, b"HELLO").unwrap();
        assert!(!log.unchanged(&f, "sha", 5));
        // Replaced by another file (new inode), even with the old mtime.
        log.record(&f, "sha");
        let g = dir.path().join("b.sqlite");
        std::fs::write(&g, b"HELLO").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&g)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&g, &f).unwrap();
        assert!(!log.unchanged(&f, "sha", 5));
        log.forget(&f);
        assert!(!log.unchanged(&f, "sha", 5));
    }

    #[test]
    fn an_unreadable_record_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".verified.sqlite"),
            b"not a database at all, no",
        )
        .unwrap();
        let log = VerifiedLog::open(dir.path());
        let f = dir.path().join("a.sqlite");
        std::fs::write(&f, b"x").unwrap();
        log.record(&f, "sha");
        assert!(log.unchanged(&f, "sha", 1));
    }
}
