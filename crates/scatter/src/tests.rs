//! Targeted tests of the planner and the merge (the broad check is `differential/`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::types::Value;
use serde_json::{json, Value as Json};
use trough_sqlite::Params;

use super::differential::{run_one, run_scatter, Fixture, Scatter};
use super::{compare, merge, plan, Collation, MergeOptions, Row, SegmentStream, Strategy};

fn refused(sql: &str) -> String {
    match plan(sql) {
        Ok(p) => panic!(
            "planned but should be refused: {sql}\n  segment SQL: {}",
            p.segment_sql()
        ),
        Err(e) => {
            assert!(
                e.code() == "unsupported_scatter_query" || e.code() == "sql_error",
                "{e:?}"
            );
            e.to_string()
        }
    }
}

#[test]
fn refuses_what_it_cannot_merge_exactly() {
    let cases: &[(&str, &str)] = &[
        ("SELECT * FROM t JOIN u ON t.id = u.id", "joins"),
        ("SELECT * FROM t, u", "joins"),
        (
            "SELECT * FROM t WHERE a > (SELECT avg(a) FROM t)",
            "subqueries",
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
            "subqueries",
        ),
        ("SELECT * FROM (SELECT * FROM t)", "subqueries in FROM"),
        ("SELECT a FROM t UNION SELECT a FROM u", "compound"),
        ("SELECT a FROM t UNION ALL SELECT a FROM u", "compound"),
        ("SELECT row_number() OVER (ORDER BY a) FROM t", "window"),
        ("SELECT sum(a) OVER () FROM t", "window"),
        ("SELECT random() FROM t", "not deterministic"),
        ("SELECT a FROM t ORDER BY random()", "not deterministic"),
        ("SELECT changes() FROM t", "not deterministic"),
        ("SELECT last_insert_rowid() FROM t", "not deterministic"),
        ("SELECT group_concat(c) FROM t", "order rows are visited"),
        (
            "SELECT g, json_group_array(a) FROM t GROUP BY g",
            "order rows are visited",
        ),
        ("SELECT g, a FROM t GROUP BY g", "neither a GROUP BY term"),
        ("SELECT a, max(b) FROM t", "neither a GROUP BY term"),
        ("SELECT *, count(*) FROM t", "arbitrary"),
        (
            "SELECT count(*) FROM t HAVING a > 1",
            "neither a GROUP BY term",
        ),
        (
            "SELECT g, sum(a) FROM t GROUP BY g HAVING sum(a) > g",
            "affinity",
        ),
        ("SELECT a FROM t LIMIT ?", "integer literal"),
        ("SELECT a FROM t LIMIT 5 OFFSET ?", "integer literal"),
        ("WITH x AS (SELECT a FROM t) SELECT * FROM x", "WITH"),
        ("SELECT date('now') FROM t", "now"),
        ("SELECT datetime(a, 'localtime') FROM t", "time zone"),
        ("SELECT date() FROM t", "now"),
        ("SELECT 1", "without FROM"),
        ("SELECT 0x10 FROM t", "hexadecimal"),
        (
            "SELECT a * b || c, count(*) FROM t GROUP BY a, b, c",
            "parentheses",
        ),
        ("SELECT x = y < z FROM t ORDER BY 1", "parentheses"),
        ("SELECT count(*) FROM t GROUP BY 3", "out of range"),
        ("SELECT my_udf(a) FROM t", "not known"),
        (
            "SELECT g FROM t GROUP BY g ORDER BY a",
            "neither a GROUP BY term",
        ),
        (
            "SELECT DISTINCT g FROM t ORDER BY a",
            "must name result columns",
        ),
        (
            "SELECT g, min(c COLLATE foo) FROM t GROUP BY g",
            "built-in collations",
        ),
        (
            "SELECT g, count(*) FROM t GROUP BY lower(g COLLATE NOCASE)",
            "outermost",
        ),
        ("SELECT a FROM temp.t", "main"),
        ("SELECT a FROM t WHERE a ISNULL", ""),
        ("INSERT INTO t VALUES (1)", "only SELECT"),
        ("SELECT a FROM t; SELECT b FROM t", "exactly one statement"),
        (
            "SELECT sum(DISTINCT a) FILTER (WHERE a > 0) FROM t",
            "FILTER",
        ),
        ("SELECT count(sum(a)) FROM t", "inside another aggregate"),
        ("SELECT a FROM t WHERE sum(a) > 0", "not allowed here"),
        ("SELECT string_agg(c, ',') FROM t", "order rows are visited"),
        // g is not a GROUP BY term: only g COLLATE NOCASE is (which g a group shows is arbitrary).
        (
            "SELECT g, count(*) FROM t GROUP BY 1 COLLATE NOCASE",
            "neither",
        ),
        ("SELECT * FROM json_each('[1]')", "table-valued"),
        ("SELECT a AS rowid FROM t ORDER BY rowid + 1", "rowid"),
    ];
    let mut failures = Vec::new();
    for (sql, why) in cases {
        match plan(sql) {
            Ok(p) => failures.push(format!("planned: {sql}\n  {}", p.segment_sql())),
            Err(e) => {
                if !e.to_string().contains(why) {
                    failures.push(format!("{sql}: message {:?} lacks {why:?}", e.to_string()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Parse errors are sql_error, with SQLite's message.
    let e = plan("SELEC a FROM t").unwrap_err();
    assert_eq!(e.code(), "sql_error");
    assert!(e.message().contains("syntax error"), "{e:?}");
    // SQL that SQLite reads but the planner's parser cannot: a refusal that says so.
    let e = plan("SELECT 1 IN t1").unwrap_err();
    assert_eq!(e.code(), "unsupported_scatter_query", "{e:?}");
    assert!(e.message().contains("SQLite can"), "{e:?}");
    assert!(!refused("SELECT 1").is_empty());
}

#[test]
fn plans_are_what_the_docs_say() {
    let p = plan("SELECT a, b FROM t WHERE a > 1 LIMIT 10 OFFSET 5").unwrap();
    assert_eq!(p.strategy(), Strategy::Concat);
    assert!(
        p.segment_sql().ends_with(" LIMIT 15"),
        "{}",
        p.segment_sql()
    );

    let p = plan("SELECT a FROM t ORDER BY b DESC LIMIT 3, 4").unwrap();
    assert_eq!(p.strategy(), Strategy::SortedMerge);
    assert!(
        p.segment_sql().contains("ORDER BY b DESC LIMIT 7"),
        "{}",
        p.segment_sql()
    );

    let p =
        plan("SELECT g, avg(a), count(DISTINCT c) FROM t GROUP BY g HAVING count(*) > ?").unwrap();
    assert_eq!(p.strategy(), Strategy::SqlMerge);
    let seg = p.segment_sql();
    assert!(
        seg.starts_with(
            "WITH \"_trough_params\" AS (SELECT ?1) SELECT g, total(a), count(a), c, count(*) FROM t "
        ),
        "{seg}"
    );
    assert!(seg.ends_with("GROUP BY 1, 4"), "{seg}");
    let m = p.merge_sql().unwrap();
    assert!(m.contains("(total(\"_c1\") / sum(\"_c2\"))"), "{m}");
    assert!(m.contains("count(DISTINCT \"_c3\")"), "{m}");
    assert!(
        m.contains("GROUP BY \"_c0\" HAVING coalesce(sum(\"_c4\"), 0) > ?1"),
        "{m}"
    );

    // Anonymous parameters keep their numbers wherever they end up.
    let p = plan("SELECT g, count(*) FROM t WHERE a > ? GROUP BY g HAVING sum(b) > ? ORDER BY 1")
        .unwrap();
    assert!(p
        .segment_sql()
        .starts_with("WITH \"_trough_params\" AS (SELECT ?1, ?2) "));
    assert!(p.segment_sql().contains("WHERE a > ?1"));
    assert!(p.merge_sql().unwrap().contains("> ?2"));

    let p = plan("SELECT DISTINCT g FROM t ORDER BY 1 LIMIT 4").unwrap();
    assert_eq!(p.strategy(), Strategy::SqlMerge);
    assert!(p.segment_sql().contains("SELECT DISTINCT g FROM t"));
    assert!(p.segment_sql().ends_with("ORDER BY 1 LIMIT 4"));
}

#[test]
fn orders_values_like_sqlite() {
    use std::cmp::Ordering::*;
    let b = Collation::Binary;
    assert_eq!(compare(&Value::Null, &Value::Integer(i64::MIN), b), Less);
    assert_eq!(compare(&Value::Integer(1), &Value::Real(1.0), b), Equal);
    assert_eq!(compare(&Value::Integer(2), &Value::Real(1.5), b), Greater);
    assert_eq!(
        compare(
            &Value::Integer(i64::MAX),
            &Value::Real(9.223372036854776e18),
            b
        ),
        Less
    );
    assert_eq!(
        compare(&Value::Real(1e300), &Value::Text(String::new()), b),
        Less
    );
    assert_eq!(
        compare(&Value::Text("z".into()), &Value::Blob(vec![]), b),
        Less
    );
    assert_eq!(
        compare(&Value::Text("B".into()), &Value::Text("a".into()), b),
        Less
    );
    assert_eq!(
        compare(
            &Value::Text("B".into()),
            &Value::Text("a".into()),
            Collation::NoCase
        ),
        Greater
    );
    assert_eq!(
        compare(
            &Value::Text("a  ".into()),
            &Value::Text("a".into()),
            Collation::RTrim
        ),
        Equal
    );
    // SQLite agrees.
    let c = rusqlite::Connection::open_in_memory().unwrap();
    let ordered: Vec<String> = c
        .prepare("SELECT quote(v) FROM (SELECT 'a' AS v UNION ALL SELECT 1.5 UNION ALL SELECT x'00' UNION ALL SELECT NULL UNION ALL SELECT 2 UNION ALL SELECT 'B') ORDER BY v")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, ["NULL", "1.5", "2", "'B'", "'a'", "X'00'"]);
}

const SCHEMA: &str = "CREATE TABLE t(id INTEGER, g TEXT, a INTEGER, b REAL, c TEXT);";

fn fixture(rows: &[(usize, &str)], nseg: usize) -> Fixture {
    let fx = Fixture::new(nseg, SCHEMA);
    let rows: Vec<(usize, String)> = rows
        .iter()
        .map(|(s, v)| (*s, format!("INSERT INTO t VALUES {v};")))
        .collect();
    fx.insert_all(&rows);
    fx
}

fn opts(fx: &Fixture) -> MergeOptions {
    MergeOptions {
        temp_dir: Some(fx.dir.path().to_owned()),
        ..MergeOptions::default()
    }
}

/// Runs `sql` both ways; returns (monolith, scatter) as JSON for easy asserts.
fn both(fx: &Fixture, sql: &str, params: &Params) -> (Json, Json) {
    let mono = trough_sqlite::open(&fx.mono, trough_sqlite::Access::ReadOnlyImmutable).unwrap();
    let m = match run_one(&mono, sql, params) {
        Ok((names, rows)) => json!({"columns": names, "rows": rows}),
        Err(e) => json!({"error": e}),
    };
    let s = match run_scatter(&fx.open_segments(), sql, params, &opts(fx)) {
        Scatter::Rows(names, rows) => json!({"columns": names, "rows": rows}),
        Scatter::Failed(e) => json!({"error": e}),
        Scatter::Refused(e) => json!({"refused": e}),
    };
    (m, s)
}

#[test]
fn sum_overflow_is_an_error_and_empty_aggregates_are_sqlite_s() {
    let fx = fixture(
        &[
            (0, "(1, 'x', 9223372036854775807, NULL, NULL)"),
            (2, "(2, 'x', 9223372036854775807, NULL, NULL)"),
            (2, "(3, 'y', 5, NULL, NULL)"),
        ],
        4,
    );
    let (m, s) = both(&fx, "SELECT sum(a) FROM t", &Params::None);
    assert_eq!(m, json!({"error": "integer overflow"}));
    assert_eq!(s, json!({"error": "integer overflow"}));
    // Per group: only x overflows; the error is the same.
    let (m, s) = both(&fx, "SELECT g, sum(a) FROM t GROUP BY g", &Params::None);
    assert_eq!(m, s);
    // avg and total never overflow.
    let (m, s) = both(&fx, "SELECT avg(a), total(a) FROM t", &Params::None);
    assert_eq!(m, s);
    // Nothing matches: one row, SQLite's values for empty input.
    let sql = "SELECT count(*), count(a), sum(a), total(a), avg(a), min(a), max(c), count(DISTINCT a), sum(DISTINCT a) FROM t WHERE id < 0";
    let (m, s) = both(&fx, sql, &Params::None);
    assert_eq!(
        m["rows"],
        json!([[0, 0, null, 0.0, null, null, null, 0, null]])
    );
    assert_eq!(m, s);
    // And over no segments at all.
    let p = plan(sql).unwrap();
    let cols: Vec<String> = (0..9).map(|i| format!("c{i}")).collect();
    let rows: Vec<Row> = merge(&p, &Params::None, &cols, vec![], &opts(&fx))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        json!(rows),
        json!([[0, 0, null, 0.0, null, null, null, 0, null]])
    );
}

#[test]
fn aliases_parameters_names_and_affinity_match_sqlite() {
    let fx = fixture(
        &[
            (0, "(1, '5', 10, 1.5, 'apple')"),
            (1, "(2, '5', 20, 2.5, 'avocado')"),
            (1, "(3, 'x', 30, NULL, 'banana')"),
            (2, "(4, 'X', -5, 4.0, 'blue')"),
            (2, "(5, NULL, NULL, 0.5, NULL)"),
        ],
        3,
    );
    let cases: &[(&str, Params)] = &[
        ("SELECT substr(c, 1, 1) AS ini, count(*) AS n FROM t GROUP BY ini HAVING n > 1 ORDER BY n DESC, ini", Params::None),
        ("SELECT G, count(*), sum(a)/count(*), round(avg(b), 2), max(a)-min(a) FROM t GROUP BY g ORDER BY 1", Params::None),
        // TEXT affinity of g is applied to 5 in the segment (`g = 5` is computed there).
        ("SELECT g, count(*) FROM t GROUP BY g HAVING g = 5", Params::None),
        ("SELECT g, count(*) FROM t WHERE a > :lo GROUP BY g HAVING count(*) >= :n ORDER BY 1", Params::Named(serde_json::from_value(json!({"lo": 0, "n": 1})).unwrap())),
        ("SELECT g, count(*) FROM t WHERE a > ?2 GROUP BY g HAVING count(*) >= ?1 ORDER BY 1", Params::Positional(vec![json!(1), json!(0)])),
        ("SELECT a * 2 AS d FROM t WHERE d > 10 ORDER BY d", Params::None),
        ("SELECT g COLLATE NOCASE, count(*) FROM t GROUP BY 1 ORDER BY 1", Params::None),
        ("SELECT g FROM t GROUP BY g ORDER BY sum(a) DESC, g", Params::None),
        ("SELECT count(DISTINCT g COLLATE NOCASE), count(DISTINCT g) FROM t", Params::None),
        ("SELECT t.g AS \"the g\", count(*) /* c */ FROM t GROUP BY 1 ORDER BY 1 NULLS LAST", Params::None),
        ("SELECT c FROM t ORDER BY c COLLATE NOCASE DESC, id LIMIT 2 OFFSET 1", Params::None),
        ("SELECT * FROM t ORDER BY 3 DESC NULLS FIRST", Params::None),
        ("SELECT DISTINCT substr(c, 1, 1) FROM t ORDER BY 1 LIMIT 2", Params::None),
        ("SELECT g IS NOT DISTINCT FROM 'x', count(*) FROM t GROUP BY 1 ORDER BY 1", Params::None),
        ("SELECT a IS DISTINCT FROM 10 FROM t ORDER BY id", Params::None),
        ("SELECT g, c FROM t ORDER BY 1 COLLATE NOCASE DESC, (2), id", Params::None),
        ("SELECT g AS k FROM t ORDER BY k COLLATE NOCASE, id", Params::None),
        ("SELECT DISTINCT g FROM t ORDER BY 1 COLLATE NOCASE, 1", Params::None),
        ("SELECT g, count(*) FROM t GROUP BY g ORDER BY 1 COLLATE NOCASE DESC, 1", Params::None),
    ];
    for (sql, params) in cases {
        let (m, s) = both(&fx, sql, params);
        assert_eq!(m, s, "{sql}");
        assert!(m.get("rows").is_some(), "{sql}: {m}");
    }
}

#[test]
fn segment_guard_refuses_views_collations_and_ambiguous_aliases() {
    let fx = Fixture::new(
        2,
        "CREATE TABLE base(id INTEGER, a INTEGER, d INTEGER, n TEXT COLLATE NOCASE);
         CREATE VIEW v AS SELECT count(*) AS k FROM base;
         INSERT INTO base VALUES (1, 1, 1, 'a'), (2, 2, 2, 'B');",
    );
    let segs = fx.open_segments();
    let o = opts(&fx);
    let run = |sql: &str| run_scatter(&segs, sql, &Params::None, &o);
    match run("SELECT k FROM v") {
        Scatter::Failed(e) => assert!(e.contains("is a view"), "{e}"),
        _ => panic!("a view must be refused"),
    }
    match run("SELECT n FROM base ORDER BY n") {
        Scatter::Failed(e) => assert!(e.contains("declares a COLLATE"), "{e}"),
        _ => panic!("declared collations must be refused when the merge compares"),
    }
    // Concatenation compares nothing: fine.
    assert!(matches!(run("SELECT n FROM base"), Scatter::Rows(..)));
    // `d` is a column: SQLite's WHERE uses it, not the alias; so does the scatter answer (both
    // segments hold both rows).
    match run("SELECT a + 1 AS d FROM base WHERE d > 1") {
        Scatter::Rows(_, rows) => assert_eq!(json!(rows), json!([[3], [3]])),
        Scatter::Failed(e) | Scatter::Refused(e) => {
            panic!("alias shadowing a column must resolve to the column: {e}")
        }
    }
}

/// The data of issue 9: r-0 holds (1,2); r-1 holds (3,4) and (1,5); r-2 is empty.
fn issue9() -> Fixture {
    let fx = Fixture::new(3, "CREATE TABLE t(a INTEGER, b INTEGER);");
    fx.insert_all(&[
        (0, "INSERT INTO t VALUES (1, 2);".to_owned()),
        (1, "INSERT INTO t VALUES (3, 4);".to_owned()),
        (1, "INSERT INTO t VALUES (1, 5);".to_owned()),
    ]);
    fx
}

#[test]
fn distinct_aggregates_over_no_matching_row_give_one_row() {
    let fx = issue9();
    let cases = [
        ("SELECT count(DISTINCT a) FROM t WHERE b > 100", json!([[0]])),
        (
            "SELECT sum(DISTINCT a), avg(DISTINCT a), min(DISTINCT a), max(DISTINCT a), total(DISTINCT a) FROM t WHERE b > 100",
            json!([[null, null, null, null, 0.0]]),
        ),
        (
            "SELECT count(*), count(DISTINCT a), sum(b) FROM t WHERE b > 100",
            json!([[0, 0, null]]),
        ),
        ("SELECT count(DISTINCT a) FROM t", json!([[2]])),
    ];
    for (sql, rows) in cases {
        let (m, s) = both(&fx, sql, &Params::None);
        assert_eq!(m["rows"], rows, "{sql}");
        assert_eq!(m, s, "{sql}");
    }
    // What a caller with no segment row at all does: the plan knows its segment width.
    let p = plan("SELECT count(DISTINCT a) FROM t WHERE b > 100").unwrap();
    let cols: Vec<String> = (0..p.segment_width().unwrap())
        .map(|i| format!("_c{i}"))
        .collect();
    let rows: Vec<Row> = merge(&p, &Params::None, &cols, vec![], &opts(&fx))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(json!(rows), json!([[0]]));
}

#[test]
fn an_alias_that_is_also_a_column_means_the_column_even_with_no_rows() {
    let fx = issue9();
    for sql in [
        "SELECT a AS b FROM t WHERE b > 3",
        "SELECT a AS b FROM t WHERE b > 100",
        "SELECT a AS b, count(*) FROM t WHERE b > 3 GROUP BY a",
        "SELECT a + 1 AS b FROM t WHERE b > 0 ORDER BY b",
        "SELECT a + 1 AS c FROM t WHERE c > 2 ORDER BY c",
        // Read as the alias, WHERE would hold an aggregate; SQLite reads the column.
        "SELECT count(a) AS b FROM t WHERE b > 3",
        "SELECT DISTINCT count(a) AS b FROM t WHERE NOT b BETWEEN 3 AND 4",
    ] {
        let (m, s) = both(&fx, sql, &Params::None);
        assert!(m.get("rows").is_some(), "{sql}: {m}");
        let sorted = |v: &Json| {
            let mut r = v["rows"].as_array().unwrap().clone();
            r.sort_by_key(|x| x.to_string());
            r
        };
        assert_eq!(m["columns"], s["columns"], "{sql}: {s}");
        assert_eq!(sorted(&m), sorted(&s), "{sql}: {s}");
    }
    let (m, _) = both(&fx, "SELECT a AS b FROM t WHERE b > 3", &Params::None);
    assert_eq!(m["rows"].as_array().unwrap().len(), 2);
    // Where the name is not a column, the alias reading and its refusal stand.
    let (m, s) = both(
        &fx,
        "SELECT count(a) AS k FROM t WHERE k > 3",
        &Params::None,
    );
    assert!(m.get("error").is_some(), "{m}");
    assert!(
        s["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowed"),
        "{s}"
    );
}

#[test]
fn integer_constants_are_not_column_numbers_in_segment_sql() {
    let fx = issue9();
    for sql in [
        "SELECT count(DISTINCT 8) FROM t",
        "SELECT count(DISTINCT 8) FROM t WHERE b > 100",
        "SELECT 7 AS a FROM t GROUP BY a",
        "SELECT 7 AS a, count(*) FROM t GROUP BY a",
        "SELECT count(*) FROM t GROUP BY 'x'",
        "SELECT sum(DISTINCT -2), count(DISTINCT 1.5) FROM t",
        "SELECT DISTINCT 8 FROM t",
        "SELECT 7 AS a FROM t ORDER BY a",
    ] {
        let (m, s) = both(&fx, sql, &Params::None);
        assert!(m.get("rows").is_some(), "{sql}: {m}");
        assert_eq!(m, s, "{sql}");
    }
}

#[test]
fn streaming_merges_stop_reading_early_and_spill_past_the_budget() {
    // A LIMIT over concatenation / sorted merge pulls only what it needs.
    let pulled = Arc::new(AtomicUsize::new(0));
    let stream = |seg: usize, n: i64| {
        let pulled = pulled.clone();
        let rows = (0..n).map(move |i| {
            pulled.fetch_add(1, Ordering::Relaxed);
            Ok(vec![json!(i * 10 + seg as i64)])
        });
        SegmentStream::new(format!("s{seg}"), Box::new(rows))
    };
    let p = plan("SELECT a FROM t LIMIT 5").unwrap();
    let cols = vec!["a".to_owned()];
    let out: Vec<Row> = merge(
        &p,
        &Params::None,
        &cols,
        vec![stream(0, 1000), stream(1, 1000)],
        &MergeOptions::default(),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(out.len(), 5);
    assert!(pulled.load(Ordering::Relaxed) <= 6);
    pulled.store(0, Ordering::Relaxed);
    let p = plan("SELECT a FROM t ORDER BY a LIMIT 5").unwrap();
    let out: Vec<Row> = merge(
        &p,
        &Params::None,
        &cols,
        (0..10).map(|s| stream(s, 1000)).collect(),
        &MergeOptions::default(),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(json!(out), json!([[0], [1], [2], [3], [4]]));
    assert!(pulled.load(Ordering::Relaxed) <= 15);

    // GROUP BY over many groups with a tiny memory budget: SQLite spills, the answer is right.
    let p =
        plan("SELECT a % 50000, count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3").unwrap();
    let seg_rows = |seg: i64| -> Vec<Result<Row, trough_types::Error>> {
        (0..50000)
            .map(|i| Ok(vec![json!(i), json!(if i % 7 == seg { 2 } else { 1 })]))
            .collect()
    };
    let cols = vec!["a % 50000".to_owned(), "count(*)".to_owned()];
    let dir = tempfile::tempdir().unwrap();
    let small = MergeOptions {
        memory_budget_bytes: 256 * 1024,
        temp_dir: Some(dir.path().to_owned()),
        ..MergeOptions::default()
    };
    let streams = (0..3)
        .map(|s| SegmentStream::new(format!("s{s}"), Box::new(seg_rows(s).into_iter())))
        .collect();
    let m = merge(&p, &Params::None, &cols, streams, &small).unwrap();
    assert_eq!(m.columns(), ["a % 50000", "count(*)"]);
    let out: Vec<Row> = m.collect::<Result<_, _>>().unwrap();
    assert_eq!(json!(out), json!([[0, 4], [1, 4], [2, 4]]));
    // Past the disk budget: a clear error.
    let tiny = MergeOptions {
        disk_budget_bytes: Some(64 * 1024),
        ..small
    };
    let streams = (0..3)
        .map(|s| SegmentStream::new(format!("s{s}"), Box::new(seg_rows(s).into_iter())))
        .collect();
    let e = merge(&p, &Params::None, &cols, streams, &tiny).unwrap_err();
    assert_eq!(e.code(), "merge_too_large", "{e}");
}

#[test]
fn double_minus_signs_are_planned_not_refused() {
    // `- -x` printed back naively is `--x`, a comment.
    let fx = issue9();
    for sql in [
        "SELECT - - a, - - - b FROM t WHERE - - a > 0",
        "SELECT + SUM ( - - b ) AS s FROM t",
        "SELECT DISTINCT - - 14 FROM t",
        "SELECT a FROM t ORDER BY - - b DESC",
        "SELECT - - a AS k, count(*) FROM t GROUP BY - - a ORDER BY 1",
    ] {
        let (m, s) = both(&fx, sql, &Params::None);
        assert!(m.get("rows").is_some(), "{sql}: {m}");
        assert_eq!(m, s, "{sql}");
    }
}
