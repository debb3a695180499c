//! What a plan tells the merge ([`crate::merge()`]): how the segment answers are combined
//! (concatenation, sorted merge on keys, or merge SQL), where a sort key's value is in a segment
//! row, and where the result column names come from. Data only: the planner fills it in, the merge
//! reads it.

use crate::expr::Collation;

/// How segment answers are merged.
#[derive(Clone, Debug)]
pub(crate) enum MergeSpec {
    Concat {
        limit: Option<u64>,
        offset: u64,
    },
    Sorted {
        keys: Vec<SortKey>,
        limit: Option<u64>,
        offset: u64,
    },
    Sql {
        body: SqlBody,
        names: Names,
    },
}

/// The merge SQL run over the partial rows (table `_p`, columns `_c0`, `_c1`, …).
#[derive(Clone, Debug)]
pub(crate) enum SqlBody {
    /// The complete merge SQL.
    Fixed(String),
    /// `SELECT DISTINCT` over all partial columns, written once their number is known.
    Distinct {
        /// Per column (known only without `*`): the collation of the result column.
        colls: Vec<Option<Collation>>,
        /// Parameter CTE prefix.
        prefix: String,
        /// ` ORDER BY … LIMIT …` (may be empty).
        tail: String,
    },
}

/// Where the result column names come from.
#[derive(Clone, Debug)]
pub(crate) enum Names {
    /// The segment's own column names (all but the helper tail).
    Segment,
    /// One entry per result column.
    Fixed(Vec<OutputName>),
}

/// The name of one result column.
#[derive(Clone, Debug)]
pub(crate) enum OutputName {
    /// A name known from the query text (alias or expression text).
    Text(String),
    /// The name SQLite gives to this segment column (a plain column: its declared name).
    Segment(usize),
}

/// One key of an ORDER BY merged in Rust.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SortKey {
    pub col: KeyCol,
    pub desc: bool,
    pub nulls_first: bool,
    pub coll: Collation,
}

/// Where a sort key's value is in a segment row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyCol {
    /// An absolute column index (a result column).
    Column(usize),
    /// The j-th hidden sort column (index `n - tail + j`).
    Hidden(usize),
}
