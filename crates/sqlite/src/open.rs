//! Opening hardened SQLite connections.
//!
//! Every connection trough makes to a segment file goes through [`open`] (or [`open_writable`]),
//! which decides the open flags for its [`Access`] and hardens the connection the same way every
//! time: defensive mode on, extension loading left disabled, `SQLITE_LIMIT_ATTACHED = 0`, the
//! [`super::SqliteLimits`] (string/blob length, parameter count),
//! `PRAGMA query_only = 1` for read access and the [`super::guard`] authorizer installed last.
//!
//! Paths are always passed to SQLite as `file:` URIs built here (every byte outside the unreserved
//! set percent-encoded), so a path that happens to contain `?`, `#` or `%`, or to start with
//! `file:`, can never be misread as URI parameters. Not here: what to run on the connection.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::guard::{self, Mode};
use trough_types::error::{Error, Result};

/// How a segment file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A verified stored copy that never changes: `immutable=1`, read-only, no locking at all
    /// (the `unix-none` VFS).
    ReadOnlyImmutable,
    /// A read-only view of a live (writable, WAL) database that another connection writes.
    ReadOnly,
    /// The writer's connection: created if missing, WAL, `synchronous = FULL`.
    ReadWrite,
}

/// `PRAGMA synchronous` level of the writer's connection (serde: lowercase, default `full`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// `NORMAL`: in WAL mode, a power loss may lose the last commits but never corrupts.
    Normal,
    /// `FULL`: every commit is durable once acknowledged.
    #[default]
    Full,
    /// `EXTRA`: `FULL` plus a directory sync after unlinking journals.
    Extra,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// How long the writer (and read views of live databases) wait on a locked database.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` for `access`, hardened and guarded (see the module docs).
///
/// `Access::ReadWrite` uses the default [`Synchronous`] level; see [`open_writable`].
pub fn open(path: &Path, access: Access) -> Result<Connection> {
    match access {
        Access::ReadWrite => open_writable(path, Synchronous::default()),
        Access::ReadOnly => {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let mut conn = raw_open(path, "", flags)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| ctx(e, path))?;
            harden(&mut conn, Mode::Read).map_err(|e| ctx(e, path))?;
            Ok(conn)
        }
        Access::ReadOnlyImmutable => {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            // `unix-none`: no locking at all, which `immutable=1` never needs. The default `unix`
            // VFS would still enter one process-wide mutex and walk a list of every open file on
            // each open and close (POSIX lock bookkeeping): a cluster-wide query opening
            // thousands of copies at once spent much of its time there (issue 12's profile).
            let mut conn = raw_open(path, "?immutable=1&vfs=unix-none", flags)?;
            harden(&mut conn, Mode::Read).map_err(|e| ctx(e, path))?;
            Ok(conn)
        }
    }
}

/// Opens (creating if missing) the writer's connection to `path`: `journal_mode = WAL`,
/// the given `synchronous` level, a 5 s busy timeout, hardened and guarded in [`Mode::Write`].
pub fn open_writable(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = raw_open(path, "", flags)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| ctx(e, path))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| ctx(e, path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::internal(format!(
            "opening {}: could not switch to WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())
        .map_err(|e| ctx(e, path))?;
    harden(&mut conn, Mode::Write).map_err(|e| ctx(e, path))?;
    Ok(conn)
}

fn ctx(e: rusqlite::Error, path: &Path) -> Error {
    Error::new(
        trough_types::ErrorKind::Internal,
        "sqlite_open_failed",
        format!("opening {}: {e}", path.display()),
    )
}

fn raw_open(path: &Path, query: &str, flags: OpenFlags) -> Result<Connection> {
    let uri = format!("{}{query}", file_uri(path)?);
    Connection::open_with_flags(&uri, flags).map_err(|e| ctx(e, path))
}

/// Defensive mode, no attached databases, `query_only` for readers, then the guard.
fn harden(conn: &mut Connection, mode: Mode) -> rusqlite::Result<()> {
    // Extension loading: rusqlite never calls sqlite3_enable_load_extension, so both the C API
    // and the SQL function stay disabled; the guard denies the SQL function by name as well.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    super::limits::apply(conn)?;
    if mode == Mode::Read {
        conn.pragma_update(None, "query_only", 1)?;
    }
    guard::install(conn, mode)
}

/// `file:` URI for `path`, percent-encoding every byte outside `[A-Za-z0-9._~/-]`.
fn file_uri(path: &Path) -> Result<String> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| Error::internal(format!("path {} is not UTF-8", path.display())))?
        .as_bytes();
    if bytes.is_empty() {
        return Err(Error::internal("empty database path"));
    }
    // An absolute path gets an empty authority (`file:///abs`) so `//x` is never an authority.
    let mut uri = String::from(if path.is_absolute() {
        "file://"
    } else {
        "file:"
    });
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'/' | b'-') {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_special_characters() {
        assert_eq!(
            file_uri(Path::new("/a b/x?y#z%.db")).unwrap(),
            "file:///a%20b/x%3Fy%23z%25.db"
        );
        assert_eq!(file_uri(Path::new("rel/x.db")).unwrap(), "file:rel/x.db");
    }

    #[test]
    fn opens_paths_with_uri_characters_literally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd ?name=1#&%.db");
        let conn = open_writable(&path, Synchronous::Normal).unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
        drop(conn);
        assert!(path.exists(), "file created under its literal name");
        let ro = open(&path, Access::ReadOnlyImmutable).unwrap();
        let n: i64 = ro
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn writable_is_wal_with_requested_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = open_writable(&path, Synchronous::Extra).unwrap();
        let err = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .unwrap_err()
            .to_string();
        // journal_mode is not on the guard's allowlist, even for reading.
        assert!(err.contains("not authorized"), "{err}");
        let (mode, sync): (String, i64) = guard::trusted(|| {
            (
                conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .unwrap(),
                conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                    .unwrap(),
            )
        });
        assert_eq!(mode, "wal");
        assert_eq!(sync, 3, "EXTRA");
    }

    #[test]
    fn read_only_cannot_write_and_missing_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(&dir.path().join("missing.db"), Access::ReadOnly).is_err());
        assert!(!dir.path().join("missing.db").exists());
        let path = dir.path().join("r.db");
        open_writable(&path, Synchronous::Full)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        for access in [Access::ReadOnly, Access::ReadOnlyImmutable] {
            let conn = open(&path, access).unwrap();
            assert!(conn.execute("INSERT INTO t VALUES (1)", []).is_err());
            let q: i64 = conn
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(q, 0);
        }
    }
}
