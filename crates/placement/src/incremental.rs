//! Placing new segments between full plans.
//!
//! [`place_new`] gives each new segment its replicas the way the fill phase of [`crate::assign`]
//! does when the nodes have not changed: distinct healthy nodes of the segment's tier with room in
//! their quota, nodes below the tier's fill ratio ("hungry") first, each group in rendezvous order
//! (the same scores as the planner). It costs O(new segments × nodes of their tier), whatever the
//! number of segments already placed: what lets the leader place a stream of publishes without
//! re-planning the whole catalog for each batch.
//!
//! Not here: re-planning after a node joins or leaves, a quota or a segment's size changes, or
//! rebalancing. The leader runs [`crate::assign`] for those (and now and then anyway); the tests
//! check that a full plan over what this placed moves nothing.

use std::collections::BTreeMap;

use trough_types::{NodeName, SegmentId};

use crate::score::{name_hash, neg_ln, node_key, unit};
use crate::{replication_factors, NodeSpec, SegmentSpec, TierSpec, UnderReplicated};

/// What [`place_new`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// Each new segment's holders, in name order (empty when it fits nowhere), in id order.
    pub replicas: Vec<(SegmentId, Vec<NodeName>)>,
    /// New segments with fewer replicas than their tier wants, in id order.
    pub under_replicated: Vec<UnderReplicated>,
}

/// Places `new` segments on `nodes`, given the bytes already assigned to each node (`stored`,
/// updated with what is placed here). Pure and deterministic: segments are placed in id order.
pub fn place_new(
    nodes: &[NodeSpec],
    tiers: &[TierSpec],
    stored: &mut BTreeMap<NodeName, u64>,
    new: &[SegmentSpec],
) -> Placed {
    let wanted = replication_factors(tiers);
    let mut nodes: Vec<&NodeSpec> = nodes.iter().filter(|n| n.healthy).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|later, kept| later.name == kept.name);
    let keys: Vec<u64> = nodes.iter().map(|n| node_key(n.name.as_str())).collect();
    let mut new: Vec<&SegmentSpec> = new.iter().collect();
    new.sort_by(|a, b| a.id.cmp(&b.id));
    new.dedup_by(|later, kept| later.id == kept.id);

    let mut out = Placed::default();
    for segment in new {
        let rf = wanted(&segment.tier);
        let tier: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].tier == segment.tier)
            .collect();
        let load = |i: usize| stored.get(&nodes[i].name).copied().unwrap_or(0);
        let quota = |i: usize| nodes[i].quota_bytes;
        let capacity: f64 = tier.iter().map(|&i| quota(i) as f64).sum();
        let demand: f64 = tier.iter().map(|&i| load(i) as f64).sum::<f64>()
            + segment.size_bytes as f64 * rf as f64;
        let ratio = if capacity > 0.0 {
            (demand / capacity).min(1.0)
        } else {
            1.0
        };
        let seg_hash = name_hash(segment.id.as_str());
        // (hungry first, score, name): lower is better.
        let mut candidates: Vec<(bool, f64, usize)> = tier
            .iter()
            .copied()
            .filter(|&i| load(i).saturating_add(segment.size_bytes) <= quota(i))
            .map(|i| {
                let q = quota(i) as f64;
                let hungry = (load(i) as f64) < ratio * q;
                let score = neg_ln(unit(seg_hash, keys[i])) / q;
                (!hungry, score, i)
            })
            .collect();
        candidates.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(nodes[a.2].name.cmp(&nodes[b.2].name))
        });
        let mut holders: Vec<NodeName> = candidates
            .iter()
            .take(rf)
            .map(|&(_, _, i)| nodes[i].name.clone())
            .collect();
        for h in &holders {
            *stored.entry(h.clone()).or_insert(0) += segment.size_bytes;
        }
        holders.sort();
        if holders.len() < rf {
            out.under_replicated.push(UnderReplicated {
                segment: segment.id.clone(),
                placed: holders.len(),
                wanted: rf,
            });
        }
        out.replicas.push((segment.id.clone(), holders));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assign, Assignment};

    fn node(name: &str, tier: &str, quota: u64) -> NodeSpec {
        NodeSpec {
            name: NodeName::new(name).unwrap(),
            tier: tier.into(),
            quota_bytes: quota,
            healthy: true,
        }
    }

    fn seg(i: usize, size: u64) -> SegmentSpec {
        SegmentSpec {
            id: SegmentId::new(&format!("seg-{i:05}")).unwrap(),
            tier: "default".into(),
            size_bytes: size,
        }
    }

    fn rf(n: usize) -> Vec<TierSpec> {
        vec![TierSpec {
            name: "default".into(),
            replication_factor: n,
        }]
    }

    /// Segments placed one batch at a time, then a full plan over the result: nothing moves,
    /// and the rules hold (distinct nodes, quotas, replication factor).
    #[test]
    fn a_full_plan_over_incremental_placements_moves_nothing() {
        for (nodes, factor) in [
            (vec![node("a", "default", 1 << 30)], 1),
            (
                vec![
                    node("a", "default", 1 << 30),
                    node("b", "default", 1 << 30),
                    node("c", "default", 1 << 30),
                ],
                2,
            ),
            (
                vec![
                    node("a", "default", 1 << 30),
                    node("b", "default", 2 << 30),
                    node("c", "default", 3 << 30),
                    node("d", "default", 1 << 30),
                ],
                2,
            ),
        ] {
            let tiers = rf(factor);
            let first: Vec<SegmentSpec> = (0..200).map(|i| seg(i, 8192 + i as u64)).collect();
            let plan = assign(&nodes, &first, &tiers, &Assignment::default());
            let mut assignment = plan.assignment;
            let mut stored = plan.stored_bytes;
            let mut all = first;
            for batch in 0..40 {
                let new: Vec<SegmentSpec> = (0..25)
                    .map(|j| seg(200 + batch * 25 + j, 8192 + j as u64 * 7))
                    .collect();
                let placed = place_new(&nodes, &tiers, &mut stored, &new);
                assert!(placed.under_replicated.is_empty());
                for (id, holders) in placed.replicas {
                    assert_eq!(holders.len(), factor);
                    let mut distinct = holders.clone();
                    distinct.dedup();
                    assert_eq!(distinct, holders);
                    assignment.replicas.insert(id, holders);
                }
                all.extend(new);
            }
            let full = assign(&nodes, &all, &tiers, &assignment);
            assert_eq!(full.moves, 0, "{nodes:?}");
            assert_eq!(full.assignment, assignment, "{nodes:?}");
            assert_eq!(full.stored_bytes, stored);
        }
    }

    #[test]
    fn quotas_and_tiers_are_respected() {
        let nodes = vec![
            node("small", "default", 20_000),
            node("big", "default", 1 << 30),
            node("other", "cold", 1 << 30),
            NodeSpec {
                healthy: false,
                ..node("down", "default", 1 << 30)
            },
        ];
        let mut stored = BTreeMap::new();
        let new: Vec<SegmentSpec> = (0..10).map(|i| seg(i, 8192)).collect();
        let placed = place_new(&nodes, &rf(2), &mut stored, &new);
        // Two fit on `small`; every segment wants two copies but only `small` and `big` qualify.
        assert_eq!(placed.under_replicated.len(), 8);
        assert!(stored[&NodeName::new("small").unwrap()] <= 20_000);
        assert_eq!(stored[&NodeName::new("big").unwrap()], 10 * 8192);
        for (_, holders) in &placed.replicas {
            assert!(holders
                .iter()
                .all(|h| h.as_str() == "small" || h.as_str() == "big"));
        }
    }
}
