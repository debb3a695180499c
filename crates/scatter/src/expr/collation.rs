//! Collations: SQLite's built-in [`Collation`]s, and which one SQLite uses when it compares the
//! values of an expression ([`collation_of`]). Comparing values under a collation is `order.rs`'s
//! job.

use sqlparser::ast::{Expr, ObjectName};

use super::refuse;
use super::walk::{children, strip_nested};
use crate::plan::PlanError;

/// Whether `e` contains a `COLLATE` anywhere.
pub(crate) fn has_collate(e: &Expr) -> bool {
    matches!(e, Expr::Collate { .. }) || children(e).into_iter().any(has_collate)
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
