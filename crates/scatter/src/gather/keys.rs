//! The union of the segments' rows may violate a PRIMARY KEY or UNIQUE constraint that each
//! segment satisfies on its own (every segment numbering its rows from 1 is the common case). The
//! merge database holds that union, so its tables are created from the segments' `CREATE TABLE`
//! text with the key constraints cut out, everything else kept verbatim (declared types, hence
//! affinities; collations; defaults; CHECK; generated columns). Keys only restrict what can be
//! inserted, never what a query returns, with one exception: an `INTEGER PRIMARY KEY` is the
//! rowid, so a query that names a rowid (`rowid`, `oid`, `_rowid_`) keeps the original text
//! (and rows that collide are refused). `WITHOUT ROWID` tables need their key and are kept too.
//! Pure.
//!
//! The cut is made on tokens and then checked by SQLite (`analyze`): the columns must come out
//! identical (`pragma_table_xinfo` but for `pk`), else the original text is used.

use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

/// Byte offsets of token locations in `sql`.
fn offset(sql: &str, line_starts: &[usize], loc: Location) -> Option<usize> {
    let start = *line_starts.get(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
    let line = &sql[start..];
    match line.char_indices().nth(col) {
        Some((i, _)) => Some(start + i),
        None if line.chars().count() == col => Some(sql.len()),
        None => None,
    }
}

/// Whether `sql` names a rowid anywhere (as a word).
pub fn mentions_rowid(sql: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&SQLiteDialect {}, sql).tokenize() else {
        return true;
    };
    tokens.iter().any(|t| match t {
        Token::Word(w) => ["rowid", "oid", "_rowid_"]
            .iter()
            .any(|r| w.value.eq_ignore_ascii_case(r)),
        _ => false,
    })
}

/// `CREATE [UNIQUE] INDEX …` without `UNIQUE`; `None` if it has none.
pub fn plain_index(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let line_starts = line_starts(sql);
    let sig: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(3)
        .collect();
    match sig.as_slice() {
        [c, u, _] if is_kw(&c.token, Keyword::CREATE) && is_kw(&u.token, Keyword::UNIQUE) => {
            let a = offset(sql, &line_starts, u.span.start)?;
            let b = offset(sql, &line_starts, u.span.end)?;
            Some(format!("{}{}", &sql[..a], &sql[b..]))
        }
        _ => None,
    }
}

fn line_starts(sql: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    v
}

fn is_kw(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

/// `CREATE TABLE …` with its PRIMARY KEY and UNIQUE constraints cut out; `None` when there is
/// nothing to cut or the text is not understood (`WITHOUT ROWID`, `CREATE TABLE … AS`).
pub fn without_keys(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let line_starts = line_starts(sql);
    let sig: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    if sig.iter().any(|t| is_kw(&t.token, Keyword::WITHOUT))
        || sig.iter().any(|t| is_kw(&t.token, Keyword::AS))
            && !sig.iter().any(|t| t.token == Token::LParen)
    {
        return None;
    }
    // Byte ranges to delete.
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < sig.len() {
        let t = &sig[i].token;
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        let is_pk = is_kw(t, Keyword::PRIMARY)
            && sig
                .get(i + 1)
                .is_some_and(|n| is_kw(&n.token, Keyword::KEY));
        let is_unique = is_kw(t, Keyword::UNIQUE);
        if depth != 1 || !(is_pk || is_unique) {
            i += 1;
            continue;
        }
        // Start: include a preceding `CONSTRAINT name`.
        let mut first = i;
        if i >= 2 && is_kw(&sig[i - 2].token, Keyword::CONSTRAINT) {
            first = i - 2;
        }
        let mut j = if is_pk { i + 2 } else { i + 1 };
        let table_constraint = sig.get(j).is_some_and(|n| n.token == Token::LParen);
        if table_constraint {
            // Skip the parenthesized column list.
            let mut d = 0usize;
            while j < sig.len() {
                match sig[j].token {
                    Token::LParen => d += 1,
                    Token::RParen => {
                        d -= 1;
                        if d == 0 {
                            j += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // ASC/DESC, ON CONFLICT x, AUTOINCREMENT.
        loop {
            match sig.get(j).map(|t| &t.token) {
                Some(t) if is_kw(t, Keyword::ASC) || is_kw(t, Keyword::DESC) => j += 1,
                Some(t) if is_kw(t, Keyword::AUTOINCREMENT) => j += 1,
                Some(t)
                    if is_kw(t, Keyword::ON)
                        && sig
                            .get(j + 1)
                            .is_some_and(|n| is_kw(&n.token, Keyword::CONFLICT)) =>
                {
                    j += 3
                }
                _ => break,
            }
        }
        let end_token = sig.get(j.checked_sub(1)?)?;
        let mut start = offset(sql, &line_starts, sig[first].span.start)?;
        let end = offset(sql, &line_starts, end_token.span.end)?;
        if table_constraint {
            // Also the comma before a table constraint.
            let prev = sig.get(first.checked_sub(1)?)?;
            if prev.token != Token::Comma {
                return None;
            }
            start = offset(sql, &line_starts, prev.span.start)?;
        }
        cuts.push((start, end));
        i = j;
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (a, b) in cuts {
        out.push_str(&sql[at..a]);
        at = b;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_cut_and_the_rest_kept() {
        let cases = [
            ("CREATE TABLE t(id INTEGER PRIMARY KEY, g TEXT)", "CREATE TABLE t(id INTEGER , g TEXT)"),
            (
                "CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT COLLATE NOCASE UNIQUE, v)",
                "CREATE TABLE t(id INTEGER , k TEXT COLLATE NOCASE , v)",
            ),
            (
                "CREATE TABLE t(a INT NOT NULL, b TEXT, CONSTRAINT pk PRIMARY KEY (a, b) ON CONFLICT REPLACE, UNIQUE(b))",
                "CREATE TABLE t(a INT NOT NULL, b TEXT)",
            ),
            (
                "CREATE TABLE t(a INTEGER CONSTRAINT u UNIQUE DEFAULT 3 CHECK (a > 0), b REAL PRIMARY KEY DESC)",
                "CREATE TABLE t(a INTEGER  DEFAULT 3 CHECK (a > 0), b REAL )",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(without_keys(sql).as_deref(), Some(want), "{sql}");
        }
        assert_eq!(without_keys("CREATE TABLE t(a, b)"), None);
        assert_eq!(
            without_keys("CREATE TABLE t(a PRIMARY KEY, b) WITHOUT ROWID"),
            None
        );
        assert_eq!(
            plain_index("CREATE UNIQUE INDEX i ON t(a)").as_deref(),
            Some("CREATE  INDEX i ON t(a)")
        );
        assert_eq!(plain_index("CREATE INDEX i ON t(a)"), None);
        assert!(mentions_rowid("SELECT a FROM t WHERE ROWID > 1"));
        assert!(!mentions_rowid("SELECT 'rowid' FROM t"));
    }
}
