//! Which WHERE conjuncts of a gathered query can be evaluated in the segments instead of the
//! merge database, to move fewer rows. Pure; when in doubt, nothing is pushed (the answer is the
//! same, only more rows travel).
//!
//! A conjunct (a term of the top-level WHERE's `AND` chain) is pushed to the table it reads when:
//! - the statement is one plain `SELECT` (no compound, no `WITH`), and reads no view;
//! - every column it names belongs to one FROM item: `alias.column` with that item's alias (or
//!   name), or an unqualified column found in exactly one FROM table (and the FROM holds only
//!   plain tables, so no other source can define the name; an unknown name may be a result alias
//!   and is never pushed);
//! - that FROM item is a plain table of the top-level FROM, not on the null-supplying side of an
//!   outer join, and the table's name occurs exactly once in the whole statement (the gathered
//!   rows are shared by every reference: a filter for one would starve the others);
//! - it passes the scatter planner's whitelist (deterministic built-in functions only, no
//!   subquery, no aggregate, unambiguous operator precedence), has no parameter, and prints back
//!   to the same tree.
//!
//! The segments evaluate it against the same `CREATE TABLE` and the same stored values as the
//! merge database would, so the rows kept are exactly those the merge database would keep.

use std::collections::BTreeMap;

use sqlparser::ast::{
    Expr, JoinOperator, ObjectName, ObjectNamePart, SetExpr, Statement, TableFactor, Value,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::analyze::{Analysis, Table};
use crate::expr::{children, validate, Clause};

/// A filter on one gathered table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The name the conjuncts use for the table (its alias, or its name).
    pub alias: String,
    /// The conjuncts, each parenthesized, joined with AND, as SQL.
    pub predicate: String,
}

/// One item of the top-level FROM.
struct Item<'a> {
    /// The gathered table (`None`: not a plain table of the segments).
    table: Option<&'a Table>,
    /// The name conjuncts qualify it with.
    qualifier: String,
    /// Not on the null-supplying side of an outer join.
    preserved: bool,
}

/// The filters to push down, by table name. Empty when nothing is provably safe.
pub fn filters(sql: &str, analysis: &Analysis) -> BTreeMap<String, Filter> {
    try_filters(sql, analysis).unwrap_or_default()
}

fn try_filters(sql: &str, analysis: &Analysis) -> Option<BTreeMap<String, Filter>> {
    if analysis.tables.is_empty()
        || analysis.objects.len() != analysis.tables.len()
        || analysis.tables.iter().any(|t| {
            !t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    {
        return None; // a view, or names the word count below could miss
    }
    let dialect = SQLiteDialect {};
    let mut stmts = Parser::parse_sql(&dialect, sql).ok()?;
    if stmts.len() != 1 {
        return None;
    }
    let Statement::Query(query) = stmts.pop()? else {
        return None;
    };
    if query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    let where_ = select.selection.as_ref()?;
    let items = from_items(&select.from, analysis)?;
    let counts = reference_counts(sql, analysis)?;
    let all_plain = items.iter().all(|i| i.table.is_some());
    let mut conjuncts = Vec::new();
    split_and(where_, &mut conjuncts);
    let mut out: BTreeMap<String, Filter> = BTreeMap::new();
    for c in conjuncts {
        let Some(i) = single_item(c, &items, all_plain) else {
            continue;
        };
        let item = &items[i];
        let Some(table) = item.table else { continue };
        if !item.preserved || counts.get(&table.name).copied() != Some(1) || !pushable(c) {
            continue;
        }
        let printed = format!("({c})");
        let f = out.entry(table.name.clone()).or_insert_with(|| Filter {
            alias: item.qualifier.clone(),
            predicate: String::new(),
        });
        if !f.predicate.is_empty() {
            f.predicate.push_str(" AND ");
        }
        f.predicate.push_str(&printed);
    }
    Some(out)
}

/// The top-level FROM items, in order; `None` when the FROM has a form not understood here.
fn from_items<'a>(
    from: &[sqlparser::ast::TableWithJoins],
    analysis: &'a Analysis,
) -> Option<Vec<Item<'a>>> {
    let mut items: Vec<Item<'a>> = Vec::new();
    for twj in from {
        let start = items.len();
        items.push(item(&twj.relation, analysis));
        for j in &twj.joins {
            let mut it = item(&j.relation, analysis);
            match &j.join_operator {
                JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_) => {}
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => it.preserved = false,
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                    for prev in &mut items[start..] {
                        prev.preserved = false;
                    }
                }
                _ => {
                    for prev in &mut items[start..] {
                        prev.preserved = false;
                    }
                    it.preserved = false;
                }
            }
            items.push(it);
        }
    }
    Some(items)
}

fn item<'a>(f: &TableFactor, analysis: &'a Analysis) -> Item<'a> {
    let opaque = Item {
        table: None,
        qualifier: String::new(),
        preserved: false,
    };
    let TableFactor::Table {
        name,
        alias,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
    } = f
    else {
        return opaque;
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return opaque;
    }
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return opaque;
    }
    let Some(table_name) = plain_name(name) else {
        return opaque;
    };
    let Some(table) = analysis
        .tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(&table_name))
    else {
        return opaque;
    };
    Item {
        table: Some(table),
        qualifier: alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or(table_name),
        preserved: true,
    }
}

/// `t` or `main.t`.
fn plain_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [t] => Some((*t).to_owned()),
        [s, t] if s.eq_ignore_ascii_case("main") => Some((*t).to_owned()),
        _ => None,
    }
}

/// How often each gathered table's name occurs in the statement as a name (not as a qualifier
/// before `.`), counting strings too (SQLite accepts `FROM 't'`). Over-counting only pushes less.
fn reference_counts(sql: &str, analysis: &Analysis) -> Option<BTreeMap<String, usize>> {
    let tokens = Tokenizer::new(&SQLiteDialect {}, sql).tokenize().ok()?;
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut counts = BTreeMap::new();
    for (i, t) in significant.iter().enumerate() {
        let text = match t {
            Token::Word(w) => &w.value,
            Token::SingleQuotedString(s) => s,
            _ => continue,
        };
        if matches!(significant.get(i + 1), Some(Token::Period)) {
            continue;
        }
        if let Some(table) = analysis
            .tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(text))
        {
            *counts.entry(table.name.clone()).or_insert(0) += 1;
        }
    }
    Some(counts)
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    if let Expr::BinaryOp {
        left,
        op: sqlparser::ast::BinaryOperator::And,
        right,
    } = e
    {
        split_and(left, out);
        split_and(right, out);
    } else {
        out.push(e);
    }
}

/// The one FROM item every column of `e` belongs to; `None` if none, several, or unknown.
fn single_item(e: &Expr, items: &[Item<'_>], all_plain: bool) -> Option<usize> {
    let mut found: Option<usize> = None;
    let mut ok = true;
    visit(e, &mut |x| {
        let which = match x {
            Expr::Identifier(id) => {
                if !all_plain {
                    None
                } else {
                    let owners: Vec<usize> = items
                        .iter()
                        .enumerate()
                        .filter(|(_, it)| {
                            it.table.is_some_and(|t| {
                                t.all_columns
                                    .iter()
                                    .any(|c| c.eq_ignore_ascii_case(&id.value))
                            })
                        })
                        .map(|(i, _)| i)
                        .collect();
                    match owners.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    }
                }
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let owners: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, it)| it.qualifier.eq_ignore_ascii_case(&parts[0].value))
                    .map(|(i, _)| i)
                    .collect();
                match owners.as_slice() {
                    [one]
                        if items[*one].table.is_some_and(|t| {
                            t.all_columns
                                .iter()
                                .any(|c| c.eq_ignore_ascii_case(&parts[1].value))
                        }) =>
                    {
                        Some(*one)
                    }
                    _ => None,
                }
            }
            Expr::CompoundIdentifier(_) => None,
            _ => return,
        };
        match (which, found) {
            (Some(w), None) => found = Some(w),
            (Some(w), Some(f)) if w == f => {}
            _ => ok = false,
        }
    });
    if ok {
        found
    } else {
        None
    }
}

fn visit<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
    f(e);
    for c in children(e) {
        visit(c, f);
    }
}

/// Functions that can raise an error for some values (`abs(-9223372036854775808)`, malformed
/// JSON, a too-large string). A pushed conjunct is evaluated on every row of its table, where one
/// database might never evaluate it on the offending row (it may test another condition first):
/// such conjuncts stay in the merge database.
const MAY_RAISE: &[&str] = &[
    "abs", "zeroblob", "printf", "format", "unistr", "char", "unhex",
];

fn may_raise(e: &Expr) -> bool {
    let mut found = false;
    visit(e, &mut |x| {
        if let Expr::Function(f) = x {
            let name = f.name.to_string().to_ascii_lowercase();
            if name.starts_with("json") || MAY_RAISE.contains(&name.as_str()) {
                found = true;
            }
        }
    });
    found
}

/// Whitelisted, parameter-free, cannot raise an error, and printed back faithfully.
fn pushable(e: &Expr) -> bool {
    if validate(e, Clause::NoAggregates).is_err() {
        return false;
    }
    let mut has_param = false;
    visit(e, &mut |x| {
        if let Expr::Value(v) = x {
            if matches!(v.value, Value::Placeholder(_)) {
                has_param = true;
            }
        }
    });
    if has_param || may_raise(e) {
        return false;
    }
    let printed = e.to_string();
    let dialect = SQLiteDialect {};
    Parser::new(&dialect)
        .try_with_sql(&printed)
        .and_then(|mut p| p.parse_expr())
        .is_ok_and(|again| &again == e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(tables: &[(&str, &[&str])], views: &[&str]) -> Analysis {
        let tables: Vec<Table> = tables
            .iter()
            .map(|(n, cols)| Table {
                name: (*n).to_owned(),
                all_columns: cols.iter().map(|c| (*c).to_owned()).collect(),
                stored_columns: cols.iter().map(|c| (*c).to_owned()).collect(),
            })
            .collect();
        let mut objects: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        objects.extend(views.iter().map(|v| (*v).to_owned()));
        Analysis { tables, objects }
    }

    fn pushed(sql: &str) -> Vec<(String, String, String)> {
        let a = analysis(&[("t1", &["a", "b", "c"]), ("t2", &["x", "y", "b"])], &[]);
        filters(sql, &a)
            .into_iter()
            .map(|(t, f)| (t, f.alias, f.predicate))
            .collect()
    }

    fn p(t: &str, alias: &str, pred: &str) -> (String, String, String) {
        (t.to_owned(), alias.to_owned(), pred.to_owned())
    }

    #[test]
    fn single_table_conjuncts_of_inner_joins_are_pushed() {
        assert_eq!(
            pushed("SELECT * FROM t1 JOIN t2 ON t1.a = t2.x WHERE t1.a > 5 AND y = 'q' AND t1.b = t2.b"),
            [p("t1", "t1", "(t1.a > 5)"), p("t2", "t2", "(y = 'q')")]
        );
        assert_eq!(
            pushed(
                "SELECT * FROM t1 AS p, t2 WHERE p.c LIKE 'a%' AND length(p.a) < 3 AND x IS NULL"
            ),
            [
                p("t1", "p", "(p.c LIKE 'a%') AND (length(p.a) < 3)"),
                p("t2", "t2", "(x IS NULL)")
            ]
        );
        // The preserved side of a LEFT JOIN.
        assert_eq!(
            pushed("SELECT * FROM t1 LEFT JOIN t2 ON a = x WHERE t1.c = 'k' AND t2.y IS NULL"),
            [p("t1", "t1", "(t1.c = 'k')")]
        );
    }

    #[test]
    fn nothing_unsafe_is_pushed() {
        for sql in [
            // the null-supplying side of outer joins
            "SELECT * FROM t1 LEFT JOIN t2 ON a = x WHERE t2.y IS NULL",
            "SELECT * FROM t1 RIGHT JOIN t2 ON a = x WHERE t1.a > 1",
            "SELECT * FROM t1 FULL JOIN t2 ON a = x WHERE t1.a > 1 AND t2.x > 1",
            // self join: both references share the gathered rows
            "SELECT * FROM t1 p, t1 q WHERE p.a > 5 AND p.b = q.b",
            // the table is read elsewhere too
            "SELECT * FROM t1 WHERE a > 5 AND b IN (SELECT x FROM t2 WHERE x IN (SELECT b FROM t1))",
            "SELECT a FROM t1, t2 WHERE a > 1 UNION SELECT x FROM t2",
            "WITH s AS (SELECT * FROM t2) SELECT * FROM t1, s WHERE t1.a > 1",
            // ambiguous or unknown names (b is in both tables; z may be a result alias)
            "SELECT * FROM t1, t2 WHERE b > 1",
            "SELECT a + 1 AS z FROM t1, t2 WHERE z > 1",
            // parameters, subqueries, non-deterministic functions, OR across tables
            "SELECT * FROM t1, t2 WHERE t1.a > ?",
            "SELECT * FROM t1, t2 WHERE t1.a > (SELECT max(x) FROM t2)",
            "SELECT * FROM t1, t2 WHERE t1.a > random()",
            // functions that may raise an error on rows one database would not evaluate
            "SELECT * FROM t1, t2 WHERE t1.a = t2.x AND abs(t1.b) > 1",
            "SELECT * FROM t1, t2 WHERE t1.a = t2.x AND json_extract(t1.c, '$.k') = 1",
            "SELECT * FROM t1, t2 WHERE t1.a > 1 OR t2.x > 1",
            // a derived table could define unqualified names
            "SELECT * FROM t1, (SELECT 1 AS q) AS d WHERE a > 1",
            // rowid is not a declared column
            "SELECT * FROM t1, t2 WHERE t1.rowid > 1",
        ] {
            assert_eq!(pushed(sql), [], "{sql}");
        }
        // A view in the query: nothing is pushed.
        let a = analysis(&[("t1", &["a"]), ("t2", &["x"])], &["v"]);
        assert!(filters("SELECT * FROM t1, v, t2 WHERE t1.a > 1", &a).is_empty());
    }
}
