//! The streaming merges: concatenation (one segment after another) and the k-way merge of the
//! segments' sorted rows on the plan's sort keys, then OFFSET and LIMIT. One pending row per
//! segment whatever the result size, and no more reading once LIMIT is reached. Comparing values
//! is `order.rs`'s job; merges that need SQL are in `sql`.

use std::collections::VecDeque;

use rusqlite::types::Value;
use trough_sqlite::value::from_json;
use trough_types::error::Result;

use super::guard::RowCheck;
use super::{internal, MergeOptions, Row, SegmentStream};
use crate::order::KHeap;
use crate::plan::{KeyCol, SortKey};

/// Concatenation and k-way merge: streaming, one pending row per segment.
pub(super) struct StreamMerge {
    pub(super) checker: RowCheck,
    pub(super) front: usize,
    pub(super) segments: VecDeque<SegmentStream>,
    /// For sorted merges: the heap of segment heads, once primed.
    pub(super) heap: Option<(KHeap<Row>, Vec<SegmentStream>)>,
    pub(super) keys: Vec<SortKey>,
    pub(super) skip: u64,
    pub(super) remaining: Option<u64>,
    pub(super) opts: MergeOptions,
    pub(super) rows_seen: u64,
}

impl StreamMerge {
    pub(super) fn next(&mut self) -> Option<Result<Row>> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let row = match self.next_raw() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if let Some(r) = &mut self.remaining {
                *r -= 1;
            }
            let mut row = row;
            row.truncate(self.front);
            return Some(Ok(row));
        }
    }

    fn pull(&mut self, seg: &mut SegmentStream) -> Result<Option<Row>> {
        self.rows_seen += 1;
        if self.rows_seen.is_multiple_of(1024) {
            self.opts.check()?;
        }
        match seg.rows.next() {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(row)) => {
                self.checker.check(&seg.segment, &row)?;
                Ok(Some(row))
            }
        }
    }

    fn sort_key(&self, row: &Row) -> Result<Vec<Value>> {
        self.keys
            .iter()
            .map(|k| {
                let idx = match k.col {
                    KeyCol::Column(c) => c,
                    KeyCol::Hidden(j) => self.front + j,
                };
                from_json(&row[idx]).map_err(|e| internal(format!("bad value in segment row: {e}")))
            })
            .collect()
    }

    fn next_raw(&mut self) -> Result<Option<Row>> {
        if self.keys.is_empty() {
            // Concatenation: one segment after the other.
            while let Some(mut seg) = self.segments.pop_front() {
                match self.pull(&mut seg)? {
                    Some(row) => {
                        self.segments.push_front(seg);
                        return Ok(Some(row));
                    }
                    None => continue,
                }
            }
            return Ok(None);
        }
        if self.heap.is_none() {
            // Prime: the first row of every segment.
            let mut heap = KHeap::new(self.keys.clone());
            let mut streams = Vec::new();
            while let Some(mut seg) = self.segments.pop_front() {
                let idx = streams.len();
                if let Some(row) = self.pull(&mut seg)? {
                    let key = self.sort_key(&row)?;
                    heap.push(key, idx, row);
                }
                streams.push(seg);
            }
            self.heap = Some((heap, streams));
        }
        let (mut heap, mut streams) = self.heap.take().expect("primed");
        let result = (|| {
            let Some((idx, row)) = heap.pop() else {
                return Ok(None);
            };
            if let Some(next) = self.pull(&mut streams[idx])? {
                let key = self.sort_key(&next)?;
                heap.push(key, idx, next);
            }
            Ok(Some(row))
        })();
        debug_assert!(heap.len() <= streams.len());
        self.heap = Some((heap, streams));
        result
    }
}
