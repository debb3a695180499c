//! A canonical text of an expression, for deciding whether two expressions are the same (a GROUP
//! BY term used again in the result, an ORDER BY term that is a result column, partial aggregates
//! shared by several aggregates). For comparison only: a canonical text is never run.

use sqlparser::ast::{Expr, Ident, ObjectNamePart};

use super::walk::{children_mut, strip_nested};

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
