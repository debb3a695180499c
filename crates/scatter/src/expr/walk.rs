//! The walk over an expression's direct sub-expressions ([`children`], [`children_mut`]), and
//! [`strip_nested`]. Structure only, no judgement: which forms are allowed is the whitelist's
//! (`whitelist`), so the walk is only meaningful on validated expressions.

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments};

/// `e` without enclosing parentheses.
pub(crate) fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// The direct sub-expressions of `e` (empty for leaves). Only meaningful after
/// [`validate`](super::validate).
pub(crate) fn children(e: &Expr) -> Vec<&Expr> {
    let mut out: Vec<&Expr> = Vec::new();
    match e {
        Expr::IsNull(a)
        | Expr::IsNotNull(a)
        | Expr::IsTrue(a)
        | Expr::IsFalse(a)
        | Expr::IsNotTrue(a)
        | Expr::IsNotFalse(a)
        | Expr::Nested(a) => out.push(a),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            out.push(a);
            out.push(b);
        }
        Expr::InList { expr, list, .. } => {
            out.push(expr);
            out.extend(list.iter());
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            out.push(expr);
            out.push(low);
            out.push(high);
        }
        Expr::BinaryOp { left, right, .. } => {
            out.push(left);
            out.push(right);
        }
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            out.push(expr);
            out.push(pattern);
            if let Some(esc) = escape_char {
                out.push(esc);
            }
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Cast { expr, .. }
        | Expr::Collate { expr, .. }
        | Expr::Ceil { expr, .. }
        | Expr::Floor { expr, .. } => out.push(expr),
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            out.push(expr);
            out.extend(substring_from.iter().map(|b| &**b));
            out.extend(substring_for.iter().map(|b| &**b));
        }
        Expr::Trim {
            expr,
            trim_characters,
            ..
        } => {
            out.push(expr);
            if let Some(chars) = trim_characters {
                out.extend(chars.iter());
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            out.extend(operand.iter().map(|b| &**b));
            for cw in conditions {
                out.push(&cw.condition);
                out.push(&cw.result);
            }
            out.extend(else_result.iter().map(|b| &**b));
        }
        Expr::Function(f) => {
            if let FunctionArguments::List(l) = &f.args {
                for a in &l.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        out.push(x);
                    }
                }
            }
            out.extend(f.filter.iter().map(|b| &**b));
        }
        _ => {}
    }
    out
}

/// Mutable version of [`children`], same order.
pub(crate) fn children_mut(e: &mut Expr) -> Vec<&mut Expr> {
    let mut out: Vec<&mut Expr> = Vec::new();
    match e {
        Expr::IsNull(a)
        | Expr::IsNotNull(a)
        | Expr::IsTrue(a)
        | Expr::IsFalse(a)
        | Expr::IsNotTrue(a)
        | Expr::IsNotFalse(a)
        | Expr::Nested(a) => out.push(a),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            out.push(a);
            out.push(b);
        }
        Expr::InList { expr, list, .. } => {
            out.push(expr);
            out.extend(list.iter_mut());
        }
        Expr::Between {
            expr, low, high, ..
        } => {
            out.push(expr);
            out.push(low);
            out.push(high);
        }
        Expr::BinaryOp { left, right, .. } => {
            out.push(left);
            out.push(right);
        }
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            out.push(expr);
            out.push(pattern);
            if let Some(esc) = escape_char {
                out.push(esc);
            }
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Cast { expr, .. }
        | Expr::Collate { expr, .. }
        | Expr::Ceil { expr, .. }
        | Expr::Floor { expr, .. } => out.push(expr),
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            out.push(expr);
            out.extend(substring_from.iter_mut().map(|b| &mut **b));
            out.extend(substring_for.iter_mut().map(|b| &mut **b));
        }
        Expr::Trim {
            expr,
            trim_characters,
            ..
        } => {
            out.push(expr);
            if let Some(chars) = trim_characters {
                out.extend(chars.iter_mut());
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            out.extend(operand.iter_mut().map(|b| &mut **b));
            for cw in conditions {
                out.push(&mut cw.condition);
                out.push(&mut cw.result);
            }
            out.extend(else_result.iter_mut().map(|b| &mut **b));
        }
        Expr::Function(f) => {
            if let FunctionArguments::List(l) = &mut f.args {
                for a in &mut l.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        out.push(x);
                    }
                }
            }
            out.extend(f.filter.iter_mut().map(|b| &mut **b));
        }
        _ => {}
    }
    out
}
