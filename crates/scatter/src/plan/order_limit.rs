//! ORDER BY and LIMIT / OFFSET: resolves each ORDER BY term (a result column by number or alias,
//! or another expression), reads the literal LIMIT and OFFSET (and column numbers in general), and
//! writes the pieces of SQL they become in the segment and merge statements. Not the sort keys of
//! a sorted merge (`render`) nor the comparison of values (`order.rs`), and not GROUP BY.

use sqlparser::ast::{Expr, LimitClause, OrderByExpr, OrderBySort, Query, UnaryOperator, Value};

use super::{PlanError, Planner};
use crate::expr::{canonical, refuse, strip_nested, validate, Clause, Collation};

/// A resolved ORDER BY term.
pub(super) enum OrderTerm {
    /// The i-th result item.
    Item(usize),
    /// The k-th result column (an ordinal when the result has `*`).
    Column(usize),
    /// Any other expression.
    Expr(Box<Expr>),
}

pub(super) struct Order {
    pub(super) term: OrderTerm,
    pub(super) desc: bool,
    pub(super) nulls_first: Option<bool>,
    /// A COLLATE applied to a column number or alias.
    pub(super) coll: Option<Collation>,
    /// The original term, printed (for the segment SQL).
    pub(super) printed: String,
}

impl Order {
    pub(super) fn options_sql(&self) -> String {
        let mut s = String::new();
        if let Some(c) = self.coll {
            s.push_str(" COLLATE ");
            s.push_str(c.sql());
        }
        if self.desc {
            s.push_str(" DESC");
        }
        match self.nulls_first {
            Some(true) => s.push_str(" NULLS FIRST"),
            Some(false) => s.push_str(" NULLS LAST"),
            None => {}
        }
        s
    }
    pub(super) fn nulls_first(&self) -> bool {
        self.nulls_first.unwrap_or(!self.desc)
    }
}

impl Planner {
    pub(super) fn order_term(&mut self, o: OrderByExpr) -> Result<Order, PlanError> {
        if o.with_fill.is_some() {
            return refuse("WITH FILL is not SQLite syntax");
        }
        let desc = match o.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => return refuse("ORDER BY … USING is not SQLite syntax"),
        };
        let printed = o.to_string();
        let nulls_first = o.options.nulls_first;
        let mut e = o.expr;
        // `ORDER BY 2 COLLATE NOCASE` / `ORDER BY alias COLLATE NOCASE`: SQLite looks through the
        // COLLATE for a column number or alias, and sorts that column with the collation.
        let mut coll = None;
        if let Expr::Collate { expr, collation } = strip_nested(&e) {
            if ordinal(expr)?.is_some() || self.bare_alias(expr).is_some() {
                coll = Some(Collation::parse(collation)?);
                e = (**expr).clone();
            }
        }
        let term = if let Some(k) = ordinal(&e)? {
            if self.has_star {
                if k < 1 {
                    return Err(PlanError::syntax("ORDER BY term out of range"));
                }
                OrderTerm::Column(usize::try_from(k - 1).unwrap_or(usize::MAX))
            } else {
                let idx = usize::try_from(k - 1)
                    .ok()
                    .filter(|i| *i < self.items.len())
                    .ok_or_else(|| {
                        PlanError::syntax(format!(
                            "ORDER BY term out of range - should be between 1 and {}",
                            self.items.len()
                        ))
                    })?;
                OrderTerm::Item(idx)
            }
        } else if let Some(idx) = self.bare_alias(&e) {
            OrderTerm::Item(idx)
        } else {
            self.substitute_aliases(&mut e)?;
            validate(&e, Clause::Aggregates)?;
            let canon = canonical(&e, &self.table_names);
            match self.items.iter().position(|it| {
                it.expr
                    .as_ref()
                    .is_some_and(|x| canonical(x, &self.table_names) == canon)
            }) {
                Some(idx) => OrderTerm::Item(idx),
                None => OrderTerm::Expr(Box::new(e)),
            }
        };
        Ok(Order {
            term,
            desc,
            nulls_first,
            coll,
            printed,
        })
    }

    /// A bare ORDER BY name that is a result alias (SQLite prefers the alias there).
    fn bare_alias(&self, e: &Expr) -> Option<usize> {
        let Expr::Identifier(id) = strip_nested(e) else {
            return None;
        };
        self.items.iter().position(|it| {
            it.alias
                .as_ref()
                .is_some_and(|a| a.value.eq_ignore_ascii_case(&id.value))
        })
    }

    /// Effective (limit, offset) as SQLite applies them: a negative LIMIT means none, a negative
    /// OFFSET means 0.
    pub(super) fn effective_limit(&self) -> (Option<u64>, u64) {
        let limit = self.limit.and_then(|l| u64::try_from(l).ok());
        let offset = self.offset.map_or(0, |o| u64::try_from(o).unwrap_or(0));
        (limit, offset)
    }

    /// ` LIMIT n` for each segment: enough rows for the merge to apply LIMIT and OFFSET.
    pub(super) fn segment_limit_sql(&self) -> String {
        match self.effective_limit() {
            (Some(l), o) => format!(" LIMIT {}", l.saturating_add(o).min(i64::MAX as u64)),
            (None, _) => String::new(),
        }
    }

    /// The query's own LIMIT/OFFSET, for the merge SQL.
    pub(super) fn limit_sql(&self) -> String {
        match (self.limit, self.offset) {
            (Some(l), Some(o)) => format!(" LIMIT {l} OFFSET {o}"),
            (Some(l), None) => format!(" LIMIT {l}"),
            _ => String::new(),
        }
    }

    pub(super) fn original_order_sql(&self) -> String {
        if self.order.is_empty() {
            return String::new();
        }
        let terms: Vec<&str> = self.order.iter().map(|o| o.printed.as_str()).collect();
        format!(" ORDER BY {}", terms.join(", "))
    }
}

/// An integer literal (an ORDER BY / GROUP BY column number).
pub(super) fn ordinal(e: &Expr) -> Result<Option<i64>, PlanError> {
    let (neg, inner) = match strip_nested(e) {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, &**expr),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => (false, &**expr),
        other => (false, other),
    };
    if let Expr::Value(v) = strip_nested(inner) {
        if let Value::Number(n, _) = &v.value {
            if n.chars().all(|c| c.is_ascii_digit()) {
                let k: i64 = n
                    .parse()
                    .map_err(|_| PlanError::syntax(format!("term {n} out of range")))?;
                return Ok(Some(if neg { -k } else { k }));
            }
        }
    }
    Ok(None)
}

/// An integer literal for LIMIT/OFFSET.
fn limit_value(e: &Expr, what: &str) -> Result<i64, PlanError> {
    match ordinal(e)? {
        Some(v) => Ok(v),
        None => refuse(format!(
            "{what} must be an integer literal in a scatter query (found `{e}`)"
        )),
    }
}

pub(super) fn limit_offset(q: &Query) -> Result<(Option<i64>, Option<i64>), PlanError> {
    match &q.limit_clause {
        None => Ok((None, None)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return refuse("LIMIT BY is not SQLite syntax");
            }
            let Some(limit) = limit else {
                return refuse("OFFSET without LIMIT is not SQLite syntax");
            };
            let l = limit_value(limit, "LIMIT")?;
            let o = match offset {
                Some(o) => {
                    if o.rows != sqlparser::ast::OffsetRows::None {
                        return refuse("OFFSET … ROWS is not SQLite syntax");
                    }
                    Some(limit_value(&o.value, "OFFSET")?)
                }
                None => None,
            };
            Ok((Some(l), o))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => Ok((
            Some(limit_value(limit, "LIMIT")?),
            Some(limit_value(offset, "OFFSET")?),
        )),
    }
}
