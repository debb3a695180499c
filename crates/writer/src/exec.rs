//! Running a write request in ONE transaction: all statements or none.
//!
//! The real Trough commits the statements of a failed batch that ran before the failure; trough
//! does not. A request is raw SQL (one or more statements), one statement with parameters, or one
//! statement with a batch of parameter sets. Everything runs inside a `BEGIN IMMEDIATE`
//! transaction that is committed only when every statement succeeded; the connection's guard
//! refuses transaction control, ATTACH and the other escapes, so a statement cannot end the
//! transaction early. Blocking code: call it from `spawn_blocking`.
//!
//! A request has a deadline: the [`trough_sqlite::watchdog`] interrupts it there (a progress
//! handler backs it up), the transaction is rolled back and the error is `write_timeout` (504);
//! at shutdown `shutting_down` (503). The watchdog is disarmed before `COMMIT`, so a commit is
//! never interrupted. Temporary objects are refused by the connection's guard.
//! [`validate_schema`] runs schema SQL the same way in a scratch database with a size cap.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::{Batch, Connection};
use serde::{Deserialize, Serialize};
use trough_sqlite::guard::exec_trusted;
use trough_sqlite::query::PROGRESS_OPS;
use trough_sqlite::watchdog::{self, Armed, Fired};
use trough_sqlite::{bind, sqlite_error, Params};
use trough_types::error::codes;
use trough_types::ErrorKind;

use crate::error::{Error, Result};

/// A write request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// SQL: several statements separated by `;`, or one statement when parameters are given.
    pub sql: String,
    /// Parameters for a single statement.
    #[serde(default)]
    pub params: Params,
    /// Parameter sets: the single statement runs once per entry, all in the same transaction.
    #[serde(default)]
    pub batch: Option<Vec<Params>>,
}

impl ExecuteRequest {
    /// A request of raw SQL text.
    pub fn text(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            ..Default::default()
        }
    }
}

/// What an execute request did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteResult {
    /// Rows inserted, updated or deleted (SQLite's total changes, triggers included).
    pub rows_affected: u64,
    /// The rowid of the last inserted row on this connection.
    pub last_insert_rowid: i64,
}

/// Runs `req` in one immediate transaction on `conn`; commits only if everything succeeded.
/// `timeout` (from now) bounds the statements; `None` for no deadline.
pub fn execute(
    conn: &mut Connection,
    req: &ExecuteRequest,
    timeout: Option<Duration>,
) -> Result<ExecuteResult> {
    let has_params = !matches!(req.params, Params::None);
    if has_params && req.batch.is_some() {
        return Err(Error::InvalidRequest(
            "give either `params` or `batch`, not both".into(),
        ));
    }
    let before = conn.total_changes();
    // The transaction is opened and closed by trusted SQL: the guard refuses transaction control
    // in client statements, so nothing in the request can end it early.
    let armed = watchdog::arm(conn, timeout.map(|t| Instant::now() + t));
    conn.progress_handler(PROGRESS_OPS, Some(armed.stop_check()))?;
    let ran = exec_trusted(conn, "BEGIN IMMEDIATE")
        .map_err(Error::from)
        .and_then(|()| run_statements(conn, req, has_params))
        .map_err(|e| stopped(e, &armed, timeout));
    // Disarmed before COMMIT: once statements succeeded, the commit is not interrupted.
    drop(armed);
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    let outcome = ran.and_then(|()| {
        if conn.is_autocommit() {
            // Defence in depth: the transaction ended under us; refuse to report success.
            return Err(Error::InvalidRequest(
                "the transaction ended inside the request".into(),
            ));
        }
        let result = ExecuteResult {
            rows_affected: conn.total_changes().saturating_sub(before),
            last_insert_rowid: conn.last_insert_rowid(),
        };
        exec_trusted(conn, "COMMIT")?;
        Ok(result)
    });
    if outcome.is_err() && !conn.is_autocommit() {
        if let Err(e) = exec_trusted(conn, "ROLLBACK") {
            tracing::error!(error = %e, "rollback failed");
        }
    }
    outcome
}

/// The error of a request the watchdog stopped, or `e` as it is.
fn stopped(e: Error, armed: &Armed, timeout: Option<Duration>) -> Error {
    match armed.fired() {
        Some(Fired::Deadline) => Error::Core(trough_types::Error::new(
            ErrorKind::Timeout,
            codes::WRITE_TIMEOUT,
            format!(
                "the write exceeded its time limit of {} ms (limits.write_timeout_ms) and was \
                 rolled back",
                timeout.unwrap_or_default().as_millis()
            ),
        )),
        Some(Fired::Shutdown) => Error::Core(trough_sqlite::query::shutting_down_error()),
        None => e,
    }
}

fn run_statements(conn: &Connection, req: &ExecuteRequest, has_params: bool) -> Result<()> {
    if has_params || req.batch.is_some() {
        let mut stmt = single_statement(conn, &req.sql)?;
        let sets: Vec<&Params> = match &req.batch {
            Some(b) => b.iter().collect(),
            None => vec![&req.params],
        };
        for params in sets {
            stmt.clear_bindings();
            bind(&mut stmt, params)?;
            drain(&mut stmt)?;
        }
    } else {
        let mut batch = Batch::new(conn, &req.sql);
        let mut ran = 0usize;
        while let Some(mut stmt) = batch.next().map_err(sqlite_error)? {
            drain(&mut stmt)?;
            ran += 1;
        }
        if ran == 0 {
            return Err(Error::InvalidRequest("no SQL statement in the body".into()));
        }
    }
    Ok(())
}

/// Prepares exactly one statement; trailing whitespace, comments and `;` are allowed.
fn single_statement<'c>(conn: &'c Connection, sql: &str) -> Result<rusqlite::Statement<'c>> {
    let mut batch = Batch::new(conn, sql);
    let stmt = batch
        .next()
        .map_err(sqlite_error)?
        .ok_or_else(|| Error::InvalidRequest("no SQL statement in the body".into()))?;
    if batch.next().map_err(sqlite_error)?.is_some() {
        return Err(Error::Core(trough_types::Error::invalid(
            "multiple_statements",
            "parameters bind to exactly one statement; send one statement with `params`/`batch`",
        )));
    }
    Ok(stmt)
}

/// Steps a statement to completion, discarding any rows (e.g. `RETURNING`).
fn drain(stmt: &mut rusqlite::Statement<'_>) -> Result<()> {
    let mut rows = stmt.raw_query();
    while rows.next().map_err(sqlite_error)?.is_some() {}
    Ok(())
}

/// Where and within what bounds schema SQL is validated.
#[derive(Clone, Debug)]
pub struct SchemaCheck {
    /// Directory of the scratch databases (inside the data dir).
    pub scratch_dir: PathBuf,
    /// Deadline of one validation.
    pub timeout: Duration,
    /// Largest database the schema may build, in bytes.
    pub max_bytes: u64,
}

impl SchemaCheck {
    /// The bounds of `limits`, scratch databases in `scratch_dir`.
    pub fn new(limits: &trough_config::Limits, scratch_dir: PathBuf) -> Self {
        Self {
            scratch_dir,
            timeout: limits.schema_timeout(),
            max_bytes: limits.schema_max_bytes,
        }
    }
}

/// Checks that `sql` runs on an empty database (the test a schema must pass to be registered):
/// in a scratch database under `check.scratch_dir`, removed afterwards, within `check.timeout`
/// and `check.max_bytes`.
pub fn validate_schema(sql: &str, check: &SchemaCheck) -> Result<()> {
    std::fs::create_dir_all(&check.scratch_dir).map_err(trough_types::Error::from)?;
    let dir = tempfile::Builder::new()
        .prefix("schema-check-")
        .tempdir_in(&check.scratch_dir)
        .map_err(trough_types::Error::from)?;
    let path = dir.path().join("schema-check.sqlite");
    let mut conn = trough_sqlite::open_writable(&path, trough_sqlite::Synchronous::Normal)?;
    let pages = (check.max_bytes / 4096).max(2);
    exec_trusted(
        &conn,
        &format!("PRAGMA page_size = 4096; PRAGMA max_page_count = {pages};"),
    )?;
    execute(&mut conn, &ExecuteRequest::text(sql), Some(check.timeout))
        .map(|_| ())
        .map_err(|e| {
            let code = trough_types::ApiError::code(&e);
            Error::InvalidSchema(if code == codes::WRITE_TIMEOUT {
                format!(
                    "the schema SQL did not finish within {} ms (limits.schema_timeout_ms)",
                    check.timeout.as_millis()
                )
            } else if trough_types::ApiError::kind(&e) == ErrorKind::Internal {
                format!(
                    "{e} (the schema's database may not grow past limits.schema_max_bytes = {} \
                     bytes)",
                    check.max_bytes
                )
            } else {
                e.to_string()
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trough_sqlite::{open_writable, Synchronous};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writable(&dir.path().join("w.sqlite"), Synchronous::Full).unwrap();
        (dir, conn)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn all_or_nothing() {
        let (_d, mut c) = db();
        execute(
            &mut c,
            &ExecuteRequest::text("CREATE TABLE t(x INTEGER NOT NULL)"),
            None,
        )
        .unwrap();
        let r = execute(
            &mut c,
            &ExecuteRequest::text("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);"),
            None,
        )
        .unwrap();
        assert_eq!(r.rows_affected, 2);
        assert_eq!(r.last_insert_rowid, 2);
        let err = execute(
            &mut c,
            &ExecuteRequest::text("INSERT INTO t VALUES (3); INSERT INTO t VALUES (NULL);"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            trough_types::ApiError::kind(&err),
            trough_types::ErrorKind::InvalidInput
        );
        assert_eq!(
            count(&c),
            2,
            "the first statement of the failed batch is rolled back"
        );
    }

    #[test]
    fn batch_of_params() {
        let (_d, mut c) = db();
        execute(&mut c, &ExecuteRequest::text("CREATE TABLE t(x, y)"), None).unwrap();
        let req: ExecuteRequest = serde_json::from_str(
            r#"{"sql": "INSERT INTO t VALUES (?, ?)", "batch": [[1, "a"], [2, "b"], [3, null]]}"#,
        )
        .unwrap();
        let r = execute(&mut c, &req, None).unwrap();
        assert_eq!(r.rows_affected, 3);
        assert_eq!(count(&c), 3);
        // A failing set rolls back the whole batch.
        let bad: ExecuteRequest = serde_json::from_str(
            r#"{"sql": "INSERT INTO t VALUES (?, ?)", "batch": [[4, "d"], [5]]}"#,
        )
        .unwrap();
        assert!(execute(&mut c, &bad, None).is_err());
        assert_eq!(count(&c), 3);
    }

    #[test]
    fn refuses_transaction_control_and_attach() {
        let (_d, mut c) = db();
        execute(&mut c, &ExecuteRequest::text("CREATE TABLE t(x)"), None).unwrap();
        for sql in [
            "INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2)",
            "INSERT INTO t VALUES (1); ATTACH 'x.db' AS x",
            "INSERT INTO t VALUES (1); PRAGMA writable_schema = 1",
            "INSERT INTO t VALUES (1); VACUUM",
            "INSERT INTO t VALUES (1); CREATE TEMP TABLE t(x)",
            "CREATE TABLE temp.t(x); INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (1); CREATE TEMP TRIGGER e BEFORE INSERT ON t BEGIN SELECT 1; END",
        ] {
            assert!(
                execute(&mut c, &ExecuteRequest::text(sql), None).is_err(),
                "{sql}"
            );
            assert_eq!(count(&c), 0, "{sql} changed nothing");
        }
    }

    #[test]
    fn schema_validation() {
        let dir = tempfile::tempdir().unwrap();
        let check = SchemaCheck {
            scratch_dir: dir.path().join("scratch"),
            timeout: Duration::from_millis(300),
            max_bytes: 1 << 20,
        };
        assert!(validate_schema("CREATE TABLE a(x); CREATE INDEX ai ON a(x);", &check).is_ok());
        for sql in [
            "CREATE TABLE a(x",
            "CREATE TABLE a(x); INSERT INTO a WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL \
             SELECT x+1 FROM c) SELECT count(*) FROM c",
            "CREATE TABLE a AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c \
             LIMIT 10000) SELECT randomblob(1000) FROM c",
            "CREATE TEMP TABLE a(x)",
        ] {
            assert!(
                matches!(validate_schema(sql, &check), Err(Error::InvalidSchema(_))),
                "{sql}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&check.scratch_dir).unwrap().count(),
            0,
            "scratch databases are removed"
        );
    }

    #[test]
    fn deadline_rolls_back_and_frees_the_connection() {
        let (_d, mut c) = db();
        execute(&mut c, &ExecuteRequest::text("CREATE TABLE t(x)"), None).unwrap();
        let err = execute(
            &mut c,
            &ExecuteRequest::text(
                "INSERT INTO t VALUES (1); INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 \
                 UNION ALL SELECT x+1 FROM c) SELECT x FROM c",
            ),
            Some(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert_eq!(trough_types::ApiError::code(&err), "write_timeout");
        assert_eq!(count(&c), 0);
        execute(
            &mut c,
            &ExecuteRequest::text("INSERT INTO t VALUES (2)"),
            None,
        )
        .unwrap();
        assert_eq!(count(&c), 1);
    }
}
