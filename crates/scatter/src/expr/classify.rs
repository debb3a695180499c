//! Questions the planner asks about an expression: is it a call of an aggregate the merge can
//! reproduce (which one, with which arguments), does it contain one, does it read a column, does
//! it carry a type affinity, which operands does a comparison compare. Answers only: refusing is
//! the whitelist's job (`whitelist`), rewriting the planner's.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart,
};

use super::walk::{children, strip_nested};

/// An aggregate function the merge can reproduce exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggKind {
    /// `count(*)` / `count(x)`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `total(x)`.
    Total,
    /// `avg(x)`.
    Avg,
    /// `min(x)` (one argument).
    Min,
    /// `max(x)` (one argument).
    Max,
}

/// The lower-case name of a function with a one-part name.
pub(crate) fn func_name(f: &Function) -> Option<String> {
    match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => Some(id.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// The plain argument list of a function call (`None` for `f(*)`-style or named arguments).
pub(crate) fn plain_args(f: &Function) -> Option<Vec<&Expr>> {
    match &f.args {
        FunctionArguments::None => Some(vec![]),
        FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        FunctionArguments::Subquery(_) => None,
    }
}

/// Whether `f` is `count(*)`.
pub(crate) fn is_count_star(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l)
        if l.args.len() == 1 && matches!(l.args[0], FunctionArg::Unnamed(FunctionArgExpr::Wildcard)))
}

/// Whether the call has `DISTINCT`.
pub(crate) fn is_distinct(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l)
        if matches!(l.duplicate_treatment, Some(sqlparser::ast::DuplicateTreatment::Distinct)))
}

/// The aggregate kind of a call, if it is one of the mergeable aggregates.
pub(crate) fn agg_kind(f: &Function) -> Option<AggKind> {
    let name = func_name(f)?;
    let nargs = match &f.args {
        FunctionArguments::List(l) => l.args.len(),
        FunctionArguments::None => 0,
        FunctionArguments::Subquery(_) => return None,
    };
    Some(match name.as_str() {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "total" => AggKind::Total,
        "avg" => AggKind::Avg,
        "min" if nargs == 1 => AggKind::Min,
        "max" if nargs == 1 => AggKind::Max,
        _ => return None,
    })
}

/// Whether `e` contains an aggregate call (anywhere).
pub(crate) fn contains_agg(e: &Expr) -> bool {
    if let Expr::Function(f) = e {
        if agg_kind(f).is_some() {
            return true;
        }
    }
    children(e).into_iter().any(contains_agg)
}

/// Whether `e` refers to a column (any identifier).
pub(crate) fn has_column_ref(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
        || children(e).into_iter().any(has_column_ref)
}

/// Whether `e` (without parentheses and COLLATE) is an expression with a type affinity in SQLite:
/// a column, or a CAST. Comparing such an expression with an aggregate converts the aggregate's
/// value using that affinity, which the merge cannot see.
pub(crate) fn has_affinity(e: &Expr) -> bool {
    match strip_nested(e) {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Cast { .. } => true,
        Expr::Collate { expr, .. } => has_affinity(expr),
        _ => false,
    }
}

/// Whether `e` is a comparison (an operator that applies type affinity to its operands), and
/// its compared operands.
pub(crate) fn compared_operands(e: &Expr) -> Vec<&Expr> {
    use BinaryOperator as B;
    match e {
        Expr::BinaryOp {
            left,
            op:
                B::Eq | B::NotEq | B::Lt | B::Gt | B::LtEq | B::GtEq | B::Glob | B::Regexp | B::Match,
            right,
        } => {
            vec![left, right]
        }
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => vec![a, b],
        Expr::InList { expr, list, .. } => {
            let mut v: Vec<&Expr> = vec![expr];
            v.extend(list.iter());
            v
        }
        Expr::Between {
            expr, low, high, ..
        } => vec![expr, low, high],
        Expr::Case {
            operand: Some(op),
            conditions,
            ..
        } => {
            let mut v: Vec<&Expr> = vec![op];
            v.extend(conditions.iter().map(|c| &c.condition));
            v
        }
        _ => vec![],
    }
}
