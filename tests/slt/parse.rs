//! Reads sqllogictest files (the format of SQLite's own SQL test corpus) into records.
//!
//! The format: records separated by blank lines. `statement ok|error` followed by SQL;
//! `query <types> [nosort|rowsort|valuesort] [label]` followed by SQL, a `----` line and the
//! expected values, one per line; `hash-threshold N`; `halt`; and the conditions
//! `skipif <engine>` / `onlyif <engine>` before a record. `#` starts a comment line. Only what
//! applies to SQLite is kept: records for other engines are dropped here.

/// How a query's result values are ordered before they are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the names of the format's own keywords
pub enum SortMode {
    /// As the engine returned them.
    NoSort,
    /// Rows sorted (as text, column by column).
    RowSort,
    /// Every value sorted on its own.
    ValueSort,
}

/// One record that applies to SQLite.
#[derive(Clone, Debug)]
pub enum Record {
    /// A statement and whether it must succeed.
    Statement { sql: String, ok: bool, line: usize },
    /// A query: column types (`I`, `R`, `T`), sort mode, SQL and the expected value lines.
    Query {
        types: String,
        sort: SortMode,
        sql: String,
        expected: Vec<String>,
        line: usize,
    },
    /// Results with more values than this are written as a hash. The runner does not need the
    /// number: the form of each expected result says whether it is hashed.
    HashThreshold,
}

/// Parses a whole file. Unknown record kinds are an error: a runner that skipped what it does
/// not understand would report success for tests it never ran.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        // One record: lines up to the next blank line.
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        let block: Vec<&str> = lines[start..i]
            .iter()
            .copied()
            .filter(|l| !l.starts_with('#'))
            .collect();
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        if block.is_empty() {
            continue;
        }
        let mut applies = true;
        let mut rest = &block[..];
        while let Some(first) = rest.first() {
            let words: Vec<&str> = first.split_whitespace().collect();
            match words.as_slice() {
                ["skipif", engine, ..] => applies &= *engine != "sqlite",
                ["onlyif", engine, ..] => applies &= *engine == "sqlite",
                _ => break,
            }
            rest = &rest[1..];
        }
        let Some(head) = rest.first() else { continue };
        let words: Vec<&str> = head.split_whitespace().collect();
        let line = start + 1;
        match words.as_slice() {
            ["halt"] => {
                if applies {
                    break;
                }
            }
            ["hash-threshold", n] => {
                n.parse::<usize>()
                    .map_err(|_| format!("line {line}: bad hash-threshold {n:?}"))?;
                records.push(Record::HashThreshold);
            }
            ["statement", kind] => {
                let ok = match *kind {
                    "ok" => true,
                    "error" => false,
                    other => return Err(format!("line {line}: statement {other:?}")),
                };
                if applies {
                    records.push(Record::Statement {
                        sql: rest[1..].join("\n"),
                        ok,
                        line,
                    });
                }
            }
            ["query", types, more @ ..] => {
                let sort = match more.first().copied() {
                    None | Some("nosort") => SortMode::NoSort,
                    Some("rowsort") => SortMode::RowSort,
                    Some("valuesort") => SortMode::ValueSort,
                    Some(other) => return Err(format!("line {line}: sort mode {other:?}")),
                };
                let body = &rest[1..];
                let sep = body.iter().position(|l| *l == "----");
                let (sql, expected) = match sep {
                    Some(p) => (&body[..p], &body[p + 1..]),
                    None => (body, &[][..]),
                };
                if applies {
                    records.push(Record::Query {
                        types: types.to_string(),
                        sort,
                        sql: sql.join("\n"),
                        expected: expected.iter().map(|s| s.to_string()).collect(),
                        line,
                    });
                }
            }
            _ => return Err(format!("line {line}: unknown record {head:?}")),
        }
    }
    Ok(records)
}
