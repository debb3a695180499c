//! What every segment runs for a gathered query: one `SELECT` per table the query reads, of the
//! table's stored columns, with the WHERE conjuncts that are safe to evaluate in the segments
//! (`pushdown`). Pure.

use super::analyze::Analysis;
use super::load::quote;
use super::pushdown;

/// One table to copy from every segment into the merge database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    /// The table.
    pub table: String,
    /// The columns the segment SQL returns, in order (the table's stored columns).
    pub columns: Vec<String>,
    /// The SQL each segment runs (no parameters).
    pub segment_sql: String,
}

/// The per-segment queries for `sql`, given what it reads.
pub fn loads(sql: &str, analysis: &Analysis) -> Vec<Load> {
    let filters = pushdown::filters(sql, analysis);
    analysis
        .tables
        .iter()
        .map(|t| {
            let cols: Vec<String> = t.stored_columns.iter().map(|c| quote(c)).collect();
            let mut segment_sql =
                format!("SELECT {} FROM main.{}", cols.join(", "), quote(&t.name));
            if let Some(f) = filters.get(&t.name) {
                segment_sql.push_str(&format!(" AS {} WHERE {}", quote(&f.alias), f.predicate));
            }
            Load {
                table: t.name.clone(),
                columns: t.stored_columns.clone(),
                segment_sql,
            }
        })
        .collect()
}
