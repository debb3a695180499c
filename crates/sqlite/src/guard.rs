//! The statement guard: an SQLite authorizer installed on every connection [`super::open()`] makes.
//!
//! SQLite calls the authorizer while it *prepares* a statement, once per action the statement
//! would perform. The guard denies the actions no client statement may perform, whatever the
//! keyword spelling, comments or nesting (a `pragma_*` table-valued function, for instance,
//! prepares a `PRAGMA` internally and is checked like one):
//!
//! - `ATTACH` and `DETACH` (belt and braces: `SQLITE_LIMIT_ATTACHED` is 0 as well);
//! - the `load_extension()` SQL function (extension loading is also disabled on the connection);
//! - any `PRAGMA` not on the allowlist below, in particular `writable_schema`, `query_only`,
//!   `journal_mode`, `synchronous`, …;
//! - temporary objects: `CREATE TEMP TABLE|VIEW|TRIGGER|INDEX`, the same in the `temp` schema
//!   (`CREATE TABLE temp.x`), and virtual tables there. They would outlive the request on a
//!   shared connection (the writer's, or a pooled reader's): a TEMP table shadowing a real one
//!   would swallow later inserts, a TEMP trigger could silently eat them;
//! - transaction control (`BEGIN`, `COMMIT`, `END`, `ROLLBACK`) and `SAVEPOINT` / `RELEASE`, in
//!   both modes: the writer wraps each batch in its own transaction that a statement must not end,
//!   and on a pooled read connection a stray `BEGIN` would pin an old snapshot of a live WAL
//!   database (and block its checkpoints) for every later query.
//!
//! PRAGMA allowlist, both modes (argument allowed where marked `(x)`): `table_info(x)`,
//! `table_xinfo(x)`, `index_list(x)`, `index_info(x)`, `index_xinfo(x)`, `foreign_key_list(x)`,
//! `foreign_key_check(x)`, `quick_check(x)`, `integrity_check(x)`, `table_list(x)`, and, reading
//! only, `user_version`, `schema_version`, `page_count`, `page_size`, `freelist_count`, `encoding`,
//! `compile_options`, `function_list`, `pragma_list`, `database_list`, `collation_list`.
//! [`Mode::Write`] additionally allows `user_version = N` and `foreign_keys` (read or set).
//!
//! `VACUUM` / `VACUUM INTO` (found by testing, see `sql::tests`): SQLite's authorizer is **not
//! called at all** while they are prepared, and `sqlite3_stmt_readonly()` is false for both. When
//! they *run*, SQLite prepares internal statements through the authorizer, the first being
//! `ATTACH '<target>'` (`''`, a temporary file, for plain VACUUM; the INTO file otherwise). So:
//! - read path: [`super::run_query`] refuses them as `not_read_only` before running anything;
//! - write path: inside the writer's transaction SQLite refuses them ("cannot VACUUM from within a
//!   transaction"); outside one, the guard denies their internal ATTACH when they run
//!   (`forbidden_statement`, "ATTACH is not allowed (…VACUUM…)"), before any file is created;
//! - even trusted code cannot VACUUM: `SQLITE_LIMIT_ATTACHED = 0` makes the internal ATTACH fail
//!   ("too many attached databases"); raise the limit temporarily if maintenance ever needs it.
//!
//! What the guard is *not*: the read-only enforcement. That comes from SQLite itself (read-only
//! open flag, `PRAGMA query_only`, `sqlite3_stmt_readonly`), never from keyword matching, so
//! `INSERT` etc. pass the guard and are refused later as `not_read_only`.
//!
//! Denials are recorded (per thread: the authorizer runs on the thread that prepares) so that
//! [`super::sqlite_error`] can turn SQLite's bare "not authorized" into a `forbidden_statement`
//! error that names what was refused. Trusted internal SQL (the writer's own `BEGIN`/`COMMIT`,
//! maintenance pragmas) bypasses the guard through [`trusted`] / [`exec_trusted`].

use std::cell::{Cell, RefCell};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::Connection;

/// What a connection is for; decides which PRAGMAs are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A read connection (stored copies and read-only views of live databases).
    Read,
    /// The writer's connection: may also set `user_version` and `foreign_keys`.
    Write,
}

thread_local! {
    /// Why the authorizer last denied something on this thread (taken by `sqlite_error`).
    static DENIAL: RefCell<Option<String>> = const { RefCell::new(None) };
    /// True while trusted internal SQL is being prepared on this thread.
    static TRUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the guard's authorizer on `conn`, replacing any previous authorizer.
pub fn install(conn: &mut Connection, mode: Mode) -> rusqlite::Result<()> {
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if TRUSTED.with(Cell::get) {
            return Authorization::Allow;
        }
        match check(mode, &ctx) {
            Ok(()) => Authorization::Allow,
            Err(reason) => {
                DENIAL.with(|d| *d.borrow_mut() = Some(reason));
                Authorization::Deny
            }
        }
    }))
}

/// Takes (and clears) the reason of the last denial on this thread, if any.
pub fn take_denial() -> Option<String> {
    DENIAL.with(|d| d.borrow_mut().take())
}

/// Clears any stale denial reason on this thread.
pub(crate) fn clear_denial() {
    DENIAL.with(|d| *d.borrow_mut() = None);
}

/// Runs `f` with the guard disabled on this thread, for trusted internal SQL only.
///
/// The authorizer runs when a statement is *prepared*, so prepare (and, for one-shot helpers like
/// `execute_batch`, run) the trusted statement inside `f`. Never pass client SQL through here.
pub fn trusted<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRUSTED.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRUSTED.with(|t| t.replace(true)));
    f()
}

/// Executes trusted internal SQL (e.g. the writer's `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK`,
/// `PRAGMA wal_checkpoint(TRUNCATE)`) with the guard disabled. Never pass client SQL.
pub fn exec_trusted(conn: &Connection, sql: &str) -> trough_types::Result<()> {
    trusted(|| conn.execute_batch(sql)).map_err(super::sqlite_error)
}

/// `(name, argument allowed)` of the PRAGMAs allowed in both modes.
const READ_PRAGMAS: &[(&str, bool)] = &[
    ("table_info", true),
    ("table_xinfo", true),
    ("index_list", true),
    ("index_info", true),
    ("index_xinfo", true),
    ("foreign_key_list", true),
    ("foreign_key_check", true),
    ("quick_check", true),
    ("integrity_check", true),
    ("table_list", true),
    ("user_version", false),
    ("schema_version", false),
    ("page_count", false),
    ("page_size", false),
    ("freelist_count", false),
    ("encoding", false),
    ("compile_options", false),
    ("function_list", false),
    ("pragma_list", false),
    ("database_list", false),
    ("collation_list", false),
];

const TEMP_REFUSED: &str = "temporary tables, views, triggers and indexes are not allowed: \
                            they would outlive the request on a shared connection";

/// Decides one authorizer call: `Err(reason)` to deny.
fn check(mode: Mode, ctx: &AuthContext<'_>) -> Result<(), String> {
    match ctx.action {
        AuthAction::Attach { .. } => Err("ATTACH is not allowed (VACUUM and VACUUM INTO are \
                                           refused too: they attach a database internally)"
            .into()),
        AuthAction::Detach { .. } => Err("DETACH is not allowed".into()),
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Err("the load_extension() function is not allowed".into())
        }
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. } => Err(TEMP_REFUSED.into()),
        // `CREATE TABLE temp.x` is authorized as a plain CREATE TABLE in database `temp`; every
        // way of making a temporary object writes temp's schema table.
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::AlterTable { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
            if ctx
                .database_name
                .is_some_and(|d| d.eq_ignore_ascii_case("temp")) =>
        {
            Err(TEMP_REFUSED.into())
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => check_pragma(mode, pragma_name, pragma_value),
        AuthAction::Transaction { operation } => Err(format!(
            "transaction control ({}) is not allowed: every request runs in its own transaction",
            match operation {
                TransactionOperation::Begin => "BEGIN",
                TransactionOperation::Rollback => "ROLLBACK",
                _ => "COMMIT",
            }
        )),
        AuthAction::Savepoint { operation, .. } => Err(format!(
            "{} is not allowed: every request runs in its own transaction",
            match operation {
                TransactionOperation::Begin => "SAVEPOINT",
                TransactionOperation::Release => "RELEASE",
                TransactionOperation::Rollback => "ROLLBACK TO",
                _ => "savepoint control",
            }
        )),
        AuthAction::Unknown { code, .. } => Err(format!(
            "this statement is not allowed (unknown authorizer action {code})"
        )),
        _ => Ok(()),
    }
}

fn check_pragma(mode: Mode, name: &str, value: Option<&str>) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if mode == Mode::Write
        && (lower == "foreign_keys" || (lower == "user_version" && value.is_some()))
    {
        return Ok(());
    }
    match READ_PRAGMAS.iter().find(|(n, _)| *n == lower) {
        Some((_, true)) => Ok(()),
        Some((_, false)) if value.is_none() => Ok(()),
        Some(_) => Err(format!(
            "setting PRAGMA {lower} is not allowed{}",
            if mode == Mode::Read {
                " on a read-only connection"
            } else {
                ""
            }
        )),
        None => Err(format!("PRAGMA {lower} is not allowed")),
    }
}
