//! The check of every segment row before the merge uses it: its width, and the guard column the
//! planner appended (`plan::guard`). A guard bit the plan deems fatal (a view, a declared COLLATE,
//! a result alias that is also a column) fails the merge with `unsupported_scatter_query` before it
//! produces anything wrong. It does not merge anything.

use serde_json::Value as Json;
use trough_core::error::{Error, Result};

use super::{internal, Row};
use crate::scatter::plan::{GUARD_ALIAS, GUARD_COLLATE, GUARD_VIEW};

/// Checks each segment row: its width and the guard column (the last one).
pub(super) struct RowCheck {
    pub(super) width: usize,
    pub(super) fatal: i64,
    pub(super) table: String,
    pub(super) aliases: Vec<String>,
}

impl RowCheck {
    pub(super) fn check(&self, segment: &str, row: &Row) -> Result<()> {
        if row.len() != self.width {
            return Err(internal(format!(
                "segment {segment} returned a row of {} values, expected {}",
                row.len(),
                self.width
            )));
        }
        let guard = row.last().and_then(Json::as_i64).unwrap_or(-1);
        if guard < 0 {
            return Err(internal(format!("segment {segment}: bad guard column")));
        }
        let bad = guard & self.fatal;
        if bad == 0 {
            return Ok(());
        }
        let why = if bad & GUARD_VIEW != 0 {
            format!(
                "in segment {segment}, {} is a view or a virtual table; scatter queries read \
                 ordinary tables only (a view may aggregate or limit each segment on its own)",
                self.table
            )
        } else if bad & GUARD_COLLATE != 0 {
            format!(
                "in segment {segment}, table {} declares a COLLATE on a column; the merge \
                 compares values with the BINARY collation, so this query is refused (add an \
                 explicit COLLATE to the compared expressions)",
                self.table
            )
        } else {
            debug_assert!(bad & GUARD_ALIAS != 0);
            format!(
                "in segment {segment}, one of the result aliases {:?} is also a column of {} \
                 (SQLite would use the column there); rename the alias",
                self.aliases, self.table
            )
        };
        Err(Error::invalid("unsupported_scatter_query", why))
    }
}
