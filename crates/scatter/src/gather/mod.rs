//! # Gather: answer any deterministic query over many segments by copying the rows it reads
//!
//! The other strategies ([`super::plan`]) rewrite a query so that each segment does part of the
//! work; they refuse joins, subqueries, compound SELECTs (UNION, INTERSECT, EXCEPT), CTEs and
//! queries without FROM, because each segment only sees its own rows. Gather is the exact fallback
//! for those, correct by construction (as Citus pulls rows to its coordinator):
//!
//! 1. every selected segment reports its schema ([`SCHEMA_SQL`]);
//! 2. [`analyze`] recreates that schema in an empty in-memory database and *prepares* the query
//!    there, with an authorizer recording what it reads: SQLite itself resolves CTE names, aliases,
//!    views (their tables are gathered, the view is recreated) and subqueries. Refusals, with a
//!    reason: rowid reads, virtual tables, SQLite's internal tables, non-deterministic and
//!    order-dependent functions, statements that are not queries;
//! 3. the tables and views the query reads must be defined identically in every segment
//!    ([`check_same`]);
//! 4. every segment returns the stored columns of each table the query reads ([`loads`]), with the
//!    WHERE conjuncts that are provably safe pushed down (`pushdown`);
//! 5. [`MergeDb`] creates the same tables and views (the same `CREATE` statements, so affinity,
//!    collations and declared types behave as in one database), inserts the rows (values travel in
//!    core's lossless JSON value encoding), creates the indexes, and runs the **original query
//!    text** with the request's parameters. Its answer is what one database holding every row
//!    would give. Key constraints are per segment: the merge database holds the union of the
//!    rows, with PRIMARY KEY / UNIQUE cut from its `CREATE TABLE` text (`keys`).
//!
//! A query without any table (`SELECT 1 + 2`) gathers nothing and is evaluated once, in the merge
//! database.
//!
//! Where SQL leaves the answer arbitrary (row order without ORDER BY, ties, LIMIT without ORDER
//! BY, a bare column of an aggregate query, the order of window-function peers) the merge
//! database's arbitrary choice may differ from another database's. Date and time functions with
//! `'now'` are evaluated once, by the merge database.
//!
//! Memory and disk: see `load` (cache bounded by the merge memory budget, spills to disk, file
//! capped by the disk budget: `merge_too_large`). Segment answers are spooled by the fan-out
//! before they are loaded.
//!
//! Not here: the fan-out I/O (`crate::fanout::tables`), HTTP (`crate::handlers::gather`).

mod analyze;
mod keys;
mod load;
mod plan;
mod pushdown;
mod schema;

#[cfg(test)]
mod budget_test;

use trough_types::error::Result;

pub use analyze::{analyze, Analysis, Table};
pub use load::{GatheredRows, MergeDb};
pub use plan::{loads, Load};
pub use schema::{check_same, Entry, Kind, Schema, SCHEMA_SQL};

/// Steps 2 to 4 for the schemas the segments reported (at least one; the first is the
/// reference): what each segment must return, and the schema the merge database gets (the
/// tables and views the query reads, with their indexes, in the segments' creation order).
/// Blocking (an in-memory SQLite prepares the query).
pub fn prepare(sql: &str, schemas: &[(String, Schema)]) -> Result<(Vec<Load>, Schema)> {
    let Some((ref_id, reference)) = schemas.first() else {
        return Err(trough_types::Error::internal(
            "no segment schema to gather with",
        ));
    };
    let analysis = analyze(sql, reference)?;
    check_same(
        &analysis.objects,
        (ref_id.as_str(), reference),
        schemas.iter().skip(1).map(|(id, s)| (id.as_str(), s)),
    )?;
    let read = |name: &str| {
        analysis
            .objects
            .iter()
            .any(|o| o.eq_ignore_ascii_case(name))
    };
    // A rowid named by the query or by a view it reads is an INTEGER PRIMARY KEY's value only
    // while the key is kept.
    let union_keys = !keys::mentions_rowid(sql)
        && !reference
            .entries
            .iter()
            .any(|e| e.kind == Kind::View && read(&e.name) && keys::mentions_rowid(&e.sql));
    let needed = Schema {
        entries: reference
            .entries
            .iter()
            .filter(|e| match e.kind {
                Kind::Table | Kind::View => read(&e.name),
                Kind::Index => read(&e.table),
                Kind::VirtualTable | Kind::Trigger => false,
            })
            .map(|e| {
                let mut e = e.clone();
                if union_keys {
                    let replaced = match e.kind {
                        Kind::Table => {
                            keys::without_keys(&e.sql).filter(|s| same_columns(&e.sql, s, &e.name))
                        }
                        Kind::Index => keys::plain_index(&e.sql),
                        _ => None,
                    };
                    if let Some(s) = replaced {
                        e.sql = s;
                    }
                }
                e
            })
            .collect(),
    };
    Ok((loads(sql, &analysis), needed))
}

/// Whether two `CREATE TABLE` statements define the same columns (name, declared type, NOT
/// NULL, default, hidden/generated), as SQLite reads them; keys aside.
fn same_columns(a: &str, b: &str, table: &str) -> bool {
    type Column = (String, String, i64, Option<String>, i64);
    let columns = |sql: &str| -> Option<Vec<Column>> {
        let c = rusqlite::Connection::open_in_memory().ok()?;
        c.execute_batch(sql).ok()?;
        let mut stmt = c
            .prepare(
                "SELECT name, type, \"notnull\", dflt_value, hidden FROM pragma_table_xinfo(?1) \
                 ORDER BY cid",
            )
            .ok()?;
        let rows = stmt
            .query_map([table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .ok()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ok()?;
        Some(rows)
    };
    match (columns(a), columns(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_merge_database_gets_only_what_the_query_reads() {
        let rows: Vec<Vec<Value>> = serde_json::from_value(json!([
            ["table", "t1", "t1", "CREATE TABLE t1(a INTEGER, b TEXT)"],
            [
                "table",
                "f",
                "f",
                "CREATE VIRTUAL TABLE f USING nosuchmodule(x)"
            ],
            ["table", "t2", "t2", "CREATE TABLE t2(x INTEGER)"],
            ["index", "i1", "t1", "CREATE INDEX i1 ON t1(b)"],
            ["index", "i2", "t2", "CREATE INDEX i2 ON t2(x)"],
            ["view", "v", "v", "CREATE VIEW v AS SELECT a FROM t1"],
            [
                "trigger",
                "tr",
                "t1",
                "CREATE TRIGGER tr AFTER INSERT ON t1 BEGIN DELETE FROM t2; END"
            ],
        ]))
        .unwrap();
        let schema = Schema::from_rows(&rows).unwrap();
        let schemas = vec![("s0".to_owned(), schema.clone()), ("s1".to_owned(), schema)];
        let (loads, needed) = prepare("SELECT count(*) FROM v WHERE a > 1", &schemas).unwrap();
        let names: Vec<&str> = needed.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["t1", "i1", "v"]);
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].segment_sql, "SELECT \"a\", \"b\" FROM main.\"t1\"");
    }

    #[test]
    fn keys_are_per_segment_unless_a_rowid_is_named() {
        let rows: Vec<Vec<Value>> = serde_json::from_value(json!([
            [
                "table",
                "t",
                "t",
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)"
            ],
            ["index", "tv", "t", "CREATE UNIQUE INDEX tv ON t(v, id)"],
            [
                "view",
                "r",
                "r",
                "CREATE VIEW r AS SELECT rowid AS n, v FROM t"
            ],
        ]))
        .unwrap();
        let schemas = vec![("s0".to_owned(), Schema::from_rows(&rows).unwrap())];
        let sqls = |q: &str| -> Vec<String> {
            prepare(q, &schemas)
                .unwrap()
                .1
                .entries
                .into_iter()
                .map(|e| e.sql)
                .collect()
        };
        assert_eq!(
            sqls("SELECT a.v FROM t a JOIN t b ON a.id = b.id"),
            [
                "CREATE TABLE t(id INTEGER , v TEXT )",
                "CREATE  INDEX tv ON t(v, id)"
            ]
        );
        for q in [
            "SELECT a.v FROM t a JOIN t b ON a.rowid = b.id",
            "SELECT n FROM r",
        ] {
            assert_eq!(
                sqls(q)[0],
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
                "{q}"
            );
        }
    }
}
