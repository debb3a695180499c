//! A runner for sqllogictest files (SQLite's SQL test format) against trough's cluster-wide SQL.
//!
//! - [`parse`] reads a file into records (pure).
//! - [`format`] renders values the way the files write them, to check the runner's monolith
//!   against the file's expected lines (pure).
//! - [`run`] splits each file's rows at random over writable segments of a real `trough serve`,
//!   runs every query through `POST /query` and through one monolithic SQLite database, and
//!   classifies each answer: exact, refused (with its reason), wrong, client or server error.
//!
//! Used by `tests/sqllogictest.rs` over the project's own files (`tests/slt/cases/`) in CI, and
//! over SQLite's corpus on demand (see docs/decisions/0006-scatter-merge.md for the command).
pub mod format;
pub mod parse;
pub mod run;
