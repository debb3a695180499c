//! Whether SQLite itself can parse a statement the planner's parser (sqlparser) cannot: the line
//! between "this is not SQL" (`sql_error`, as a single segment would answer) and "this is SQL
//! the scatter planner does not understand" (`unsupported_scatter_query`, a refusal naming the
//! reason). It prepares the statement on an empty in-memory database with an authorizer that
//! denies every action: SQLite consults the authorizer only once the statement is parsed (for a
//! SELECT, before it resolves any name), so a denial means the syntax is SQLite's, and any other
//! error is SQLite's own verdict on the text. No data, no schema, no I/O.

use rusqlite::hooks::{AuthContext, Authorization};
use rusqlite::{Connection, ErrorCode};

/// SQLite's verdict on the syntax of `sql`'s first statement.
pub(crate) enum Verdict {
    /// SQLite parses it.
    Parses,
    /// SQLite does not: its message.
    SyntaxError(String),
    /// Could not tell (no in-memory database).
    Unknown,
}

pub(crate) fn sqlite_verdict(sql: &str) -> Verdict {
    let Ok(mut conn) = Connection::open_in_memory() else {
        return Verdict::Unknown;
    };
    if conn
        .authorizer(Some(|_: AuthContext<'_>| Authorization::Deny))
        .is_err()
    {
        return Verdict::Unknown;
    }
    let verdict = match conn.prepare(sql) {
        Ok(_) => Verdict::Parses,
        Err(e) => match trough_sqlite::error_code(&e) {
            Some(ErrorCode::AuthorizationForStatementDenied) => Verdict::Parses,
            _ => Verdict::SyntaxError(match e {
                rusqlite::Error::SqlInputError { msg, .. } => msg,
                e => e.to_string(),
            }),
        },
    };
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_sqlite_syntax_from_errors() {
        assert!(matches!(sqlite_verdict("SELECT 1 IN t1"), Verdict::Parses));
        assert!(matches!(
            sqlite_verdict("SELECT a FROM nowhere"),
            Verdict::Parses
        ));
        match sqlite_verdict("SELEC a FROM t") {
            Verdict::SyntaxError(m) => assert!(m.contains("syntax error"), "{m}"),
            _ => panic!("a syntax error"),
        }
        assert!(matches!(
            sqlite_verdict("SELECT a FROM t WHERE"),
            Verdict::SyntaxError(_)
        ));
    }
}
