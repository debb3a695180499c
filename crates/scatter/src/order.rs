//! SQLite-compatible ordering of values, and the k-way merge of sorted segment streams.
//!
//! SQLite orders values of different storage classes as NULL < INTEGER and REAL (compared by
//! numeric value, exactly, also between an integer and a real) < TEXT (by collation) < BLOB
//! (`memcmp`). `ORDER BY` puts NULLs first when ascending and last when descending, unless
//! `NULLS FIRST` / `NULLS LAST` says otherwise. Text collations: BINARY (`memcmp` of UTF-8), NOCASE
//! (ASCII letters folded, nothing else), RTRIM (trailing spaces ignored).

use std::cmp::Ordering;

use rusqlite::types::Value;

use super::expr::Collation;
use super::plan::SortKey;

fn class(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Real(f) if f.is_nan() => 0,
        Value::Integer(_) | Value::Real(_) => 1,
        Value::Text(_) => 2,
        Value::Blob(_) => 3,
    }
}

/// SQLite's exact comparison of an integer with a real (`sqlite3IntFloatCompare`).
pub(crate) fn int_real_cmp(i: i64, r: f64) -> Ordering {
    if r.is_nan() {
        return Ordering::Greater;
    }
    if r < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    if r >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    let y = r as i64;
    match i.cmp(&y) {
        Ordering::Equal => {}
        o => return o,
    }
    let s = i as f64;
    s.partial_cmp(&r).unwrap_or(Ordering::Equal)
}

fn text_cmp(a: &str, b: &str, coll: Collation) -> Ordering {
    match coll {
        Collation::Binary => a.as_bytes().cmp(b.as_bytes()),
        Collation::NoCase => a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
        Collation::RTrim => a
            .trim_end_matches(' ')
            .as_bytes()
            .cmp(b.trim_end_matches(' ').as_bytes()),
    }
}

/// Compares two values as SQLite does (ascending, NULL smallest).
pub fn compare(a: &Value, b: &Value, coll: Collation) -> Ordering {
    let (ca, cb) = (class(a), class(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Integer(x), Value::Real(y)) => int_real_cmp(*x, *y),
        (Value::Real(x), Value::Integer(y)) => int_real_cmp(*y, *x).reverse(),
        (Value::Text(x), Value::Text(y)) => text_cmp(x, y, coll),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => Ordering::Equal, // both NULL (or NaN)
    }
}

/// Compares two rows' sort keys (`a` and `b` hold one value per key, in key order).
pub(crate) fn compare_keys(keys: &[SortKey], a: &[Value], b: &[Value]) -> Ordering {
    for (k, (x, y)) in keys.iter().zip(a.iter().zip(b.iter())) {
        let (nx, ny) = (class(x) == 0, class(y) == 0);
        let o = if nx || ny {
            match (nx, ny) {
                (true, true) => Ordering::Equal,
                // NULL sorts first or last regardless of the direction.
                (true, false) => {
                    if k.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if k.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (false, false) => unreachable!(),
            }
        } else {
            let o = compare(x, y, k.coll);
            if k.desc {
                o.reverse()
            } else {
                o
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A min-heap of segment heads keyed by sort keys (ties: lower segment index first).
pub(crate) struct KHeap<T> {
    keys: Vec<SortKey>,
    /// (sort key values, segment index, payload)
    heap: Vec<(Vec<Value>, usize, T)>,
}

impl<T> KHeap<T> {
    pub fn new(keys: Vec<SortKey>) -> Self {
        Self {
            keys,
            heap: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    fn less(&self, i: usize, j: usize) -> bool {
        let (a, b) = (&self.heap[i], &self.heap[j]);
        match compare_keys(&self.keys, &a.0, &b.0) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => a.1 < b.1,
        }
    }

    pub fn push(&mut self, key: Vec<Value>, segment: usize, payload: T) {
        self.heap.push((key, segment, payload));
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.less(i, parent) {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    pub fn pop(&mut self) -> Option<(usize, T)> {
        if self.heap.is_empty() {
            return None;
        }
        let last = self.heap.len() - 1;
        self.heap.swap(0, last);
        let (_, seg, payload) = self.heap.pop()?;
        let n = self.heap.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.less(l, m) {
                m = l;
            }
            if r < n && self.less(r, m) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            i = m;
        }
        Some((seg, payload))
    }
}
