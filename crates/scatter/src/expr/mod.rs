//! Expression helpers for the planner: the whitelist of expression forms and functions, the walk
//! over children, SQLite's operator precedence, collations, and a canonical form for comparing
//! expressions.
//!
//! Everything here is conservative: an expression form, operator or function that is not listed
//! is refused by [`validate`], so the rest of the planner only ever sees forms it understands.
//!
//! - `whitelist`: [`validate`], the accepted expression forms, operators and functions;
//! - `precedence`: SQLite's operator precedence, where sqlparser's differs;
//! - `walk`: the direct sub-expressions of an expression;
//! - `classify`: questions about an expression (aggregate kind, column references, affinity…);
//! - `collation`: [`Collation`], and which collation SQLite compares an expression's values with;
//! - `canonical`: a canonical text for deciding whether two expressions are the same.

mod canonical;
mod classify;
mod collation;
mod precedence;
mod walk;
mod whitelist;

use super::plan::PlanError;

pub(crate) use canonical::canonical;
pub(crate) use classify::{
    agg_kind, compared_operands, contains_agg, func_name, has_affinity, has_column_ref,
    is_count_star, is_distinct, plain_args, AggKind,
};
pub use collation::Collation;
pub(crate) use collation::{collation_of, has_collate};
pub(crate) use walk::{children, children_mut, strip_nested};
pub(crate) use whitelist::{validate, Clause, NON_DETERMINISTIC};

/// Shorthand for a refusal.
pub(crate) fn refuse<T>(msg: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError::unsupported(msg))
}
