//! The query generator: random plain, sorted, aggregate, DISTINCT and second-table queries, each
//! with the rule its answers are compared by ([`Compare`]). It runs no query.

use serde_json::Value as Json;
use trough_sqlite::Params;

use super::check::Compare;
use super::data::Rng;

/// A generated query with its comparison rule.
pub(super) struct Generated {
    pub sql: String,
    pub params: Params,
    pub cmp: Compare,
    /// The same query without LIMIT/OFFSET (for `any_rows`).
    pub unlimited: Option<String>,
}

const SCALAR_EXPRS: &[&str] = &[
    "id",
    "g",
    "h",
    "a",
    "b",
    "c",
    "a + h",
    "b * 2",
    "abs(a)",
    "lower(g)",
    "length(c)",
    "coalesce(a, 0)",
    "a % 7",
    "round(b, 1)",
    "c || g",
    "CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END",
    "substr(c, 1, 2)",
    "CAST(a AS TEXT)",
    "b IS NULL",
    "iif(h > 0, a, b)",
    "upper(c)",
    "-a",
    "a / 3",
    "(a + 1) * h",
    "t.b",
];

const PREDICATES: &[&str] = &[
    "a > 100",
    "a BETWEEN -200 AND 300",
    "g = 'a'",
    "g IN ('a', 'b', 'A')",
    "c LIKE 'a%'",
    "b IS NULL",
    "h <> 0",
    "b > 10.5",
    "c > 'b'",
    "a % 2 = 0",
    "g IS NOT NULL",
    "m = 1",
    "length(c) > 3",
    "h = 1 OR a < 0",
    "NOT (a > 0)",
    "c GLOB '*a*'",
];

const GROUP_KEYS: &[(&str, bool)] = &[
    ("g", false),
    ("h", false),
    ("h % 2", false),
    ("substr(c, 1, 1)", false),
    ("length(c)", false),
    ("g COLLATE NOCASE", true),
    ("m", true),
    ("a > 0", false),
    ("c", false),
];

const AGGREGATES: &[(&str, bool)] = &[
    ("count(*)", false),
    ("count(a)", false),
    ("count(DISTINCT g)", false),
    ("count(DISTINCT m)", false),
    ("sum(a)", false),
    ("sum(b)", false),
    ("total(a)", false),
    ("total(b)", false),
    ("avg(a)", false),
    ("avg(b)", false),
    ("min(a)", false),
    ("max(b)", false),
    ("min(c)", false),
    ("max(g)", false),
    ("min(m)", true),
    ("max(m)", true),
    ("sum(DISTINCT h)", false),
    ("avg(DISTINCT a)", false),
    ("count(*) FILTER (WHERE a > 0)", false),
    ("sum(a) / count(*)", false),
    ("round(avg(b), 2)", false),
    ("max(a) - min(a)", false),
    ("sum(a) + 1", false),
    ("total(b) * 2", false),
    ("min(c COLLATE NOCASE)", true),
    ("count(DISTINCT g COLLATE NOCASE)", false),
    ("sum(m)", false),
    ("count(DISTINCT c) + count(DISTINCT g)", false),
    ("max(length(c))", false),
    ("coalesce(sum(a), 0)", false),
    ("sum(h) FILTER (WHERE b > 0)", false),
    ("min(b) * max(h)", false),
];

fn where_clause(rng: &mut Rng, params: &mut Vec<Json>) -> String {
    match rng.below(10) {
        0..=2 => String::new(),
        3 => {
            params.push(Json::from(rng.range(-500, 500)));
            " WHERE a > ?".to_owned()
        }
        4 => {
            let p1 = *rng.pick(PREDICATES);
            let p2 = *rng.pick(PREDICATES);
            format!(" WHERE ({p1}) AND ({p2})")
        }
        _ => format!(" WHERE {}", rng.pick(PREDICATES)),
    }
}

fn limit_clause(rng: &mut Rng) -> (String, bool) {
    match rng.below(6) {
        0 => (format!(" LIMIT {}", rng.range(0, 30)), true),
        1 => (
            format!(" LIMIT {} OFFSET {}", rng.range(1, 25), rng.range(0, 40)),
            true,
        ),
        2 => (
            format!(" LIMIT {}, {}", rng.range(0, 10), rng.range(1, 10)),
            true,
        ),
        _ => (String::new(), false),
    }
}

fn gen_plain(rng: &mut Rng) -> Generated {
    let mut params = Vec::new();
    let n = 1 + rng.below(4);
    let mut cols: Vec<String> = (0..n).map(|_| rng.pick(SCALAR_EXPRS).to_string()).collect();
    if rng.chance(10) {
        cols = vec!["*".to_owned()];
    }
    if rng.chance(15) {
        cols[0] = if cols[0] == "*" {
            "id AS x1".to_owned()
        } else {
            format!("{} AS x1", cols[0])
        };
    }
    let select = format!("SELECT {} FROM t", cols.join(", "));
    let wh = where_clause(rng, &mut params);
    let (limit, limited) = limit_clause(rng);
    let params = Params::Positional(params);
    if limited {
        Generated {
            sql: format!("{select}{wh}{limit}"),
            unlimited: Some(format!("{select}{wh}")),
            params,
            cmp: Compare {
                any_rows: true,
                ..Compare::default()
            },
        }
    } else {
        Generated {
            sql: format!("{select}{wh}"),
            unlimited: None,
            params,
            cmp: Compare::default(),
        }
    }
}

fn gen_sorted(rng: &mut Rng) -> Generated {
    let mut params = Vec::new();
    let n = 1 + rng.below(3);
    let cols: Vec<String> = (0..n).map(|_| rng.pick(SCALAR_EXPRS).to_string()).collect();
    let star = rng.chance(10);
    let select = if star {
        "SELECT *".to_owned()
    } else {
        format!("SELECT {}", cols.join(", "))
    };
    let wh = where_clause(rng, &mut params);
    let (limit, limited) = limit_clause(rng);
    let dir = |rng: &mut Rng| *rng.pick(&["", " DESC", " ASC", " DESC NULLS FIRST", " NULLS LAST"]);
    let keys_pool = [
        "a",
        "b",
        "c",
        "g",
        "h",
        "m",
        "c COLLATE NOCASE",
        "length(c)",
        "b * h",
        "c COLLATE RTRIM",
        "lower(g)",
        "m DESC",
    ];
    if limited || rng.chance(60) {
        // Fully determined order: any keys, then the unique id.
        let k = 1 + rng.below(3);
        let mut terms: Vec<String> = (0..k)
            .map(|_| format!("{}{}", rng.pick(&keys_pool).replace(" DESC", ""), dir(rng)))
            .collect();
        if !star && rng.chance(30) {
            terms[0] = format!("1{}", dir(rng));
        }
        terms.push(format!("id{}", dir(rng)));
        Generated {
            sql: format!("{select} FROM t{wh} ORDER BY {}{limit}", terms.join(", ")),
            unlimited: None,
            params: Params::Positional(params),
            cmp: Compare {
                ordered: true,
                loose: false,
                ..Compare::default()
            },
        }
    } else {
        // Ties possible: order by the first result column.
        let (cols_sql, key): (String, &'static [(usize, bool)]) = if rng.chance(50) {
            (format!("{select} FROM t{wh} ORDER BY 1"), &[(0, false)])
        } else {
            (format!("{select} FROM t{wh} ORDER BY 1 DESC"), &[(0, true)])
        };
        Generated {
            sql: cols_sql,
            unlimited: None,
            params: Params::Positional(params),
            cmp: Compare {
                sorted_on: if star { None } else { Some(key) },
                ..Compare::default()
            },
        }
    }
}

fn gen_aggregate(rng: &mut Rng) -> Generated {
    let mut params = Vec::new();
    let mut loose = false;
    let nkeys = rng.below(3);
    let mut keys = Vec::new();
    for _ in 0..nkeys {
        let (k, l) = *rng.pick(GROUP_KEYS);
        if !keys.contains(&k) {
            keys.push(k);
            loose |= l;
        }
    }
    let naggs = 1 + rng.below(4);
    let mut aggs = Vec::new();
    for _ in 0..naggs {
        let (a, l) = *rng.pick(AGGREGATES);
        aggs.push(a.to_owned());
        loose |= l;
    }
    let mut items: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    items.extend(aggs.iter().cloned());
    // An expression of a key (not of a key whose values have several spellings: which one a
    // group shows is arbitrary on both sides).
    if rng.chance(15) && !keys.is_empty() && !GROUP_KEYS.iter().any(|(k, l)| *k == keys[0] && *l) {
        items.push(format!("upper({}) || '!'", keys[0]));
    }
    if rng.chance(15) {
        items.push("count(*) AS n".to_owned());
    }
    let wh = where_clause(rng, &mut params);
    let group = if keys.is_empty() {
        String::new()
    } else if rng.chance(20) {
        let ords: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        format!(" GROUP BY {}", ords.join(", "))
    } else {
        format!(" GROUP BY {}", keys.join(", "))
    };
    let having = if rng.chance(30) {
        match rng.below(5) {
            0 => format!(" HAVING count(*) > {}", rng.range(0, 60)),
            1 => format!(" HAVING sum(a) > {}", rng.range(-2000, 2000)),
            2 => {
                params.push(Json::from(rng.range(0, 40)));
                " HAVING count(*) > ?".to_owned()
            }
            3 if keys.contains(&"h") => " HAVING h > 0 AND max(b) < 90".to_owned(),
            _ => " HAVING min(a) < 0".to_owned(),
        }
    } else {
        String::new()
    };
    let distinct = if rng.chance(10) { "DISTINCT " } else { "" };
    let mut ordered = false;
    let mut order = String::new();
    let (limit, limited) = limit_clause(rng);
    if !keys.is_empty() && (limited || rng.chance(50)) {
        // Order by every key: one row per group, so the order is determined (with a first
        // aggregate key sometimes; ties are broken by the keys).
        let mut terms = Vec::new();
        if rng.chance(30) {
            terms.push(format!("{}{}", keys.len() + 1, rng.pick(&["", " DESC"])));
        }
        for i in 1..=keys.len() {
            terms.push(format!("{i}{}", rng.pick(&["", " DESC", " NULLS LAST"])));
        }
        order = format!(" ORDER BY {}", terms.join(", "));
        ordered = true;
    }
    if !keys.is_empty() && order.is_empty() && rng.chance(25) {
        // An aggregate that is not a result column, then every key.
        let ords: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        order = format!(" ORDER BY sum(a) DESC, {}", ords.join(", "));
        ordered = true;
    }
    if keys.len() == 1 && rng.chance(30) {
        // Result aliases used by GROUP BY, HAVING and ORDER BY.
        let key = keys[0];
        items[0] = format!("{key} AS k1");
        let select = format!(
            "SELECT {distinct}{}, count(*) AS n1 FROM t",
            items.join(", ")
        );
        let sql = format!("{select}{wh} GROUP BY k1 HAVING n1 > 0 ORDER BY n1 DESC, k1{limit}");
        return Generated {
            sql,
            unlimited: None,
            params: Params::Positional(
                params
                    .into_iter()
                    .take(usize::from(!wh.is_empty() && wh.contains('?')))
                    .collect(),
            ),
            cmp: Compare {
                ordered: !loose,
                loose,
                ..Compare::default()
            },
        };
    }
    let select = format!("SELECT {distinct}{} FROM t", items.join(", "));
    let any_rows = limited && order.is_empty();
    let sql = format!("{select}{wh}{group}{having}{order}{limit}");
    Generated {
        unlimited: any_rows.then(|| format!("{select}{wh}{group}{having}")),
        sql,
        params: Params::Positional(params),
        cmp: Compare {
            ordered: ordered && !loose,
            any_rows,
            loose,
            sorted_on: None,
        },
    }
}

fn gen_distinct(rng: &mut Rng) -> Generated {
    let mut params = Vec::new();
    let pool = [
        "g",
        "h",
        "c",
        "a % 3",
        "m",
        "lower(g)",
        "b > 0",
        "substr(c, 1, 1)",
        "g COLLATE NOCASE",
    ];
    let n = 1 + rng.below(3);
    let mut cols = Vec::new();
    let mut loose = false;
    for _ in 0..n {
        let c = *rng.pick(&pool);
        loose |= c == "m" || c.contains("NOCASE");
        cols.push(c);
    }
    let wh = where_clause(rng, &mut params);
    let (limit, limited) = limit_clause(rng);
    let select = format!("SELECT DISTINCT {} FROM t{wh}", cols.join(", "));
    let ordered = limited || rng.chance(50);
    if ordered {
        let terms: Vec<String> = (1..=n)
            .map(|i| format!("{i}{}", rng.pick(&["", " DESC"])))
            .collect();
        Generated {
            sql: format!("{select} ORDER BY {}{limit}", terms.join(", ")),
            unlimited: None,
            params: Params::Positional(params),
            cmp: Compare {
                ordered: !loose,
                loose,
                ..Compare::default()
            },
        }
    } else {
        Generated {
            sql: select,
            unlimited: None,
            params: Params::Positional(params),
            cmp: Compare {
                loose,
                ..Compare::default()
            },
        }
    }
}

fn gen_u(rng: &mut Rng) -> Generated {
    let qs = [
        (
            "SELECT k, sum(v), count(*), avg(w) FROM u GROUP BY k ORDER BY 1",
            true,
        ),
        (
            "SELECT w % 5 AS r, total(v), max(k) FROM u WHERE v > 0 GROUP BY r ORDER BY r",
            true,
        ),
        ("SELECT * FROM u WHERE w > 40 ORDER BY v DESC, id", true),
        ("SELECT count(*), sum(w), min(v), max(v) FROM u", true),
        ("SELECT DISTINCT k FROM u ORDER BY k", true),
        ("SELECT k, w FROM u WHERE k = 'p' AND w < 5", false),
    ];
    let (q, ordered) = *rng.pick(&qs);
    Generated {
        sql: q.to_owned(),
        unlimited: None,
        params: Params::None,
        cmp: Compare {
            ordered,
            ..Compare::default()
        },
    }
}

pub(super) fn generate(rng: &mut Rng) -> Generated {
    match rng.below(20) {
        0..=3 => gen_plain(rng),
        4..=8 => gen_sorted(rng),
        9..=16 => gen_aggregate(rng),
        17..=18 => gen_distinct(rng),
        _ => gen_u(rng),
    }
}
