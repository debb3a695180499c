//! A segment's schema as the gather strategy needs it: the `CREATE` statements of its tables,
//! views and indexes (from `sqlite_schema`), parsed from the rows of [`SCHEMA_SQL`], and the check
//! that every segment defines the tables and views a query reads identically. Pure.
//!
//! Not here: deciding which tables a query reads (`analyze`), creating them (`load`).

use serde_json::Value;

use crate::plan::PlanError;

/// The query every segment answers first: its schema, in creation order. Internal objects
/// (`sqlite_autoindex_…`, which have no SQL) are left out; `sqlite_sequence` and `sqlite_stat*`
/// are recreated by SQLite itself when needed and are never copied.
pub const SCHEMA_SQL: &str = "SELECT type, name, tbl_name, sql FROM sqlite_schema \
     WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid";

/// What kind of schema object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `CREATE TABLE` (ordinary tables, including the shadow tables of virtual tables).
    Table,
    /// `CREATE VIRTUAL TABLE`.
    VirtualTable,
    /// `CREATE VIEW`.
    View,
    /// `CREATE INDEX`.
    Index,
    /// `CREATE TRIGGER` (never copied: the merge database only receives rows).
    Trigger,
}

impl Kind {
    /// The kind, in words.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::VirtualTable => "virtual table",
            Kind::View => "view",
            Kind::Index => "index",
            Kind::Trigger => "trigger",
        }
    }
}

/// One `sqlite_schema` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// The table an index or trigger belongs to (the name itself for tables and views).
    pub table: String,
    /// The `CREATE` statement, as stored.
    pub sql: String,
}

/// A segment's schema, in creation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Schema {
    /// Parses the rows of [`SCHEMA_SQL`] (values in column order).
    pub fn from_rows(rows: &[Vec<Value>]) -> Result<Schema, String> {
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let text = |i: usize| -> Result<String, String> {
                r.get(i)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("unexpected schema row {r:?}"))
            };
            let (ty, name, table, sql) = (text(0)?, text(1)?, text(2)?, text(3)?);
            let kind = match ty.as_str() {
                "table" if is_virtual(&sql) => Kind::VirtualTable,
                "table" => Kind::Table,
                "view" => Kind::View,
                "index" => Kind::Index,
                "trigger" => Kind::Trigger,
                other => return Err(format!("unknown schema object type {other:?}")),
            };
            entries.push(Entry {
                kind,
                name,
                table,
                sql,
            });
        }
        Ok(Schema { entries })
    }

    /// The entry named `name` (case-insensitively, as SQLite resolves names).
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.kind != Kind::Index && e.kind != Kind::Trigger && e.name.eq_ignore_ascii_case(name)
        })
    }
}

/// `CREATE VIRTUAL TABLE …` (SQLite stores the statement as written, after `CREATE`).
fn is_virtual(sql: &str) -> bool {
    let mut words = sql.split_whitespace();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("create"))
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("virtual"))
}

/// Checks that every segment defines each object in `names` (tables and views the query reads)
/// exactly as the reference schema does: same kind, same `CREATE` statement. A query over
/// segments whose tables differ has no "one database" answer.
pub fn check_same<'a>(
    names: &[String],
    reference: (&str, &Schema),
    others: impl IntoIterator<Item = (&'a str, &'a Schema)>,
) -> Result<(), PlanError> {
    let (ref_id, ref_schema) = reference;
    for (id, schema) in others {
        for name in names {
            let want = ref_schema.get(name);
            let got = schema.get(name);
            match (want, got) {
                (Some(w), Some(g)) if w.kind == g.kind && w.sql == g.sql => {}
                (Some(_), None) => {
                    return Err(PlanError::unsupported(format!(
                        "segment {id} has no table or view {name} (segment {ref_id} has): the \
                         segments' schemas must be identical for a query over many segments"
                    )))
                }
                (Some(w), Some(g)) if w.kind != g.kind => {
                    return Err(PlanError::unsupported(format!(
                        "{name} is a {} in segment {ref_id} but a {} in segment {id}: the \
                         segments' schemas must be identical for a query over many segments",
                        w.kind.noun(),
                        g.kind.noun()
                    )))
                }
                (Some(_), Some(_)) => {
                    return Err(PlanError::unsupported(format!(
                        "{name} is defined differently in segments {ref_id} and {id}: the \
                         segments' schemas must be identical for a query over many segments"
                    )))
                }
                (None, _) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(rows: Value) -> Schema {
        let rows: Vec<Vec<Value>> = serde_json::from_value(rows).unwrap();
        Schema::from_rows(&rows).unwrap()
    }

    #[test]
    fn parses_kinds() {
        let s = schema(json!([
            ["table", "t", "t", "CREATE TABLE t(a)"],
            ["table", "f", "f", "create  VIRTUAL table f USING fts5(x)"],
            ["view", "v", "v", "CREATE VIEW v AS SELECT a FROM t"],
            ["index", "i", "t", "CREATE INDEX i ON t(a)"],
        ]));
        let kinds: Vec<Kind> = s.entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [Kind::Table, Kind::VirtualTable, Kind::View, Kind::Index]
        );
        assert_eq!(s.get("T").unwrap().name, "t");
        assert!(s.get("i").is_none(), "indexes are not tables");
    }

    #[test]
    fn differing_or_missing_tables_are_refused() {
        let a = schema(json!([["table", "t", "t", "CREATE TABLE t(a INTEGER)"]]));
        let b = schema(json!([["table", "t", "t", "CREATE TABLE t(a TEXT)"]]));
        let empty = Schema::default();
        let names = vec!["t".to_owned()];
        assert!(check_same(&names, ("s0", &a), [("s1", &a)]).is_ok());
        let e = check_same(&names, ("s0", &a), [("s1", &b)]).unwrap_err();
        assert!(e.message().contains("defined differently"), "{e}");
        let v = schema(json!([[
            "view",
            "t",
            "t",
            "CREATE VIEW t AS SELECT 1 AS a"
        ]]));
        let e = check_same(&names, ("s0", &a), [("s3", &v)]).unwrap_err();
        assert!(
            e.message()
                .contains("a table in segment s0 but a view in segment s3"),
            "{e}"
        );
        let e = check_same(&names, ("s0", &a), [("s2", &empty)]).unwrap_err();
        assert!(e.message().contains("segment s2 has no table"), "{e}");
        // Objects the query does not read may differ.
        assert!(check_same(&[], ("s0", &a), [("s1", &b)]).is_ok());
    }
}
