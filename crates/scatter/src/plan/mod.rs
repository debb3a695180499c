//! The planner: parses one `SELECT`, decides whether its answer over many segments can be computed
//! exactly from per-segment answers, and if so writes the per-segment SQL and the merge. PURE: no
//! I/O, no data (only SQL its parser cannot read is shown to SQLite's parser, `super::syntax`, to
//! tell a syntax error from a refusal). See the module docs of [`super`] for the design.
//!
//! This file holds the public face ([`plan`], [`ScatterPlan`], [`Strategy`], [`PlanError`]), the
//! analysed query every step works on (`Planner`) and the choice of strategy. It neither takes the
//! query apart nor writes SQL; its submodules do:
//!
//! - `source`: the original SQL text, and where each result column's text is (column names);
//! - `params`: numbering of the `?` parameters and the parameter CTE;
//! - `shape`: query-shape analysis and refusals (one table, result columns, aliases, WHERE,
//!   GROUP BY, HAVING);
//! - `order_limit`: ORDER BY terms and LIMIT / OFFSET;
//! - `render`: the SQL of the Concat, SortedMerge and DISTINCT plans;
//! - `aggregate`: aggregate decomposition into partial and merge aggregates (SqlMerge);
//! - `guard`: the segment guard column, and finishing a plan;
//! - `spec`: what a plan tells [`super::merge()`] (how to merge, sort keys, column names).

mod aggregate;
mod guard;
mod order_limit;
mod params;
mod render;
mod shape;
mod source;
mod spec;

use std::collections::BTreeSet;
use std::fmt;
use trough_types::error::codes;

use sqlparser::ast::{
    Expr, GroupByExpr, Ident, OrderByKind, SelectItem, SetExpr, Statement, UnaryOperator,
    Value as SqlValue,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use trough_types::error::{ApiError, ErrorKind};

use super::expr::{children_mut, contains_agg, refuse};
use super::syntax::{sqlite_verdict, Verdict};
use order_limit::{Order, OrderTerm};
use source::{select_item_texts, SourceText};

pub use guard::SegmentFacts;
pub(crate) use spec::{KeyCol, MergeSpec, Names, OutputName, SortKey, SqlBody};

/// Why a query cannot be answered over many segments (HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    code: &'static str,
    message: String,
}

impl PlanError {
    /// A query the planner refuses: it cannot guarantee the exact answer. Code
    /// `unsupported_scatter_query`.
    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        Self {
            code: codes::UNSUPPORTED_SCATTER_QUERY,
            message: msg.into(),
        }
    }
    /// SQL that does not parse. Code `sql_error` (as for a single segment).
    fn syntax(msg: impl Into<String>) -> Self {
        Self {
            code: codes::SQL_ERROR,
            message: msg.into(),
        }
    }
    /// The stable code: `unsupported_scatter_query` or `sql_error`.
    pub fn code(&self) -> &str {
        self.code
    }
    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlanError {}

impl ApiError for PlanError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
    fn code(&self) -> &str {
        self.code
    }
}

impl From<PlanError> for trough_types::Error {
    fn from(e: PlanError) -> Self {
        trough_types::Error::invalid(e.code, e.message)
    }
}

/// How the per-segment answers are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Rows of all segments, one segment after another (then OFFSET/LIMIT). Streams.
    Concat,
    /// A k-way merge of the segments' sorted rows (then OFFSET/LIMIT). Streams.
    SortedMerge,
    /// Partial rows loaded into a temporary SQLite database and finished there by the merge SQL
    /// (GROUP BY, aggregates, DISTINCT). Memory bounded by the merge budget; spills to disk.
    SqlMerge,
}

/// An exact plan for answering one query over many segments: what to run on every segment
/// ([`ScatterPlan::segment_sql`]) and how [`super::merge`] combines the answers.
#[derive(Clone, Debug)]
pub struct ScatterPlan {
    pub(crate) segment_sql: String,
    pub(crate) merge: MergeSpec,
    /// Number of helper columns at the end of every segment row: the hidden sort keys.
    pub(crate) tail: usize,
    /// The number of segment columns, when the plan knows it without a segment's answer
    /// (aggregate plans: the merge must run even when no segment returned a row).
    pub(crate) segment_width: Option<usize>,
    /// The guard query and how to judge its answers (`guard`).
    pub(crate) guard: guard::Guard,
    /// How each result column is named, for answers without any row.
    pub(crate) item_names: Vec<ItemName>,
}

/// How SQLite names one result column (see [`ScatterPlan::column_names_without_rows`]).
#[derive(Clone, Debug)]
pub(crate) enum ItemName {
    /// An alias, or an expression's source text.
    Text(String),
    /// A plain column, as written (SQLite uses its declared spelling).
    Column(String),
    /// `*` or `t.*`: every column of the table.
    Star,
}

impl ScatterPlan {
    /// The SQL to run on every segment (with the request's parameters, unchanged). Its rows,
    /// in column order and in the JSON value encoding, are what [`super::merge`] consumes.
    pub fn segment_sql(&self) -> &str {
        &self.segment_sql
    }
    /// How the answers are combined.
    pub fn strategy(&self) -> Strategy {
        match self.merge {
            MergeSpec::Concat { .. } => Strategy::Concat,
            MergeSpec::Sorted { .. } => Strategy::SortedMerge,
            MergeSpec::Sql { .. } => Strategy::SqlMerge,
        }
    }
    /// The number of columns of [`ScatterPlan::segment_sql`] when the plan knows it without a
    /// segment's answer: `Some` for plans whose merge yields rows even when no segment returned
    /// one (`SELECT count(DISTINCT a) FROM t WHERE …` over nothing is one row `0`). A caller that
    /// got no row from any segment calls [`super::merge()`] with that many (placeholder) names.
    pub fn segment_width(&self) -> Option<usize> {
        self.segment_width
    }
    /// The result column names when no segment returned a row (so no segment reported them):
    /// what SQLite would name them, given the table's declared columns (`SegmentFacts::columns`).
    pub fn column_names_without_rows(&self, table_columns: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.item_names {
            match n {
                ItemName::Text(t) => out.push(t.clone()),
                ItemName::Column(c) => out.push(
                    table_columns
                        .iter()
                        .find(|d| d.eq_ignore_ascii_case(c))
                        .unwrap_or(c)
                        .clone(),
                ),
                ItemName::Star => out.extend(table_columns.iter().cloned()),
            }
        }
        out
    }
    /// The one-row query every segment answers besides [`ScatterPlan::segment_sql`]: the schema
    /// facts the plan depends on ([`SegmentFacts::from_row`] reads its row). It takes no
    /// parameters.
    pub fn guard_sql(&self) -> &str {
        &self.guard.sql
    }
    /// The merge SQL (for [`Strategy::SqlMerge`] plans whose merge SQL does not depend on the
    /// segments' column count), for logs and tests.
    pub fn merge_sql(&self) -> Option<&str> {
        match &self.merge {
            MergeSpec::Sql {
                body: SqlBody::Fixed(s),
                ..
            } => Some(s),
            _ => None,
        }
    }
}

/// Parses and plans `sql`; see the module docs of [`super`] for what is supported.
///
/// A name that is both a result alias and possibly a column (`SELECT a AS b … WHERE b > 3`) is
/// planned as the alias; the segments' answers to [`ScatterPlan::guard_sql`] say whether it is a
/// column, and [`ScatterPlan::check_segments`] then asks for [`plan_with_columns`].
pub fn plan(sql: &str) -> Result<ScatterPlan, PlanError> {
    match plan_with_columns(sql, &BTreeSet::new()) {
        Ok(p) => Ok(p),
        // Read as aliases, the names may make no sense (`count(a) AS b … WHERE b > 3` puts an
        // aggregate in WHERE) while SQLite reads them as columns: plan that reading instead; the
        // segments' guard answers confirm it or ask for the alias reading (and its error) again.
        Err(e) => {
            let aliases = result_aliases(sql);
            if aliases.is_empty() {
                return Err(e);
            }
            plan_with_columns(sql, &aliases).map_err(|_| e)
        }
    }
}

/// The lower-case result aliases of a plain SELECT (empty for anything else).
fn result_aliases(sql: &str) -> BTreeSet<String> {
    let Ok(stmts) = Parser::parse_sql(&SQLiteDialect {}, sql) else {
        return BTreeSet::new();
    };
    let Some(Statement::Query(q)) = stmts.first() else {
        return BTreeSet::new();
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return BTreeSet::new();
    };
    s.projection
        .iter()
        .filter_map(|i| match i {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// [`plan`], knowing that the lower-case names in `columns` are columns of the table (in WHERE,
/// GROUP BY, HAVING and ORDER BY expressions SQLite resolves such a name to the column, not to a
/// result alias of the same name).
pub fn plan_with_columns(sql: &str, columns: &BTreeSet<String>) -> Result<ScatterPlan, PlanError> {
    let dialect = SQLiteDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| unparsed(sql, &e))?;
    let text = SourceText::new(sql);
    for t in &tokens {
        if let Token::HexStringLiteral(_) = t.token {
            if text.slice_from(t.span.start).starts_with('0') {
                return refuse(
                    "hexadecimal integer literals (0x…) are not supported; write the number in decimal",
                );
            }
        }
    }
    let mut stmts = Parser::parse_sql(&dialect, sql).map_err(|e| unparsed(sql, &e))?;
    if stmts.len() != 1 {
        return Err(PlanError::syntax(format!(
            "expected exactly one statement, found {}",
            stmts.len()
        )));
    }
    // `- -x` prints as `--x`, a comment: parenthesize the inner operand (no change to SQLite,
    // whose parser keeps no node for parentheses).
    separate_minus_signs(&mut stmts[0]);
    // The per-segment SQL is written back from the parsed tree: refuse anything that does not
    // survive printing and parsing again unchanged.
    let printed = stmts[0].to_string();
    match Parser::parse_sql(&dialect, &printed) {
        Ok(again) if again == stmts => {}
        _ => {
            return refuse(
                "the scatter planner cannot rewrite this statement faithfully (it changes when \
                 printed back); simplify the syntax, e.g. add parentheses or spaces",
            )
        }
    }
    let Some(Statement::Query(query)) = stmts.pop() else {
        return refuse("only SELECT statements can be run over many segments");
    };
    let item_texts = select_item_texts(&text, &tokens)?;
    Planner::new(*query, item_texts, columns.clone())?.plan()
}

/// Wraps the operand of a unary minus in parentheses when it starts with a minus itself, in every
/// expression of a plain SELECT the walker knows (what it does not reach is caught by the
/// round-trip check).
fn separate_minus_signs(stmt: &mut Statement) {
    fn walk(e: &mut Expr) {
        if let Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } = e
        {
            if matches!(
                **expr,
                Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    ..
                }
            ) {
                let inner = std::mem::replace(&mut **expr, Expr::value(SqlValue::Null));
                **expr = Expr::Nested(Box::new(inner));
            }
        }
        for c in children_mut(e) {
            walk(c);
        }
    }
    let Statement::Query(q) = stmt else { return };
    if let SetExpr::Select(s) = q.body.as_mut() {
        for item in &mut s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => walk(e),
                _ => {}
            }
        }
        if let Some(w) = &mut s.selection {
            walk(w);
        }
        if let GroupByExpr::Expressions(list, _) = &mut s.group_by {
            list.iter_mut().for_each(walk);
        }
        if let Some(h) = &mut s.having {
            walk(h);
        }
    }
    if let Some(ob) = &mut q.order_by {
        if let OrderByKind::Expressions(list) = &mut ob.kind {
            list.iter_mut().for_each(|o| walk(&mut o.expr));
        }
    }
}

/// The error for SQL the planner's parser cannot read: SQLite's own syntax error (`sql_error`,
/// as one segment would answer), or, when SQLite parses it, a refusal naming the reason.
fn unparsed(sql: &str, e: &dyn fmt::Display) -> PlanError {
    match sqlite_verdict(sql) {
        Verdict::SyntaxError(msg) => PlanError::syntax(msg),
        Verdict::Parses => PlanError::unsupported(format!(
            "the scatter planner cannot read this statement, although SQLite can ({e}); \
             rewrite it with more common syntax (e.g. `x IN (SELECT … FROM t1)` for `x IN t1`) \
             or query one segment"
        )),
        Verdict::Unknown => PlanError::syntax(format!("cannot parse the SQL: {e}")),
    }
}

/// One result column of the query.
struct Item {
    /// `None` for `*` / `t.*`.
    expr: Option<Expr>,
    alias: Option<Ident>,
    /// Source text (the column name of an expression without alias).
    text: String,
    /// The printed item for the segment SQL.
    printed: String,
}

struct Planner {
    items: Vec<Item>,
    has_star: bool,
    distinct: bool,
    table_sql: String,
    table_name: String,
    schema: Option<String>,
    /// Lower-case names the table is known by (name and alias), for canonical forms.
    table_names: Vec<String>,
    where_: Option<Expr>,
    group_by: Vec<Expr>,
    having: Option<Expr>,
    order: Vec<Order>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// `WITH "_trough_params" AS (SELECT …) ` or empty.
    params_prefix: String,
    /// Lower-case result aliases used as names in WHERE/GROUP BY/HAVING/ORDER BY expressions
    /// (whether they were taken as the alias or as a column).
    alias_names: BTreeSet<String>,
    /// Lower-case names known to be columns of the table (see [`plan_with_columns`]).
    columns: BTreeSet<String>,
}

impl Planner {
    fn is_aggregate_query(&self) -> bool {
        !self.group_by.is_empty()
            || self.having.is_some()
            || self
                .items
                .iter()
                .any(|i| i.expr.as_ref().is_some_and(contains_agg))
            || self
                .order
                .iter()
                .any(|o| matches!(&o.term, OrderTerm::Expr(e) if contains_agg(e)))
    }

    fn plan(self) -> Result<ScatterPlan, PlanError> {
        if self.is_aggregate_query() {
            self.plan_aggregate()
        } else if self.distinct {
            self.plan_distinct()
        } else if !self.order.is_empty() {
            self.plan_sorted()
        } else {
            self.plan_concat()
        }
    }
}
