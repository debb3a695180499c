//! Generated queries for the constructs issue 9 found answered wrongly or not at all: DISTINCT
//! aggregates without GROUP BY over no matching row (one row, SQLite's empty values), integer
//! constants where a segment GROUP BY would read them as column numbers, and result aliases that
//! are also column names used in WHERE / GROUP BY / HAVING (SQLite takes the column). Each with
//! the rule its answers are compared by. It runs no query.

use serde_json::Value as Json;
use trough_sqlite::Params;

use super::check::Compare;
use super::data::Rng;
use super::queries::Generated;

const DISTINCT_AGGS: &[&str] = &[
    "count(DISTINCT a)",
    "sum(DISTINCT h)",
    "avg(DISTINCT b)",
    "min(DISTINCT c)",
    "max(DISTINCT a)",
    "total(DISTINCT b)",
    "count(DISTINCT g)",
    "count(*)",
    "sum(a)",
    "max(b)",
];

/// Predicates that match nothing, or something.
const MAYBE_EMPTY: &[&str] = &[
    "a > 5000",
    "id < 0",
    "g = 'no such'",
    "b IS NULL AND b IS NOT NULL",
    "a > 900",
    "h = 3",
];

const CONSTANT_QUERIES: &[(&str, bool)] = &[
    ("SELECT count(DISTINCT 8) FROM t", true),
    ("SELECT count(DISTINCT 8), count(*) FROM t", true),
    ("SELECT 7 AS k, count(*) FROM t GROUP BY k", true),
    ("SELECT 7 AS k FROM t GROUP BY k", true),
    (
        "SELECT sum(DISTINCT 2), count(DISTINCT -1), total(DISTINCT 1.5) FROM t",
        true,
    ),
    ("SELECT DISTINCT 3 FROM t", true),
    ("SELECT 'x' AS s, count(*) FROM t GROUP BY s", true),
    ("SELECT count(*) FROM t GROUP BY 'x'", true),
    // `a` and `h` are columns: GROUP BY groups by the column, as in SQLite.
    ("SELECT 7 AS a FROM t GROUP BY a", false),
    (
        "SELECT 7 AS h, count(*) FROM t GROUP BY h ORDER BY 2, 1",
        false,
    ),
];

/// (query, order determined by ORDER BY)
const ALIAS_QUERIES: &[(&str, bool)] = &[
    ("SELECT a AS b FROM t WHERE b > 10.5", false),
    ("SELECT a AS b FROM t WHERE b > 1000", false),
    ("SELECT h + 1 AS a FROM t WHERE a > 0 ORDER BY id", true),
    ("SELECT c AS g FROM t WHERE g = 'a' ORDER BY id", true),
    (
        "SELECT h AS a, count(*) FROM t WHERE a > 0 GROUP BY h ORDER BY 1",
        true,
    ),
    (
        "SELECT upper(g) AS c, count(*) FROM t WHERE c > 'b' GROUP BY 1 ORDER BY 1",
        true,
    ),
    ("SELECT a AS x FROM t WHERE x > 990 ORDER BY x, id", true),
    ("SELECT a AS h FROM t WHERE h > 1 AND a > 990", false),
];

pub(super) fn gen_edge(rng: &mut Rng) -> Generated {
    match rng.below(3) {
        0 => {
            let n = 1 + rng.below(3);
            let aggs: Vec<&str> = (0..n).map(|_| *rng.pick(DISTINCT_AGGS)).collect();
            let mut params = Vec::new();
            let wh = if rng.chance(20) {
                params.push(Json::from(rng.range(900, 5000)));
                " WHERE a > ?".to_owned()
            } else {
                format!(" WHERE {}", rng.pick(MAYBE_EMPTY))
            };
            Generated {
                sql: format!("SELECT {} FROM t{wh}", aggs.join(", ")),
                params: Params::Positional(params),
                cmp: Compare {
                    ordered: true,
                    ..Compare::default()
                },
                unlimited: None,
            }
        }
        1 => {
            let (q, ordered) = *rng.pick(CONSTANT_QUERIES);
            let wh = if rng.chance(40) {
                format!(" WHERE {}", rng.pick(MAYBE_EMPTY))
            } else {
                String::new()
            };
            // The WHERE goes before GROUP BY / ORDER BY.
            let sql = match q.find(" GROUP BY") {
                Some(i) => format!("{}{wh}{}", &q[..i], &q[i..]),
                None => format!("{q}{wh}"),
            };
            Generated {
                sql,
                params: Params::None,
                cmp: Compare {
                    ordered,
                    ..Compare::default()
                },
                unlimited: None,
            }
        }
        _ => {
            let (q, ordered) = *rng.pick(ALIAS_QUERIES);
            Generated {
                sql: q.to_owned(),
                params: Params::None,
                cmp: Compare {
                    ordered,
                    ..Compare::default()
                },
                unlimited: None,
            }
        }
    }
}
