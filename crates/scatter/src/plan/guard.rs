//! The segment guard: what the planner cannot know from the SQL text, each segment tells. Besides
//! the data query, every segment answers one **guard query** that always returns exactly one row,
//! whatever the data query returns: a bit mask (the table is a view or a virtual table; its
//! definition declares a COLLATE) and the table's column names. [`ScatterPlan::check_segments`]
//! judges those answers before any row is merged: a fatal bit refuses the query, and a result
//! alias that turns out to be a column of the table asks for a new plan (SQLite resolves such a
//! name to the column in WHERE / GROUP BY / HAVING). Because the guard does not ride on the data
//! rows, an empty answer is judged like any other.
//!
//! This file writes the guard query, finishes a plan with it and judges the answers. It runs no
//! query.

use std::collections::BTreeSet;
use trough_types::error::codes;

use serde_json::Value as Json;
use trough_types::error::{Error, Result};

use sqlparser::ast::Expr;

use super::render::quote_ident;
use super::{ItemName, MergeSpec, Planner, ScatterPlan};
use crate::expr::strip_nested;

/// Guard bit: the table is a view or a virtual table in this segment.
const GUARD_VIEW: i64 = 1;
/// Guard bit: the table's definition declares a collation.
const GUARD_COLLATE: i64 = 2;

/// The guard query of a plan and what makes an answer unusable.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    /// The one-row guard query.
    pub(crate) sql: String,
    /// The bits that refuse the query.
    fatal: i64,
    /// The table the query reads, for messages.
    table: String,
    /// Lower-case result aliases the query uses as names.
    alias_names: BTreeSet<String>,
    /// Which of them the plan took for columns.
    assumed_columns: BTreeSet<String>,
}

/// One segment's answer to the guard query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentFacts {
    /// The guard bits.
    pub mask: i64,
    /// The table's column names as declared (empty when the table does not exist).
    pub columns: Vec<String>,
}

impl SegmentFacts {
    /// Reads the row of the guard query (`[mask, json array of column names]`).
    pub fn from_row(row: &[Json]) -> Result<Self> {
        let bad = || Error::internal(format!("bad answer to the scatter guard query: {row:?}"));
        let mask = row.first().and_then(Json::as_i64).ok_or_else(bad)?;
        let columns = match row.get(1) {
            Some(Json::String(s)) => serde_json::from_str::<Vec<String>>(s).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Ok(Self { mask, columns })
    }

    fn column_set(&self, among: &BTreeSet<String>) -> BTreeSet<String> {
        self.columns
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| among.contains(c))
            .collect()
    }
}

impl Planner {
    /// The guard query: one row, whatever the table holds.
    fn guard_query(&self) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let schema = self.schema.as_deref().unwrap_or("main");
        let master = format!("{}.sqlite_schema", quote_ident(schema));
        let name = lit(&self.table_name);
        format!(
            "SELECT (SELECT count(*) FROM {master} WHERE name = {name} COLLATE NOCASE AND \
             (type <> 'table' OR sql LIKE 'create virtual%')) + {GUARD_COLLATE} * (SELECT count(*) \
             FROM {master} WHERE type = 'table' AND name = {name} COLLATE NOCASE AND sql LIKE \
             '%collate%'), (SELECT json_group_array(name) FROM pragma_table_xinfo({name}, {}))",
            lit(schema)
        )
    }

    pub(super) fn finish(
        self,
        segment_sql: String,
        merge: MergeSpec,
        tail: usize,
        compares: bool,
    ) -> ScatterPlan {
        let mut fatal = GUARD_VIEW;
        if compares {
            fatal |= GUARD_COLLATE;
        }
        let assumed_columns = self
            .alias_names
            .intersection(&self.columns)
            .cloned()
            .collect();
        let item_names = self
            .items
            .iter()
            .map(|it| match (&it.alias, &it.expr) {
                (Some(a), _) => ItemName::Text(a.value.clone()),
                (None, None) => ItemName::Star,
                (None, Some(e)) => match strip_nested(e) {
                    Expr::Identifier(id) => ItemName::Column(id.value.clone()),
                    Expr::CompoundIdentifier(parts) => {
                        ItemName::Column(parts.last().map(|p| p.value.clone()).unwrap_or_default())
                    }
                    _ => ItemName::Text(it.text.clone()),
                },
            })
            .collect();
        let guard = Guard {
            sql: self.guard_query(),
            fatal,
            table: self.table_name,
            alias_names: self.alias_names,
            assumed_columns,
        };
        ScatterPlan {
            segment_sql,
            merge,
            tail,
            segment_width: None,
            guard,
            item_names,
        }
    }
}

impl ScatterPlan {
    /// Judges every answering segment's [`SegmentFacts`] before anything is merged: `Err` refuses
    /// the query (`unsupported_scatter_query`: a view, a declared COLLATE the merge would ignore,
    /// segments that disagree on whether an alias is a column); `Ok(Some(columns))` means this
    /// plan took an alias for what is a column: plan again with
    /// [`super::plan_with_columns`]`(sql, columns)` and run that; `Ok(None)`: go ahead.
    pub fn check_segments(
        &self,
        facts: &[(String, SegmentFacts)],
    ) -> Result<Option<BTreeSet<String>>> {
        let g = &self.guard;
        for (segment, f) in facts {
            let bad = f.mask & g.fatal;
            if bad & GUARD_VIEW != 0 {
                return Err(refusal(format!(
                    "in segment {segment}, {} is a view or a virtual table; scatter queries read \
                     ordinary tables only (a view may aggregate or limit each segment on its own)",
                    g.table
                )));
            }
            if bad & GUARD_COLLATE != 0 {
                return Err(refusal(format!(
                    "in segment {segment}, table {} declares a COLLATE on a column; the merge \
                     compares values with the BINARY collation, so this query is refused (add an \
                     explicit COLLATE to the compared expressions)",
                    g.table
                )));
            }
        }
        if g.alias_names.is_empty() {
            return Ok(None);
        }
        let mut seen: Option<(&str, BTreeSet<String>)> = None;
        for (segment, f) in facts {
            let cols = f.column_set(&g.alias_names);
            match &seen {
                None => seen = Some((segment, cols)),
                Some((first, c)) if *c != cols => {
                    return Err(refusal(format!(
                        "segments {first} and {segment} disagree on which of the result aliases \
                         {:?} are also columns of {} (SQLite would use the column there); \
                         rename the alias",
                        g.alias_names, g.table
                    )))
                }
                Some(_) => {}
            }
        }
        match seen {
            Some((_, cols)) if cols != g.assumed_columns => Ok(Some(cols)),
            _ => Ok(None),
        }
    }
}

fn refusal(msg: String) -> Error {
    Error::invalid(codes::UNSUPPORTED_SCATTER_QUERY, msg)
}
