//! The differential test of the gather strategy ([`crate::gather`]): generated joins
//! (inner, left, self), subqueries (scalar, IN, EXISTS; correlated or not), compound SELECTs,
//! CTEs, queries without FROM and parameters, over the same random segments as the scatter
//! differential test, each answered by the monolith and by gathering (schema query, analysis,
//! per-segment row queries, merge database), compared under the same rules.

use serde_json::{json, Value as Json};
use trough_sqlite::Params;

use super::check::{check, Compare};
use super::data::{gen_data, Rng, SCHEMA};
use super::fixture::{open_ro, run_one, Fixture, Scatter};
use crate::gather::{self, MergeDb, Schema, SCHEMA_SQL};
use crate::MergeOptions;

/// A generated query with its comparison rule.
struct Generated {
    sql: String,
    params: Params,
    cmp: Compare,
}

/// Single-table predicates on `t` (the alias is substituted).
const T_PREDICATES: &[&str] = &[
    "{t}.a > 100",
    "{t}.g = 'a'",
    "{t}.c LIKE 'a%'",
    "{t}.b IS NULL",
    "{t}.h <> 0",
    "{t}.m = 1",
    "{t}.a % 3 = 0",
    "{t}.b > ?",
];

fn t_pred(rng: &mut Rng, alias: &str, params: &mut Vec<Json>) -> String {
    let p = rng.pick(T_PREDICATES).replace("{t}", alias);
    if p.contains('?') {
        params.push(json!(rng.range(-50, 50)));
    }
    p
}

fn unordered(sql: String, params: Vec<Json>) -> Generated {
    Generated {
        sql,
        params: if params.is_empty() {
            Params::None
        } else {
            Params::Positional(params)
        },
        cmp: Compare::default(),
    }
}

fn generate(rng: &mut Rng) -> Generated {
    let mut params = Vec::new();
    let n = rng.range(0, 40);
    let sql = match rng.below(21) {
        0 => format!(
            "SELECT t.id, t.g, u.k, u.v FROM t JOIN u ON u.w = t.a WHERE {}",
            t_pred(rng, "t", &mut params)
        ),
        1 => format!(
            "SELECT t.id, u.v, u.k FROM t LEFT JOIN u ON u.id = t.id AND u.w > {n} WHERE {}",
            t_pred(rng, "t", &mut params)
        ),
        2 => format!(
            "SELECT t.id FROM t LEFT JOIN u ON u.id = t.id WHERE u.id IS NULL AND {}",
            t_pred(rng, "t", &mut params)
        ),
        3 => format!("SELECT x.id AS xi, y.id AS yi FROM u x, u y WHERE x.w = y.w AND x.id < y.id AND x.w > {n}"),
        4 => format!(
            "SELECT id, a FROM t WHERE a > (SELECT avg(w) * {n} FROM u) AND {}",
            t_pred(rng, "t", &mut params)
        ),
        5 => format!(
            "SELECT id, (SELECT count(*) FROM u WHERE u.w = t.h + {}) AS n FROM t WHERE {}",
            n % 5,
            t_pred(rng, "t", &mut params)
        ),
        6 => format!(
            "SELECT id, g FROM t WHERE h IN (SELECT w FROM u WHERE k = 'q' AND v > {}) ",
            -n
        ),
        7 => format!(
            "SELECT id FROM t WHERE {}EXISTS (SELECT 1 FROM u WHERE u.w = t.a AND u.k IS NOT NULL)",
            if rng.chance(50) { "NOT " } else { "" }
        ),
        8 => {
            let op = *rng.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
            format!("SELECT h FROM t WHERE {} {op} SELECT w % 4 FROM u", t_pred(rng, "t", &mut params))
        }
        9 => {
            let op = *rng.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
            format!("SELECT g FROM t {op} SELECT k FROM u WHERE w > {n}")
        }
        10 => format!(
            "WITH s AS (SELECT h, count(*) AS n, sum(a) AS sa FROM t WHERE {} GROUP BY h) \
             SELECT s.h, s.n, s.sa, u.k FROM s JOIN u ON u.w = s.h + 2",
            t_pred(rng, "t", &mut params)
        ),
        11 => format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}) \
             SELECT i, (SELECT count(*) FROM u WHERE w = i) AS n FROM k",
            n + 1
        ),
        12 => {
            params.push(json!(n));
            "SELECT ? * 2 AS d, abs(-7) AS a, 'x' || 'y' AS s, typeof(1.5) AS ty, 7 / 2 AS q"
                .to_owned()
        }
        13 => format!(
            "SELECT u.k, count(*) AS n, total(t.b) AS tb FROM t JOIN u ON t.h = u.w % 5 \
             WHERE u.id < {} GROUP BY u.k",
            n * 3 + 5
        ),
        14 => format!(
            "SELECT t.c, u.k FROM t, u WHERE t.id = u.id AND {} AND u.v > 0",
            t_pred(rng, "t", &mut params)
        ),
        16 => format!(
            "SELECT * FROM t JOIN u USING (id) WHERE {}",
            t_pred(rng, "t", &mut params)
        ),
        17 => format!(
            "SELECT t.id, t.g, u.k FROM t NATURAL JOIN u WHERE u.w > {n} AND {}",
            t_pred(rng, "t", &mut params)
        ),
        18 => {
            let kind = *rng.pick(&["RIGHT", "FULL", "LEFT"]);
            // With AND, a filter on the null-supplying side must stay in the merge database.
            // Predicates that hold for NULL too: they tell a filter applied before the join
            // from one applied after it.
            let conn = *rng.pick(&["AND", "OR"]);
            let (side, other) = if rng.chance(50) { ("t", "u") } else { ("u", "t") };
            let pred = rng
                .pick(&["{s}.id IS NULL", "coalesce({s}.id, 0) % 3 = 0", "{s}.id IS NOT 7"])
                .replace("{s}", side);
            format!(
                "SELECT t.id AS ti, u.id AS ui, u.v FROM t {kind} JOIN u ON t.id = u.id + {n} \
                 WHERE {other}.id > 20 {conn} {pred}"
            )
        }
        19 => format!(
            "SELECT id, w, sum(w) OVER (ORDER BY id) AS run, rank() OVER (PARTITION BY k ORDER BY id) AS r \
             FROM u WHERE w > {n} ORDER BY id"
        ),
        _ => format!(
            "SELECT id, a FROM t WHERE a IN (SELECT w * 20 FROM u) AND {} ORDER BY id",
            t_pred(rng, "t", &mut params)
        ),
    };
    let ordered = sql.contains("ORDER BY id");
    let mut g = unordered(sql, params);
    g.cmp.ordered = ordered;
    g
}

/// Gathers `sql` over the segment connections, as the router does over HTTP.
fn run_gather(
    segments: &[rusqlite::Connection],
    sql: &str,
    params: &Params,
    opts: &MergeOptions,
) -> Scatter {
    let mut schemas = Vec::new();
    for (i, c) in segments.iter().enumerate() {
        let rows = match run_one(c, SCHEMA_SQL, &Params::None) {
            Ok((_, rows)) => rows,
            Err(e) => return Scatter::Failed(e),
        };
        schemas.push((format!("seg{i:02}"), Schema::from_rows(&rows).unwrap()));
    }
    let (loads, schema) = match gather::prepare(sql, &schemas) {
        Ok(p) => p,
        Err(e) if e.code() == trough_types::error::codes::UNSUPPORTED_SCATTER_QUERY => {
            return Scatter::Refused(e.to_string())
        }
        Err(e) => return Scatter::Failed(e.to_string()),
    };
    let result = (|| {
        let mut db = MergeDb::create(&schema, opts)?;
        for c in segments {
            for l in &loads {
                let (_, rows) = run_one(c, &l.segment_sql, &Params::None)
                    .map_err(trough_types::Error::internal)?;
                db.insert(&l.table, &l.columns, &mut rows.into_iter().map(Ok))?;
            }
        }
        let rows = db.finish(&schema, sql, params)?;
        let names = rows.columns().to_vec();
        Ok::<_, trough_types::Error>((names, rows.collect::<Result<Vec<_>, _>>()?))
    })();
    match result {
        Ok((names, rows)) => Scatter::Rows(names, rows),
        Err(e) => Scatter::Failed(e.to_string()),
    }
}

#[test]
fn differential_gather_matches_monolith() {
    const SEGMENTS: usize = 12;
    const QUERIES: usize = 160;
    let mut rng = Rng::new(0x9a7e_2026_1129);
    let fx = Fixture::new(SEGMENTS, SCHEMA);
    fx.insert_all(&gen_data(&mut rng, SEGMENTS));
    let segs = fx.open_segments();
    let mono = open_ro(&fx.mono);
    let opts = MergeOptions {
        temp_dir: Some(fx.dir.path().to_owned()),
        memory_budget_bytes: 1024 * 1024,
        ..MergeOptions::default()
    };
    let (mut ran, mut refused, mut empty) = (0, 0, 0);
    let mut failures = Vec::new();
    for i in 0..QUERIES {
        let q = generate(&mut rng);
        let expected = run_one(&mono, &q.sql, &q.params);
        match (expected, run_gather(&segs, &q.sql, &q.params, &opts)) {
            (_, Scatter::Refused(why)) => {
                refused += 1;
                failures.push(format!("#{i} {}\n    refused: {why}", q.sql));
            }
            (Err(e), Scatter::Failed(f)) if e == f => {}
            (Err(e), got) => failures.push(format!(
                "#{i} {}\n    monolith failed ({e}) but gather {}",
                q.sql,
                match got {
                    Scatter::Failed(f) => format!("failed differently: {f}"),
                    _ => "answered".to_owned(),
                }
            )),
            (Ok(_), Scatter::Failed(f)) => {
                failures.push(format!("#{i} {}\n    gather failed: {f}", q.sql))
            }
            (Ok((mnames, mrows)), Scatter::Rows(names, rows)) => {
                ran += 1;
                if mrows.is_empty() {
                    empty += 1;
                }
                if mnames != names {
                    failures.push(format!(
                        "#{i} {}\n    column names {names:?}, expected {mnames:?}",
                        q.sql
                    ));
                } else if let Err(why) = check(q.cmp, &mrows, None, &rows) {
                    failures.push(format!("#{i} {} {:?}\n    {why}", q.sql, q.params));
                }
            }
        }
    }
    eprintln!("differential gather: {QUERIES} queries, {ran} compared ({empty} with no rows), {refused} refused");
    assert!(
        failures.is_empty(),
        "{} of {QUERIES} gathered queries differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        empty * 4 <= ran,
        "too many queries without rows: {empty} of {ran}"
    );
}
