//! # trough-sync: who holds what, and getting it there
//!
//! Two modes, as in the real Trough:
//!
//! - **server mode** ([`leader`]): one synchronizer at a time holds the leader lock, reads the
//!   healthy nodes and the catalog, computes an assignment with the pure function
//!   [`trough_placement::assign`], and stores it in the coordinator.
//! - **local mode** ([`local`]): on every node, follows that node's share of the assignment:
//!   downloads each assigned version, verifies its SHA-256, swaps it into the reader atomically,
//!   deletes copies no longer assigned, re-verifies copies periodically (scrub), and reports the
//!   node's holdings (its heartbeat).
//!
//! Decisions are pure functions ([`trough_placement::assign`], [`local::plan`]); the loops only do I/O. Not here:
//! serving queries (reader) or publishing versions (`trough_store::publish`).

pub mod leader;
pub mod local;
pub mod verified;
