//! SQL rendering of the plans without aggregates: Concat, SortedMerge (its sort keys and hidden
//! sort columns) and SELECT DISTINCT (finished by SQL in the merge), and the pieces every segment
//! statement shares (result columns, WHERE, quoting). Aggregate plans are written by `aggregate`;
//! the ORDER BY / LIMIT pieces come from `order_limit`, the guard query from `guard`.

use sqlparser::ast::Expr;

use super::order_limit::OrderTerm;
use super::{KeyCol, MergeSpec, Names, PlanError, Planner, ScatterPlan, SortKey, SqlBody};
use crate::expr::{collation_of, has_collate, refuse, strip_nested, Collation};

impl Planner {
    pub(super) fn where_sql(&self) -> String {
        self.where_
            .as_ref()
            .map_or(String::new(), |w| format!(" WHERE {w}"))
    }

    fn items_sql(&self) -> String {
        self.items
            .iter()
            .map(|i| i.printed.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn plan_concat(self) -> Result<ScatterPlan, PlanError> {
        let (limit, offset) = self.effective_limit();
        let sql = format!(
            "{}SELECT {} FROM {}{}{}",
            self.params_prefix,
            self.items_sql(),
            self.table_sql,
            self.where_sql(),
            self.segment_limit_sql()
        );
        Ok(self.finish(sql, MergeSpec::Concat { limit, offset }, 0, false))
    }

    pub(super) fn plan_sorted(self) -> Result<ScatterPlan, PlanError> {
        let (limit, offset) = self.effective_limit();
        let mut hidden: Vec<String> = Vec::new();
        let mut keys = Vec::new();
        for o in &self.order {
            let (col, coll) = match &o.term {
                OrderTerm::Item(i) if !self.items[..=*i].iter().any(|it| it.expr.is_none()) => {
                    let e = self.items[*i].expr.as_ref().expect("not a star");
                    (KeyCol::Column(*i), collation_of(e, "an ORDER BY term")?)
                }
                OrderTerm::Item(i) => {
                    let e = self.items[*i].expr.as_ref().expect("not a star").clone();
                    let coll = collation_of(&e, "an ORDER BY term")?;
                    hidden.push(strip_collate(&e).to_string());
                    (KeyCol::Hidden(hidden.len() - 1), coll)
                }
                OrderTerm::Column(k) => {
                    if self
                        .items
                        .iter()
                        .any(|it| it.expr.as_ref().is_some_and(has_collate))
                    {
                        return refuse(
                            "ORDER BY column number with * and a COLLATE in the result is not supported",
                        );
                    }
                    (KeyCol::Column(*k), None)
                }
                OrderTerm::Expr(e) => {
                    let coll = collation_of(e, "an ORDER BY term")?;
                    hidden.push(strip_collate(e).to_string());
                    (KeyCol::Hidden(hidden.len() - 1), coll)
                }
            };
            keys.push(SortKey {
                col,
                desc: o.desc,
                nulls_first: o.nulls_first(),
                coll: o.coll.or(coll).unwrap_or(Collation::Binary),
            });
        }
        let hidden_sql: String = hidden.iter().map(|h| format!(", {h}")).collect();
        let sql = format!(
            "{}SELECT {}{} FROM {}{}{}{}",
            self.params_prefix,
            self.items_sql(),
            hidden_sql,
            self.table_sql,
            self.where_sql(),
            self.original_order_sql(),
            self.segment_limit_sql()
        );
        let tail = hidden.len();
        Ok(self.finish(
            sql,
            MergeSpec::Sorted {
                keys,
                limit,
                offset,
            },
            tail,
            true,
        ))
    }

    pub(super) fn plan_distinct(self) -> Result<ScatterPlan, PlanError> {
        let mut colls = Vec::new();
        if self.has_star {
            if self
                .items
                .iter()
                .any(|it| it.expr.as_ref().is_some_and(has_collate))
            {
                return refuse(
                    "SELECT DISTINCT with * and a COLLATE in the result is not supported",
                );
            }
        } else {
            for it in &self.items {
                let e = it.expr.as_ref().expect("no star");
                colls.push(collation_of(e, "a SELECT DISTINCT result column")?);
            }
        }
        let mut order_terms = Vec::new();
        for o in &self.order {
            let k =
                match &o.term {
                    OrderTerm::Item(i) if !self.has_star => i + 1,
                    OrderTerm::Column(k) => k + 1,
                    _ => return refuse(
                        "the ORDER BY of a SELECT DISTINCT must name result columns (by number \
                         when the result has *)",
                    ),
                };
            order_terms.push(format!("{k}{}", o.options_sql()));
        }
        let mut tail = String::new();
        if !order_terms.is_empty() {
            tail.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
        }
        tail.push_str(&self.limit_sql());
        let sql = format!(
            "{}SELECT DISTINCT {} FROM {}{}{}{}",
            self.params_prefix,
            self.items_sql(),
            self.table_sql,
            self.where_sql(),
            self.original_order_sql(),
            self.segment_limit_sql()
        );
        let prefix = self.params_prefix.clone();
        Ok(self.finish(
            sql,
            MergeSpec::Sql {
                body: SqlBody::Distinct {
                    colls,
                    prefix,
                    tail,
                },
                names: Names::Segment,
            },
            0,
            true,
        ))
    }
}

pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `e` without its outer COLLATE (the collation is applied by the merge itself).
fn strip_collate(e: &Expr) -> &Expr {
    match strip_nested(e) {
        Expr::Collate { expr, .. } => expr,
        other => other,
    }
}
