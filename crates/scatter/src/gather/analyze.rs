//! Which tables a query reads, decided by SQLite itself: the segment schema is recreated in an
//! empty in-memory database and the query is *prepared* there (never run) with an authorizer that
//! records every table and column read and every function called. SQLite resolves the names, so
//! CTE names, aliases, views (their underlying tables are reported too) and subqueries at any
//! depth are handled exactly as in one database.
//!
//! Refused here, with a reason: statements that are not read-only queries, reads of a table's
//! rowid (rowids are per segment; a declared `INTEGER PRIMARY KEY` is fine, its values travel),
//! virtual tables, SQLite's internal tables, table-valued functions other than `json_each` /
//! `json_tree`, and functions whose value is not a function of the gathered rows (`random()`,
//! `changes()`, …, and order-dependent aggregates such as `group_concat`).
//!
//! Not here: where the rows come from (`plan`), the merge database (`load`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use trough_types::error::codes;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;
use trough_types::error::{Error, Result};

use super::schema::{Kind, Schema};
use crate::expr::NON_DETERMINISTIC;
use crate::plan::PlanError;

/// Aggregates whose result depends on the order rows are visited: the merge database stores the
/// rows in another order than one database would.
const ORDER_DEPENDENT: &[&str] = &[
    "group_concat",
    "string_agg",
    "json_group_array",
    "jsonb_group_array",
    "json_group_object",
    "jsonb_group_object",
];

/// Table-valued functions that only read their arguments.
const TABLE_FUNCTIONS: &[&str] = &["json_each", "json_tree"];

/// A table whose rows the query needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its name as the schema spells it.
    pub name: String,
    /// Every column of the table, in order (for name resolution).
    pub all_columns: Vec<String>,
    /// The columns that hold stored values (all but generated columns), in order: what is read
    /// from the segments and inserted into the merge database.
    pub stored_columns: Vec<String>,
}

/// What the query reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The tables whose rows are gathered, in schema order.
    pub tables: Vec<Table>,
    /// Every table and view the query reads (they must be identical in every segment).
    pub objects: Vec<String>,
}

fn refuse<T>(msg: impl Into<String>) -> Result<T> {
    Err(PlanError::unsupported(msg).into())
}

/// Prepares `sql` over an empty copy of `schema` and reports what it reads, or why it cannot be
/// answered by gathering. Errors of the query itself (syntax, no such table or column) are
/// SQLite's own, code `sql_error`.
pub fn analyze(sql: &str, schema: &Schema) -> Result<Analysis> {
    let mut conn = Connection::open_in_memory().map_err(internal)?;
    let mut unavailable = Vec::new();
    for e in &schema.entries {
        match e.kind {
            Kind::Table | Kind::View | Kind::Index => {
                if conn.execute_batch(&e.sql).is_err() && e.kind != Kind::Index {
                    unavailable.push(e.name.clone());
                }
            }
            Kind::VirtualTable => unavailable.push(e.name.clone()),
            Kind::Trigger => {}
        }
    }
    let mut columns: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for e in &schema.entries {
        if e.kind != Kind::Table || unavailable.contains(&e.name) {
            continue;
        }
        let mut stmt = conn
            .prepare("SELECT name, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")
            .map_err(internal)?;
        let cols = stmt
            .query_map([&e.name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        columns.insert(e.name.to_ascii_lowercase(), cols);
    }
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    {
        let events = events.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let ev = match ctx.action {
                AuthAction::Read {
                    table_name,
                    column_name,
                } => Event::Read(table_name.to_owned(), column_name.to_owned()),
                AuthAction::Function { function_name } => {
                    Event::Function(function_name.to_ascii_lowercase())
                }
                AuthAction::Select | AuthAction::Recursive => return Authorization::Allow,
                AuthAction::Pragma { pragma_name, .. } => {
                    Event::Other(format!("PRAGMA {pragma_name}"))
                }
                other => Event::Other(format!("{other:?}")),
            };
            if let Ok(mut v) = events.lock() {
                v.push(ev);
            }
            Authorization::Allow
        }))
        .map_err(internal)?;
    }
    let prepared = conn.prepare(sql);
    let stmt = match prepared {
        Ok(s) => s,
        Err(rusqlite::Error::MultipleStatement) => {
            return Err(Error::invalid(
                codes::SQL_ERROR,
                "expected exactly one statement",
            ))
        }
        Err(e) => {
            let words: Vec<&str> = sql
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .collect();
            if let Some(name) = unavailable
                .iter()
                .find(|n| words.iter().any(|w| w.eq_ignore_ascii_case(n)))
            {
                return refuse(format!(
                    "{name} is a virtual table (or cannot be recreated outside its segment); \
                     it cannot be queried over many segments ({e})"
                ));
            }
            return Err(Error::invalid(codes::SQL_ERROR, e.to_string()));
        }
    };
    if !stmt.readonly() || stmt.column_count() == 0 {
        return refuse("only SELECT statements can be run over many segments");
    }
    if stmt.is_explain() != 0 {
        return refuse(
            "EXPLAIN over many segments would describe the merge, not one database's plan; \
             run it on one segment",
        );
    }
    drop(stmt);
    let events = std::mem::take(&mut *events.lock().map_err(|_| internal("poisoned"))?);
    let mut analysis = decide(&events, schema, &columns)?;
    add_named_views(sql, schema, &mut analysis.objects);
    Ok(analysis)
}

/// The identifiers of an SQL text, lower-cased (quotes of any kind are separators).
fn words(sql: &str) -> Vec<String> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Views the query names that the authorizer did not report: SQLite reports the columns a query
/// reads, and `count(*) FROM v` reads none of the view's. A view is needed in the merge database
/// whenever its name appears in the query, or in a needed view's definition (transitively). A
/// word that only looks like a view's name (inside a string) adds a harmless extra view.
fn add_named_views(sql: &str, schema: &Schema, objects: &mut Vec<String>) {
    let mut pending = words(sql);
    while let Some(w) = pending.pop() {
        let Some(e) = schema.get(&w) else { continue };
        if e.kind != Kind::View || objects.iter().any(|o| o.eq_ignore_ascii_case(&e.name)) {
            continue;
        }
        objects.push(e.name.clone());
        pending.extend(words(&e.sql));
    }
}

/// One authorizer callback.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// A column of a table or view is read (`""`: the table is read without columns).
    Read(String, String),
    /// A function is called (lower case).
    Function(String),
    /// Anything else a query should not do.
    Other(String),
}

/// Turns the authorizer's report into the tables to gather, or a refusal.
fn decide(
    events: &[Event],
    schema: &Schema,
    columns: &BTreeMap<String, Vec<(String, i64)>>,
) -> Result<Analysis> {
    let mut objects: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    for ev in events {
        match ev {
            Event::Function(f) => {
                if NON_DETERMINISTIC.contains(&f.as_str()) {
                    return refuse(format!(
                        "{f}() is not supported over many segments: its value is not a function \
                         of the rows (not deterministic)"
                    ));
                }
                if ORDER_DEPENDENT.contains(&f.as_str()) {
                    return refuse(format!(
                        "{f}() is not supported over many segments: its result depends on the \
                         order rows are visited, which differs from one database"
                    ));
                }
            }
            Event::Other(what) => {
                return refuse(format!(
                    "the query performs {what}, which is not supported over many segments"
                ))
            }
            Event::Read(table, column) => {
                let lower = table.to_ascii_lowercase();
                if let Some(entry) = schema.get(table) {
                    if !objects.contains(&entry.name) {
                        objects.push(entry.name.clone());
                    }
                    match entry.kind {
                        Kind::View => continue,
                        Kind::VirtualTable => {
                            return refuse(format!(
                                "{} is a virtual table; it cannot be queried over many segments",
                                entry.name
                            ))
                        }
                        _ => {}
                    }
                    let cols = columns.get(&entry.name.to_ascii_lowercase());
                    let declared =
                        cols.is_some_and(|c| c.iter().any(|(n, _)| n.eq_ignore_ascii_case(column)));
                    if !column.is_empty() && !declared {
                        return refuse(format!(
                            "the query reads the rowid of {} (rowid, oid or _rowid_): rowids are \
                             numbered per segment, so they differ from one database's; declare \
                             an INTEGER PRIMARY KEY column and use it instead",
                            entry.name
                        ));
                    }
                    if !tables.contains(&entry.name) {
                        tables.push(entry.name.clone());
                    }
                } else if matches!(
                    lower.as_str(),
                    "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema"
                ) {
                    // Table-valued functions read the schema's rowid internally.
                    if !column.eq_ignore_ascii_case("rowid") {
                        return refuse(
                            "the query reads sqlite_schema, which differs between one database \
                             and the merge of many segments",
                        );
                    }
                } else if TABLE_FUNCTIONS.contains(&lower.as_str()) {
                } else if lower.starts_with("sqlite_") {
                    return refuse(format!(
                        "the query reads SQLite's internal table {table}, which is per segment"
                    ));
                } else {
                    return refuse(format!(
                        "the query reads {table}, which is not a table of the segments \
                         (table-valued functions other than json_each/json_tree are not supported)"
                    ));
                }
            }
        }
    }
    let tables = schema
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Table && tables.contains(&e.name))
        .map(|e| {
            let cols = columns
                .get(&e.name.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default();
            Table {
                name: e.name.clone(),
                all_columns: cols.iter().map(|(n, _)| n.clone()).collect(),
                stored_columns: cols
                    .iter()
                    .filter(|(_, hidden)| *hidden == 0)
                    .map(|(n, _)| n.clone())
                    .collect(),
            }
        })
        .collect();
    Ok(Analysis { tables, objects })
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("gather analysis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn schema() -> Schema {
        let rows: Vec<Vec<Value>> = serde_json::from_value(json!([
            ["table", "t1", "t1", "CREATE TABLE t1(a INTEGER, b TEXT)"],
            [
                "table",
                "t2",
                "t2",
                "CREATE TABLE t2(x INTEGER PRIMARY KEY, y, z AS (y * 2))"
            ],
            ["table", "t3", "t3", "CREATE TABLE t3(oid TEXT, c)"],
            ["table", "unused", "unused", "CREATE TABLE unused(q)"],
            [
                "view",
                "v",
                "v",
                "CREATE VIEW v AS SELECT a, count(*) AS n FROM t1 GROUP BY a"
            ],
            ["index", "i1", "t1", "CREATE INDEX i1 ON t1(b)"],
            [
                "table",
                "f",
                "f",
                "CREATE VIRTUAL TABLE f USING nosuchmodule(x)"
            ],
        ]))
        .unwrap();
        Schema::from_rows(&rows).unwrap()
    }

    fn tables(sql: &str) -> Vec<String> {
        analyze(sql, &schema())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .tables
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    fn refused(sql: &str) -> String {
        let e = analyze(sql, &schema()).expect_err(sql);
        assert_eq!(e.code(), "unsupported_scatter_query", "{sql}: {e}");
        e.message().to_owned()
    }

    #[test]
    fn a_view_read_without_columns_is_still_created() {
        let rows: Vec<Vec<Value>> = serde_json::from_value(json!([
            ["table", "m", "m", "CREATE TABLE m(id INTEGER, name TEXT)"],
            [
                "view",
                "big",
                "big",
                "CREATE VIEW big AS SELECT id, name FROM m WHERE id > 2"
            ],
            ["view", "top", "top", "CREATE VIEW top AS SELECT * FROM big"],
        ]))
        .unwrap();
        let schema = Schema::from_rows(&rows).unwrap();
        // count(*) reads no column of the views: the authorizer reports only the table.
        let a = analyze("SELECT count(*) FROM top", &schema).unwrap();
        assert!(a.objects.iter().any(|o| o == "big"), "{:?}", a.objects);
        assert!(a.objects.iter().any(|o| o == "top"), "{:?}", a.objects);
        assert!(a.tables.iter().any(|t| t.name == "m"), "{:?}", a.objects);
    }

    #[test]
    fn collects_tables_through_joins_subqueries_ctes_and_views() {
        assert_eq!(tables("SELECT 1 + 2"), Vec::<String>::new());
        assert_eq!(tables("SELECT count(*) FROM t1; -- done\n"), ["t1"]);
        assert_eq!(tables("SELECT count(*) FROM t1"), ["t1"]);
        assert_eq!(tables("SELECT * FROM t1 JOIN t2 ON a = x"), ["t1", "t2"]);
        assert_eq!(
            tables("SELECT a FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE x = t1.a)"),
            ["t1", "t2"]
        );
        assert_eq!(
            tables("WITH t2 AS (SELECT a FROM t1) SELECT * FROM t2"),
            ["t1"],
            "a CTE named like a table is not the table"
        );
        assert_eq!(tables("SELECT n FROM v"), ["t1"]);
        assert_eq!(
            tables("SELECT a FROM t1 UNION SELECT x FROM t2"),
            ["t1", "t2"]
        );
        assert_eq!(
            tables("SELECT x FROM t2 WHERE rowid > 1"),
            ["t2"],
            "rowid is x"
        );
        assert_eq!(
            tables("SELECT oid FROM t3"),
            ["t3"],
            "a declared column oid"
        );
        assert_eq!(
            tables("SELECT value FROM json_each('[1,2]')"),
            Vec::<String>::new()
        );
        let a = analyze("SELECT z FROM t2", &schema()).unwrap();
        assert_eq!(a.tables[0].stored_columns, ["x", "y"]);
        assert_eq!(a.tables[0].all_columns, ["x", "y", "z"]);
        let a = analyze("SELECT * FROM v", &schema()).unwrap();
        assert_eq!(a.objects, ["t1", "v"]);
    }

    #[test]
    fn refusals_say_why() {
        assert!(refused("SELECT rowid, a FROM t1").contains("rowid"));
        assert!(refused("SELECT t1._rowid_ FROM t1 JOIN t2 ON a = x").contains("rowid"));
        assert!(refused("SELECT random() FROM t1").contains("random"));
        assert!(refused("SELECT group_concat(b) FROM t1").contains("order"));
        assert!(refused("SELECT * FROM f").contains("virtual"));
        assert!(refused("SELECT name FROM sqlite_schema").contains("sqlite_schema"));
        assert!(refused("SELECT * FROM pragma_table_info('t1')").contains("pragma_table_info"));
        assert!(refused("INSERT INTO t1 VALUES (1, 'x')").contains("only SELECT"));
        assert!(refused("EXPLAIN QUERY PLAN SELECT * FROM t1 JOIN t2").contains("EXPLAIN"));
        assert_eq!(tables("VALUES (1, 2), (3, 4)"), Vec::<String>::new());
    }

    #[test]
    fn errors_of_the_query_are_sqlite_errors() {
        let e = analyze("SELECT * FROM nosuch", &schema()).unwrap_err();
        assert_eq!(e.code(), "sql_error");
        assert!(e.message().contains("no such table"), "{e}");
        let e = analyze("SELECT 1 IN t1", &schema()).unwrap_err();
        assert_eq!(e.code(), "sql_error", "{e}");
        let e = analyze("SELECT 1; SELECT 2", &schema()).unwrap_err();
        assert_eq!(e.code(), "sql_error", "{e}");
    }
}
