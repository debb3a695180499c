//! The planner: parses one `SELECT`, decides whether its answer over many segments can be computed
//! exactly from per-segment answers, and if so writes the per-segment SQL and the merge. PURE: no
//! I/O, no SQLite. See the module docs of [`super`] for the design.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Ident, LimitClause, ObjectNamePart, OrderByExpr, OrderByKind,
    OrderBySort, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableFactor, UnaryOperator, Value, WildcardAdditionalOptions,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use trough_core::error::{ApiError, ErrorKind};

use super::expr::{
    agg_kind, canonical, children, children_mut, collation_of, compared_operands, contains_agg,
    func_name, has_affinity, has_collate, has_column_ref, is_count_star, is_distinct, plain_args,
    refuse, strip_nested, validate, AggKind, Clause, Collation,
};

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
            code: "unsupported_scatter_query",
            message: msg.into(),
        }
    }
    /// SQL that does not parse. Code `sql_error` (as for a single segment).
    fn syntax(msg: impl Into<String>) -> Self {
        Self {
            code: "sql_error",
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

impl From<PlanError> for trough_core::Error {
    fn from(e: PlanError) -> Self {
        trough_core::Error::invalid(e.code, e.message)
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
    /// Number of helper columns at the end of every segment row: hidden sort keys, then the guard.
    pub(crate) tail: usize,
    /// The guard bits that make a segment's answer unusable (see [`GUARD_VIEW`]…).
    pub(crate) guard_fatal: i64,
    /// The table the query reads, for messages.
    pub(crate) table: String,
    /// Result aliases the query uses as names (guard bit [`GUARD_ALIAS`]).
    pub(crate) alias_refs: Vec<String>,
}

/// Guard bit: the table is a view or a virtual table in this segment.
pub(crate) const GUARD_VIEW: i64 = 1;
/// Guard bit: the table's definition declares a collation.
pub(crate) const GUARD_COLLATE: i64 = 2;
/// Guard bit: a name the query uses as a result alias is also a column of the table.
pub(crate) const GUARD_ALIAS: i64 = 4;

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

/// How segment answers are merged.
#[derive(Clone, Debug)]
pub(crate) enum MergeSpec {
    Concat {
        limit: Option<u64>,
        offset: u64,
    },
    Sorted {
        keys: Vec<SortKey>,
        limit: Option<u64>,
        offset: u64,
    },
    Sql {
        body: SqlBody,
        names: Names,
    },
}

/// The merge SQL run over the partial rows (table `_p`, columns `_c0`, `_c1`, …).
#[derive(Clone, Debug)]
pub(crate) enum SqlBody {
    /// The complete merge SQL.
    Fixed(String),
    /// `SELECT DISTINCT` over all partial columns, written once their number is known.
    Distinct {
        /// Per column (known only without `*`): the collation of the result column.
        colls: Vec<Option<Collation>>,
        /// Parameter CTE prefix.
        prefix: String,
        /// ` ORDER BY … LIMIT …` (may be empty).
        tail: String,
    },
}

/// Where the result column names come from.
#[derive(Clone, Debug)]
pub(crate) enum Names {
    /// The segment's own column names (all but the helper tail).
    Segment,
    /// One entry per result column.
    Fixed(Vec<OutputName>),
}

/// The name of one result column.
#[derive(Clone, Debug)]
pub(crate) enum OutputName {
    /// A name known from the query text (alias or expression text).
    Text(String),
    /// The name SQLite gives to this segment column (a plain column: its declared name).
    Segment(usize),
}

/// One key of an ORDER BY merged in Rust.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SortKey {
    pub col: KeyCol,
    pub desc: bool,
    pub nulls_first: bool,
    pub coll: Collation,
}

/// Where a sort key's value is in a segment row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyCol {
    /// An absolute column index (a result column).
    Column(usize),
    /// The j-th hidden sort column (index `n - tail + j`).
    Hidden(usize),
}

/// Parses and plans `sql`; see the module docs of [`super`] for what is supported.
pub fn plan(sql: &str) -> Result<ScatterPlan, PlanError> {
    let dialect = SQLiteDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| PlanError::syntax(format!("cannot parse the SQL: {e}")))?;
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
    let mut stmts = Parser::parse_sql(&dialect, sql)
        .map_err(|e| PlanError::syntax(format!("cannot parse the SQL: {e}")))?;
    if stmts.len() != 1 {
        return Err(PlanError::syntax(format!(
            "expected exactly one statement, found {}",
            stmts.len()
        )));
    }
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
    Planner::new(*query, item_texts)?.plan()
}

/// The source text, addressable by sqlparser locations.
struct SourceText<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    fn new(sql: &'a str) -> Self {
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
    fn slice_from(&self, loc: Location) -> &'a str {
        self.offset(loc).map_or("", |o| &self.sql[o..])
    }
}

fn sqlite_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// The source text of each result column, as SQLite uses it for the column name of an
/// expression without alias: from the expression's first token to the token after it, with
/// surrounding whitespace removed (comments in between are kept, as SQLite does).
fn select_item_texts(
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

/// A resolved ORDER BY term.
enum OrderTerm {
    /// The i-th result item.
    Item(usize),
    /// The k-th result column (an ordinal when the result has `*`).
    Column(usize),
    /// Any other expression.
    Expr(Box<Expr>),
}

struct Order {
    term: OrderTerm,
    desc: bool,
    nulls_first: Option<bool>,
    /// A COLLATE applied to a column number or alias.
    coll: Option<Collation>,
    /// The original term, printed (for the segment SQL).
    printed: String,
}

impl Order {
    fn options_sql(&self) -> String {
        let mut s = String::new();
        if let Some(c) = self.coll {
            s.push_str(" COLLATE ");
            s.push_str(c.sql());
        }
        if self.desc {
            s.push_str(" DESC");
        }
        match self.nulls_first {
            Some(true) => s.push_str(" NULLS FIRST"),
            Some(false) => s.push_str(" NULLS LAST"),
            None => {}
        }
        s
    }
    fn nulls_first(&self) -> bool {
        self.nulls_first.unwrap_or(!self.desc)
    }
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
    /// Result aliases used as names in WHERE/GROUP BY/HAVING/ORDER BY expressions.
    alias_refs: BTreeSet<String>,
}

impl Planner {
    fn new(mut query: Query, item_texts: Vec<String>) -> Result<Self, PlanError> {
        if query.with.is_some() {
            return refuse("WITH (common table expressions) is not supported");
        }
        if query.fetch.is_some()
            || !query.locks.is_empty()
            || query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return refuse("this query form is not SQLite syntax");
        }
        let params_prefix = rewrite_placeholders(&mut query)?;
        let (limit, offset) = limit_offset(&query)?;
        let select: Select = match *query.body {
            SetExpr::Select(s) => *s,
            SetExpr::SetOperation { op, .. } => {
                return refuse(format!(
                    "compound SELECT ({op}) is not supported: merge the parts yourself or run them \
                     as separate queries"
                ))
            }
            SetExpr::Values(_) => return refuse("VALUES does not read any segment"),
            _ => return refuse("only a plain SELECT … FROM table is supported"),
        };
        let Select {
            distinct,
            top,
            projection,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            value_table_mode,
            exclude,
            optimizer_hints,
            select_modifiers,
            ..
        } = select;
        if top.is_some()
            || into.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !connect_by.is_empty()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
            || exclude.is_some()
            || !optimizer_hints.is_empty()
            || select_modifiers.is_some()
        {
            return refuse("this SELECT form is not SQLite syntax");
        }
        if !named_window.is_empty() {
            return refuse("window functions (WINDOW clause) are not supported");
        }
        let distinct = match distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            Some(_) => return refuse("DISTINCT ON is not SQLite syntax"),
        };

        // FROM: exactly one table.
        let [from] = <[_; 1]>::try_from(from).map_err(|f: Vec<_>| {
            PlanError::unsupported(if f.is_empty() {
                "a query without FROM does not read the segments; run it on one segment".to_owned()
            } else {
                join_refusal()
            })
        })?;
        if !from.joins.is_empty() {
            return refuse(join_refusal());
        }
        let (table_sql, table_name, schema, mut table_names) = match &from.relation {
            TableFactor::Table {
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
            } if with_hints.is_empty() && partitions.is_empty() && index_hints.is_empty() => {
                let parts: Vec<&Ident> = name
                    .0
                    .iter()
                    .map(|p| match p {
                        ObjectNamePart::Identifier(id) => Ok(id),
                        _ => refuse("unsupported table name"),
                    })
                    .collect::<Result<_, _>>()?;
                let (schema, table) = match parts.as_slice() {
                    [t] => (None, (*t).clone()),
                    [s, t] if s.value.eq_ignore_ascii_case("main") => {
                        (Some(s.value.clone()), (*t).clone())
                    }
                    _ => {
                        return refuse(format!(
                            "table {name}: only tables of the segment itself (main) can be read"
                        ))
                    }
                };
                let mut names = vec![table.value.to_ascii_lowercase()];
                if let Some(a) = alias {
                    if !a.columns.is_empty() {
                        return refuse("table alias column lists are not SQLite syntax");
                    }
                    names.push(a.name.value.to_ascii_lowercase());
                }
                (from.relation.to_string(), table.value, schema, names)
            }
            TableFactor::Table { args: Some(_), .. } | TableFactor::Function { .. } => {
                return refuse("table-valued functions are not supported")
            }
            TableFactor::Derived { .. } => return refuse(
                "subqueries in FROM are not supported: each segment would only see its own rows",
            ),
            _ => return refuse("only FROM table [AS alias] is supported"),
        };
        table_names.dedup();

        // Result columns.
        if item_texts.len() != projection.len() {
            return refuse("cannot locate the result columns in the SQL text");
        }
        let mut items = Vec::new();
        let mut has_star = false;
        let mut synthesized: Vec<String> = Vec::new();
        for (item, text) in projection.into_iter().zip(item_texts) {
            let printed = item.to_string();
            match item {
                SelectItem::UnnamedExpr(e) => {
                    validate(&e, Clause::Aggregates)?;
                    // The segment SQL is printed from the parsed tree, which may spell the
                    // expression differently (`SUBSTR` for `substr`…); SQLite names such a column
                    // after its text, so name it explicitly after the original text. (A plain
                    // column is named after its declared name: leave it.)
                    let printed = if matches!(
                        strip_nested(&e),
                        Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                    ) {
                        printed
                    } else {
                        synthesized.push(text.to_ascii_lowercase());
                        format!("{e} AS {}", quote_ident(&text))
                    };
                    items.push(Item {
                        expr: Some(e),
                        alias: None,
                        text,
                        printed,
                    })
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    validate(&expr, Clause::Aggregates)?;
                    if alias.quote_style.is_none()
                        && ["isnull", "notnull"]
                            .contains(&alias.value.to_ascii_lowercase().as_str())
                    {
                        return refuse(format!(
                            "write `IS NULL` / `IS NOT NULL` instead of the postfix {}",
                            alias.value
                        ));
                    }
                    items.push(Item {
                        expr: Some(expr),
                        alias: Some(alias),
                        text,
                        printed,
                    })
                }
                SelectItem::Wildcard(opts) => {
                    check_wildcard(&opts)?;
                    has_star = true;
                    items.push(Item {
                        expr: None,
                        alias: None,
                        text,
                        printed,
                    })
                }
                SelectItem::QualifiedWildcard(kind, opts) => {
                    check_wildcard(&opts)?;
                    match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(n)
                            if n.0.len() == 1
                                && table_names.contains(
                                    &n.to_string()
                                        .trim_matches(['"', '`', '[', ']'])
                                        .to_ascii_lowercase(),
                                ) => {}
                        _ => return refuse(format!("{printed}: unknown table")),
                    }
                    has_star = true;
                    items.push(Item {
                        expr: None,
                        alias: None,
                        text,
                        printed,
                    })
                }
                SelectItem::ExprWithAliases { .. } => {
                    return refuse("multiple aliases are not SQLite syntax")
                }
            }
        }

        // The synthesized names must not capture a name the query uses.
        if !synthesized.is_empty() {
            let mut names = BTreeSet::new();
            for e in [&selection, &having].into_iter().flatten() {
                collect_idents(e, &mut names);
            }
            if let GroupByExpr::Expressions(list, _) = &group_by {
                list.iter().for_each(|e| collect_idents(e, &mut names));
            }
            if let Some(ob) = &query.order_by {
                if let OrderByKind::Expressions(list) = &ob.kind {
                    list.iter()
                        .for_each(|o| collect_idents(&o.expr, &mut names));
                }
            }
            if let Some(n) = synthesized.iter().find(|s| names.contains(*s)) {
                return refuse(format!("the name {n:?} is ambiguous in this query"));
            }
        }
        let mut planner = Planner {
            items,
            has_star,
            distinct,
            table_sql,
            table_name,
            schema,
            table_names,
            where_: None,
            group_by: Vec::new(),
            having: None,
            order: Vec::new(),
            limit,
            offset,
            params_prefix,
            alias_refs: BTreeSet::new(),
        };

        if let Some(mut w) = selection {
            planner.substitute_aliases(&mut w)?;
            validate(&w, Clause::NoAggregates)?;
            planner.where_ = Some(w);
        }
        match group_by {
            GroupByExpr::Expressions(list, modifiers) => {
                if !modifiers.is_empty() {
                    return refuse("GROUP BY modifiers (ROLLUP, CUBE…) are not SQLite syntax");
                }
                for mut g in list {
                    let ordinal_under_collate = match strip_nested(&g) {
                        Expr::Collate { expr, collation } => {
                            ordinal(expr)?.map(|k| (k, collation.clone()))
                        }
                        _ => None,
                    };
                    if let Some(k) = ordinal(&g)? {
                        g = planner.item_for_ordinal(k, "GROUP BY")?;
                    } else if let Some((k, collation)) = ordinal_under_collate {
                        // `GROUP BY 1 COLLATE NOCASE`: the first result column, with NOCASE.
                        let item = planner.item_for_ordinal(k, "GROUP BY")?;
                        g = Expr::Collate {
                            expr: Box::new(Expr::Nested(Box::new(item))),
                            collation,
                        };
                    } else {
                        planner.substitute_aliases(&mut g)?;
                    }
                    validate(&g, Clause::NoAggregates)?;
                    planner.group_by.push(g);
                }
            }
            GroupByExpr::All(_) => return refuse("GROUP BY ALL is not SQLite syntax"),
        }
        if let Some(mut h) = having {
            planner.substitute_aliases(&mut h)?;
            validate(&h, Clause::Aggregates)?;
            planner.having = Some(h);
        }
        if let Some(order_by) = query.order_by {
            if order_by.interpolate.is_some() {
                return refuse("INTERPOLATE is not SQLite syntax");
            }
            let OrderByKind::Expressions(list) = order_by.kind else {
                return refuse("ORDER BY ALL is not SQLite syntax");
            };
            for o in list {
                let ord = planner.order_term(o)?;
                planner.order.push(ord);
            }
        }
        Ok(planner)
    }

    /// Replaces names of result aliases in `e` by the aliased expression, as SQLite does when the
    /// name is not a column of the table (checked at run time by the segment guard).
    fn substitute_aliases(&mut self, e: &mut Expr) -> Result<(), PlanError> {
        if let Expr::Identifier(id) = e {
            let lower = id.value.to_ascii_lowercase();
            if let Some(target) = self.alias_target(&lower)? {
                self.alias_refs.insert(id.value.clone());
                *e = Expr::Nested(Box::new(target));
            }
            return Ok(());
        }
        for c in children_mut(e) {
            self.substitute_aliases(c)?;
        }
        Ok(())
    }

    /// The expression a result alias stands for, unless the alias just repeats a column name.
    fn alias_target(&self, lower: &str) -> Result<Option<Expr>, PlanError> {
        for item in &self.items {
            let (Some(alias), Some(expr)) = (&item.alias, &item.expr) else {
                continue;
            };
            if alias.value.to_ascii_lowercase() != lower {
                continue;
            }
            if let Expr::Identifier(col) = strip_nested(expr) {
                if col.value.to_ascii_lowercase() == lower {
                    return Ok(None);
                }
            }
            if ["rowid", "oid", "_rowid_"].contains(&lower) {
                return refuse(format!(
                    "result alias {} hides the table's rowid; rename it",
                    alias.value
                ));
            }
            return Ok(Some(expr.clone()));
        }
        Ok(None)
    }

    fn item_for_ordinal(&self, k: i64, clause: &str) -> Result<Expr, PlanError> {
        if self.has_star {
            return refuse(format!(
                "{clause} by column number is not supported together with * in the result"
            ));
        }
        let idx = usize::try_from(k - 1)
            .ok()
            .filter(|i| *i < self.items.len())
            .ok_or_else(|| {
                PlanError::syntax(format!(
                    "{clause} term out of range - should be between 1 and {}",
                    self.items.len()
                ))
            })?;
        Ok(self.items[idx]
            .expr
            .clone()
            .unwrap_or(Expr::Value(Value::Null.into())))
    }

    fn order_term(&mut self, o: OrderByExpr) -> Result<Order, PlanError> {
        if o.with_fill.is_some() {
            return refuse("WITH FILL is not SQLite syntax");
        }
        let desc = match o.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => return refuse("ORDER BY … USING is not SQLite syntax"),
        };
        let printed = o.to_string();
        let nulls_first = o.options.nulls_first;
        let mut e = o.expr;
        // `ORDER BY 2 COLLATE NOCASE` / `ORDER BY alias COLLATE NOCASE`: SQLite looks through the
        // COLLATE for a column number or alias, and sorts that column with the collation.
        let mut coll = None;
        if let Expr::Collate { expr, collation } = strip_nested(&e) {
            if ordinal(expr)?.is_some() || self.bare_alias(expr).is_some() {
                coll = Some(Collation::parse(collation)?);
                e = (**expr).clone();
            }
        }
        let term = if let Some(k) = ordinal(&e)? {
            if self.has_star {
                if k < 1 {
                    return Err(PlanError::syntax("ORDER BY term out of range"));
                }
                OrderTerm::Column(usize::try_from(k - 1).unwrap_or(usize::MAX))
            } else {
                let idx = usize::try_from(k - 1)
                    .ok()
                    .filter(|i| *i < self.items.len())
                    .ok_or_else(|| {
                        PlanError::syntax(format!(
                            "ORDER BY term out of range - should be between 1 and {}",
                            self.items.len()
                        ))
                    })?;
                OrderTerm::Item(idx)
            }
        } else if let Some(idx) = self.bare_alias(&e) {
            OrderTerm::Item(idx)
        } else {
            self.substitute_aliases(&mut e)?;
            validate(&e, Clause::Aggregates)?;
            let canon = canonical(&e, &self.table_names);
            match self.items.iter().position(|it| {
                it.expr
                    .as_ref()
                    .is_some_and(|x| canonical(x, &self.table_names) == canon)
            }) {
                Some(idx) => OrderTerm::Item(idx),
                None => OrderTerm::Expr(Box::new(e)),
            }
        };
        Ok(Order {
            term,
            desc,
            nulls_first,
            coll,
            printed,
        })
    }

    /// A bare ORDER BY name that is a result alias (SQLite prefers the alias there).
    fn bare_alias(&self, e: &Expr) -> Option<usize> {
        let Expr::Identifier(id) = strip_nested(e) else {
            return None;
        };
        self.items.iter().position(|it| {
            it.alias
                .as_ref()
                .is_some_and(|a| a.value.eq_ignore_ascii_case(&id.value))
        })
    }

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

    /// Effective (limit, offset) as SQLite applies them: a negative LIMIT means none, a negative
    /// OFFSET means 0.
    fn effective_limit(&self) -> (Option<u64>, u64) {
        let limit = self.limit.and_then(|l| u64::try_from(l).ok());
        let offset = self.offset.map_or(0, |o| u64::try_from(o).unwrap_or(0));
        (limit, offset)
    }

    /// ` LIMIT n` for each segment: enough rows for the merge to apply LIMIT and OFFSET.
    fn segment_limit_sql(&self) -> String {
        match self.effective_limit() {
            (Some(l), o) => format!(" LIMIT {}", l.saturating_add(o).min(i64::MAX as u64)),
            (None, _) => String::new(),
        }
    }

    /// The query's own LIMIT/OFFSET, for the merge SQL.
    fn limit_sql(&self) -> String {
        match (self.limit, self.offset) {
            (Some(l), Some(o)) => format!(" LIMIT {l} OFFSET {o}"),
            (Some(l), None) => format!(" LIMIT {l}"),
            _ => String::new(),
        }
    }

    fn where_sql(&self) -> String {
        self.where_
            .as_ref()
            .map_or(String::new(), |w| format!(" WHERE {w}"))
    }

    fn items_sql(&self) -> String {
        self.items
            .iter()
            .map(|i| i.printed.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn original_order_sql(&self) -> String {
        if self.order.is_empty() {
            return String::new();
        }
        let terms: Vec<&str> = self.order.iter().map(|o| o.printed.as_str()).collect();
        format!(" ORDER BY {}", terms.join(", "))
    }

    /// The guard column: a bit mask of the segment-schema facts that would make the merge wrong.
    fn guard_sql(&self, compares: bool) -> String {
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let schema = self.schema.as_deref().unwrap_or("main");
        let master = format!("{}.sqlite_schema", quote_ident(schema));
        let name = lit(&self.table_name);
        let mut parts = vec![format!(
            "(SELECT count(*) FROM {master} WHERE name = {name} COLLATE NOCASE AND (type <> 'table' OR sql LIKE 'create virtual%'))"
        )];
        if compares {
            parts.push(format!(
                "{GUARD_COLLATE} * (SELECT count(*) FROM {master} WHERE type = 'table' AND name = {name} COLLATE NOCASE AND sql LIKE '%collate%')"
            ));
        }
        if !self.alias_refs.is_empty() {
            let names: Vec<String> = self.alias_refs.iter().map(|a| lit(a)).collect();
            parts.push(format!(
                "{GUARD_ALIAS} * (SELECT count(*) FROM pragma_table_xinfo({name}, {}) WHERE name COLLATE NOCASE IN ({}))",
                lit(schema),
                names.join(", ")
            ));
        }
        format!("({})", parts.join(" + "))
    }

    fn finish(
        self,
        segment_sql: String,
        merge: MergeSpec,
        tail: usize,
        compares: bool,
    ) -> ScatterPlan {
        let mut fatal = GUARD_VIEW;
        if compares {
            fatal |= GUARD_COLLATE;
        }
        if !self.alias_refs.is_empty() {
            fatal |= GUARD_ALIAS;
        }
        ScatterPlan {
            segment_sql,
            merge,
            tail,
            guard_fatal: fatal,
            table: self.table_name,
            alias_refs: self.alias_refs.into_iter().collect(),
        }
    }

    fn plan_concat(self) -> Result<ScatterPlan, PlanError> {
        let (limit, offset) = self.effective_limit();
        let sql = format!(
            "{}SELECT {}, {} FROM {}{}{}",
            self.params_prefix,
            self.items_sql(),
            self.guard_sql(false),
            self.table_sql,
            self.where_sql(),
            self.segment_limit_sql()
        );
        Ok(self.finish(sql, MergeSpec::Concat { limit, offset }, 1, false))
    }

    fn plan_sorted(self) -> Result<ScatterPlan, PlanError> {
        let (limit, offset) = self.effective_limit();
        let mut hidden: Vec<String> = Vec::new();
        let mut keys = Vec::new();
        for o in &self.order {
            let (col, coll) = match &o.term {
                OrderTerm::Item(i) if !self.items[..=*i].iter().any(|it| it.expr.is_none()) => {
                    let e = self.items[*i].expr.as_ref().expect("not a star");
                    (KeyCol::Column(*i), collation_of(e, "an ORDER BY term")?)
                }
                OrderTerm::Item(i) => {
                    let e = self.items[*i].expr.as_ref().expect("not a star").clone();
                    let coll = collation_of(&e, "an ORDER BY term")?;
                    hidden.push(strip_collate(&e).to_string());
                    (KeyCol::Hidden(hidden.len() - 1), coll)
                }
                OrderTerm::Column(k) => {
                    if self
                        .items
                        .iter()
                        .any(|it| it.expr.as_ref().is_some_and(has_collate))
                    {
                        return refuse(
                            "ORDER BY column number with * and a COLLATE in the result is not supported",
                        );
                    }
                    (KeyCol::Column(*k), None)
                }
                OrderTerm::Expr(e) => {
                    let coll = collation_of(e, "an ORDER BY term")?;
                    hidden.push(strip_collate(e).to_string());
                    (KeyCol::Hidden(hidden.len() - 1), coll)
                }
            };
            keys.push(SortKey {
                col,
                desc: o.desc,
                nulls_first: o.nulls_first(),
                coll: o.coll.or(coll).unwrap_or(Collation::Binary),
            });
        }
        let hidden_sql: String = hidden.iter().map(|h| format!(", {h}")).collect();
        let sql = format!(
            "{}SELECT {}{}, {} FROM {}{}{}{}",
            self.params_prefix,
            self.items_sql(),
            hidden_sql,
            self.guard_sql(true),
            self.table_sql,
            self.where_sql(),
            self.original_order_sql(),
            self.segment_limit_sql()
        );
        let tail = hidden.len() + 1;
        Ok(self.finish(
            sql,
            MergeSpec::Sorted {
                keys,
                limit,
                offset,
            },
            tail,
            true,
        ))
    }

    fn plan_distinct(self) -> Result<ScatterPlan, PlanError> {
        let mut colls = Vec::new();
        if self.has_star {
            if self
                .items
                .iter()
                .any(|it| it.expr.as_ref().is_some_and(has_collate))
            {
                return refuse(
                    "SELECT DISTINCT with * and a COLLATE in the result is not supported",
                );
            }
        } else {
            for it in &self.items {
                let e = it.expr.as_ref().expect("no star");
                colls.push(collation_of(e, "a SELECT DISTINCT result column")?);
            }
        }
        let mut order_terms = Vec::new();
        for o in &self.order {
            let k =
                match &o.term {
                    OrderTerm::Item(i) if !self.has_star => i + 1,
                    OrderTerm::Column(k) => k + 1,
                    _ => return refuse(
                        "the ORDER BY of a SELECT DISTINCT must name result columns (by number \
                         when the result has *)",
                    ),
                };
            order_terms.push(format!("{k}{}", o.options_sql()));
        }
        let mut tail = String::new();
        if !order_terms.is_empty() {
            tail.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
        }
        tail.push_str(&self.limit_sql());
        let sql = format!(
            "{}SELECT DISTINCT {}, {} FROM {}{}{}{}",
            self.params_prefix,
            self.items_sql(),
            self.guard_sql(true),
            self.table_sql,
            self.where_sql(),
            self.original_order_sql(),
            self.segment_limit_sql()
        );
        let prefix = self.params_prefix.clone();
        Ok(self.finish(
            sql,
            MergeSpec::Sql {
                body: SqlBody::Distinct {
                    colls,
                    prefix,
                    tail,
                },
                names: Names::Segment,
            },
            1,
            true,
        ))
    }

    fn plan_aggregate(self) -> Result<ScatterPlan, PlanError> {
        if self.has_star {
            return refuse(
                "* in an aggregate query selects columns outside GROUP BY (SQLite picks them from \
                 an arbitrary row, which a merge cannot reproduce)",
            );
        }
        if self.having.is_some() && self.group_by.is_empty() {
            let agg = self
                .items
                .iter()
                .any(|i| i.expr.as_ref().is_some_and(contains_agg))
                || self.having.as_ref().is_some_and(contains_agg);
            if !agg {
                return refuse("HAVING without GROUP BY needs an aggregate");
            }
        }
        let mut b = AggBuilder {
            cols: Vec::new(),
            table_names: self.table_names.clone(),
            partial_index: BTreeMap::new(),
        };
        for g in &self.group_by {
            b.add_key(g)?;
        }
        let mut out_items = Vec::new();
        let mut names = Vec::new();
        for it in &self.items {
            let e = it.expr.as_ref().expect("no star");
            out_items.push(b.rewrite(e)?.to_string());
            names.push(match &it.alias {
                Some(a) => OutputName::Text(a.value.clone()),
                None => match strip_nested(e) {
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                        let canon = canonical(e, &self.table_names);
                        match b
                            .cols
                            .iter()
                            .position(|c| c.kind == ColKind::Key && c.canon == canon)
                        {
                            Some(k) => OutputName::Segment(k),
                            None => OutputName::Text(it.text.clone()),
                        }
                    }
                    _ => OutputName::Text(it.text.clone()),
                },
            });
        }
        let having = match &self.having {
            Some(h) => format!(" HAVING {}", b.rewrite(h)?),
            None => String::new(),
        };
        let mut order_terms = Vec::new();
        for o in &self.order {
            let term = match &o.term {
                OrderTerm::Item(i) => format!("{}", i + 1),
                OrderTerm::Column(_) => unreachable!("no star in aggregate queries"),
                OrderTerm::Expr(e) => b.rewrite(e)?.to_string(),
            };
            order_terms.push(format!("{term}{}", o.options_sql()));
        }
        if b.cols.is_empty() {
            // An aggregate query whose aggregates are all constant-folded away still returns
            // one row per segment only if the segment query is an aggregate.
            b.add_partial("count(*)".to_owned(), "count(*)".to_owned(), None);
        }
        let merge_keys: Vec<String> = b
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == ColKind::Key)
            .map(|(i, _)| b.col_ref(i))
            .collect();
        let segment_groups: Vec<&str> = b
            .cols
            .iter()
            .filter(|c| matches!(c.kind, ColKind::Key | ColKind::DistinctArg))
            .map(|c| c.sql.as_str())
            .collect();
        let compares =
            !segment_groups.is_empty() || !self.order.is_empty() || b.cols.iter().any(|c| c.minmax);
        let seg_cols: Vec<&str> = b.cols.iter().map(|c| c.sql.as_str()).collect();
        let segment_sql = format!(
            "{}SELECT {}, {} FROM {}{}{}",
            self.params_prefix,
            seg_cols.join(", "),
            self.guard_sql(compares),
            self.table_sql,
            self.where_sql(),
            if segment_groups.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", segment_groups.join(", "))
            }
        );
        let mut merge_sql = format!(
            "{}SELECT {}{} FROM _p",
            self.params_prefix,
            if self.distinct { "DISTINCT " } else { "" },
            out_items.join(", ")
        );
        if !merge_keys.is_empty() {
            merge_sql.push_str(&format!(" GROUP BY {}", merge_keys.join(", ")));
        }
        merge_sql.push_str(&having);
        if !order_terms.is_empty() {
            merge_sql.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
        }
        merge_sql.push_str(&self.limit_sql());
        Ok(self.finish(
            segment_sql,
            MergeSpec::Sql {
                body: SqlBody::Fixed(merge_sql),
                names: Names::Fixed(names),
            },
            1,
            compares,
        ))
    }
}

fn join_refusal() -> String {
    "joins are not supported: each segment would only join its own rows, so rows from different \
     segments would never meet (query one segment, or denormalize)"
        .to_owned()
}

fn check_wildcard(o: &WildcardAdditionalOptions) -> Result<(), PlanError> {
    if o.opt_ilike.is_some()
        || o.opt_exclude.is_some()
        || o.opt_except.is_some()
        || o.opt_replace.is_some()
        || o.opt_rename.is_some()
        || o.opt_alias.is_some()
    {
        return refuse("* with modifiers is not SQLite syntax");
    }
    Ok(())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `e` without its outer COLLATE (the collation is applied by the merge itself).
fn strip_collate(e: &Expr) -> &Expr {
    match strip_nested(e) {
        Expr::Collate { expr, .. } => expr,
        other => other,
    }
}

/// An integer literal (an ORDER BY / GROUP BY column number).
fn ordinal(e: &Expr) -> Result<Option<i64>, PlanError> {
    let (neg, inner) = match strip_nested(e) {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, &**expr),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => (false, &**expr),
        other => (false, other),
    };
    if let Expr::Value(v) = strip_nested(inner) {
        if let Value::Number(n, _) = &v.value {
            if n.chars().all(|c| c.is_ascii_digit()) {
                let k: i64 = n
                    .parse()
                    .map_err(|_| PlanError::syntax(format!("term {n} out of range")))?;
                return Ok(Some(if neg { -k } else { k }));
            }
        }
    }
    Ok(None)
}

/// An integer literal for LIMIT/OFFSET.
fn limit_value(e: &Expr, what: &str) -> Result<i64, PlanError> {
    match ordinal(e)? {
        Some(v) => Ok(v),
        None => refuse(format!(
            "{what} must be an integer literal in a scatter query (found `{e}`)"
        )),
    }
}

fn limit_offset(q: &Query) -> Result<(Option<i64>, Option<i64>), PlanError> {
    match &q.limit_clause {
        None => Ok((None, None)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return refuse("LIMIT BY is not SQLite syntax");
            }
            let Some(limit) = limit else {
                return refuse("OFFSET without LIMIT is not SQLite syntax");
            };
            let l = limit_value(limit, "LIMIT")?;
            let o = match offset {
                Some(o) => {
                    if o.rows != sqlparser::ast::OffsetRows::None {
                        return refuse("OFFSET … ROWS is not SQLite syntax");
                    }
                    Some(limit_value(&o.value, "OFFSET")?)
                }
                None => None,
            };
            Ok((Some(l), o))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => Ok((
            Some(limit_value(limit, "LIMIT")?),
            Some(limit_value(offset, "OFFSET")?),
        )),
    }
}

/// Every expression position of the query, for the placeholder pass.
fn query_exprs_mut(q: &mut Query) -> Vec<&mut Expr> {
    let mut out: Vec<&mut Expr> = Vec::new();
    if let SetExpr::Select(s) = &mut *q.body {
        for item in &mut s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    out.push(e)
                }
                _ => {}
            }
        }
        if let Some(w) = &mut s.selection {
            out.push(w);
        }
        if let GroupByExpr::Expressions(list, _) = &mut s.group_by {
            out.extend(list.iter_mut());
        }
        if let Some(h) = &mut s.having {
            out.push(h);
        }
    }
    if let Some(ob) = &mut q.order_by {
        if let OrderByKind::Expressions(list) = &mut ob.kind {
            out.extend(list.iter_mut().map(|o| &mut o.expr));
        }
    }
    out
}

fn collect_placeholders<'e>(e: &'e mut Expr, out: &mut Vec<&'e mut sqlparser::ast::ValueWithSpan>) {
    if let Expr::Value(v) = e {
        if matches!(v.value, Value::Placeholder(_)) {
            out.push(v);
        }
        return;
    }
    for c in children_mut(e) {
        collect_placeholders(c, out);
    }
}

/// Numbers parameters as SQLite does and rewrites each anonymous `?` into `?N`, so that moving
/// expressions between the segment SQL and the merge SQL keeps every parameter's number. Returns
/// a `WITH` prefix that mentions every parameter in number order: it gives both SQL texts the
/// same parameters (same count, names and numbers) as the original, whichever of them each part
/// uses, so they bind exactly like the original statement.
fn rewrite_placeholders(q: &mut Query) -> Result<String, PlanError> {
    let mut found = Vec::new();
    for e in query_exprs_mut(q) {
        collect_placeholders(e, &mut found);
    }
    if found.is_empty() {
        return Ok(String::new());
    }
    for v in &found {
        if v.span.start.line == 0 {
            return refuse("cannot locate a parameter in the SQL text");
        }
    }
    found.sort_by_key(|v| (v.span.start.line, v.span.start.column));
    let mut max = 0u32;
    let mut by_name: BTreeMap<String, u32> = BTreeMap::new();
    let mut numbered: BTreeMap<u32, String> = BTreeMap::new();
    for v in found {
        let Value::Placeholder(p) = &v.value else {
            continue;
        };
        let p = p.clone();
        let index = if p == "?" {
            max += 1;
            max
        } else if let Some(num) = p.strip_prefix('?') {
            let n: u32 = num
                .parse()
                .ok()
                .filter(|n| (1..=32766).contains(n))
                .ok_or_else(|| PlanError::syntax(format!("parameter {p} is out of range")))?;
            max = max.max(n);
            n
        } else if let Some(&n) = by_name.get(&p) {
            n
        } else {
            max += 1;
            by_name.insert(p.clone(), max);
            max
        };
        let text = if p.starts_with('?') {
            format!("?{index}")
        } else {
            p
        };
        numbered.entry(index).or_insert_with(|| text.clone());
        v.value = Value::Placeholder(text);
    }
    let list: Vec<&str> = numbered.values().map(String::as_str).collect();
    Ok(format!(
        "WITH \"_trough_params\" AS (SELECT {}) ",
        list.join(", ")
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColKind {
    /// A GROUP BY term: grouped in segments and in the merge.
    Key,
    /// The argument of an aggregate with DISTINCT: grouped in segments only.
    DistinctArg,
    /// An expression of GROUP BY terms: a bare column in both.
    Derived,
    /// A partial aggregate.
    Partial,
}

struct SegCol {
    /// The segment SQL of the column.
    sql: String,
    /// Canonical form of the expression (keys, distinct args, derived).
    canon: String,
    kind: ColKind,
    /// The collation to compare its values with in the merge.
    coll: Option<Collation>,
    /// A `min`/`max` partial.
    minmax: bool,
}

struct AggBuilder {
    cols: Vec<SegCol>,
    table_names: Vec<String>,
    partial_index: BTreeMap<String, usize>,
}

impl AggBuilder {
    fn col_ref(&self, i: usize) -> String {
        match self.cols[i].coll {
            Some(c) => format!("(\"_c{i}\" COLLATE {})", c.sql()),
            None => format!("\"_c{i}\""),
        }
    }

    fn add_key(&mut self, e: &Expr) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, "a GROUP BY term")?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::Key,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_distinct_arg(&mut self, e: &Expr, what: &str) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| matches!(c.kind, ColKind::Key | ColKind::DistinctArg) && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, what)?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::DistinctArg,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_derived(&mut self, e: &Expr) -> Result<usize, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| matches!(c.kind, ColKind::Key | ColKind::Derived) && c.canon == canon)
        {
            return Ok(i);
        }
        let coll = collation_of(e, "an expression of GROUP BY terms")?;
        self.cols.push(SegCol {
            sql: e.to_string(),
            canon,
            kind: ColKind::Derived,
            coll,
            minmax: false,
        });
        Ok(self.cols.len() - 1)
    }

    fn add_partial(&mut self, sql: String, key: String, coll: Option<Collation>) -> usize {
        if let Some(&i) = self.partial_index.get(&key) {
            return i;
        }
        self.cols.push(SegCol {
            sql,
            canon: key.clone(),
            kind: ColKind::Partial,
            coll,
            minmax: false,
        });
        let i = self.cols.len() - 1;
        self.partial_index.insert(key, i);
        i
    }

    /// Whether `e` depends on the row only through GROUP BY terms.
    fn covered(&self, e: &Expr) -> bool {
        let canon = canonical(e, &self.table_names);
        if self
            .cols
            .iter()
            .any(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return true;
        }
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            return false;
        }
        children(e).into_iter().all(|c| self.covered(c))
    }

    /// The merge-side version of a result column, HAVING or ORDER BY expression: aggregates
    /// become merges of partial aggregates, expressions of GROUP BY terms become (bare) columns
    /// computed by the segments, constants stay.
    fn rewrite(&mut self, e: &Expr) -> Result<Expr, PlanError> {
        let canon = canonical(e, &self.table_names);
        if let Some(i) = self
            .cols
            .iter()
            .position(|c| c.kind == ColKind::Key && c.canon == canon)
        {
            return Ok(raw(self.col_ref(i)));
        }
        if let Expr::Function(f) = e {
            if agg_kind(f).is_some() {
                return Ok(raw(self.merge_aggregate(f)?));
            }
        }
        if !contains_agg(e) {
            if !has_column_ref(e) {
                return Ok(e.clone());
            }
            if !self.covered(e) {
                return refuse(format!(
                    "`{e}` uses a column that is neither a GROUP BY term nor inside an aggregate \
                     (SQLite would take it from an arbitrary row, which a merge cannot reproduce)"
                ));
            }
            let i = self.add_derived(e)?;
            return Ok(raw(self.col_ref(i)));
        }
        for op in compared_operands(e) {
            if !contains_agg(op) && has_column_ref(op) && has_affinity(op) {
                return refuse(format!(
                    "`{e}` compares an aggregate with `{op}`, whose type affinity SQLite would \
                     apply to the aggregate; the merge cannot see affinities (compare with \
                     `+{op}` or a CAST of the aggregate instead)"
                ));
            }
        }
        let mut out = e.clone();
        for c in children_mut(&mut out) {
            let new = self.rewrite(c)?;
            *c = new;
        }
        Ok(out)
    }

    fn merge_aggregate(&mut self, f: &sqlparser::ast::Function) -> Result<String, PlanError> {
        let kind = agg_kind(f).expect("an aggregate");
        let name = func_name(f).unwrap_or_default();
        if is_distinct(f) {
            let arg = plain_args(f)
                .and_then(|a| a.first().copied())
                .expect("validated");
            let i = self.add_distinct_arg(arg, &format!("the argument of {name}(DISTINCT …)"))?;
            let r = self.col_ref(i);
            return Ok(match kind {
                AggKind::Count => format!("count(DISTINCT {r})"),
                AggKind::Sum => format!("_trough_sum(DISTINCT {r})"),
                AggKind::Total => format!("total(DISTINCT {r})"),
                AggKind::Avg => format!("avg(DISTINCT {r})"),
                AggKind::Min => format!("min({r})"),
                AggKind::Max => format!("max({r})"),
            });
        }
        let filter_sql = f
            .filter
            .as_ref()
            .map_or(String::new(), |w| format!(" FILTER (WHERE {w})"));
        let filter_key = f
            .filter
            .as_ref()
            .map_or(String::new(), |w| canonical(w, &self.table_names));
        let arg = if is_count_star(f) {
            None
        } else {
            plain_args(f).and_then(|a| a.first().copied())
        };
        let arg_sql = arg.map_or("*".to_owned(), |a| a.to_string());
        let arg_key = arg.map_or("*".to_owned(), |a| canonical(a, &self.table_names));
        let mut partial = |func: &str, coll: Option<Collation>| {
            self.add_partial(
                format!("{func}({arg_sql}){filter_sql}"),
                format!("{func}|{arg_key}|{filter_key}"),
                coll,
            )
        };
        Ok(match kind {
            AggKind::Count => {
                let i = partial("count", None);
                format!("coalesce(sum(\"_c{i}\"), 0)")
            }
            AggKind::Sum => {
                let i = partial("sum", None);
                format!("_trough_sum(\"_c{i}\")")
            }
            AggKind::Total => {
                let i = partial("total", None);
                format!("total(\"_c{i}\")")
            }
            AggKind::Avg => {
                let s = partial("total", None);
                let n = partial("count", None);
                format!("(total(\"_c{s}\") / sum(\"_c{n}\"))")
            }
            AggKind::Min | AggKind::Max => {
                let func = if kind == AggKind::Min { "min" } else { "max" };
                let coll = collation_of(
                    arg.expect("one argument"),
                    &format!("the argument of {func}()"),
                )?;
                let i = partial(func, coll);
                self.cols[i].minmax = true;
                format!("{func}({})", self.col_ref(i))
            }
        })
    }
}

fn collect_idents(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Identifier(id) => {
            out.insert(id.value.to_ascii_lowercase());
        }
        Expr::CompoundIdentifier(parts) => {
            for p in parts {
                out.insert(p.value.to_ascii_lowercase());
            }
        }
        _ => children(e).into_iter().for_each(|c| collect_idents(c, out)),
    }
}

/// An expression that prints as the given SQL text (used for merge-side replacements, which are
/// always self-delimited: a parenthesized expression, a name or a function call).
fn raw(sql: String) -> Expr {
    Expr::Identifier(Ident::new(sql))
}
