//! A grace period before a copy is dropped (issue 15): a reader that returns after its check
//! went critical is briefly assigned nothing, and must not throw away the copies it just
//! re-verified before the leader assigns them to it again.
//!
//! [`DropGrace::filter`] is pure (the time is a parameter): a drop the plan asks for is carried
//! out only once the plan has asked for it for at least `grace`, counted from the first pass that
//! asked. A full pass that no longer asks for a drop forgets it, so a copy assigned here again
//! starts afresh the next time it becomes unwanted.
//!
//! Not here: what to drop (`plan`), carrying drops out (`LocalSync::pass`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use trough_types::SegmentId;

use super::plan::Action;

/// Drops asked for and not yet carried out: since when each was asked for.
#[derive(Debug, Default)]
pub(crate) struct DropGrace {
    since: BTreeMap<SegmentId, Instant>,
    /// Segments that left the catalog: their copies are dropped at once (nothing will assign
    /// them again).
    gone: BTreeSet<SegmentId>,
}

impl DropGrace {
    /// The actions of a pass with the drops still in their grace period held back. `full`: the
    /// plan covered every segment (else only the changed ones).
    pub(crate) fn filter(
        &mut self,
        actions: Vec<Action>,
        now: Instant,
        grace: Duration,
        full: bool,
    ) -> Vec<Action> {
        if full {
            self.since
                .retain(|id, _| actions.iter().any(|a| a == &Action::Drop(id.clone())));
        }
        // Fetches (a copy assigned here again) end a pending drop of the same segment.
        for a in &actions {
            if let Action::Fetch(m) = a {
                self.since.remove(&m.id);
            }
        }
        let gone = std::mem::take(&mut self.gone);
        actions
            .into_iter()
            .filter(|a| match a {
                Action::Fetch(_) => true,
                Action::Drop(id) if gone.contains(id) => {
                    self.since.remove(id);
                    true
                }
                Action::Drop(id) => {
                    let since = *self.since.entry(id.clone()).or_insert(now);
                    let due = now.saturating_duration_since(since) >= grace;
                    if due {
                        self.since.remove(id);
                    }
                    due
                }
            })
            .collect()
    }

    /// Marks the segments of `held` missing from `catalog` as gone: the next [`Self::filter`]
    /// drops them without a grace period.
    pub(crate) fn note_gone<V, E>(
        &mut self,
        held: &BTreeMap<SegmentId, V>,
        catalog: &BTreeMap<SegmentId, E>,
    ) {
        self.gone
            .extend(held.keys().filter(|id| !catalog.contains_key(*id)).cloned());
    }

    /// How many drops are being held back.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.since.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SegmentId {
        SegmentId::new(s).unwrap()
    }

    const GRACE: Duration = Duration::from_secs(15);

    #[test]
    fn a_drop_waits_out_the_grace_period() {
        let mut g = DropGrace::default();
        let t0 = Instant::now();
        let drop_a = || vec![Action::Drop(sid("a"))];
        assert!(g.filter(drop_a(), t0, GRACE, true).is_empty());
        assert_eq!(g.pending(), 1);
        assert!(g.filter(drop_a(), t0 + GRACE / 2, GRACE, true).is_empty());
        assert_eq!(g.filter(drop_a(), t0 + GRACE, GRACE, true), drop_a());
        assert_eq!(g.pending(), 0);
    }

    #[test]
    fn a_copy_assigned_again_within_the_grace_is_kept_and_starts_afresh() {
        let mut g = DropGrace::default();
        let t0 = Instant::now();
        // The returning reader: assigned nothing at first, so the plan asks to drop its copies.
        let drops = vec![Action::Drop(sid("a")), Action::Drop(sid("b"))];
        assert!(g.filter(drops, t0, GRACE, true).is_empty());
        // The leader assigns both to it again: the full plan asks for nothing; nothing dropped.
        assert!(g.filter(Vec::new(), t0 + GRACE / 3, GRACE, true).is_empty());
        assert_eq!(g.pending(), 0);
        // Much later "a" becomes unwanted again: a new grace period, not the old start.
        let later = t0 + GRACE * 4;
        assert!(g
            .filter(vec![Action::Drop(sid("a"))], later, GRACE, false)
            .is_empty());
        assert_eq!(
            g.filter(vec![Action::Drop(sid("a"))], later + GRACE, GRACE, false),
            [Action::Drop(sid("a"))]
        );
    }

    #[test]
    fn a_copy_of_a_segment_that_left_the_catalog_is_dropped_at_once() {
        let mut g = DropGrace::default();
        let held = BTreeMap::from([(sid("gone"), ()), (sid("kept"), ())]);
        let catalog = BTreeMap::from([(sid("kept"), ())]);
        g.note_gone(&held, &catalog);
        let drops = vec![Action::Drop(sid("gone")), Action::Drop(sid("kept"))];
        assert_eq!(
            g.filter(drops, Instant::now(), GRACE, true),
            [Action::Drop(sid("gone"))]
        );
        assert_eq!(g.pending(), 1, "only the unassigned one waits");
    }

    #[test]
    fn a_zero_grace_drops_at_once() {
        let mut g = DropGrace::default();
        let d = vec![Action::Drop(sid("a"))];
        assert_eq!(
            g.filter(d.clone(), Instant::now(), Duration::ZERO, false),
            d
        );
    }
}
