//! # trough-reader: serving read queries from the segment copies this node holds
//!
//! A node's [`Reader`] knows, for each segment it can serve, a local SQLite file:
//!
//! - a **stored copy**: an immutable, verified version downloaded by the synchronizer
//!   ([`Reader::install_stored`]), opened with `immutable=1`; replacing or removing it is atomic for
//!   new queries, queries in flight finish on the old copy, and the old file is deleted once the
//!   last of them is done;
//! - a **live database**: the WAL database of a writable segment whose writer runs on this node
//!   ([`Reader::install_live`]), opened read-only; it takes precedence over a stored copy and the
//!   reader never deletes it.
//!
//! [`Reader::query`] runs one read-only statement on a connection of the copy (opened on demand,
//! kept idle afterwards within one reader-wide budget, least recently used closed first) in a
//! blocking task and
//! streams the JSON answer back through a bounded channel ([`QueryStream`], convertible into an
//! `axum` body). [`Reader::query_collect`] runs several statements on one connection and hands
//! each whole answer to a [`Collector`] instead (cluster-wide queries). Errors before the first output byte are returned as `Err` (proper status); an
//! error after output started ends the body with an error line and an aborted stream.
//!
//! Not here: downloading or verifying copies (synchronizer), writes (writer), HTTP routes (router),
//! SQL hardening and encoding (`trough_sqlite`).
//!
//! Metrics: histogram `trough_reader_query_seconds`, counter `trough_reader_queries_total{outcome}`
//! (`ok`, `rejected`, `timeout`, `cancelled`, `error`), gauges `trough_reader_segments_held` and
//! `trough_reader_idle_connections`.

mod collect;
mod copy;
pub mod describe;
mod error;
mod pool;
mod reader;
mod stream;

#[cfg(test)]
mod tests;

pub use collect::Collector;
pub use error::Error;
pub use reader::{HeldCopy, Reader};
pub use stream::QueryStream;

/// Histogram of query durations, in seconds (from start to the last byte handed over).
pub const METRIC_QUERY_SECONDS: &str = "trough_reader_query_seconds";
/// Counter of finished queries, labelled by `outcome`.
pub const METRIC_QUERIES_TOTAL: &str = "trough_reader_queries_total";
/// Gauge of connections kept open while idle, across all copies (at most
/// `limits.query.idle_connections`).
pub const METRIC_IDLE_CONNECTIONS: &str = "trough_reader_idle_connections";
/// Gauge of segments this reader can serve (stored or live).
pub const METRIC_SEGMENTS_HELD: &str = "trough_reader_segments_held";
