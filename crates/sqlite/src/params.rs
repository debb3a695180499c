//! Statement parameters as they arrive in a request, and binding them to a statement.
//!
//! A request's `params` is a JSON array (positional: `?`, `?NNN`, or named parameters in order of
//! their index), a JSON object (named), or `null`/absent (none). A named key may be written with
//! or without its prefix: `"a"` binds `:a`, `@a` and `$a` (whichever the statement uses), while
//! `":a"` binds exactly `:a`. Values use the [`super::value`] JSON forms. Every parameter of the
//! statement must be given, and nothing else: a count mismatch, an unknown or a missing name is an
//! `invalid_params` error (400) rather than a silent `NULL`. Not here: running the statement.

use std::collections::HashMap;
use trough_types::error::codes;

use rusqlite::Statement;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use super::value::from_json;
use trough_types::error::{Error, Result};

/// A request's statement parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Params {
    /// No parameters (`null` or absent).
    #[default]
    None,
    /// Positional parameters, bound to indexes 1, 2, …
    Positional(Vec<Json>),
    /// Named parameters; keys with or without their `:`/`@`/`$` prefix.
    Named(Map<String, Json>),
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::Null => Ok(Params::None),
            Json::Array(a) => Ok(Params::Positional(a)),
            Json::Object(m) => Ok(Params::Named(m)),
            other => Err(serde::de::Error::custom(format!(
                "params must be a JSON array, a JSON object or null, not {other}"
            ))),
        }
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Params::None => s.serialize_none(),
            Params::Positional(a) => a.serialize(s),
            Params::Named(m) => m.serialize(s),
        }
    }
}

/// One SQL statement and its parameters: the body of `/query` (and each item of `/execute`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqlRequest {
    /// The SQL text: exactly one statement (a trailing `;`, whitespace and comments are fine).
    pub sql: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
}

impl SqlRequest {
    /// A request without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Params::None,
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(codes::INVALID_PARAMS, msg)
}

/// Binds `params` to `stmt` (replacing earlier bindings), checking that they match exactly.
///
/// A request may give at most `limits.sqlite.max_params` values ([`super::limits::max_params`]);
/// named values are matched through a name → index map built once, so binding is linear.
pub fn bind(stmt: &mut Statement<'_>, params: &Params) -> Result<()> {
    stmt.clear_bindings();
    let count = stmt.parameter_count();
    let given = match params {
        Params::None => 0,
        Params::Positional(v) => v.len(),
        Params::Named(m) => m.len(),
    };
    let max = super::limits::max_params();
    if given > max {
        return Err(invalid(format!(
            "{given} parameters given; at most limits.sqlite.max_params = {max} are allowed"
        )));
    }
    match params {
        Params::None if count == 0 => Ok(()),
        Params::None => Err(invalid(format!(
            "the statement has {count} parameter(s) but no params were given"
        ))),
        Params::Positional(values) => {
            if values.len() != count {
                return Err(invalid(format!(
                    "the statement has {count} parameter(s) but {} were given",
                    values.len()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                let value = from_json(v).map_err(|e| e.context(format!("parameter {}", i + 1)))?;
                stmt.raw_bind_parameter(i + 1, value)
                    .map_err(super::sqlite_error)?;
            }
            Ok(())
        }
        Params::Named(map) => bind_named(stmt, map, count),
    }
}

fn bind_named(stmt: &mut Statement<'_>, map: &Map<String, Json>, count: usize) -> Result<()> {
    // Name → index, built once: looking each name up with `sqlite3_bind_parameter_index` is a
    // linear scan per lookup, quadratic over all parameters.
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(count);
    for i in 1..=count {
        if let Some(name) = stmt.parameter_name(i) {
            index.entry(name).or_insert(i);
        }
    }
    let mut targets: Vec<(usize, &Json, String)> = Vec::with_capacity(map.len());
    let mut bound = vec![false; count + 1];
    for (key, v) in map {
        let candidates: Vec<String> = if key.starts_with([':', '@', '$']) {
            vec![key.clone()]
        } else {
            [':', '@', '$']
                .iter()
                .map(|p| format!("{p}{key}"))
                .collect()
        };
        let mut found = false;
        for name in candidates {
            let Some(&idx) = index.get(name.as_str()) else {
                continue;
            };
            if bound[idx] {
                return Err(invalid(format!("parameter {name} is given more than once")));
            }
            bound[idx] = true;
            targets.push((idx, v, name));
            found = true;
        }
        if !found {
            return Err(invalid(format!(
                "the statement has no parameter named {key:?}"
            )));
        }
    }
    if let Some(idx) = (1..=count).find(|&i| !bound[i]) {
        let name = stmt
            .parameter_name(idx)
            .map_or_else(|| format!("?{idx}"), str::to_owned);
        return Err(invalid(format!(
            "parameter {name} is not given (named params can only bind named parameters)"
        )));
    }
    drop(index);
    for (idx, v, name) in targets {
        let value = from_json(v).map_err(|e| e.context(format!("parameter {name}")))?;
        stmt.raw_bind_parameter(idx, value)
            .map_err(super::sqlite_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;
    use rusqlite::Connection;
    use serde_json::json;

    fn req(v: serde_json::Value) -> SqlRequest {
        serde_json::from_value(v).unwrap()
    }

    fn select(conn: &Connection, sql: &str, params: serde_json::Value) -> Result<Vec<Value>> {
        let r = req(json!({"sql": sql, "params": params}));
        let mut stmt = conn.prepare(&r.sql).unwrap();
        bind(&mut stmt, &r.params)?;
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        let row = rows.next().unwrap().unwrap();
        Ok((0..n).map(|i| row.get::<_, Value>(i).unwrap()).collect())
    }

    #[test]
    fn deserializes_all_forms() {
        assert_eq!(req(json!({"sql": "x"})).params, Params::None);
        assert_eq!(
            req(json!({"sql": "x", "params": null})).params,
            Params::None
        );
        assert_eq!(
            req(json!({"sql": "x", "params": [1]})).params,
            Params::Positional(vec![json!(1)])
        );
        assert!(matches!(
            req(json!({"sql": "x", "params": {"a": 1}})).params,
            Params::Named(_)
        ));
        let err = serde_json::from_value::<SqlRequest>(json!({"sql": "x", "params": 5}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("params must be"), "{err}");
        // Serialize round trip (the router forwards requests).
        let r = req(json!({"sql": "x", "params": {"a": [1]}}));
        assert_eq!(req(serde_json::to_value(&r).unwrap()), r);
    }

    #[test]
    fn positional_and_named_with_every_prefix() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            select(&conn, "SELECT ?, ?", json!([1, "two"])).unwrap(),
            vec![Value::Integer(1), Value::Text("two".into())]
        );
        assert_eq!(
            select(
                &conn,
                "SELECT :a, @b, $c, :a",
                json!({"a": 1.5, "@b": {"$blob": "AAE="}, "c": true})
            )
            .unwrap(),
            vec![
                Value::Real(1.5),
                Value::Blob(vec![0, 1]),
                Value::Integer(1),
                Value::Real(1.5)
            ]
        );
        assert_eq!(
            select(&conn, "SELECT ?", json!([{"$float": "-Infinity"}])).unwrap(),
            vec![Value::Real(f64::NEG_INFINITY)]
        );
        // SQLite turns a bound NaN into NULL.
        assert_eq!(
            select(&conn, "SELECT ?", json!([{"$float": "NaN"}])).unwrap(),
            vec![Value::Null]
        );
    }

    #[test]
    fn mismatches_are_invalid_params() {
        let conn = Connection::open_in_memory().unwrap();
        for (sql, params, needle) in [
            ("SELECT ?, ?", json!([1]), "2 parameter(s) but 1"),
            ("SELECT ?", json!([1, 2]), "1 parameter(s) but 2"),
            ("SELECT ?", json!(null), "no params"),
            ("SELECT :a", json!({"b": 1}), "no parameter named \"b\""),
            ("SELECT :a, :b", json!({"a": 1}), ":b is not given"),
            ("SELECT :a", json!({"a": 1, ":a": 2}), "more than once"),
            ("SELECT ?", json!({"a": 1}), "no parameter named"),
            ("SELECT ?", json!([[1]]), "array"),
        ] {
            let err = select(&conn, sql, params).unwrap_err();
            assert_eq!(err.code(), "invalid_params", "{sql}");
            assert!(err.message().contains(needle), "{sql}: {}", err.message());
        }
    }
}
