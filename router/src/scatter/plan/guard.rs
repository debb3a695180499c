//! The segment guard: what the planner cannot know from the SQL text, each segment checks itself.
//! Every segment row ends with a guard column, a bit mask computed from `sqlite_schema` and
//! `pragma_table_xinfo` (the table is a view or a virtual table; its definition declares a
//! COLLATE; a result alias the query uses as a name is also a column), and the plan records which
//! bits make a segment's answer unusable. This file writes the guard SQL and finishes a plan with
//! it; the merge checks the bits on every row (`merge::guard`).

use super::render::quote_ident;
use super::{MergeSpec, Planner, ScatterPlan};

/// Guard bit: the table is a view or a virtual table in this segment.
pub(crate) const GUARD_VIEW: i64 = 1;
/// Guard bit: the table's definition declares a collation.
pub(crate) const GUARD_COLLATE: i64 = 2;
/// Guard bit: a name the query uses as a result alias is also a column of the table.
pub(crate) const GUARD_ALIAS: i64 = 4;

impl Planner {
    /// The guard column: a bit mask of the segment-schema facts that would make the merge wrong.
    pub(super) fn guard_sql(&self, compares: bool) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let schema = self.schema.as_deref().unwrap_or("main");
        let master = format!("{}.sqlite_schema", quote_ident(schema));
        let name = lit(&self.table_name);
        let mut parts = vec![format!(
            "(SELECT count(*) FROM {master} WHERE name = {name} COLLATE NOCASE AND (type <> 'table' OR sql LIKE 'create virtual%'))"
        )];
        if compares {
            parts.push(format!(
                "{GUARD_COLLATE} * (SELECT count(*) FROM {master} WHERE type = 'table' AND name = {name} COLLATE NOCASE AND sql LIKE '%collate%')"
            ));
        }
        if !self.alias_refs.is_empty() {
            let names: Vec<String> = self.alias_refs.iter().map(|a| lit(a)).collect();
            parts.push(format!(
                "{GUARD_ALIAS} * (SELECT count(*) FROM pragma_table_xinfo({name}, {}) WHERE name COLLATE NOCASE IN ({}))",
                lit(schema),
                names.join(", ")
            ));
        }
        format!("({})", parts.join(" + "))
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
        if !self.alias_refs.is_empty() {
            fatal |= GUARD_ALIAS;
        }
        ScatterPlan {
            segment_sql,
            merge,
            tail,
            guard_fatal: fatal,
            table: self.table_name,
            alias_refs: self.alias_refs.into_iter().collect(),
        }
    }
}
