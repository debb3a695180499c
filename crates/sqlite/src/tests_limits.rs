//! Tests of the statement limits on hardened connections: string/blob length, and how the first
//! statement and the tail of a request are told apart.

use serde_json::json;

use super::tests::{assert_code, fixture, read_conns, run};

#[test]
fn values_over_the_length_limit_are_too_big() {
    let (_dir, path) = fixture();
    for (what, mut conn) in read_conns(&path) {
        for sql in [
            "SELECT length(printf('%.*c', 1000000000, 'x'))",
            "SELECT length(zeroblob(1000000000))",
            "SELECT ?",
        ] {
            let big = json!(["x".repeat((16 << 20) + 1)]);
            let params = if sql.contains('?') { big } else { json!(null) };
            assert_code(
                run(&mut conn, sql, params),
                "too_big",
                "limits.sqlite.max_length_bytes",
                &format!("{what}: {sql}"),
            );
        }
    }
}

#[test]
fn a_statement_runs_after_the_tail_is_checked() {
    let (_dir, path) = fixture();
    for (what, mut conn) in read_conns(&path) {
        // A write first: not read-only, even if what follows does not prepare.
        assert_code(
            run(
                &mut conn,
                "CREATE TABLE x(a); INSERT INTO x VALUES (1)",
                json!(null),
            ),
            "not_read_only",
            "read-only",
            what,
        );
        // A read followed by anything: several statements.
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT 1; INSERT INTO nope VALUES (1)",
        ] {
            assert_code(
                run(&mut conn, sql, json!(null)),
                "multiple_statements",
                "one SQL statement",
                &format!("{what}: {sql}"),
            );
        }
        assert_eq!(
            run(&mut conn, "SELECT 1 AS a; -- c", json!(null)).unwrap(),
            r#"[{"a":1}]"#
        );
    }
}
