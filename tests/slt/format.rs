//! Renders result values as sqllogictest writes them, so a result can be compared with the
//! expected lines of a test file.
//!
//! Rules (from the sqllogictest documentation and its SQLite driver): NULL is `NULL`; a column
//! typed `I` shows the value converted to an integer, `R` with three decimals, `T` as text with an
//! empty string shown as `(empty)` and characters outside printable ASCII replaced by `@`. Rows
//! are sorted as text for `rowsort`, single values for `valuesort`. When a result has more values
//! than the hash threshold, the expected text is `N values hashing to <md5>` where the MD5 covers
//! every value followed by a newline.

use md5::Digest as _;
use serde_json::Value;

use super::parse::SortMode;

/// SQLite's conversion of text to a number: the longest numeric prefix, else 0.
fn text_to_f64(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    for i in (1..=t.len()).rev() {
        if t.is_char_boundary(i) && t[..i].parse::<f64>().is_ok() {
            end = i;
            break;
        }
    }
    if end == 0 {
        0.0
    } else {
        t[..end].parse().unwrap_or(0.0)
    }
}

fn text_to_i64(s: &str) -> i64 {
    let t = s.trim_start();
    let bytes = t.as_bytes();
    let mut end = 0;
    if end < bytes.len() && (bytes[end] == b'-' || bytes[end] == b'+') {
        end += 1;
    }
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    t[..end].parse().unwrap_or(0)
}

/// `%.3f` as SQLite's printf writes it: at most 16 significant digits, then zeros.
fn fixed3(f: f64) -> String {
    if !f.is_finite() || f.abs() < 1e16 {
        return format!("{f:.3}");
    }
    let sci = format!("{:.15e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("scientific notation");
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let exp: usize = exp.parse().expect("exponent");
    let mut int = digits;
    while int.len() < exp + 1 {
        int.push('0');
    }
    let sign = if f < 0.0 { "-" } else { "" };
    format!("{sign}{int}.000")
}

/// One value (core's JSON encoding) as sqllogictest shows it for column type `ty`.
pub fn value(v: &Value, ty: char) -> String {
    if v.is_null() {
        return "NULL".into();
    }
    let text = || -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i.to_string()
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    // SQLite prints reals with up to 15 significant digits, as "%!.15g".
                    let s = format!("{f:.15e}");
                    let parsed: f64 = s.parse().unwrap_or(f);
                    if parsed.fract() == 0.0 && parsed.abs() < 1e15 {
                        format!("{parsed:.1}")
                    } else {
                        format!("{parsed}")
                    }
                }
            }
            other => other.to_string(),
        }
    };
    match ty {
        'I' => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.to_string(),
                None => (n.as_f64().unwrap_or(0.0) as i64).to_string(),
            },
            Value::String(s) => text_to_i64(s).to_string(),
            _ => "0".into(),
        },
        'R' => {
            let f = match v {
                Value::Number(n) => n.as_f64().unwrap_or(0.0),
                Value::String(s) => text_to_f64(s),
                _ => 0.0,
            };
            fixed3(f)
        }
        _ => {
            let s = text();
            if s.is_empty() {
                "(empty)".into()
            } else {
                s.chars()
                    .map(|c| if (' '..='~').contains(&c) { c } else { '@' })
                    .collect()
            }
        }
    }
}

/// The lines a test file would hold for these rows.
pub fn lines(rows: &[Vec<Value>], types: &str, sort: SortMode) -> Vec<String> {
    let types: Vec<char> = types.chars().collect();
    let mut formatted: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| value(v, types.get(i).copied().unwrap_or('T')))
                .collect()
        })
        .collect();
    match sort {
        SortMode::NoSort => formatted.into_iter().flatten().collect(),
        SortMode::RowSort => {
            formatted.sort();
            formatted.into_iter().flatten().collect()
        }
        SortMode::ValueSort => {
            let mut v: Vec<String> = formatted.into_iter().flatten().collect();
            v.sort();
            v
        }
    }
}

/// `N values hashing to <md5>`, as files write results with more values than their threshold.
pub fn hashed(values: &[String]) -> String {
    let mut h = md5::Md5::new();
    for v in values {
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    format!(
        "{} values hashing to {}",
        values.len(),
        hex::encode(h.finalize().as_slice())
    )
}

/// Whether expected lines (or their hash) (one value per line, or several per line separated by spaces in some
/// files) equal the rendered values.
pub fn matches(expected: &[String], got: &[String]) -> bool {
    if expected == got {
        return true;
    }
    // Results over the file's hash threshold are written as their hash; files that never set a
    // threshold were generated with one, so the form of the expected line decides.
    if expected.len() == 1 && expected[0].contains(" values hashing to ") {
        return expected[0] == hashed(got);
    }
    // Some files put a whole row on one line, values separated by spaces.
    let split: Vec<&str> = expected.iter().flat_map(|l| l.split(' ')).collect();
    let got_split: Vec<&str> = got.iter().flat_map(|l| l.split(' ')).collect();
    split == got_split
}
