//! `_trough_sum(x)`, the aggregate the merge SQL adds partial sums with: SQLite's `sum()` with an
//! order-independent integer-overflow rule. Registered on the merge database by `sql`; knows
//! nothing else of the merge.

use rusqlite::functions::{Aggregate, Context};
use rusqlite::types::{Value, ValueRef};

/// `_trough_sum(x)`: SQLite's `sum()` over partial sums, with an order-independent overflow rule.
///
/// NULLs are ignored; no non-NULL input gives NULL. If every input is an integer, the result is
/// their exact sum, or the error "integer overflow" if it does not fit in 64 bits (SQLite's own
/// `sum()` raises it when a running total overflows, which depends on the order rows are visited;
/// over many segments the only order-independent rule is the total's). Otherwise the result is a
/// REAL computed with the same Kahan-Babuska-Neumaier summation as SQLite.
pub(super) struct ExactSum;

/// Accumulator of [`ExactSum`].
#[derive(Default)]
pub(super) struct SumAcc {
    count: u64,
    int_sum: i128,
    approx: bool,
    r_sum: f64,
    r_err: f64,
}

impl SumAcc {
    fn kbn(&mut self, r: f64) {
        let s = self.r_sum;
        let t = s + r;
        if s.abs() > r.abs() {
            self.r_err += (s - t) + r;
        } else {
            self.r_err += (r - t) + s;
        }
        self.r_sum = t;
    }
    fn kbn_int(&mut self, i: i128) {
        // Exact for |i| < 2^53; larger values are split like SQLite's
        // kahanBabuskaNeumaierStepInt64.
        const BIG: i128 = 4_503_599_627_370_496;
        if i <= -BIG || i >= BIG {
            let small = i % 16384;
            self.kbn((i - small) as f64);
            self.kbn(small as f64);
        } else {
            self.kbn(i as f64);
        }
    }
}

impl Aggregate<SumAcc, Value> for ExactSum {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<SumAcc> {
        Ok(SumAcc::default())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut SumAcc) -> rusqlite::Result<()> {
        match ctx.get_raw(0) {
            ValueRef::Null => {}
            ValueRef::Integer(i) => {
                acc.count += 1;
                acc.int_sum += i128::from(i);
            }
            other => {
                acc.count += 1;
                let r = match other {
                    ValueRef::Real(r) => r,
                    // Partial sums are never text or blobs; convert like SQLite would anyway.
                    ValueRef::Text(t) => std::str::from_utf8(t)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0.0),
                    _ => 0.0,
                };
                acc.approx = true;
                acc.kbn(r);
            }
        }
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<SumAcc>) -> rusqlite::Result<Value> {
        let Some(mut acc) = acc else {
            return Ok(Value::Null);
        };
        if acc.count == 0 {
            return Ok(Value::Null);
        }
        if !acc.approx {
            return i64::try_from(acc.int_sum)
                .map(Value::Integer)
                .map_err(|_| rusqlite::Error::UserFunctionError("integer overflow".into()));
        }
        let int_part = acc.int_sum;
        acc.kbn_int(int_part);
        Ok(Value::Real(if acc.r_err.is_finite() {
            acc.r_sum + acc.r_err
        } else {
            acc.r_sum
        }))
    }
}
