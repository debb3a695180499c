//! Data generation: a small deterministic random generator ([`Rng`], which the query generator
//! uses too), the schema, and the rows spread over the segments (two left empty, the others with
//! skewed shares). No queries and no comparison here.

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

pub(super) const SCHEMA: &str = "
CREATE TABLE t(id INTEGER NOT NULL, g TEXT, h INTEGER, a INTEGER, b REAL, c TEXT, m);
CREATE TABLE u(id INTEGER NOT NULL, k TEXT, v REAL, w INTEGER);
";

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) fn gen_data(rng: &mut Rng, nseg: usize) -> Vec<(usize, String)> {
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
