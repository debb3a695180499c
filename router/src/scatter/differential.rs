//! The differential test: random data split over many segment files plus one monolithic database
//! holding every row; hundreds of generated queries answered both ways must agree.
//!
//! Comparison rules (see also `docs/decisions/0006-scatter-merge.md`):
//! - column names must be equal;
//! - REAL values agree within a relative 1e-9 (absolute 1e-9 near zero): the merge adds partial
//!   sums in a different order than one database does;
//! - a query whose ORDER BY determines the order (the generator appends a unique key) is compared
//!   row by row; an ORDER BY that may have ties is compared as a multiset, and the scatter answer
//!   is checked to be sorted; without ORDER BY, as multisets;
//! - LIMIT without ORDER BY may return any rows: the scatter answer must have the same number of
//!   rows, each a row of the full (unlimited) monolithic answer;
//! - "loose" queries (grouping or DISTINCT over values SQLite considers equal but that print
//!   differently, like `1` and `1.0`, or 'a' and 'A' under NOCASE) return an arbitrary
//!   representative on both sides: there, numbers compare by value and text case-insensitively.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value as Json;
use trough_core::sql::value::to_json;
use trough_core::sql::{bind, Access, Params};

use super::{merge, plan, MergeOptions, Row, SegmentStream};

/// A small deterministic random generator (SplitMix64).
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Segment files and the monolithic database, in a temporary directory.
pub(super) struct Fixture {
    pub dir: tempfile::TempDir,
    pub segments: Vec<PathBuf>,
    pub mono: PathBuf,
}

impl Fixture {
    /// Creates `n` segments with `schema`, and the monolith; `rows(i)` says which segment row
    /// `i` goes to.
    pub fn new(n: usize, schema: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let segments: Vec<PathBuf> = (0..n)
            .map(|i| dir.path().join(format!("seg{i:02}.sqlite")))
            .collect();
        let mono = dir.path().join("mono.sqlite");
        for p in segments.iter().chain(std::iter::once(&mono)) {
            let c = Connection::open(p).unwrap();
            c.execute_batch(schema).unwrap();
        }
        Self {
            dir,
            segments,
            mono,
        }
    }

    /// Inserts one row (SQL `INSERT` text) into segment `seg` and into the monolith.
    pub fn insert_all(&self, rows: &[(usize, String)]) {
        let conns: Vec<Connection> = self
            .segments
            .iter()
            .map(|p| Connection::open(p).unwrap())
            .collect();
        let mono = Connection::open(&self.mono).unwrap();
        for c in conns.iter().chain(std::iter::once(&mono)) {
            c.execute_batch("BEGIN").unwrap();
        }
        for (seg, sql) in rows {
            conns[*seg].execute_batch(sql).unwrap();
            mono.execute_batch(sql).unwrap();
        }
        for c in &conns {
            c.execute_batch("COMMIT").unwrap();
        }
        mono.execute_batch("COMMIT").unwrap();
    }

    pub fn open_segments(&self) -> Vec<Connection> {
        self.segments.iter().map(|p| open_ro(p)).collect()
    }
}

fn open_ro(p: &Path) -> Connection {
    trough_core::sql::open(p, Access::ReadOnlyImmutable).unwrap()
}

/// Column names and rows of `sql` on one connection.
pub(super) fn run_one(
    conn: &Connection,
    sql: &str,
    params: &Params,
) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    bind(&mut stmt, params).map_err(|e| e.to_string())?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let n = names.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| e.to_string())? {
        out.push((0..n).map(|i| to_json(r.get_ref(i).unwrap())).collect());
    }
    Ok((names, out))
}

/// The outcome of a scatter run.
pub(super) enum Scatter {
    Refused(String),
    Failed(String),
    Rows(Vec<String>, Vec<Row>),
}

/// Plans `sql`, runs the segment SQL on every segment, merges.
pub(super) fn run_scatter(
    segments: &[Connection],
    sql: &str,
    params: &Params,
    opts: &MergeOptions,
) -> Scatter {
    let p = match plan(sql) {
        Ok(p) => p,
        Err(e) => return Scatter::Refused(e.to_string()),
    };
    let mut streams = Vec::new();
    let mut columns = None;
    for (i, c) in segments.iter().enumerate() {
        match run_one(c, p.segment_sql(), params) {
            Ok((names, rows)) => {
                columns.get_or_insert(names);
                streams.push(SegmentStream::new(
                    format!("seg{i:02}"),
                    Box::new(rows.into_iter().map(Ok)),
                ));
            }
            Err(e) => return Scatter::Failed(e),
        }
    }
    let columns = columns.unwrap_or_default();
    match merge(&p, params, &columns, streams, opts) {
        Ok(m) => {
            let names = m.columns().to_vec();
            match m.collect::<Result<Vec<_>, _>>() {
                Ok(rows) => Scatter::Rows(names, rows),
                Err(e) => Scatter::Failed(e.to_string()),
            }
        }
        Err(e) => Scatter::Failed(e.to_string()),
    }
}

/// How to compare two answers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Compare {
    /// Row order is fully determined by the query.
    pub ordered: bool,
    /// ORDER BY with possible ties on these result columns (0-based, with desc flags): compare as
    /// multisets and check the scatter answer is sorted.
    pub sorted_on: Option<&'static [(usize, bool)]>,
    /// LIMIT without ORDER BY: any rows of the full answer.
    pub any_rows: bool,
    /// Arbitrary representatives: 1 = 1.0, 'a' = 'A'.
    pub loose: bool,
}

fn float_of(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn values_equal(a: &Json, b: &Json, loose: bool) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (xf, yf) = (x.is_f64(), y.is_f64());
            if xf != yf && !loose {
                return false;
            }
            if !xf && !yf {
                return x == y;
            }
            let (p, q) = (float_of(a).unwrap(), float_of(b).unwrap());
            p == q || (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0)
        }
        (Json::String(x), Json::String(y)) if loose => x.eq_ignore_ascii_case(y),
        _ => a == b,
    }
}

fn rows_equal(a: &Row, b: &Row, loose: bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y, loose))
}

/// A sort key for multiset comparison: floats rounded, loose values folded.
fn sort_key(r: &Row, loose: bool) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|v| match v {
            Json::Number(n) if n.is_f64() || loose => {
                format!("n{:.6e}", n.as_f64().unwrap())
            }
            Json::String(s) if loose => format!("s{}", s.to_ascii_lowercase()),
            other => other.to_string(),
        })
        .collect();
    parts.join("\u{1}")
}

fn multiset_equal(a: &[Row], b: &[Row], loose: bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a: Vec<&Row> = a.iter().collect();
    let mut b: Vec<&Row> = b.iter().collect();
    a.sort_by_cached_key(|r| sort_key(r, loose));
    b.sort_by_cached_key(|r| sort_key(r, loose));
    a.iter().zip(&b).all(|(x, y)| rows_equal(x, y, loose))
}

/// Compares a scatter answer with the monolith's; `full` is the monolith's answer without LIMIT
/// (for `any_rows`).
pub(super) fn check(
    cmp: Compare,
    mono: &[Row],
    full: Option<&[Row]>,
    got: &[Row],
) -> Result<(), String> {
    if cmp.any_rows {
        let full = full.expect("full answer");
        if got.len() != mono.len() {
            return Err(format!("{} rows, expected {}", got.len(), mono.len()));
        }
        let mut pool: Vec<&Row> = full.iter().collect();
        for r in got {
            match pool.iter().position(|f| rows_equal(f, r, cmp.loose)) {
                Some(i) => {
                    pool.swap_remove(i);
                }
                None => return Err(format!("row {r:?} is not in the full answer")),
            }
        }
        return Ok(());
    }
    if cmp.ordered {
        if got.len() != mono.len() {
            return Err(format!("{} rows, expected {}", got.len(), mono.len()));
        }
        for (i, (g, m)) in got.iter().zip(mono).enumerate() {
            if !rows_equal(g, m, cmp.loose) {
                return Err(format!("row {i}: got {g:?}, expected {m:?}"));
            }
        }
        return Ok(());
    }
    if !multiset_equal(mono, got, cmp.loose) {
        return Err(format!(
            "different rows: got {} rows, expected {}",
            got.len(),
            mono.len()
        ));
    }
    if let Some(keys) = cmp.sorted_on {
        for w in got.windows(2) {
            for &(col, desc) in keys {
                let a = trough_core::sql::value::from_json(&w[0][col]).unwrap();
                let b = trough_core::sql::value::from_json(&w[1][col]).unwrap();
                let mut o = super::compare(&a, &b, super::Collation::Binary);
                if desc {
                    o = o.reverse();
                }
                match o {
                    std::cmp::Ordering::Less => break,
                    std::cmp::Ordering::Equal => continue,
                    std::cmp::Ordering::Greater => {
                        return Err(format!("not sorted: {:?} before {:?}", w[0], w[1]))
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data

const SCHEMA: &str = "
CREATE TABLE t(id INTEGER NOT NULL, g TEXT, h INTEGER, a INTEGER, b REAL, c TEXT, m);
CREATE TABLE u(id INTEGER NOT NULL, k TEXT, v REAL, w INTEGER);
";

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn gen_data(rng: &mut Rng, nseg: usize) -> Vec<(usize, String)> {
    // Segments 3 and 7 stay empty; the others get skewed shares.
    let weights: Vec<usize> = (0..nseg)
        .map(|i| if i == 3 || i == 7 { 0 } else { 1 + (i * 7) % 5 })
        .collect();
    let total: usize = weights.iter().sum();
    let pick_seg = |rng: &mut Rng| {
        let mut x = rng.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        0
    };
    let gs = ["'a'", "'b'", "'c'", "'A'", "'B'", "'ab'", "''", "NULL"];
    let cs = [
        "'apple'", "'Apple'", "'banana'", "'cherry'", "'x'", "'12'", "' a '", "'a  '", "'a'",
        "'zebra'", "'Zoo'", "'é'", "NULL",
    ];
    let mut rows = Vec::new();
    for id in 1..=2600i64 {
        let g = if rng.chance(10) {
            "NULL"
        } else {
            *rng.pick(&gs)
        };
        let h = if rng.chance(8) {
            "NULL".to_owned()
        } else {
            rng.range(-2, 3).to_string()
        };
        let a = if rng.chance(10) {
            "NULL".to_owned()
        } else {
            rng.range(-1000, 1000).to_string()
        };
        let b = match rng.below(10) {
            0 => "NULL".to_owned(),
            1 => format!("{}.0", rng.range(-5, 5)),
            _ => format!("{:.2}", rng.range(-10000, 10000) as f64 / 100.0),
        };
        let c = *rng.pick(&cs);
        let m = match rng.below(8) {
            0 => "NULL".to_owned(),
            1 => format!("{}.0", rng.range(0, 3)),
            2 => rng.range(0, 3).to_string(),
            3 => "2.5".to_owned(),
            4 => sql_text(rng.pick::<&str>(&["1", "x", "y", "X"])),
            5 => "X'01'".to_owned(),
            6 => "X'0102'".to_owned(),
            _ => rng.range(-3, 3).to_string(),
        };
        let seg = pick_seg(rng);
        rows.push((
            seg,
            format!("INSERT INTO t VALUES ({id}, {g}, {h}, {a}, {b}, {c}, {m});"),
        ));
    }
    for id in 1..=400i64 {
        let k = *rng.pick(&["'p'", "'q'", "'r'", "NULL"]);
        let v = if rng.chance(10) {
            "NULL".to_owned()
        } else {
            format!("{:.3}", rng.range(-5000, 5000) as f64 / 1000.0)
        };
        let w = rng.range(0, 50);
        rows.push((
            pick_seg(rng),
            format!("INSERT INTO u VALUES ({id}, {k}, {v}, {w});"),
        ));
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Queries

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
        cols[0] = format!("{} AS x1", cols[0].replace('*', "id"));
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

fn generate(rng: &mut Rng) -> Generated {
    match rng.below(20) {
        0..=3 => gen_plain(rng),
        4..=8 => gen_sorted(rng),
        9..=16 => gen_aggregate(rng),
        17..=18 => gen_distinct(rng),
        _ => gen_u(rng),
    }
}

#[test]
fn differential_scatter_matches_monolith() {
    const SEGMENTS: usize = 12;
    const QUERIES: usize = 600;
    let mut rng = Rng::new(0x7f0c_4a11_2026);
    let fx = Fixture::new(SEGMENTS, SCHEMA);
    fx.insert_all(&gen_data(&mut rng, SEGMENTS));
    let segs = fx.open_segments();
    let mono = open_ro(&fx.mono);
    let opts = MergeOptions {
        temp_dir: Some(fx.dir.path().to_owned()),
        memory_budget_bytes: 1024 * 1024,
        ..MergeOptions::default()
    };
    let (mut ran, mut refused, mut both_failed) = (0, 0, 0);
    let mut by_strategy = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    let mut refusals = Vec::new();
    for i in 0..QUERIES {
        let q = generate(&mut rng);
        if let Ok(p) = plan(&q.sql) {
            *by_strategy
                .entry(format!("{:?}", p.strategy()))
                .or_insert(0) += 1;
        }
        let expected = run_one(&mono, &q.sql, &q.params);
        let got = run_scatter(&segs, &q.sql, &q.params, &opts);
        match (expected, got) {
            (_, Scatter::Refused(why)) => {
                refused += 1;
                refusals.push(format!("{}\n    -> {why}", q.sql));
            }
            (Err(e), Scatter::Failed(f)) => {
                both_failed += 1;
                if e != f {
                    failures.push(format!(
                        "#{i} {}\n    monolith error: {e}\n    scatter error: {f}",
                        q.sql
                    ));
                }
            }
            (Err(e), Scatter::Rows(..)) => failures.push(format!(
                "#{i} {}\n    monolith failed ({e}) but scatter answered",
                q.sql
            )),
            (Ok(_), Scatter::Failed(f)) => {
                failures.push(format!("#{i} {}\n    scatter failed: {f}", q.sql))
            }
            (Ok((mnames, mrows)), Scatter::Rows(names, rows)) => {
                ran += 1;
                if mnames != names {
                    failures.push(format!(
                        "#{i} {}\n    column names {names:?}, expected {mnames:?}",
                        q.sql
                    ));
                    continue;
                }
                let full = q
                    .unlimited
                    .as_ref()
                    .map(|u| run_one(&mono, u, &q.params).expect("unlimited").1);
                if let Err(why) = check(q.cmp, &mrows, full.as_deref(), &rows) {
                    failures.push(format!("#{i} {} {:?}\n    {why}", q.sql, q.params));
                }
            }
        }
    }
    eprintln!(
        "differential: {QUERIES} generated queries: {ran} planned and compared, {both_failed} \
         failed on both sides, {refused} refused by the planner; strategies: {by_strategy:?}"
    );
    for r in refusals.iter().take(20) {
        eprintln!("refused: {r}");
    }
    assert!(
        failures.is_empty(),
        "{} of {QUERIES} queries differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        refused * 10 <= QUERIES,
        "the planner refused {refused} of {QUERIES} generated queries (more than 10%)"
    );
    assert!(ran >= QUERIES * 8 / 10, "only {ran} queries compared");
}
