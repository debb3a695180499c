//! # Gather: answer any deterministic query over many segments by copying the rows it reads
//!
//! The other strategies ([`super::plan`]) rewrite a query so that each segment does part of the
//! work; they refuse joins, subqueries, compound SELECTs (UNION, INTERSECT, EXCEPT), CTEs and
//! queries without FROM, because each segment only sees its own rows. Gather is the exact fallback
//! for those, correct by construction (as Citus pulls rows to its coordinator):
//!
//! 1. every selected segment reports its schema ([`SCHEMA_SQL`]);
//! 2. [`analyze`] recreates that schema in an empty in-memory database and *prepares* the query
//!    there, with an authorizer recording what it reads: SQLite itself resolves CTE names, aliases,
//!    views (their tables are gathered, the view is recreated) and subqueries. Refusals, with a
//!    reason: rowid reads, virtual tables, SQLite's internal tables, non-deterministic and
//!    order-dependent functions, statements that are not queries;
//! 3. the tables and views the query reads must be defined identically in every segment
//!    ([`check_same`]);
//! 4. every segment returns the stored columns of each table the query reads ([`loads`]), with the
//!    WHERE conjuncts that are provably safe pushed down (`pushdown`);
//! 5. [`MergeDb`] creates the same tables and views (the same `CREATE` statements, so affinity,
//!    collations and declared types behave as in one database), inserts the rows (values travel in
//!    core's lossless JSON value encoding), creates the indexes, and runs the **original query
//!    text** with the request's parameters. Its answer is what one database holding every row
//!    would give.
//!
//! A query without any table (`SELECT 1 + 2`) gathers nothing and is evaluated once, in the merge
//! database.
//!
//! Where SQL leaves the answer arbitrary (row order without ORDER BY, ties, LIMIT without ORDER
//! BY, a bare column of an aggregate query, the order of window-function peers) the merge
//! database's arbitrary choice may differ from another database's. Date and time functions with
//! `'now'` are evaluated once, by the merge database.
//!
//! Memory and disk: see `load` (cache bounded by the merge memory budget, spills to disk, file
//! capped by the disk budget: `merge_too_large`). Segment answers are spooled by the fan-out
//! before they are loaded.
//!
//! Not here: the fan-out I/O (`crate::fanout::tables`), HTTP (`crate::handlers::gather`).

mod analyze;
mod load;
mod plan;
mod pushdown;
mod schema;

#[cfg(test)]
mod budget_test;

use trough_core::error::Result;

pub use analyze::{analyze, Analysis, Table};
pub use load::{GatheredRows, MergeDb};
pub use plan::{loads, Load};
pub use schema::{check_same, Entry, Kind, Schema, SCHEMA_SQL};

/// Steps 2 to 4 for the schemas the segments reported (at least one; the first is the
/// reference): what each segment must return, and the schema the merge database gets.
/// Blocking (an in-memory SQLite prepares the query).
pub fn prepare<'a>(sql: &str, schemas: &'a [(String, Schema)]) -> Result<(Vec<Load>, &'a Schema)> {
    let Some((ref_id, reference)) = schemas.first() else {
        return Err(trough_core::Error::internal(
            "no segment schema to gather with",
        ));
    };
    let analysis = analyze(sql, reference)?;
    check_same(
        &analysis.objects,
        (ref_id.as_str(), reference),
        schemas.iter().skip(1).map(|(id, s)| (id.as_str(), s)),
    )?;
    Ok((loads(sql, &analysis), reference))
}
