//! The whitelist: [`validate`] accepts only the expression forms, SQLite operators and SQLite's
//! built-in deterministic functions listed here, refuses aggregates where SQLite does not allow
//! them, and refuses non-deterministic, order-dependent, window and unknown functions, saying
//! why. It does not classify (`classify`) or rewrite expressions.

use sqlparser::ast::{
    CastKind, CeilFloorKind, DateTimeField, Expr, Function, FunctionArguments, UnaryOperator, Value,
};

use super::classify::{agg_kind, func_name, is_count_star, is_distinct, plain_args, AggKind};
use super::collation::Collation;
use super::precedence::{binary_level, check_precedence};
use super::refuse;
use super::walk::{children, strip_nested};
use crate::plan::PlanError;

/// Aggregates SQLite has that the merge cannot reproduce, with the reason.
const REFUSED_AGGREGATES: &[(&str, &str)] = &[
    ("group_concat", "its result depends on the order rows are visited, which differs between one database and many segments"),
    ("string_agg", "its result depends on the order rows are visited, which differs between one database and many segments"),
    ("json_group_array", "its result depends on the order rows are visited"),
    ("jsonb_group_array", "its result depends on the order rows are visited"),
    ("json_group_object", "its result depends on the order rows are visited"),
    ("jsonb_group_object", "its result depends on the order rows are visited"),
    ("median", "it cannot be computed from per-segment partial results"),
    ("percentile", "it cannot be computed from per-segment partial results"),
    ("percentile_cont", "it cannot be computed from per-segment partial results"),
    ("percentile_disc", "it cannot be computed from per-segment partial results"),
    ("row_number", "window functions are not supported"),
    ("rank", "window functions are not supported"),
    ("dense_rank", "window functions are not supported"),
    ("percent_rank", "window functions are not supported"),
    ("cume_dist", "window functions are not supported"),
    ("ntile", "window functions are not supported"),
    ("lag", "window functions are not supported"),
    ("lead", "window functions are not supported"),
    ("first_value", "window functions are not supported"),
    ("last_value", "window functions are not supported"),
    ("nth_value", "window functions are not supported"),
];

/// Functions whose value differs between calls, connections or machines.
pub(crate) const NON_DETERMINISTIC: &[&str] = &[
    "random",
    "randomblob",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "sqlite_offset",
    "load_extension",
    "sqlite_compileoption_get",
    "sqlite_compileoption_used",
    "sqlite_source_id",
    "sqlite_version",
];

/// Deterministic scalar functions of SQLite (core, math, JSON). Date and time functions are
/// handled separately (they are deterministic unless given `'now'` or a time-zone modifier).
const SCALARS: &[&str] = &[
    "abs",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "replace",
    "round",
    "rtrim",
    "sign",
    "soundex",
    "substr",
    "substring",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unlikely",
    "upper",
    "zeroblob", // math
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc", // JSON
    "json",
    "jsonb",
    "json_array",
    "jsonb_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "jsonb_extract",
    "json_insert",
    "jsonb_insert",
    "json_object",
    "jsonb_object",
    "json_patch",
    "jsonb_patch",
    "json_pretty",
    "json_quote",
    "json_remove",
    "jsonb_remove",
    "json_replace",
    "jsonb_replace",
    "json_set",
    "jsonb_set",
    "json_type",
    "json_valid",
];

/// Date and time functions (see [`SCALARS`]).
const DATETIME: &[&str] = &[
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
];

/// Where an expression appears; decides whether aggregates are allowed in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clause {
    /// `WHERE`, `GROUP BY`, an aggregate's argument or `FILTER`: no aggregates.
    NoAggregates,
    /// The result columns, `HAVING`, `ORDER BY`.
    Aggregates,
}

/// Refuses every expression form, operator and function the planner does not understand, and
/// aggregates where SQLite does not allow them (or inside other aggregates).
pub(crate) fn validate(e: &Expr, clause: Clause) -> Result<(), PlanError> {
    match e {
        Expr::Identifier(_) => {}
        Expr::CompoundIdentifier(parts) => {
            if parts.len() != 2 {
                return refuse(format!(
                    "column reference {e} has {} parts; write `column` or `table.column`",
                    parts.len()
                ));
            }
        }
        Expr::Value(v) => match &v.value {
            Value::Number(_, false)
            | Value::SingleQuotedString(_)
            | Value::HexStringLiteral(_)
            | Value::Boolean(_)
            | Value::Null
            | Value::Placeholder(_) => {}
            other => return refuse(format!("literal {other} is not SQLite syntax")),
        },
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::Nested(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Case { .. } => {}
        Expr::BinaryOp { op, .. } => {
            if binary_level(op).is_none() {
                return refuse(format!("operator {op} is not supported"));
            }
        }
        Expr::Like { any, .. } => {
            if *any {
                return refuse("LIKE ANY is not SQLite syntax");
            }
        }
        Expr::UnaryOp { op, .. } => {
            if !matches!(
                op,
                UnaryOperator::Plus
                    | UnaryOperator::Minus
                    | UnaryOperator::Not
                    | UnaryOperator::BitwiseNot
            ) {
                return refuse(format!("unary operator {op} is not supported"));
            }
        }
        Expr::Cast { kind, format, .. } => {
            if *kind != CastKind::Cast || format.is_some() {
                return refuse("only CAST(expression AS type) is supported");
            }
        }
        Expr::Collate { collation, .. } => {
            Collation::parse(collation)?;
        }
        Expr::Ceil { field, .. } | Expr::Floor { field, .. } => {
            if !matches!(
                field,
                CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
            ) {
                return refuse("CEIL/FLOOR take one argument in SQLite");
            }
        }
        Expr::Substring { special, .. } => {
            if !*special {
                return refuse(
                    "SUBSTRING(x FROM a FOR b) is not SQLite syntax; use substr(x, a, b)",
                );
            }
        }
        Expr::Trim {
            trim_where,
            trim_what,
            ..
        } => {
            if trim_where.is_some() || trim_what.is_some() {
                return refuse("TRIM(BOTH/LEADING/TRAILING …) is not SQLite syntax; use trim/ltrim/rtrim(x, chars)");
            }
        }
        Expr::Function(f) => validate_function(f, clause)?,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            return refuse(
                "subqueries are not supported: each segment would only see its own rows, so the \
                 answer would differ from one database holding every row",
            )
        }
        Expr::Tuple(_) => return refuse("row values (a, b, …) are not supported"),
        other => {
            return refuse(format!(
                "expression `{other}` is not supported by the scatter planner"
            ))
        }
    }
    let inner = match e {
        // Aggregate arguments and FILTER clauses may not contain aggregates.
        Expr::Function(f) if agg_kind(f).is_some() => Clause::NoAggregates,
        _ => clause,
    };
    for c in children(e) {
        validate(c, inner)?;
    }
    check_precedence(e)
}

fn validate_function(f: &Function, clause: Clause) -> Result<(), PlanError> {
    let Some(name) = func_name(f) else {
        return refuse(format!("function name {} is not supported", f.name));
    };
    if f.over.is_some() {
        return refuse(format!(
            "window function {name}(…) OVER … is not supported: a window spans rows of many segments"
        ));
    }
    if f.uses_odbc_syntax
        || !matches!(f.parameters, FunctionArguments::None)
        || !f.within_group.is_empty()
        || f.null_treatment.is_some()
    {
        return refuse(format!("this form of {name}(…) is not SQLite syntax"));
    }
    let list = match &f.args {
        FunctionArguments::List(l) => Some(l),
        FunctionArguments::None => None,
        FunctionArguments::Subquery(_) => return refuse("subqueries are not supported"),
    };
    if let Some(l) = list {
        if !l.clauses.is_empty() {
            return refuse(format!(
                "{name}(… ORDER BY/LIMIT …) inside a function call is not supported"
            ));
        }
    }
    if let Some(kind) = agg_kind(f) {
        if clause == Clause::NoAggregates {
            return refuse(format!(
                "aggregate {name}() is not allowed here (in WHERE, GROUP BY, or inside another aggregate)"
            ));
        }
        let count_star = is_count_star(f);
        let args = plain_args(f);
        let ok = match (kind, &args) {
            (AggKind::Count, _) if count_star => !is_distinct(f),
            (_, Some(a)) => a.len() == 1,
            _ => false,
        };
        if !ok {
            return refuse(format!(
                "{name}(…) must have exactly one argument (or be count(*))"
            ));
        }
        if is_distinct(f) && f.filter.is_some() {
            return refuse(format!("{name}(DISTINCT …) FILTER (…) is not supported"));
        }
        return Ok(());
    }
    if f.filter.is_some() {
        return refuse(format!(
            "FILTER is only allowed on aggregate functions, not {name}()"
        ));
    }
    if let Some((_, why)) = REFUSED_AGGREGATES.iter().find(|(n, _)| *n == name) {
        return refuse(format!("{name}() is not supported: {why}"));
    }
    if NON_DETERMINISTIC.contains(&name.as_str()) {
        return refuse(format!(
            "{name}() is not supported: its value differs between segments (not deterministic)"
        ));
    }
    let Some(args) = plain_args(f) else {
        return refuse(format!(
            "{name}(…) has an argument form SQLite does not have"
        ));
    };
    if list.is_some_and(|l| l.duplicate_treatment.is_some()) {
        return refuse(format!("{name}(DISTINCT …) is only allowed on aggregates"));
    }
    if DATETIME.contains(&name.as_str()) {
        let time_source = match name.as_str() {
            "strftime" => 1,
            _ => 0,
        };
        if args.len() <= time_source {
            return refuse(format!(
                "{name}() without a time value means 'now', which differs between segments"
            ));
        }
        for a in &args {
            if let Expr::Value(v) = strip_nested(a) {
                if let Value::SingleQuotedString(s) = &v.value {
                    let l = s.trim().to_ascii_lowercase();
                    if l == "now" || l == "localtime" || l == "utc" {
                        return refuse(format!(
                            "{name}(…, '{s}') depends on the clock or time zone of the machine \
                             running each segment"
                        ));
                    }
                }
            }
        }
        return Ok(());
    }
    if SCALARS.contains(&name.as_str()) {
        return Ok(());
    }
    refuse(format!(
        "function {name}() is not known to the scatter planner (only SQLite's built-in \
         deterministic functions are)"
    ))
}
