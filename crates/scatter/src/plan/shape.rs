//! Query-shape analysis: takes the parsed `SELECT` apart into a [`Planner`], and refuses every
//! shape a merge cannot answer exactly (joins, subqueries in FROM, compound SELECT, CTEs, syntax
//! that is not SQLite's, ambiguous names…). It finds the one table, the result columns, resolves
//! result aliases and GROUP BY column numbers, and validates WHERE, GROUP BY and HAVING with the
//! expression whitelist. It does not choose a strategy nor write the segment or merge SQL
//! (`render`, `aggregate`); ORDER BY and LIMIT are read by `order_limit`.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, Ident, ObjectNamePart, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableFactor, Value, WildcardAdditionalOptions,
};

use super::order_limit::{limit_offset, ordinal};
use super::params::rewrite_placeholders;
use super::render::quote_ident;
use super::{Item, PlanError, Planner};
use crate::expr::{children, children_mut, refuse, strip_nested, validate, Clause};

impl Planner {
    pub(super) fn new(
        mut query: Query,
        item_texts: Vec<String>,
        columns: BTreeSet<String>,
    ) -> Result<Self, PlanError> {
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
            alias_names: BTreeSet::new(),
            columns,
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
    /// name is not a column of the table (known from [`Planner::columns`]; the segments' guard
    /// answers say which it is, see `guard`).
    pub(super) fn substitute_aliases(&mut self, e: &mut Expr) -> Result<(), PlanError> {
        if let Expr::Identifier(id) = e {
            let lower = id.value.to_ascii_lowercase();
            if let Some(target) = self.alias_target(&lower)? {
                self.alias_names.insert(lower.clone());
                if !self.columns.contains(&lower) {
                    *e = Expr::Nested(Box::new(target));
                }
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
