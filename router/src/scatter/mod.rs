//! # Scatter-gather: one query over many segments, answered as if they were one database
//!
//! (Essay: see the end of this file.)

mod expr;
mod merge;
mod order;
mod plan;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;

pub use expr::Collation;
pub use merge::{
    merge, MergeOptions, MergedRows, Row, SegmentRows, SegmentStream, DEFAULT_MEMORY_BUDGET,
};
pub use order::compare;
pub use plan::{plan, PlanError, ScatterPlan, Strategy};
