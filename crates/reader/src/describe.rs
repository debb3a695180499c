//! What a segment holds: tables, their columns (declared types, primary key), indexes and row
//! counts, read from the local copy a query would use ([`Reader::describe`]). Only fixed
//! introspection statements run here (with the statement guard off, on a connection of their
//! own); client SQL never does. Not here: routing to a node that holds a copy.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use trough_sqlite::Access;
use trough_types::SegmentId;

use crate::copy::SegmentCopy;
use crate::reader::Reader;
use crate::Error;

/// Tables without `sqlite_stat1` rows are counted up to this many rows.
pub const COUNT_CAP: u64 = 1_000_000;

/// A segment's structure.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Description {
    /// The segment.
    pub id: SegmentId,
    /// The stored version described; `None` for a writable segment's live database.
    pub version: Option<u64>,
    /// Tables, by name (internal `sqlite_*` tables left out).
    pub tables: Vec<Table>,
    /// View names.
    pub views: Vec<String>,
}

/// One table.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// The primary key's columns, in key order (empty: rowid only).
    pub primary_key: Vec<String>,
    /// Its indexes (including those SQLite made for UNIQUE and PRIMARY KEY constraints).
    pub indexes: Vec<Index>,
    /// How many rows it has.
    pub rows: RowCount,
}

/// One column.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// The declared type, as written (`""` when none).
    #[serde(rename = "type")]
    pub declared_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default's SQL text.
    pub default: Option<String>,
}

/// One index.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Index {
    /// Its name.
    pub name: String,
    /// `UNIQUE`.
    pub unique: bool,
    /// Its columns, in order (`null` entries are expressions).
    pub columns: Vec<Option<String>>,
}

/// A table's row count and where it came from.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RowCount {
    /// The number.
    pub estimate: u64,
    /// `sqlite_stat1` (the last `ANALYZE`: an estimate), `count` (exact), or `count_capped`
    /// (the table has at least `estimate` rows; counting stopped there).
    pub source: &'static str,
}

impl Reader {
    /// Describes the copy of `id` a query would use. `SegmentUnavailable` when none is held.
    pub async fn describe(&self, id: &SegmentId) -> Result<Description, Error> {
        let copy: Arc<SegmentCopy> = self
            .pick_copy(id)
            .ok_or_else(|| Error::SegmentUnavailable(id.clone()))?;
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            let access = if copy.is_live() {
                Access::ReadOnly
            } else {
                Access::ReadOnlyImmutable
            };
            let conn = trough_sqlite::open(copy.path(), access)?;
            let tables = trough_sqlite::guard::trusted(|| read_tables(&conn))
                .map_err(trough_sqlite::sqlite_error)?;
            let views = trough_sqlite::guard::trusted(|| names(&conn, "view"))
                .map_err(trough_sqlite::sqlite_error)?;
            // `copy` lives until here: its file is not deleted while it is read.
            Ok(Description {
                id,
                version: copy.version,
                tables,
                views,
            })
        })
        .await
        .map_err(|e| Error::Core(trough_types::Error::internal(e.to_string())))?
    }
}

fn names(conn: &Connection, kind: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = ?1 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
    )?
    .query_map([kind], |r| r.get(0))?
    .collect()
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn read_tables(conn: &Connection) -> rusqlite::Result<Vec<Table>> {
    let has_stat: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let mut out = Vec::new();
    for name in names(conn, "table")? {
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
        )?;
        let mut rows = stmt.query([&name])?;
        while let Some(r) = rows.next()? {
            let col: String = r.get(0)?;
            let key: i64 = r.get(4)?;
            if key > 0 {
                pk.push((key, col.clone()));
            }
            columns.push(Column {
                name: col,
                declared_type: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                not_null: r.get::<_, i64>(2)? != 0,
                default: r.get(3)?,
            });
        }
        pk.sort();
        let mut indexes = Vec::new();
        let list: Vec<(String, bool)> = conn
            .prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) ORDER BY name")?
            .query_map([&name], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))?
            .collect::<rusqlite::Result<_>>()?;
        for (index, unique) in list {
            let columns = conn
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                .query_map([&index], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            indexes.push(Index {
                name: index,
                unique,
                columns,
            });
        }
        let stat: Option<String> = if has_stat {
            conn.query_row(
                "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx IS NOT NULL LIMIT 1",
                [&name],
                |r| r.get(0),
            )
            .optional()?
        } else {
            None
        };
        let stat_rows = stat.and_then(|s| s.split(' ').next().and_then(|n| n.parse::<u64>().ok()));
        let rows = match stat_rows {
            Some(n) => RowCount {
                estimate: n,
                source: "sqlite_stat1",
            },
            None => {
                let n: i64 = conn.query_row(
                    &format!(
                        "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {COUNT_CAP})",
                        quote(&name)
                    ),
                    [],
                    |r| r.get(0),
                )?;
                let n = n.max(0) as u64;
                RowCount {
                    estimate: n,
                    source: if n >= COUNT_CAP {
                        "count_capped"
                    } else {
                        "count"
                    },
                }
            }
        };
        out.push(Table {
            name,
            columns,
            primary_key: pk.into_iter().map(|(_, c)| c).collect(),
            indexes,
            rows,
        });
    }
    Ok(out)
}
