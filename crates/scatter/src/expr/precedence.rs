//! SQLite's operator precedence, and the check that sqlparser's tree of an expression is the tree
//! SQLite builds from the same text (sqlparser's precedences differ for some operators). Used by
//! the whitelist (`whitelist`); it accepts no forms of its own.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator};

use super::refuse;
use crate::plan::PlanError;

/// SQLite's precedence level of a binary operator (higher binds tighter); `None` if the operator
/// is not SQLite's.
pub(super) fn binary_level(op: &BinaryOperator) -> Option<u8> {
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
pub(super) fn check_precedence(e: &Expr) -> Result<(), PlanError> {
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
