//! Expression helpers for the planner: the whitelist of expression forms and functions, the walk
//! over children, SQLite's operator precedence, collations, and a canonical form for comparing
//! expressions.
//!
//! Everything here is conservative: an expression form, operator or function that is not listed
//! is refused by [`validate`], so the rest of the planner only ever sees forms it understands.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DateTimeField, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, UnaryOperator, Value,
};

use super::plan::PlanError;

/// Shorthand for a refusal.
pub(crate) fn refuse<T>(msg: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError::unsupported(msg))
}

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
const NON_DETERMINISTIC: &[&str] = &[
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

/// Whether `e` contains a `COLLATE` anywhere.
pub(crate) fn has_collate(e: &Expr) -> bool {
    matches!(e, Expr::Collate { .. }) || children(e).into_iter().any(has_collate)
}

/// `e` without enclosing parentheses.
pub(crate) fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// A collation SQLite has built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collation {
    /// Byte-wise (`memcmp`).
    Binary,
    /// ASCII case folded.
    NoCase,
    /// Trailing spaces ignored.
    RTrim,
}

impl Collation {
    /// Parses a collation name.
    pub(crate) fn parse(name: &ObjectName) -> Result<Self, PlanError> {
        let text = name.to_string();
        let bare = text.trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']');
        match bare.to_ascii_uppercase().as_str() {
            "BINARY" => Ok(Collation::Binary),
            "NOCASE" => Ok(Collation::NoCase),
            "RTRIM" => Ok(Collation::RTrim),
            _ => refuse(format!(
                "collation {text} is not one of SQLite's built-in collations (BINARY, NOCASE, RTRIM)"
            )),
        }
    }
    /// The SQL name.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Collation::Binary => "BINARY",
            Collation::NoCase => "NOCASE",
            Collation::RTrim => "RTRIM",
        }
    }
}

/// The collation SQLite uses when it compares values of `e` (sorting, grouping, DISTINCT,
/// `min`/`max`), given that table columns have the default BINARY collation (checked at run time
/// by the segment guard). `COLLATE` must be the outermost operator: a `COLLATE` further inside is
/// refused, as SQLite's rule for it (the left-most operand with a `COLLATE`) is easy to get wrong.
pub(crate) fn collation_of(e: &Expr, what: &str) -> Result<Option<Collation>, PlanError> {
    let e = strip_nested(e);
    if let Expr::Collate { expr, collation } = e {
        if has_collate(expr) {
            return refuse(format!("{what} has more than one COLLATE"));
        }
        return Ok(Some(Collation::parse(collation)?));
    }
    if has_collate(e) {
        return refuse(format!(
            "{what} has a COLLATE that is not its outermost operator; write `(expression) COLLATE name`"
        ));
    }
    Ok(None)
}

/// The direct sub-expressions of `e` (empty for leaves). Only meaningful after [`validate`].
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

/// SQLite's precedence level of a binary operator (higher binds tighter); `None` if the operator
/// is not SQLite's.
fn binary_level(op: &BinaryOperator) -> Option<u8> {
    use BinaryOperator as B;
    Some(match op {
        B::Or => 0,
        B::And => 1,
        B::Eq | B::NotEq | B::Regexp | B::Match | B::Glob => 3,
        B::Lt | B::Gt | B::LtEq | B::GtEq => 4,
        B::BitwiseAnd | B::BitwiseOr | B::PGBitwiseShiftLeft | B::PGBitwiseShiftRight => 6,
        B::Plus | B::Minus => 7,
        B::Multiply | B::Divide | B::Modulo => 8,
        B::StringConcat | B::Arrow | B::LongArrow => 9,
        _ => return None,
    })
}

const ATOM: u8 = 100;
const PREFIX: u8 = 11;

/// The precedence level of the top operator of `e` (see [`binary_level`]); [`ATOM`] for
/// self-delimited forms (names, literals, calls, parentheses, CASE … END, CAST(…)).
fn level(e: &Expr) -> u8 {
    match e {
        Expr::BinaryOp { op, .. } => binary_level(op).unwrap_or(0),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => 2,
        Expr::UnaryOp { .. } => PREFIX,
        Expr::Collate { .. } => 10,
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Like { .. } => 3,
        _ => ATOM,
    }
}

/// Checks that the parser's tree for `e` (its top operator and direct operands) is the tree SQLite
/// builds from the same text. sqlparser's precedences differ from SQLite's for some operators
/// (`||` binds tighter than `*` in SQLite, `<` tighter than `=`, `&`/`|` are equal…); where the
/// planner splits an expression between segments and the merge, a different tree would mean a
/// different answer, so unparenthesized mixes whose grouping is in doubt are refused.
fn check_precedence(e: &Expr) -> Result<(), PlanError> {
    let bad = || {
        refuse(format!(
            "add parentheses to `{e}`: the scatter planner does not rely on operator precedence there"
        ))
    };
    // (operand, minimum level it must have to be an operand here without parentheses)
    let mut operands: Vec<(&Expr, u8)> = Vec::new();
    match e {
        Expr::BinaryOp { left, op, right } => {
            let p = binary_level(op).unwrap_or(0);
            operands.push((left, p));
            operands.push((right, p + 1));
        }
        Expr::UnaryOp { op, expr } => {
            if *op == UnaryOperator::Not {
                operands.push((expr, 2));
            } else {
                operands.push((expr, PREFIX));
            }
        }
        Expr::Collate { expr, .. } => operands.push((expr, PREFIX)),
        Expr::IsNull(a)
        | Expr::IsNotNull(a)
        | Expr::IsTrue(a)
        | Expr::IsFalse(a)
        | Expr::IsNotTrue(a)
        | Expr::IsNotFalse(a) => operands.push((a, 3)),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            operands.push((a, 3));
            operands.push((b, 4));
        }
        Expr::InList { expr, .. } => operands.push((expr, 3)),
        Expr::Between {
            expr, low, high, ..
        } => {
            operands.push((expr, 3));
            operands.push((low, 4));
            operands.push((high, 4));
        }
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            operands.push((expr, 3));
            operands.push((pattern, 4));
            if let Some(esc) = escape_char {
                operands.push((esc, ATOM));
            }
        }
        _ => {}
    }
    for (operand, min) in operands {
        if level(operand) < min {
            return bad();
        }
    }
    Ok(())
}

/// A canonical text of `e` for deciding whether two expressions are the same: identifiers
/// lower-cased (ASCII, as SQLite compares names) and always quoted, a qualifier naming the one
/// table of the query dropped, outer parentheses removed. Equal canonical texts mean SQLite reads
/// the same expression.
pub(crate) fn canonical(e: &Expr, table_names: &[String]) -> String {
    let mut c = strip_nested(e).clone();
    canonicalize(&mut c, table_names);
    c.to_string()
}

fn canon_ident(id: &mut Ident) {
    id.value = id.value.to_ascii_lowercase();
    id.quote_style = Some('"');
}

fn canonicalize(e: &mut Expr, table_names: &[String]) {
    match e {
        Expr::Identifier(id) => canon_ident(id),
        Expr::CompoundIdentifier(parts) => {
            for p in parts.iter_mut() {
                canon_ident(p);
            }
            if parts.len() == 2 && table_names.iter().any(|t| *t == parts[0].value) {
                *e = Expr::Identifier(parts[1].clone());
            }
        }
        Expr::Function(f) => {
            for part in f.name.0.iter_mut() {
                if let ObjectNamePart::Identifier(id) = part {
                    id.value = id.value.to_ascii_lowercase();
                    id.quote_style = None;
                }
            }
            for c in children_mut(e) {
                canonicalize(c, table_names);
            }
        }
        Expr::Collate { collation, expr } => {
            for part in collation.0.iter_mut() {
                if let ObjectNamePart::Identifier(id) = part {
                    id.value = id.value.to_ascii_uppercase();
                    id.quote_style = None;
                }
            }
            canonicalize(expr, table_names);
        }
        _ => {
            for c in children_mut(e) {
                canonicalize(c, table_names);
            }
        }
    }
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
