//! Aggregate decomposition (the SqlMerge of GROUP BY, aggregates and HAVING): each aggregate is
//! split into partial aggregates the segments compute and a merge aggregate over them (the table
//! in the module docs of `scatter`); GROUP BY terms, DISTINCT arguments and expressions of GROUP
//! BY terms become segment columns; the result columns, HAVING and ORDER BY are rewritten over
//! those columns into the merge SQL. SELECT DISTINCT without aggregates is in `render`.

use std::collections::BTreeMap;

use sqlparser::ast::{Expr, Ident};

use super::order_limit::OrderTerm;
use super::{MergeSpec, Names, OutputName, PlanError, Planner, ScatterPlan, SqlBody};
use crate::expr::{
    agg_kind, canonical, children, children_mut, collation_of, compared_operands, contains_agg,
    func_name, has_affinity, has_column_ref, is_count_star, is_distinct, plain_args, refuse,
    strip_nested, AggKind, Collation,
};

impl Planner {
    pub(super) fn plan_aggregate(self) -> Result<ScatterPlan, PlanError> {
        if self.has_star {
            return refuse(
                "* in an aggregate query selects columns outside GROUP BY (SQLite picks them from \
                 an arbitrary row, which a merge cannot reproduce)",
            );
        }
        if self.having.is_some() && self.group_by.is_empty() {
            let agg = self
                .items
                .iter()
                .any(|i| i.expr.as_ref().is_some_and(contains_agg))
                || self.having.as_ref().is_some_and(contains_agg);
            if !agg {
                return refuse("HAVING without GROUP BY needs an aggregate");
            }
        }
        let mut b = AggBuilder {
            cols: Vec::new(),
            table_names: self.table_names.clone(),
            partial_index: BTreeMap::new(),
        };
        for g in &self.group_by {
            b.add_key(g)?;
        }
        let mut out_items = Vec::new();
        let mut names = Vec::new();
        for it in &self.items {
            let e = it.expr.as_ref().expect("no star");
            out_items.push(b.rewrite(e)?.to_string());
            names.push(match &it.alias {
                Some(a) => OutputName::Text(a.value.clone()),
                None => match strip_nested(e) {
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                        let canon = canonical(e, &self.table_names);
                        match b
                            .cols
                            .iter()
                            .position(|c| c.kind == ColKind::Key && c.canon == canon)
                        {
                            Some(k) => OutputName::Segment(k),
                            None => OutputName::Text(it.text.clone()),
                        }
                    }
                    _ => OutputName::Text(it.text.clone()),
                },
            });
        }
        let having = match &self.having {
            Some(h) => format!(" HAVING {}", b.rewrite(h)?),
            None => String::new(),
        };
        let mut order_terms = Vec::new();
        for o in &self.order {
            let term = match &o.term {
                OrderTerm::Item(i) => format!("{}", i + 1),
                OrderTerm::Column(_) => unreachable!("no star in aggregate queries"),
                OrderTerm::Expr(e) => b.rewrite(e)?.to_string(),
            };
            order_terms.push(format!("{term}{}", o.options_sql()));
        }
        if b.cols.is_empty() {
            // An aggregate query whose aggregates are all constant-folded away still returns
            // one row per segment only if the segment query is an aggregate.
            b.add_partial("count(*)".to_owned(), "count(*)".to_owned(), None);
        }
        let merge_keys: Vec<String> = b
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == ColKind::Key)
            .map(|(i, _)| b.col_ref(i))
            .collect();
        // Grouped by column number: a constant term (`count(DISTINCT 8)`, `7 AS a … GROUP BY a`)
        // written out would itself be read as a column number.
        let segment_groups: Vec<String> = b
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, ColKind::Key | ColKind::DistinctArg))
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        let compares =
            !segment_groups.is_empty() || !self.order.is_empty() || b.cols.iter().any(|c| c.minmax);
        let seg_cols: Vec<&str> = b.cols.iter().map(|c| c.sql.as_str()).collect();
        let width = seg_cols.len();
        let segment_sql = format!(
            "{}SELECT {} FROM {}{}{}",
            self.params_prefix,
            seg_cols.join(", "),
            self.table_sql,
            self.where_sql(),
            if segment_groups.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", segment_groups.join(", "))
            }
        );
        let mut merge_sql = format!(
            "{}SELECT {}{} FROM _p",
            self.params_prefix,
            if self.distinct { "DISTINCT " } else { "" },
            out_items.join(", ")
        );
        if !merge_keys.is_empty() {
            merge_sql.push_str(&format!(" GROUP BY {}", merge_keys.join(", ")));
        }
        merge_sql.push_str(&having);
        if !order_terms.is_empty() {
            merge_sql.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
        }
        merge_sql.push_str(&self.limit_sql());
        let mut plan = self.finish(
            segment_sql,
            MergeSpec::Sql {
                body: SqlBody::Fixed(merge_sql),
                names: Names::Fixed(names),
            },
            0,
            compares,
        );
        plan.segment_width = Some(width);
        Ok(plan)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColKind {
    /// A GROUP BY term: grouped in segments and in the merge.
    Key,
    /// The argument of an aggregate with DISTINCT: grouped in segments only.
    DistinctArg,
    /// An expression of GROUP BY terms: a bare column in both.
    Derived,
    /// A partial aggregate.
    Partial,
}

struct SegCol {
    /// The segment SQL of the column.
    sql: String,
    /// Canonical form of the expression (keys, distinct args, derived).
    canon: String,
    kind: ColKind,
    /// The collation to compare its values with in the merge.
    coll: Option<Collation>,
    /// A `min`/`max` partial.
    minmax: bool,
}

struct AggBuilder {
    cols: Vec<SegCol>,
    table_names: Vec<String>,
    partial_index: BTreeMap<String, usize>,
}

impl AggBuilder {
    fn col_ref(&self, i: usize) -> String {
        match self.cols[i].coll {
            Some(c) => format!("(\"_c{i}\" COLLATE {})", c.sql()),
            None => format!("\"_c{i}\""),
        }
    }

    fn add_key(&mut self, e: &Expr) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, "a GROUP BY term")?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::Key,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_distinct_arg(&mut self, e: &Expr, what: &str) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| matches!(c.kind, ColKind::Key | ColKind::DistinctArg) && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, what)?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::DistinctArg,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_derived(&mut self, e: &Expr) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| matches!(c.kind, ColKind::Key | ColKind::Derived) && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, "an expression of GROUP BY terms")?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::Derived,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_partial(&mut self, sql: String, key: String, coll: Option<Collation>) -> usize {
        if let Some(&i) = self.partial_index.get(&key) {
            return i;
        }
        self.cols.push(SegCol {
            sql,
            canon: key.clone(),
            kind: ColKind::Partial,
            coll,
            minmax: false,
        });
        let i = self.cols.len() - 1;
        self.partial_index.insert(key, i);
        i
    }

    /// Whether `e` depends on the row only through GROUP BY terms.
    fn covered(&self, e: &Expr) -> bool {
        let canon = canonical(e, &self.table_names);
        if self
            .cols
            .iter()
            .any(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return true;
        }
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            return false;
        }
        children(e).into_iter().all(|c| self.covered(c))
    }

    /// The merge-side version of a result column, HAVING or ORDER BY expression: aggregates
    /// become merges of partial aggregates, expressions of GROUP BY terms become (bare) columns
    /// computed by the segments, constants stay.
    fn rewrite(&mut self, e: &Expr) -> Result<Expr, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return Ok(raw(self.col_ref(i)));
        }
        if let Expr::Function(f) = e {
            if agg_kind(f).is_some() {
                return Ok(raw(self.merge_aggregate(f)?));
            }
        }
        if !contains_agg(e) {
            if !has_column_ref(e) {
                return Ok(e.clone());
            }
            if !self.covered(e) {
                return refuse(format!(
                    "`{e}` uses a column that is neither a GROUP BY term nor inside an aggregate \
                     (SQLite would take it from an arbitrary row, which a merge cannot reproduce)"
                ));
            }
            let i = self.add_derived(e)?;
            return Ok(raw(self.col_ref(i)));
        }
        for op in compared_operands(e) {
            if !contains_agg(op) && has_column_ref(op) && has_affinity(op) {
                return refuse(format!(
                    "`{e}` compares an aggregate with `{op}`, whose type affinity SQLite would \
                     apply to the aggregate; the merge cannot see affinities (compare with \
                     `+{op}` or a CAST of the aggregate instead)"
                ));
            }
        }
        let mut out = e.clone();
        for c in children_mut(&mut out) {
            let new = self.rewrite(c)?;
            *c = new;
        }
        Ok(out)
    }

    fn merge_aggregate(&mut self, f: &sqlparser::ast::Function) -> Result<String, PlanError> {
        let kind = agg_kind(f).expect("an aggregate");
        let name = func_name(f).unwrap_or_default();
        if is_distinct(f) {
            let arg = plain_args(f)
                .and_then(|a| a.first().copied())
                .expect("validated");
            let i = self.add_distinct_arg(arg, &format!("the argument of {name}(DISTINCT …)"))?;
            let r = self.col_ref(i);
            return Ok(match kind {
                AggKind::Count => format!("count(DISTINCT {r})"),
                AggKind::Sum => format!("_trough_sum(DISTINCT {r})"),
                AggKind::Total => format!("total(DISTINCT {r})"),
                AggKind::Avg => format!("avg(DISTINCT {r})"),
                AggKind::Min => format!("min({r})"),
                AggKind::Max => format!("max({r})"),
            });
        }
        let filter_sql = f
            .filter
            .as_ref()
            .map_or(String::new(), |w| format!(" FILTER (WHERE {w})"));
        let filter_key = f
            .filter
            .as_ref()
            .map_or(String::new(), |w| canonical(w, &self.table_names));
        let arg = if is_count_star(f) {
            None
        } else {
            plain_args(f).and_then(|a| a.first().copied())
        };
        let arg_sql = arg.map_or("*".to_owned(), |a| a.to_string());
        let arg_key = arg.map_or("*".to_owned(), |a| canonical(a, &self.table_names));
        let mut partial = |func: &str, coll: Option<Collation>| {
            self.add_partial(
                format!("{func}({arg_sql}){filter_sql}"),
                format!("{func}|{arg_key}|{filter_key}"),
                coll,
            )
        };
        Ok(match kind {
            AggKind::Count => {
                let i = partial("count", None);
                format!("coalesce(sum(\"_c{i}\"), 0)")
            }
            AggKind::Sum => {
                let i = partial("sum", None);
                format!("_trough_sum(\"_c{i}\")")
            }
            AggKind::Total => {
                let i = partial("total", None);
                format!("total(\"_c{i}\")")
            }
            AggKind::Avg => {
                let s = partial("total", None);
                let n = partial("count", None);
                format!("(total(\"_c{s}\") / sum(\"_c{n}\"))")
            }
            AggKind::Min | AggKind::Max => {
                let func = if kind == AggKind::Min { "min" } else { "max" };
                let coll = collation_of(
                    arg.expect("one argument"),
                    &format!("the argument of {func}()"),
                )?;
                let i = partial(func, coll);
                self.cols[i].minmax = true;
                format!("{func}({})", self.col_ref(i))
            }
        })
    }
}

/// An expression that prints as the given SQL text (used for merge-side replacements, which are
/// always self-delimited: a parenthesized expression, a name or a function call).
fn raw(sql: String) -> Expr {
    Expr::Identifier(Ident::new(sql))
}
