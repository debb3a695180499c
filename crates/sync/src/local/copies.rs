//! The node's table of local copies, with running totals: the `/health` summary, "is any copy
//! in error?" and the size of what is held cost the same with ten copies or a hundred thousand.
//!
//! Not here: deciding what to hold ([`super::plan`]) or touching files.

use std::collections::BTreeMap;
use std::ops::Bound;

use trough_coord::HeldMap;
use trough_types::{Manifest, SegmentId};

use super::{CopyState, CopySummary};

/// Every local copy by segment, and totals kept in step with every change.
#[derive(Debug, Default)]
pub(super) struct Copies {
    map: BTreeMap<SegmentId, CopyState>,
    summary: CopySummary,
    /// The verified copies' versions, as reported to the coordinator (copied in O(1)).
    held: HeldMap,
}

impl Copies {
    fn count(&mut self, s: &CopyState, sign: i64) {
        let add = |v: &mut u64, d: u64| {
            *v = if sign > 0 {
                v.saturating_add(d)
            } else {
                v.saturating_sub(d)
            }
        };
        add(&mut self.summary.copies, 1);
        if s.verified {
            add(&mut self.summary.verified, 1);
            add(&mut self.summary.verified_bytes, s.size);
        }
        if s.error.is_some() {
            add(&mut self.summary.errors, 1);
        }
    }

    /// One copy's state.
    pub(super) fn get(&self, id: &SegmentId) -> Option<&CopyState> {
        self.map.get(id)
    }

    /// Records (or replaces) a copy's state.
    pub(super) fn insert(&mut self, id: SegmentId, state: CopyState) {
        self.count(&state, 1);
        if state.verified {
            self.held.insert(id.clone(), state.version);
        } else {
            self.held.remove(&id);
        }
        if let Some(old) = self.map.insert(id, state) {
            self.count(&old, -1);
        }
    }

    /// Forgets a copy.
    pub(super) fn remove(&mut self, id: &SegmentId) -> Option<CopyState> {
        let old = self.map.remove(id)?;
        self.held.remove(id);
        self.count(&old, -1);
        Some(old)
    }

    /// Records that fetching `m` failed: the copy held (if any) keeps being served.
    pub(super) fn set_error(&mut self, m: &Manifest, error: String) {
        let state = match self.map.get(&m.id) {
            Some(s) => CopyState {
                error: Some(error),
                ..s.clone()
            },
            None => CopyState {
                version: m.version,
                sha256: m.sha256.clone(),
                size: m.size,
                verified: false,
                error: Some(error),
            },
        };
        self.insert(m.id.clone(), state);
    }

    /// Counts of the copies.
    pub(super) fn summary(&self) -> CopySummary {
        self.summary
    }

    /// The verified copies' versions (a persistent map: cloning it is O(1)).
    pub(super) fn held(&self) -> &HeldMap {
        &self.held
    }

    /// Whether some copy's last fetch or verification failed.
    pub(super) fn has_errors(&self) -> bool {
        self.summary.errors > 0
    }

    /// Every copy, by id.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&SegmentId, &CopyState)> {
        self.map.iter()
    }

    /// A copy of the whole table.
    pub(super) fn to_map(&self) -> BTreeMap<SegmentId, CopyState> {
        self.map.clone()
    }

    /// At most `limit` copies whose id starts with `prefix` and sorts after `after`, by id.
    pub(super) fn page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(SegmentId, CopyState)> {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.map
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(id, _)| id.as_str().starts_with(prefix))
            .take(limit)
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(version: u64, verified: bool, error: bool) -> CopyState {
        CopyState {
            version,
            sha256: format!("sha{version}"),
            size: 100 * version,
            verified,
            error: error.then(|| "boom".to_owned()),
        }
    }

    /// The running totals always equal a count over the table.
    #[test]
    fn totals_follow_every_change() {
        let id = |s: &str| SegmentId::new(s).unwrap();
        let mut c = Copies::default();
        let check = |c: &Copies| {
            let mut want = CopySummary::default();
            for (_, s) in c.iter() {
                want.copies += 1;
                if s.verified {
                    want.verified += 1;
                    want.verified_bytes += s.size;
                }
                if s.error.is_some() {
                    want.errors += 1;
                }
            }
            assert_eq!(c.summary(), want);
            assert_eq!(c.has_errors(), want.errors > 0);
            let held: HeldMap = c
                .iter()
                .filter(|(_, s)| s.verified)
                .map(|(id, s)| (id.clone(), s.version))
                .collect();
            assert_eq!(c.held(), &held);
        };
        c.insert(id("a"), state(1, true, false));
        c.insert(id("b"), state(2, true, false));
        check(&c);
        let m = Manifest {
            id: id("b"),
            version: 3,
            sha256: "sha3".into(),
            size: 300,
            created_at: chrono::Utc::now(),
            schema: None,
            writable: false,
            key: "k".into(),
        };
        c.set_error(&m, "down".into());
        check(&c);
        assert_eq!(c.get(&id("b")).unwrap().version, 2, "the held copy stays");
        c.set_error(&Manifest { id: id("c"), ..m }, "down".into());
        check(&c);
        c.insert(id("b"), state(3, true, false));
        c.remove(&id("c"));
        check(&c);
        assert!(!c.has_errors());
        c.remove(&id("a"));
        c.remove(&id("nothing"));
        check(&c);
        assert_eq!(c.summary().verified_bytes, 300);
    }
}
