//! The checker: compares a scatter answer with the monolith's under a [`Compare`] rule (the rules
//! are listed in the module docs of `differential`). It runs no query.

use serde_json::Value as Json;

use crate::Row;

/// How to compare two answers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Compare {
    /// Row order is fully determined by the query.
    pub ordered: bool,
    /// ORDER BY with possible ties on these result columns (0-based, with desc flags): compare as
    /// multisets and check the scatter answer is sorted.
    pub sorted_on: Option<&'static [(usize, bool)]>,
    /// LIMIT without ORDER BY: any rows of the full answer.
    pub any_rows: bool,
    /// Arbitrary representatives: 1 = 1.0, 'a' = 'A'.
    pub loose: bool,
}

fn float_of(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn values_equal(a: &Json, b: &Json, loose: bool) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (xf, yf) = (x.is_f64(), y.is_f64());
            if xf != yf && !loose {
                return false;
            }
            if !xf && !yf {
                return x == y;
            }
            let (p, q) = (float_of(a).unwrap(), float_of(b).unwrap());
            p == q || (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0)
        }
        (Json::String(x), Json::String(y)) if loose => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

fn rows_equal(a: &Row, b: &Row, loose: bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y, loose))
}

/// A sort key for multiset comparison: floats rounded, loose values folded.
fn sort_key(r: &Row, loose: bool) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|v| match v {
            Json::Number(n) if n.is_f64() || loose => {
                format!("n{:.6e}", n.as_f64().unwrap())
            }
            Json::String(s) if loose => format!("s{}", s.to_ascii_lowercase()),
            other => other.to_string(),
        })
        .collect();
    parts.join("\u{1}")
}

fn multiset_equal(a: &[Row], b: &[Row], loose: bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a: Vec<&Row> = a.iter().collect();
    let mut b: Vec<&Row> = b.iter().collect();
    a.sort_by_cached_key(|r| sort_key(r, loose));
    b.sort_by_cached_key(|r| sort_key(r, loose));
    a.iter().zip(&b).all(|(x, y)| rows_equal(x, y, loose))
}

/// Compares a scatter answer with the monolith's; `full` is the monolith's answer without LIMIT
/// (for `any_rows`).
pub(super) fn check(
    cmp: Compare,
    mono: &[Row],
    full: Option<&[Row]>,
    got: &[Row],
) -> Result<(), String> {
    if cmp.any_rows {
        let full = full.expect("full answer");
        if got.len() != mono.len() {
            return Err(format!("{} rows, expected {}", got.len(), mono.len()));
        }
        let mut pool: Vec<&Row> = full.iter().collect();
        for r in got {
            match pool.iter().position(|f| rows_equal(f, r, cmp.loose)) {
                Some(i) => {
                    pool.swap_remove(i);
                }
                None => return Err(format!("row {r:?} is not in the full answer")),
            }
        }
        return Ok(());
    }
    if cmp.ordered {
        if got.len() != mono.len() {
            return Err(format!("{} rows, expected {}", got.len(), mono.len()));
        }
        for (i, (g, m)) in got.iter().zip(mono).enumerate() {
            if !rows_equal(g, m, cmp.loose) {
                return Err(format!("row {i}: got {g:?}, expected {m:?}"));
            }
        }
        return Ok(());
    }
    if !multiset_equal(mono, got, cmp.loose) {
        return Err(format!(
            "different rows: got {} rows, expected {}",
            got.len(),
            mono.len()
        ));
    }
    if let Some(keys) = cmp.sorted_on {
        for w in got.windows(2) {
            for &(col, desc) in keys {
                let a = trough_sqlite::value::from_json(&w[0][col]).unwrap();
                let b = trough_sqlite::value::from_json(&w[1][col]).unwrap();
                let mut o = crate::compare(&a, &b, crate::Collation::Binary);
                if desc {
                    o = o.reverse();
                }
                match o {
                    std::cmp::Ordering::Less => break,
                    std::cmp::Ordering::Equal => continue,
                    std::cmp::Ordering::Greater => {
                        return Err(format!("not sorted: {:?} before {:?}", w[0], w[1]))
                    }
                }
            }
        }
    }
    Ok(())
}
