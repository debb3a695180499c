//! Tests of the engine wrapper as a whole: the guard on real connections, read-only enforcement
//! and query execution (formats, limits, timeouts, errors).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;
use serde_json::json;

use super::*;
use trough_types::ErrorKind;

const COUNT_FOREVER: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";

/// A database with `t(id INTEGER PRIMARY KEY, name TEXT)` holding 3 rows.
pub(super) fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO t(name) VALUES ('a'), ('b'), ('c');",
    )
    .unwrap();
    (dir, path)
}

pub(super) fn read_conns(path: &Path) -> Vec<(&'static str, Connection)> {
    vec![
        ("immutable", open(path, Access::ReadOnlyImmutable).unwrap()),
        ("read-only", open(path, Access::ReadOnly).unwrap()),
    ]
}

fn req(sql: &str, params: serde_json::Value) -> SqlRequest {
    serde_json::from_value(json!({"sql": sql, "params": params})).unwrap()
}

/// Runs a query and returns (chunks, result).
fn run_chunks(
    conn: &mut Connection,
    sql: &str,
    params: serde_json::Value,
    limits: &QueryLimits,
    format: RowFormat,
) -> (Vec<Bytes>, trough_types::Result<QueryStats>) {
    let mut chunks = Vec::new();
    let r = run_query(conn, &req(sql, params), limits, format, &mut |b| {
        chunks.push(b);
        true
    });
    (chunks, r)
}

pub(super) fn run(
    conn: &mut Connection,
    sql: &str,
    params: serde_json::Value,
) -> trough_types::Result<String> {
    let (chunks, r) = run_chunks(
        conn,
        sql,
        params,
        &QueryLimits::default(),
        RowFormat::JsonArray,
    );
    r.map(|stats| {
        let out: Vec<u8> = chunks.concat();
        assert_eq!(stats.bytes, out.len() as u64);
        String::from_utf8(out).unwrap()
    })
}

pub(super) fn assert_code(
    r: trough_types::Result<impl std::fmt::Debug>,
    code: &str,
    needle: &str,
    what: &str,
) {
    let err = r.expect_err(what);
    assert_eq!(err.code(), code, "{what}: {}", err.message());
    assert!(
        err.message().contains(needle),
        "{what}: message {:?} should contain {needle:?}",
        err.message()
    );
}

#[test]
fn guard_refuses_on_read_connections() {
    let (dir, path) = fixture();
    let target = dir.path().join("x.db");
    let target_sql = target.display().to_string().replace('\'', "''");
    for (what, mut conn) in read_conns(&path) {
        for (sql, needle) in [
            (format!("ATTACH '{target_sql}' AS x"), "ATTACH"),
            ("DETACH main".to_owned(), "DETACH"),
            ("SELECT load_extension('x')".to_owned(), "load_extension"),
            ("PRAGMA writable_schema=1".to_owned(), "writable_schema"),
            ("PRAGMA writable_schema".to_owned(), "writable_schema"),
            ("PRAGMA query_only=0".to_owned(), "query_only"),
            ("PRAGMA journal_mode=DELETE".to_owned(), "journal_mode"),
            ("PRAGMA user_version=5".to_owned(), "user_version"),
            ("PRAGMA page_size=512".to_owned(), "page_size"),
            ("BEGIN".to_owned(), "BEGIN"),
            ("COMMIT".to_owned(), "COMMIT"),
            ("SAVEPOINT s".to_owned(), "SAVEPOINT"),
            ("CREATE TEMP TABLE evil(x)".to_owned(), "temporary"),
            ("CREATE TABLE temp.evil(x)".to_owned(), "temporary"),
            ("CREATE TEMP VIEW evil AS SELECT 1".to_owned(), "temporary"),
            (
                "SELECT * FROM pragma_writable_schema".to_owned(),
                "writable_schema",
            ),
        ] {
            assert_code(
                run(&mut conn, &sql, json!(null)),
                "forbidden_statement",
                needle,
                &format!("{what}: {sql}"),
            );
        }
        // VACUUM compiles without any authorizer callback; SQLite reports it as not read-only.
        for sql in [format!("VACUUM INTO '{target_sql}'"), "VACUUM".to_owned()] {
            assert_code(
                run(&mut conn, &sql, json!(null)),
                "not_read_only",
                "use /execute",
                &format!("{what}: {sql}"),
            );
        }
        assert!(!target.exists(), "{what}: nothing was attached or written");
        // What is allowed still works.
        assert_eq!(
            run(&mut conn, "PRAGMA user_version", json!(null)).unwrap(),
            r#"[{"user_version":0}]"#
        );
        let info = run(
            &mut conn,
            "SELECT name FROM pragma_table_info('t')",
            json!(null),
        );
        assert_eq!(info.unwrap(), r#"[{"name":"id"},{"name":"name"}]"#);
        assert!(run(&mut conn, "PRAGMA main.table_info(t)", json!(null)).is_ok());
        assert!(run(&mut conn, "PRAGMA integrity_check", json!(null)).is_ok());
    }
}

#[test]
fn guard_refuses_on_write_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let target = dir.path().join("x.db");
    let target_sql = target.display().to_string().replace('\'', "''");
    let conn = open_writable(&path, Synchronous::Full).unwrap();
    conn.execute_batch("CREATE TABLE t(x)").unwrap();
    for (sql, needle) in [
        (format!("ATTACH '{target_sql}' AS x"), "ATTACH"),
        ("DETACH x".to_owned(), "DETACH"),
        ("SELECT load_extension('x')".to_owned(), "load_extension"),
        ("PRAGMA writable_schema=ON".to_owned(), "writable_schema"),
        ("PRAGMA journal_mode=OFF".to_owned(), "journal_mode"),
        ("PRAGMA schema_version=7".to_owned(), "schema_version"),
        ("BEGIN IMMEDIATE".to_owned(), "BEGIN"),
        ("COMMIT".to_owned(), "COMMIT"),
        ("END".to_owned(), "COMMIT"),
        ("ROLLBACK".to_owned(), "ROLLBACK"),
        ("SAVEPOINT s".to_owned(), "SAVEPOINT"),
        ("RELEASE s".to_owned(), "RELEASE"),
    ] {
        let err = conn.prepare(&sql).map(|_| ()).map_err(sqlite_error);
        assert_code(err, "forbidden_statement", needle, &sql);
        let err = conn
            .prepare(&sql)
            .map(|_| ())
            .map_err(sqlite_error)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    // Write mode allows setting user_version and foreign_keys.
    conn.execute_batch("PRAGMA user_version = 3; PRAGMA foreign_keys = ON")
        .unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 3);

    // VACUUM / VACUUM INTO: no authorizer callback while preparing. Inside the writer's
    // transaction SQLite refuses them; outside one, the ATTACH they perform internally when they
    // run is denied by the guard; and even trusted, SQLITE_LIMIT_ATTACHED = 0 stops them.
    guard::exec_trusted(&conn, "BEGIN IMMEDIATE").unwrap();
    for sql in [format!("VACUUM INTO '{target_sql}'"), "VACUUM".to_owned()] {
        let err = conn.execute_batch(&sql).map_err(sqlite_error).unwrap_err();
        assert_eq!(err.code(), "sql_error", "{sql}");
        assert!(
            err.message()
                .contains("cannot VACUUM from within a transaction"),
            "{sql}: {}",
            err.message()
        );
    }
    guard::exec_trusted(&conn, "ROLLBACK").unwrap();
    for sql in [format!("VACUUM INTO '{target_sql}'"), "VACUUM".to_owned()] {
        let stmt = conn
            .prepare(&sql)
            .expect("VACUUM prepares: no authorizer callback");
        assert!(!stmt.readonly());
        drop(stmt);
        let err = conn.execute_batch(&sql).map_err(sqlite_error).unwrap_err();
        assert_eq!(err.code(), "forbidden_statement", "{sql}");
        assert!(err.message().contains("VACUUM"), "{sql}: {}", err.message());
        let err = guard::exec_trusted(&conn, &sql).unwrap_err();
        assert!(
            err.message().contains("too many attached databases"),
            "{sql}: {}",
            err.message()
        );
    }
    assert!(!target.exists());
    // The guard comes back after a trusted section, and trusted SQL cannot leak a denial.
    assert!(guard::take_denial().is_none());
    assert!(conn.execute_batch("BEGIN").is_err());
}

#[test]
fn writes_on_the_read_path_are_not_read_only_and_change_nothing() {
    let (_dir, path) = fixture();
    // A live WAL database with its writer connection open, as in production.
    let writer = open_writable(&path, Synchronous::Normal).unwrap();
    for (what, mut conn) in [
        ("read-only", open(&path, Access::ReadOnly).unwrap()),
        ("immutable", open(&path, Access::ReadOnlyImmutable).unwrap()),
    ] {
        for sql in [
            "INSERT INTO t(name) VALUES ('evil')",
            "UPDATE t SET name = 'evil'",
            "DELETE FROM t",
            "CREATE TABLE evil(x)",
            "DROP TABLE t",
            "CREATE INDEX evil ON t(name)",
            "ALTER TABLE t ADD COLUMN evil",
            "REPLACE INTO t(id, name) VALUES (1, 'evil')",
            "WITH x AS (SELECT 1) INSERT INTO t(name) SELECT 'evil' FROM x",
            "ANALYZE",
        ] {
            assert_code(
                run(&mut conn, sql, json!(null)),
                "not_read_only",
                "only read-only statements are allowed on /query; use /execute",
                &format!("{what}: {sql}"),
            );
        }
    }
    drop(writer);
    let check = Connection::open(&path).unwrap();
    let names: Vec<String> = check
        .prepare("SELECT name FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["a", "b", "c"]);
    let tables: i64 = check
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "no table or index was created");
}

#[test]
fn encodes_every_type_and_keeps_duplicate_columns() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    assert_eq!(
        run(
            &mut conn,
            "SELECT 1 AS i, 1.0 AS r, 2.5 AS r2, 'x\"y' AS t, x'00ff' AS b, NULL AS n, \
             9e999 AS inf, -9e999 AS ninf",
            json!(null)
        )
        .unwrap(),
        r#"[{"i":1,"r":1.0,"r2":2.5,"t":"x\"y","b":{"$blob":"AP8="},"n":null,"inf":{"$float":"Infinity"},"ninf":{"$float":"-Infinity"}}]"#
    );
    assert_eq!(
        run(&mut conn, "SELECT 1 AS a, 2 AS a, 3 AS \"é\"", json!(null)).unwrap(),
        r#"[{"a":1,"a":2,"é":3}]"#
    );
    assert_eq!(
        run(
            &mut conn,
            "SELECT t.name, u.name FROM t JOIN t AS u USING (id) WHERE id = 1",
            json!(null)
        )
        .unwrap(),
        r#"[{"name":"a","name":"a"}]"#
    );
}

#[test]
fn params_round_trip_through_queries() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    assert_eq!(
        run(
            &mut conn,
            "SELECT name FROM t WHERE id = ? OR id = ?",
            json!([1, 3])
        )
        .unwrap(),
        r#"[{"name":"a"},{"name":"c"}]"#
    );
    assert_eq!(
        run(
            &mut conn,
            "SELECT :a AS a, @b AS b, $c AS c, typeof(:a) AS ta",
            json!({"a": 1.0, "b": {"$blob": "3q2+7w=="}, "$c": {"$float": "Infinity"}})
        )
        .unwrap(),
        r#"[{"a":1.0,"b":{"$blob":"3q2+7w=="},"c":{"$float":"Infinity"},"ta":"real"}]"#
    );
    // SQLite stores no NaN: a bound NaN comes back as NULL.
    assert_eq!(
        run(&mut conn, "SELECT ? AS n", json!([{"$float": "NaN"}])).unwrap(),
        r#"[{"n":null}]"#
    );
    assert_code(
        run(&mut conn, "SELECT ?", json!([])),
        "invalid_params",
        "1 parameter(s) but 0",
        "count",
    );
    assert_code(
        run(&mut conn, "SELECT :a", json!({"zz": 1})),
        "invalid_params",
        "zz",
        "unknown name",
    );
}

#[test]
fn one_statement_only() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    for ok in [
        "SELECT 1 AS x;",
        "  /* c */ SELECT 1 AS x ;  -- trailing comment\n ; ",
        "SELECT 1 AS x -- no semicolon",
    ] {
        assert_eq!(
            run(&mut conn, ok, json!(null)).unwrap(),
            r#"[{"x":1}]"#,
            "{ok}"
        );
    }
    for bad in [
        "SELECT 1; SELECT 2",
        "SELECT 1;SELECT 2;",
        "SELECT 1; DELETE FROM t",
    ] {
        assert_code(
            run(&mut conn, bad, json!(null)),
            "multiple_statements",
            "one SQL statement",
            bad,
        );
    }
    for empty in ["", "  ", "-- nothing", ";"] {
        assert_code(
            run(&mut conn, empty, json!(null)),
            "sql_error",
            "no SQL",
            empty,
        );
    }
    assert_code(
        run(&mut conn, "SELEC 1", json!(null)),
        "sql_error",
        "syntax error",
        "syntax",
    );
    assert_code(
        run(&mut conn, "SELECT * FROM nope", json!(null)),
        "sql_error",
        "no such table",
        "missing table",
    );
}

#[test]
fn formats_and_empty_results() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let limits = QueryLimits::default();
    let text = |chunks: Vec<Bytes>| String::from_utf8(chunks.concat()).unwrap();
    let (c, r) = run_chunks(
        &mut conn,
        "SELECT id FROM t",
        json!(null),
        &limits,
        RowFormat::Ndjson,
    );
    assert_eq!(r.unwrap().rows, 3);
    assert_eq!(text(c), "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n");
    let (c, r) = run_chunks(
        &mut conn,
        "SELECT id FROM t WHERE 0",
        json!(null),
        &limits,
        RowFormat::Ndjson,
    );
    assert_eq!(r.unwrap(), QueryStats { rows: 0, bytes: 0 });
    assert_eq!(text(c), "");
    let (c, r) = run_chunks(
        &mut conn,
        "SELECT id FROM t WHERE 0",
        json!(null),
        &limits,
        RowFormat::JsonArray,
    );
    assert_eq!(r.unwrap().rows, 0);
    assert_eq!(text(c), "[]");
    // Columnar: names once (duplicates kept), rows as arrays; names even without a row.
    let (c, r) = run_chunks(
        &mut conn,
        "SELECT id, id, 'x' AS id FROM t WHERE id < 3",
        json!(null),
        &limits,
        RowFormat::Columnar,
    );
    assert_eq!(r.unwrap().rows, 2);
    let v: serde_json::Value = serde_json::from_str(&text(c)).unwrap();
    assert_eq!(
        v,
        json!({"columns": ["id", "id", "id"], "rows": [[1, 1, "x"], [2, 2, "x"]]})
    );
    let (c, _) = run_chunks(
        &mut conn,
        "SELECT id AS a, id AS a FROM t WHERE 0",
        json!(null),
        &limits,
        RowFormat::Columnar,
    );
    assert_eq!(text(c), "{\"columns\":[\"a\",\"a\"],\"rows\":[]}");
}

#[test]
fn large_results_stream_in_bounded_chunks() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 20000) \
               SELECT x, 'row' || x AS label FROM c";
    let (chunks, r) = run_chunks(
        &mut conn,
        sql,
        json!(null),
        &QueryLimits::default(),
        RowFormat::JsonArray,
    );
    let stats = r.unwrap();
    assert_eq!(stats.rows, 20000);
    assert!(chunks.len() > 5, "{} chunks", chunks.len());
    for c in &chunks[..chunks.len() - 1] {
        assert!(c.len() >= query::CHUNK_SIZE && c.len() < query::CHUNK_SIZE + 1024);
    }
    let all: serde_json::Value = serde_json::from_slice(&chunks.concat()).unwrap();
    let rows = all.as_array().unwrap();
    assert_eq!(rows.len(), 20000);
    assert_eq!(rows[19999], json!({"x": 20000, "label": "row20000"}));
    assert!(!chunks.concat().contains(&b'\n'));
}

#[test]
fn timeout_interrupts_long_queries_and_does_not_stick() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let limits = QueryLimits {
        timeout_ms: 200,
        ..QueryLimits::default()
    };
    let start = Instant::now();
    let (chunks, r) = run_chunks(
        &mut conn,
        COUNT_FOREVER,
        json!(null),
        &limits,
        RowFormat::JsonArray,
    );
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.code(), "query_timeout");
    assert!(chunks.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The same connection (as a pooled one would be) runs the next query normally.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(
        run(&mut conn, "SELECT 1 AS x", json!(null)).unwrap(),
        r#"[{"x":1}]"#
    );
}

#[test]
fn cancel_token_stops_a_running_query() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let cancel = CancelToken::new();
    let remote = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        remote.cancel();
    });
    let r = run_query_cancellable(
        &mut conn,
        &SqlRequest::new(COUNT_FOREVER),
        &QueryLimits::default(),
        RowFormat::JsonArray,
        &cancel,
        &mut |_| true,
    );
    assert_eq!(r.unwrap_err().code(), "query_cancelled");
}

#[test]
fn row_and_byte_limits_are_errors_not_truncation() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let exact = QueryLimits {
        max_rows: 3,
        ..QueryLimits::default()
    };
    let (_, r) = run_chunks(
        &mut conn,
        "SELECT * FROM t",
        json!(null),
        &exact,
        RowFormat::JsonArray,
    );
    assert_eq!(r.unwrap().rows, 3);
    let small = QueryLimits {
        max_rows: 2,
        ..QueryLimits::default()
    };
    let (chunks, r) = run_chunks(
        &mut conn,
        "SELECT * FROM t",
        json!(null),
        &small,
        RowFormat::JsonArray,
    );
    assert_code(r, "result_too_large", "max_rows", "rows");
    assert!(chunks.is_empty(), "nothing was emitted before the error");
    let bytes = QueryLimits {
        max_response_bytes: 20,
        ..QueryLimits::default()
    };
    let (_, r) = run_chunks(
        &mut conn,
        "SELECT * FROM t",
        json!(null),
        &bytes,
        RowFormat::Ndjson,
    );
    assert_code(r, "result_too_large", "max_response_bytes", "bytes");
    let err = run_chunks(
        &mut conn,
        "SELECT * FROM t",
        json!(null),
        &small,
        RowFormat::Ndjson,
    )
    .1
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn mid_stream_errors_come_after_output_and_sink_false_stops() {
    let (_dir, path) = fixture();
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000) \
               SELECT CASE WHEN x > 5000 THEN abs(-9223372036854775808) ELSE x END AS v FROM c";
    let (chunks, r) = run_chunks(
        &mut conn,
        sql,
        json!(null),
        &QueryLimits::default(),
        RowFormat::JsonArray,
    );
    assert_code(r, "sql_error", "integer overflow", "overflow");
    assert!(!chunks.is_empty(), "rows before the error were streamed");
    let text = String::from_utf8(chunks.concat()).unwrap();
    assert!(
        text.ends_with(",{\"v\":5000}"),
        "every row before the error was handed over"
    );

    let mut calls = 0;
    let r = run_query(
        &mut conn,
        &SqlRequest::new(COUNT_FOREVER.replace("count(*)", "x")),
        &QueryLimits::default(),
        RowFormat::Ndjson,
        &mut |_| {
            calls += 1;
            calls < 3
        },
    );
    assert_eq!(r.unwrap_err().code(), "query_cancelled");
    assert_eq!(calls, 3);
}

#[test]
fn immutable_open_reads_a_wal_mode_file_without_creating_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let w = open_writable(&path, Synchronous::Full).unwrap();
    w.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (42);")
        .unwrap();
    drop(w); // last connection: checkpoints and removes -wal/-shm
    let mut conn = open(&path, Access::ReadOnlyImmutable).unwrap();
    assert_eq!(
        run(&mut conn, "SELECT x FROM t", json!(null)).unwrap(),
        r#"[{"x":42}]"#
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["wal.db"],
        "no -wal/-shm created next to a stored copy"
    );
}
