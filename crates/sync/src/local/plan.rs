//! The pure decision of a sync pass: what this node must fetch and drop, given the assignment,
//! the catalog, its own copies and the other nodes' holdings. No I/O.

use std::collections::BTreeMap;

use trough_coord::AssignmentMap;
use trough_types::{Manifest, NodeName, SegmentEntry, SegmentId};

/// One step a pass should take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Download, verify and install this version.
    Fetch(Manifest),
    /// Stop serving and delete the local copy of this segment.
    Drop(SegmentId),
}

/// Decides what a node must fetch and drop. Pure.
///
/// - `held`: segment → (version, verified) of the local copies.
/// - `holders`: segment → the other nodes' verified versions (from their heartbeats).
///
/// A segment assigned to `node` whose latest version is not held verified is fetched. A held
/// segment that is no longer assigned is dropped only when every node now assigned to it holds
/// its latest version (or it left the catalog), so a copy never disappears before its
/// replacement is in place.
pub fn plan(
    node: &NodeName,
    assignment: &AssignmentMap,
    catalog: &BTreeMap<SegmentId, SegmentEntry>,
    held: &BTreeMap<SegmentId, (u64, bool)>,
    holders: &BTreeMap<SegmentId, BTreeMap<NodeName, u64>>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (id, nodes) in assignment {
        if !nodes.contains(node) {
            continue;
        }
        let Some(latest) = catalog.get(id).and_then(|e| e.latest()) else {
            continue;
        };
        match held.get(id) {
            Some(&(v, true)) if v == latest.version => {}
            _ => actions.push(Action::Fetch(latest.clone())),
        }
    }
    for id in held.keys() {
        let assigned_here = assignment.get(id).is_some_and(|n| n.contains(node));
        if assigned_here {
            continue;
        }
        let Some(latest) = catalog.get(id).and_then(|e| e.latest()) else {
            actions.push(Action::Drop(id.clone()));
            continue;
        };
        let others = assignment.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let replaced = !others.is_empty()
            && others.iter().all(|n| {
                holders
                    .get(id)
                    .and_then(|h| h.get(n))
                    .is_some_and(|&v| v == latest.version)
            });
        if replaced {
            actions.push(Action::Drop(id.clone()));
        }
    }
    actions
}
