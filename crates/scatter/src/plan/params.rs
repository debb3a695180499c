//! Query parameters: numbers them as SQLite does, rewrites each anonymous `?` into `?N`, and
//! writes the `WITH "_trough_params" AS (SELECT …)` prefix that gives the segment SQL and the merge
//! SQL exactly the original statement's parameters. Binds nothing: the caller binds the request's
//! params, unchanged, to both.

use std::collections::BTreeMap;

use sqlparser::ast::{Expr, GroupByExpr, OrderByKind, Query, SelectItem, SetExpr, Value};

use super::PlanError;
use crate::expr::{children_mut, refuse};

/// Every expression position of the query, for the placeholder pass.
fn query_exprs_mut(q: &mut Query) -> Vec<&mut Expr> {
    let mut out: Vec<&mut Expr> = Vec::new();
    if let SetExpr::Select(s) = &mut *q.body {
        for item in &mut s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    out.push(e)
                }
                _ => {}
            }
        }
        if let Some(w) = &mut s.selection {
            out.push(w);
        }
        if let GroupByExpr::Expressions(list, _) = &mut s.group_by {
            out.extend(list.iter_mut());
        }
        if let Some(h) = &mut s.having {
            out.push(h);
        }
    }
    if let Some(ob) = &mut q.order_by {
        if let OrderByKind::Expressions(list) = &mut ob.kind {
            out.extend(list.iter_mut().map(|o| &mut o.expr));
        }
    }
    out
}

fn collect_placeholders<'e>(e: &'e mut Expr, out: &mut Vec<&'e mut sqlparser::ast::ValueWithSpan>) {
    if let Expr::Value(v) = e {
        if matches!(v.value, Value::Placeholder(_)) {
            out.push(v);
        }
        return;
    }
    for c in children_mut(e) {
        collect_placeholders(c, out);
    }
}

/// Numbers parameters as SQLite does and rewrites each anonymous `?` into `?N`, so that moving
/// expressions between the segment SQL and the merge SQL keeps every parameter's number. Returns
/// a `WITH` prefix that mentions every parameter in number order: it gives both SQL texts the
/// same parameters (same count, names and numbers) as the original, whichever of them each part
/// uses, so they bind exactly like the original statement.
pub(super) fn rewrite_placeholders(q: &mut Query) -> Result<String, PlanError> {
    let mut found = Vec::new();
    for e in query_exprs_mut(q) {
        collect_placeholders(e, &mut found);
    }
    if found.is_empty() {
        return Ok(String::new());
    }
    for v in &found {
        if v.span.start.line == 0 {
            return refuse("cannot locate a parameter in the SQL text");
        }
    }
    found.sort_by_key(|v| (v.span.start.line, v.span.start.column));
    let mut max = 0u32;
    let mut by_name: BTreeMap<String, u32> = BTreeMap::new();
    let mut numbered: BTreeMap<u32, String> = BTreeMap::new();
    for v in found {
        let Value::Placeholder(p) = &v.value else {
            continue;
        };
        let p = p.clone();
        let index = if p == "?" {
            max += 1;
            max
        } else if let Some(num) = p.strip_prefix('?') {
            let n: u32 = num
                .parse()
                .ok()
                .filter(|n| (1..=32766).contains(n))
                .ok_or_else(|| PlanError::syntax(format!("parameter {p} is out of range")))?;
            max = max.max(n);
            n
        } else if let Some(&n) = by_name.get(&p) {
            n
        } else {
            max += 1;
            by_name.insert(p.clone(), max);
            max
        };
        let text = if p.starts_with('?') {
            format!("?{index}")
        } else {
            p
        };
        numbered.entry(index).or_insert_with(|| text.clone());
        v.value = Value::Placeholder(text);
    }
    let list: Vec<&str> = numbered.values().map(String::as_str).collect();
    Ok(format!(
        "WITH \"_trough_params\" AS (SELECT {}) ",
        list.join(", ")
    ))
}
