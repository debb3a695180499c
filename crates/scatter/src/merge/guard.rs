//! The check of every segment row before the merge uses it: its width (all segments answer the
//! same statement, so a row of another width means a broken answer). The schema guard is judged
//! before the merge starts (`plan::guard`). It does not merge anything.

use trough_types::error::Result;

use super::{internal, Row};

/// Checks each segment row's width.
pub(super) struct RowCheck {
    pub(super) width: usize,
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
        Ok(())
    }
}
