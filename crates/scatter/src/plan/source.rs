//! The original SQL text, addressable by sqlparser token locations, and the source text of each
//! result column (SQLite names a column without alias after its expression's text). Reads text
//! only: no parsing of the statement, no validation.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::PlanError;

/// The source text, addressable by sqlparser locations.
pub(super) struct SourceText<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    pub(super) fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self { sql, line_starts }
    }
    /// The byte offset of a location (line and column are 1-based, columns count characters).
    fn offset(&self, loc: Location) -> Option<usize> {
        let start = *self
            .line_starts
            .get(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let line = &self.sql[start..];
        match line.char_indices().nth(col) {
            Some((i, _)) => Some(start + i),
            None if line.chars().count() == col => Some(self.sql.len()),
            None => None,
        }
    }
    pub(super) fn slice_from(&self, loc: Location) -> &'a str {
        self.offset(loc).map_or("", |o| &self.sql[o..])
    }
}

fn sqlite_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// The source text of each result column, as SQLite uses it for the column name of an
/// expression without alias: from the expression's first token to the token after it, with
/// surrounding whitespace removed (comments in between are kept, as SQLite does).
pub(super) fn select_item_texts(
    text: &SourceText<'_>,
    tokens: &[TokenWithSpan],
) -> Result<Vec<String>, PlanError> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut i = match significant
        .iter()
        .position(|t| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::SELECT))
    {
        Some(p) => p + 1,
        None => return Ok(vec![]),
    };
    if let Some(Token::Word(w)) = significant.get(i).map(|t| &t.token) {
        if matches!(w.keyword, Keyword::DISTINCT | Keyword::ALL) {
            i += 1;
        }
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = i;
    while i < significant.len() {
        let t = &significant[i].token;
        let end = match t {
            Token::LParen => {
                depth += 1;
                false
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                false
            }
            Token::Comma | Token::SemiColon | Token::EOF if depth == 0 => true,
            // `IS [NOT] DISTINCT FROM` is an operator, not the FROM clause.
            Token::Word(w)
                if w.keyword == Keyword::FROM
                    && matches!(&significant[i - 1].token, Token::Word(p) if p.keyword == Keyword::DISTINCT) =>
            {
                false
            }
            Token::Word(w)
                if depth == 0
                    && matches!(
                        w.keyword,
                        Keyword::FROM
                            | Keyword::WHERE
                            | Keyword::GROUP
                            | Keyword::HAVING
                            | Keyword::ORDER
                            | Keyword::LIMIT
                            | Keyword::WINDOW
                            | Keyword::UNION
                            | Keyword::EXCEPT
                            | Keyword::INTERSECT
                    ) =>
            {
                true
            }
            _ => false,
        };
        if end {
            let from = text.offset(significant[start].span.start);
            let to = match t {
                Token::EOF => Some(text.sql.len()),
                _ => text.offset(significant[i].span.start),
            };
            if let (Some(a), Some(b)) = (from, to) {
                items.push(text.sql[a..b.max(a)].trim_matches(sqlite_space).to_owned());
            } else {
                items.push(String::new());
            }
            if !matches!(t, Token::Comma) {
                break;
            }
            start = i + 1;
        }
        i += 1;
    }
    Ok(items)
}
