//! # Scatter-gather: one query over many segments, answered as if they were one database
//!
//! A dataset is many SQLite files ("segments") with the same schema. `POST /query` with a list or
//! pattern of segments must answer a `SELECT` exactly as one database holding all their rows
//! would. This module decides whether that is possible for a query and, if so, how: it is the
//! pure planner ([`plan`]) and the merge ([`merge`]). The HTTP endpoint and the fan-out I/O are
//! elsewhere (the router's `/query` handler).
//!
//! ## How the caller uses it
//!
//! ```text
//! let mut plan = scatter::plan(&req.sql)?;             // PlanError → 400, says why
//! // on every segment, concurrently: plan.guard_sql() (no params; always one row) and
//! //   plan.segment_sql() with req.params unchanged (rows as Vec<serde_json::Value>, core's JSON
//! //   value encoding, in column order).
//! let facts = [(segment, SegmentFacts::from_row(&guard_row)?), …];
//! if let Some(cols) = plan.check_segments(&facts)? {  // Err: refused (a view, a COLLATE…)
//!     plan = scatter::plan_with_columns(&req.sql, &cols)?;  // an alias is a column: re-plan,
//!     plan.check_segments(&facts)?;                    // and re-run its segment_sql
//! }
//! let rows = scatter::merge(&plan, &req.params, &segment_column_names,
//!                           vec![SegmentStream::new(id, Box::new(rows_iter)), …],
//!                           &MergeOptions { memory_budget_bytes, deadline, cancel, .. })?;
//! rows.columns();                                      // result column names
//! for row in rows { … }                                // Result<Vec<Value>>
//! ```
//!
//! [`merge`] is **blocking**: run it in `spawn_blocking`. Each segment's rows are a
//! `Box<dyn Iterator<Item = Result<Vec<Value>>> + Send>`; to feed it from async per-segment streams
//! (HTTP responses from other nodes, local reader tasks), wrap each stream in
//! `std::iter::from_fn(move || handle.block_on(stream.next()))` with the runtime's `Handle` — that
//! is allowed on a blocking thread — or use a bounded channel and `blocking_recv`. The segment
//! column names are those SQLite reports for `segment_sql` on any segment (they only depend on the
//! schema). When no segment returned a row, an aggregate plan still has an answer (one row over
//! nothing): call [`merge`] with [`ScatterPlan::segment_width`] placeholder names, and name the
//! result columns with [`ScatterPlan::column_names_without_rows`]. With no segment at all there
//! is no database to answer; the caller should refuse before planning.
//!
//! ## Exact, or refused
//!
//! A wrong answer is never an option: when the planner is not sure the merge reproduces SQLite,
//! it refuses with a [`PlanError`] (`unsupported_scatter_query`, or `sql_error` for text that is
//! not SQL) whose message says why. SQL that SQLite parses but the planner's parser cannot
//! (`SELECT 1 IN t1`) is a refusal saying so (`syntax`: SQLite's own parser decides). Three strategies ([`Strategy`]):
//!
//! - **Concat** — no aggregate, DISTINCT or ORDER BY: each segment runs the query (with
//!   `LIMIT limit+offset`), the merge concatenates, then skips OFFSET and takes LIMIT. A LIMIT
//!   without ORDER BY returns *some* rows, which is what SQL promises (and what one database does:
//!   its choice is as arbitrary).
//! - **SortedMerge** — ORDER BY without aggregates: each segment sorts and limits itself to
//!   `limit+offset` rows; the merge is a k-way merge on the sort keys (`order.rs` compares values
//!   exactly like SQLite: NULL < numbers (integers and reals by value) < text (BINARY, NOCASE or
//!   RTRIM) < blobs; `ASC`/`DESC`, `NULLS FIRST/LAST`). ORDER BY terms that are not result columns
//!   travel as hidden trailing columns. Memory: one row per segment.
//! - **SqlMerge** — GROUP BY, aggregates, HAVING, DISTINCT: each segment computes *partial*
//!   results; the merge loads them into a temporary SQLite database and finishes there with
//!   SQL, so SQLite itself evaluates every expression over the merged aggregates
//!   (`round(avg(x), 2)`, `max(x) - min(x)`, `HAVING count(*) > ?`, ORDER BY, LIMIT…).
//!
//! Aggregates, per segment → merge (`_cN` are partial columns):
//!
//! | query | segment | merge |
//! |---|---|---|
//! | `count(*)`, `count(x)` | same | `coalesce(sum(_c), 0)` |
//! | `sum(x)` | `sum(x)` | `_trough_sum(_c)`: exact; see below |
//! | `total(x)` | `total(x)` | `total(_c)` |
//! | `avg(x)` | `total(x)`, `count(x)` | `total(_s) / sum(_n)` (NULL when no value) |
//! | `min(x)`, `max(x)` | same | `min(_c)`, `max(_c)` (same collation) |
//! | `f(DISTINCT x)` | `x` added to the segment's GROUP BY | `f(DISTINCT _c)` |
//! | `agg(…) FILTER (WHERE p)` | with the FILTER | as without |
//!
//! GROUP BY terms are grouped in the segments (the segment's GROUP BY names its own result
//! columns by number, so a constant such as `count(DISTINCT 8)` is never read as a column
//! number) and again in the merge. Expressions of GROUP BY
//! terms (`upper(g)`, `HAVING g = 5`) are computed **in the segments**, where SQLite applies the
//! columns' type affinity, and travel as columns. A column outside GROUP BY and outside any
//! aggregate is refused (SQLite would take it from an arbitrary row), as is comparing an aggregate
//! with a column directly (`HAVING sum(a) > g`: SQLite would apply g's affinity to the sum; the
//! merge cannot see affinities).
//!
//! SQLite semantics kept: `sum` of only NULLs is NULL, `total` is 0.0, `avg` is a REAL, `sum` of
//! integers stays an integer, an ungrouped aggregate over no rows still returns one row, `min` /
//! `max` / `count(DISTINCT)` / GROUP BY / DISTINCT compare values as SQLite does (1 = 1.0; 'a' ≠
//! 'A' unless NOCASE), column names are SQLite's (the alias; a plain column's declared name; else
//! the expression's source text — the segment SQL is printed from a syntax tree, so such columns
//! get that text as an explicit alias). **Integer overflow**: SQLite's `sum()` raises "integer
//! overflow" when a *running* total of integers overflows, which depends on the order it visits
//! rows; a merge cannot reproduce an order, so it raises the error exactly when the exact total
//! of all-integer input does not fit in 64 bits (a segment whose own sum overflows fails too).
//! REAL sums are added in a different order than in one database: they agree to about 1e-15
//! relative, not bit for bit (the differential test allows 1e-9).
//!
//! ## What keeps it honest
//!
//! - A **whitelist** (`expr/whitelist.rs`): only known expression forms, SQLite operators and
//!   SQLite's built-in deterministic functions are accepted; `random()`, `changes()`,
//!   `date('now')`, unknown (user) functions, subqueries, window functions, `group_concat` & co
//!   (order-dependent) are refused.
//! - **Faithful printing**: the segment SQL is printed from the sqlparser tree; a statement that
//!   does not parse back to the same tree is refused (`- -1` would print `--1`, a comment: the
//!   operand of a double minus is parenthesized first, which SQLite's parser ignores),
//!   and so are hexadecimal literals (`0x10`, which sqlparser reads as a blob).
//! - **Precedence**: sqlparser's operator precedences differ from SQLite's (`||` vs `*`, `<` vs
//!   `=`, `&` vs `|`). Where the tree matters (the planner splits or compares expressions), an
//!   unparenthesized mix whose grouping differs is refused: "add parentheses".
//! - **Parameters**: anonymous `?` are renumbered `?N` as SQLite numbers them, and both the segment
//!   SQL and the merge SQL start with `WITH "_trough_params" AS (SELECT ?1, :name, …)`, so both
//!   have exactly the original statement's parameters and bind the request's `params` unchanged.
//! - **The segment guard**: what the planner cannot know from the SQL text, each segment tells.
//!   Besides the data query every segment answers [`ScatterPlan::guard_sql`], which returns
//!   exactly one row whatever the table holds (so an empty answer is judged too): a bit mask from
//!   `sqlite_schema` (the table is a view or virtual table — a view may aggregate per segment; its
//!   definition declares a COLLATE — the merge compares with BINARY) and the table's declared
//!   columns from `pragma_table_xinfo`. [`ScatterPlan::check_segments`] refuses on a fatal bit
//!   before anything is merged, and when a result alias used in WHERE / GROUP BY / HAVING / an
//!   ORDER BY expression is also a column (SQLite takes the column there) it asks for
//!   [`plan_with_columns`], which keeps that name a column.
//!
//! Refused (always): joins and multi-table FROM (each segment would only join its own rows),
//! subqueries, compound SELECT (UNION…), CTEs, window functions, non-deterministic functions,
//! order-dependent aggregates, `*` in aggregate queries, non-literal LIMIT/OFFSET, queries without
//! FROM, views and virtual tables (at run time).
//!
//! What the planner refuses, `POST /query` answers by **gathering** ([`gather`]): the rows of the
//! tables the query reads are copied into a merge database that runs the original query.
//!
//! ## Memory
//!
//! Concat and SortedMerge stream: one pending row per segment, whatever the result size. A
//! SqlMerge writes partial rows to a temporary database file in [`MergeOptions::temp_dir`] with
//! `cache_size` set from `merge_memory_budget_bytes` ([`MergeOptions::memory_budget_bytes`]),
//! `temp_store = FILE`, no journal: past the budget SQLite spills pages and sorts to disk, so memory
//! stays bounded. [`MergeOptions::disk_budget_bytes`] caps the file (`max_page_count`;
//! `merge_too_large` past it). The final rows are written to a result table and read back in pages
//! of 256, so every merge error (overflow, budget, timeout) happens inside [`merge`], before the
//! first row — the caller can still choose the HTTP status. (SQLite's own sorter temp files go to
//! its temporary directory, `SQLITE_TMPDIR`.)
//!
//! ## Known differences from one database
//!
//! - rowids are per segment (the "one database" is the union of the segments' rows as stored);
//! - where SQLite's answer is arbitrary (LIMIT without ORDER BY, ties at a LIMIT boundary, which
//!   of `1` and `1.0` a group shows), the merge's arbitrary choice may differ;
//! - TEXT that is not valid UTF-8 travels with replacement characters, so it may sort differently;
//! - REAL sums and averages may differ in the last bits (above).
//!
//! The proof is `differential/`: random data over 12 segment files (two empty) and one
//! monolithic database, 600 generated queries plus 150 edge cases (DISTINCT aggregates over no
//! matching row, integer constants, aliases that are columns) compared (column names, rows,
//! order).
//! See also `docs/decisions/0006-scatter-merge.md`.

mod expr;
pub mod gather;
mod merge;
mod order;
mod plan;
mod syntax;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;

pub use expr::Collation;
pub use merge::{
    merge, MergeOptions, MergedRows, Row, SegmentRows, SegmentStream, DEFAULT_MEMORY_BUDGET,
};
pub use order::compare;
pub use plan::{plan, plan_with_columns, PlanError, ScatterPlan, SegmentFacts, Strategy};
