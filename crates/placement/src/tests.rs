//! Tests of [`assign`]: unit scenarios, then property tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn nn(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn sid(id: &str) -> SegmentId {
    SegmentId::new(id).unwrap()
}

fn node(name: &str, tier: &str, quota: u64) -> NodeSpec {
    NodeSpec {
        name: nn(name),
        tier: tier.into(),
        quota_bytes: quota,
        healthy: true,
    }
}

fn seg(id: &str, tier: &str, size: u64) -> SegmentSpec {
    SegmentSpec {
        id: sid(id),
        tier: tier.into(),
        size_bytes: size,
    }
}

fn tier(name: &str, rf: usize) -> TierSpec {
    TierSpec {
        name: name.into(),
        replication_factor: rf,
    }
}

fn nodes(count: usize, quota: u64) -> Vec<NodeSpec> {
    (0..count)
        .map(|i| node(&format!("node-{i:03}"), "default", quota))
        .collect()
}

fn segments(count: usize, size: u64) -> Vec<SegmentSpec> {
    (0..count)
        .map(|i| seg(&format!("seg-{i:06}"), "default", size))
        .collect()
}

/// `count` segments of `size` bytes, or (if `vary`) of 1 to 4 times `size` bytes.
fn varied_segments(count: usize, size: u64, vary: bool) -> Vec<SegmentSpec> {
    let mut rng = Rng(count as u64);
    (0..count)
        .map(|i| {
            let factor = if vary { 1 + rng.below(4) as u64 } else { 1 };
            seg(&format!("seg-{i:06}"), "default", size * factor)
        })
        .collect()
}

/// A small deterministic generator for shuffles and varied sizes (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        score::fmix64(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn pairs(a: &Assignment) -> BTreeSet<(SegmentId, NodeName)> {
    a.replicas
        .iter()
        .flat_map(|(s, hs)| hs.iter().map(move |h| (s.clone(), h.clone())))
        .collect()
}

/// Checks every rule that must hold whatever the inputs. Node names and segment ids must be
/// unique in the inputs (the proptest generators make them so).
fn check_rules(
    nodes: &[NodeSpec],
    segments: &[SegmentSpec],
    tiers: &[TierSpec],
    previous: &Assignment,
    plan: &Plan,
) {
    let by_name: HashMap<&NodeName, &NodeSpec> = nodes.iter().map(|n| (&n.name, n)).collect();
    let rf_of = |t: &str| {
        let find = |name: &str| {
            tiers
                .iter()
                .filter(|x| x.name == name)
                .map(|x| x.replication_factor)
                .max()
        };
        find(t).or_else(|| find("default")).unwrap_or(1)
    };
    let ids: BTreeSet<&SegmentId> = segments.iter().map(|s| &s.id).collect();
    let keys: BTreeSet<&SegmentId> = plan.assignment.replicas.keys().collect();
    assert_eq!(
        ids, keys,
        "every input segment, and only those, has an entry"
    );

    let mut stored: BTreeMap<NodeName, u64> = nodes.iter().map(|n| (n.name.clone(), 0)).collect();
    let mut under = Vec::new();
    for segment in segments {
        let holders = plan.assignment.holders(&segment.id);
        let rf = rf_of(&segment.tier);
        assert!(holders.len() <= rf, "{}: {holders:?} > rf {rf}", segment.id);
        assert!(
            holders.windows(2).all(|w| w[0] < w[1]),
            "{}: holders distinct and in name order: {holders:?}",
            segment.id
        );
        for h in holders {
            let spec = by_name.get(h).unwrap_or_else(|| panic!("unknown node {h}"));
            assert!(spec.healthy, "{} on unhealthy {h}", segment.id);
            assert_eq!(
                spec.tier, segment.tier,
                "{} on {h} of another tier",
                segment.id
            );
            *stored.get_mut(h).unwrap() += segment.size_bytes;
        }
        if holders.len() < rf {
            under.push(UnderReplicated {
                segment: segment.id.clone(),
                placed: holders.len(),
                wanted: rf,
            });
        }
    }
    under.sort_by(|a, b| a.segment.cmp(&b.segment));
    assert_eq!(plan.under_replicated, under);
    for n in nodes {
        assert!(
            stored[&n.name] <= n.quota_bytes,
            "{} holds {} > quota {}",
            n.name,
            stored[&n.name],
            n.quota_bytes
        );
    }
    assert_eq!(plan.stored_bytes, stored);

    let before = pairs(previous);
    let after = pairs(&plan.assignment);
    assert_eq!(plan.moves, after.difference(&before).count(), "moves");
    assert_eq!(plan.drops, before.difference(&after).count(), "drops");
}

fn ratio(plan: &Plan, n: &NodeSpec) -> f64 {
    plan.stored_bytes[&n.name] as f64 / n.quota_bytes as f64
}

fn spread(plan: &Plan, nodes: &[NodeSpec]) -> f64 {
    let ratios: Vec<f64> = nodes
        .iter()
        .filter(|n| n.healthy)
        .map(|n| ratio(plan, n))
        .collect();
    let max = ratios.iter().copied().fold(f64::MIN, f64::max);
    let min = ratios.iter().copied().fold(f64::MAX, f64::min);
    max - min
}

/// Asserts each healthy node's ratio is within its balance band (see the module docs).
fn assert_within_band(plan: &Plan, nodes: &[NodeSpec], segments: &[SegmentSpec], rf: usize) {
    let healthy: Vec<&NodeSpec> = nodes.iter().filter(|n| n.healthy).collect();
    let rf = rf.min(healthy.len());
    let demand: f64 = segments
        .iter()
        .map(|s| s.size_bytes as f64 * rf as f64)
        .sum();
    let capacity: f64 = healthy.iter().map(|n| n.quota_bytes as f64).sum();
    let r = (demand / capacity).min(1.0);
    let mean = segments.iter().map(|s| s.size_bytes as f64).sum::<f64>() / segments.len() as f64;
    for n in healthy {
        let target = r * n.quota_bytes as f64;
        let w = (0.05 * target).max(mean);
        let stored = plan.stored_bytes[&n.name] as f64;
        assert!(
            (stored - target).abs() <= w + 1e-6,
            "{}: stored {stored}, target {target}, band ±{w}",
            n.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unit tests

#[test]
fn empty_inputs_give_an_empty_plan() {
    let plan = assign(&[], &[], &[], &Assignment::default());
    assert_eq!(plan, Plan::default());
    let plan = assign(&nodes(3, 100), &[], &[], &Assignment::default());
    assert!(plan.assignment.replicas.is_empty());
    assert_eq!(plan.stored_bytes.len(), 3);
}

#[test]
fn places_rf_distinct_nodes_of_the_tier() {
    let ns = nodes(5, 1_000);
    let ss = segments(40, 10);
    let tiers = [tier("default", 3)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert!(plan.under_replicated.is_empty());
    for s in &ss {
        assert_eq!(plan.assignment.holders(&s.id).len(), 3);
    }
    assert_eq!(plan.moves, 120);
    assert_eq!(plan.drops, 0);
    assert_eq!(plan.assignment.replica_count(), 120);
}

#[test]
fn tiers_are_isolated_and_unknown_tiers_use_default_rf() {
    let ns = vec![
        node("hot-1", "hot", 1_000),
        node("hot-2", "hot", 1_000),
        node("hot-3", "hot", 1_000),
        node("cold-1", "cold", 1_000),
        node("cold-2", "cold", 1_000),
        node("def-1", "default", 1_000),
        node("def-2", "default", 1_000),
    ];
    let ss = vec![
        seg("h1", "hot", 10),
        seg("h2", "hot", 10),
        seg("c1", "cold", 10),
        seg("d1", "default", 10),
        seg("x1", "mystery", 10),
    ];
    let tiers = [tier("hot", 3), tier("cold", 1), tier("default", 2)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert_eq!(
        plan.assignment.holders(&sid("h1")),
        &[nn("hot-1"), nn("hot-2"), nn("hot-3")]
    );
    assert_eq!(plan.assignment.holders(&sid("c1")).len(), 1);
    assert!(plan.assignment.holders(&sid("c1"))[0]
        .as_str()
        .starts_with("cold-"));
    assert_eq!(
        plan.assignment.holders(&sid("d1")),
        &[nn("def-1"), nn("def-2")]
    );
    // "mystery" has no nodes; it wants the default RF (2) and is reported, never placed elsewhere.
    assert!(plan.assignment.holders(&sid("x1")).is_empty());
    assert_eq!(
        plan.under_replicated,
        vec![UnderReplicated {
            segment: sid("x1"),
            placed: 0,
            wanted: 2
        }]
    );
    // Without a "default" tier, unknown tiers want 1.
    let plan = assign(&ns, &ss, &[tier("hot", 3)], &Assignment::default());
    assert_eq!(plan.assignment.holders(&sid("d1")).len(), 1);
    assert_eq!(plan.under_replicated[0].wanted, 1);
}

#[test]
fn unhealthy_nodes_get_nothing_and_lose_their_replicas() {
    let mut ns = nodes(4, 1_000);
    let ss = segments(30, 10);
    let tiers = [tier("default", 2)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    let held = first.stored_bytes[&ns[1].name] / 10;
    assert!(held > 0);
    ns[1].healthy = false;
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    check_rules(&ns, &ss, &tiers, &first.assignment, &second);
    assert_eq!(second.stored_bytes[&ns[1].name], 0);
    assert_eq!(second.assignment.segments_on(&ns[1].name).count(), 0);
    assert!(second.under_replicated.is_empty());
    assert_eq!(second.moves as u64, held);
    assert_eq!(second.drops as u64, held);
}

#[test]
fn not_enough_nodes_is_reported_with_what_was_placed() {
    let ns = nodes(2, 1_000);
    let ss = segments(3, 10);
    let tiers = [tier("default", 3)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert_eq!(plan.under_replicated.len(), 3);
    assert!(plan
        .under_replicated
        .iter()
        .all(|u| u.placed == 2 && u.wanted == 3));
}

#[test]
fn replication_factor_zero_places_nothing_and_reports_nothing() {
    let ns = nodes(2, 1_000);
    let ss = segments(3, 10);
    let tiers = [tier("default", 0)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    assert_eq!(plan.assignment.replica_count(), 0);
    assert!(plan.under_replicated.is_empty());
    assert_eq!(plan.assignment.replicas.len(), 3);
}

#[test]
fn under_pressure_every_segment_gets_a_first_copy_first() {
    // Capacity for 12 copies of 10 segments at RF 2: all get one, two get a second.
    let ns = nodes(2, 60);
    let ss = segments(10, 10);
    let tiers = [tier("default", 2)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert!(ss
        .iter()
        .all(|s| !plan.assignment.holders(&s.id).is_empty()));
    assert_eq!(plan.assignment.replica_count(), 12);
    assert_eq!(plan.under_replicated.len(), 8);
    assert_eq!(plan.stored_bytes.values().sum::<u64>(), 120);
}

#[test]
fn a_full_node_gets_nothing_more() {
    // Fill the cluster exactly, then add segments: nobody can take them, nothing moves.
    let ns = nodes(3, 100);
    let ss = segments(15, 20);
    let tiers = [tier("default", 1)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    assert!(first.under_replicated.is_empty());
    assert!(
        first.stored_bytes.values().all(|&b| b == 100),
        "{:?}",
        first.stored_bytes
    );
    let mut more = ss.clone();
    more.extend((0..5).map(|i| seg(&format!("new-{i}"), "default", 20)));
    let second = assign(&ns, &more, &tiers, &first.assignment);
    check_rules(&ns, &more, &tiers, &first.assignment, &second);
    assert_eq!(second.moves, 0);
    assert_eq!(second.under_replicated.len(), 5);
    assert_eq!(pairs(&second.assignment), pairs(&first.assignment));

    // One node at its quota while the others have room: new segments go to the others.
    let mut ns = nodes(3, 1_000);
    ns[0].quota_bytes = 100;
    let full: Vec<SegmentSpec> = (0..5)
        .map(|i| seg(&format!("f-{i}"), "default", 20))
        .collect();
    let previous = Assignment {
        replicas: full
            .iter()
            .map(|s| (s.id.clone(), vec![ns[0].name.clone()]))
            .collect(),
    };
    let mut all = full.clone();
    all.extend(segments(60, 20));
    let plan = assign(&ns, &all, &tiers, &previous);
    check_rules(&ns, &all, &tiers, &previous, &plan);
    let on_full: BTreeSet<_> = plan.assignment.segments_on(&ns[0].name).cloned().collect();
    let before: BTreeSet<_> = full.iter().map(|s| s.id.clone()).collect();
    assert!(on_full.is_subset(&before), "the full node got {on_full:?}");
    assert!(plan.under_replicated.is_empty());
}

#[test]
fn a_shrunk_quota_sheds_down_to_its_new_share() {
    let mut ns = nodes(4, 1_000);
    let ss = segments(100, 10);
    let tiers = [tier("default", 2)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    let before = first.stored_bytes[&ns[0].name];
    assert!(before > 300);
    ns[0].quota_bytes = 300;
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    check_rules(&ns, &ss, &tiers, &first.assignment, &second);
    // 2000 bytes over 3300 of quota: its target is 182 bytes, ± 10 (one segment).
    let after = second.stored_bytes[&ns[0].name];
    assert!((172..=192).contains(&after), "{after}");
    // What it kept, it already had; what it shed went to the others, and nothing else moved.
    let kept: BTreeSet<_> = second.assignment.segments_on(&ns[0].name).collect();
    let had: BTreeSet<_> = first.assignment.segments_on(&ns[0].name).collect();
    assert!(kept.is_subset(&had));
    assert_eq!(second.moves as u64, (before - after) / 10);
    assert_within_band(&second, &ns, &ss, 2);
}

#[test]
fn a_segment_larger_than_any_quota_is_under_replicated_alone() {
    let ns = nodes(3, 1_000);
    let mut ss = segments(20, 10);
    ss.push(seg("huge", "default", 5_000));
    let tiers = [tier("default", 2)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert_eq!(
        plan.under_replicated,
        vec![UnderReplicated {
            segment: sid("huge"),
            placed: 0,
            wanted: 2
        }]
    );
}

#[test]
fn zero_quota_nodes_hold_nothing() {
    let mut ns = nodes(4, 1_000);
    ns[2].quota_bytes = 0;
    let ss = segments(50, 10);
    let tiers = [tier("default", 3)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    assert_eq!(plan.stored_bytes[&ns[2].name], 0);
    assert!(plan.under_replicated.is_empty());
}

#[test]
fn previous_garbage_is_cleaned_and_counted() {
    let ns = nodes(3, 1_000);
    let ss = segments(2, 10);
    let tiers = [tier("default", 2)];
    let previous = Assignment {
        replicas: [
            // duplicate holder and an unknown node
            (
                ss[0].id.clone(),
                vec![ns[0].name.clone(), ns[0].name.clone(), nn("ghost")],
            ),
            // a segment that no longer exists, before and after the real ones
            (sid("aaa-gone"), vec![ns[1].name.clone()]),
            (
                sid("zzz-gone"),
                vec![ns[1].name.clone(), ns[2].name.clone()],
            ),
        ]
        .into_iter()
        .collect(),
    };
    let plan = assign(&ns, &ss, &tiers, &previous);
    assert!(plan.assignment.holders(&ss[0].id).contains(&ns[0].name));
    assert!(!plan.assignment.replicas.contains_key(&sid("zzz-gone")));
    // drops: ghost (1) + aaa-gone (1) + zzz-gone (2); the duplicate counts once.
    assert_eq!(plan.drops, 4);
    // moves: seg 0 needs one more copy, seg 1 needs two.
    assert_eq!(plan.moves, 3);
}

#[test]
fn replication_factor_changes_keep_existing_copies() {
    let ns = nodes(5, 10_000);
    let ss = segments(200, 10);
    let two = assign(&ns, &ss, &[tier("default", 2)], &Assignment::default());
    let three = assign(&ns, &ss, &[tier("default", 3)], &two.assignment);
    check_rules(&ns, &ss, &[tier("default", 3)], &two.assignment, &three);
    assert!(pairs(&two.assignment).is_subset(&pairs(&three.assignment)));
    assert_eq!(three.moves, 200);
    assert_eq!(three.drops, 0);
    let one = assign(&ns, &ss, &[tier("default", 1)], &three.assignment);
    check_rules(&ns, &ss, &[tier("default", 1)], &three.assignment, &one);
    // Mostly the kept copies; a few may move to even out what the trim left uneven.
    assert!(one.moves <= 20, "{}", one.moves);
    assert_eq!(one.drops, 400 + one.moves);
}

#[test]
fn quotas_weight_the_share() {
    let mut ns = nodes(6, 1_000);
    ns[5].quota_bytes = 3_000;
    let ss = segments(400, 5);
    let tiers = [tier("default", 2)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    let big = plan.stored_bytes[&ns[5].name] as f64;
    let small = plan.stored_bytes[&ns[0].name] as f64;
    assert!((2.6..=3.4).contains(&(big / small)), "{big} vs {small}");
    assert_within_band(&plan, &ns, &ss, 2);
}

#[test]
fn evenness_with_uniform_sizes() {
    let ns = nodes(20, 100_000);
    let ss = segments(5_000, 100);
    let tiers = [tier("default", 3)];
    let plan = assign(&ns, &ss, &tiers, &Assignment::default());
    check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
    // r = 0.75, band ±5% of target: spread at most 0.075.
    let s = spread(&plan, &ns);
    assert!(s <= 0.075 + 1e-9, "spread {s}");
    assert_within_band(&plan, &ns, &ss, 3);
}

#[test]
fn one_join_moves_about_its_fair_share_only_to_the_new_node() {
    let mut ns = nodes(10, 1_000_000);
    let mut rng = Rng(7);
    let ss: Vec<SegmentSpec> = (0..3_000)
        .map(|i| seg(&format!("seg-{i}"), "default", 50 + rng.below(150) as u64))
        .collect();
    let tiers = [tier("default", 2)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    ns.push(node("node-new", "default", 1_000_000));
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    check_rules(&ns, &ss, &tiers, &first.assignment, &second);
    let ideal = 6_000.0 / 11.0;
    assert!(second.moves > 0);
    assert!(
        (second.moves as f64) <= 2.0 * ideal,
        "{} moves",
        second.moves
    );
    assert!(
        (second.moves as f64) >= 0.5 * ideal,
        "{} moves",
        second.moves
    );
    let new = nn("node-new");
    let before = pairs(&first.assignment);
    for pair in pairs(&second.assignment).difference(&before) {
        assert_eq!(
            pair.1, new,
            "a replica moved elsewhere than the new node: {pair:?}"
        );
    }
    assert_eq!(second.moves, second.drops);
    // The new node is filled about as much as the others.
    let r_new = ratio(&second, ns.last().unwrap());
    let mean: f64 = ns.iter().map(|n| ratio(&second, n)).sum::<f64>() / ns.len() as f64;
    assert!(
        (r_new - mean).abs() <= 0.05 * mean,
        "{r_new} vs mean {mean}"
    );
}

#[test]
fn a_returning_node_gets_its_share_back() {
    let mut ns = nodes(8, 1_000_000);
    let ss = segments(2_000, 100);
    let tiers = [tier("default", 2)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    ns[3].healthy = false;
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    assert_eq!(second.stored_bytes[&ns[3].name], 0);
    ns[3].healthy = true;
    let third = assign(&ns, &ss, &tiers, &second.assignment);
    check_rules(&ns, &ss, &tiers, &second.assignment, &third);
    let ideal = 4_000.0 / 8.0;
    assert!(
        third.moves > 0 && (third.moves as f64) <= 1.2 * ideal,
        "{}",
        third.moves
    );
    assert_within_band(&third, &ns, &ss, 2);
}

#[test]
fn a_leave_in_a_larger_cluster_moves_only_its_replicas() {
    let mut ns = nodes(10, 1_000_000);
    let ss = segments(3_000, 100);
    let tiers = [tier("default", 2)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    let gone = ns.remove(4);
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    check_rules(&ns, &ss, &tiers, &first.assignment, &second);
    let lost = first.assignment.segments_on(&gone.name).count();
    assert!(lost > 0);
    assert_eq!(second.moves, lost);
    assert_eq!(second.drops, lost);
    let kept: BTreeSet<_> = pairs(&first.assignment)
        .into_iter()
        .filter(|(_, n)| *n != gone.name)
        .collect();
    assert!(kept.is_subset(&pairs(&second.assignment)));
    assert!(second.under_replicated.is_empty());
    assert_within_band(&second, &ns, &ss, 2);
}

#[test]
fn rerun_is_a_fixed_point() {
    let ns = nodes(7, 50_000);
    let mut rng = Rng(3);
    let ss: Vec<SegmentSpec> = (0..1_000)
        .map(|i| seg(&format!("s{i}"), "default", 1 + rng.below(100) as u64))
        .collect();
    let tiers = [tier("default", 3)];
    let first = assign(&ns, &ss, &tiers, &Assignment::default());
    let second = assign(&ns, &ss, &tiers, &first.assignment);
    assert_eq!(second.assignment, first.assignment);
    assert_eq!((second.moves, second.drops), (0, 0));
}

#[test]
fn input_order_and_duplicates_do_not_matter() {
    let mut ns = nodes(6, 10_000);
    ns.push(NodeSpec {
        quota_bytes: 1,
        ..ns[2].clone()
    }); // a duplicate name: the larger quota wins
    let mut ss = segments(300, 7);
    ss.push(seg("seg-000005", "default", 1)); // duplicate id: the larger size wins
    let tiers = vec![tier("default", 2), tier("default", 1), tier("other", 4)];
    let base = assign(&ns, &ss, &tiers, &Assignment::default());
    let mut rng = Rng(11);
    for _ in 0..5 {
        let (mut n2, mut s2, mut t2) = (ns.clone(), ss.clone(), tiers.clone());
        rng.shuffle(&mut n2);
        rng.shuffle(&mut s2);
        rng.shuffle(&mut t2);
        assert_eq!(assign(&n2, &s2, &t2, &Assignment::default()), base);
    }
    assert_eq!(base.assignment.holders(&sid("seg-000000")).len(), 2);
    assert_eq!(base.stored_bytes.len(), 6);
}

/// Pins the placement of a tiny cluster: if this changes, every deployed cluster reshuffles on
/// upgrade. Change it only on purpose.
#[test]
fn placement_is_pinned() {
    let ns = nodes(4, 1_000);
    let ss = segments(6, 10);
    let plan = assign(&ns, &ss, &[tier("default", 2)], &Assignment::default());
    let got: Vec<String> = plan
        .assignment
        .replicas
        .iter()
        .map(|(s, hs)| {
            let hs: Vec<&str> = hs.iter().map(NodeName::as_str).collect();
            format!("{s}:{}", hs.join(","))
        })
        .collect();
    assert_eq!(got, PINNED);
}

const PINNED: [&str; 6] = [
    "seg-000000:node-002,node-003",
    "seg-000001:node-001,node-002",
    "seg-000002:node-000,node-001",
    "seg-000003:node-000,node-003",
    "seg-000004:node-001,node-002",
    "seg-000005:node-001,node-003",
];

#[test]
fn types_round_trip_and_deserialize_from_config() {
    let plan = assign(
        &nodes(3, 100),
        &segments(5, 10),
        &[],
        &Assignment::default(),
    );
    let json = serde_json::to_string(&plan.assignment).unwrap();
    assert!(
        json.starts_with("{\"replicas\":{\"seg-000000\":[\"node-"),
        "{json}"
    );
    let back: Assignment = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan.assignment);
    // Invalid names are rejected on the way in.
    assert!(serde_json::from_str::<Assignment>("{\"replicas\":{\"../x\":[]}}").is_err());

    #[derive(serde::Deserialize)]
    struct Config {
        tiers: Vec<TierSpec>,
    }
    let config: Config = toml::from_str(
        "[[tiers]]\nname = \"hot\"\nreplication_factor = 3\n\n\
         [[tiers]]\nname = \"default\"\nreplication_factor = 2\n",
    )
    .unwrap();
    assert_eq!(config.tiers, vec![tier("hot", 3), tier("default", 2)]);
    assert!(toml::from_str::<Config>("[[tiers]]\nname = \"x\"\nrf = 3\n").is_err());
    assert!(
        toml::from_str::<Config>("[[tiers]]\nname = \"x\"\nreplication_factor = -1\n").is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// A random cluster: two tiers of nodes plus segments of those and an unknown tier, a random
/// previous assignment full of stale and invalid entries.
#[derive(Clone, Debug)]
struct Case {
    nodes: Vec<NodeSpec>,
    segments: Vec<SegmentSpec>,
    tiers: Vec<TierSpec>,
    previous: Assignment,
}

const TIERS: [&str; 3] = ["hot", "cold", "other"];

fn any_case() -> impl Strategy<Value = Case> {
    let nodes = prop::collection::vec((0usize..2, 0u64..3_000, prop::bool::weighted(0.85)), 1..9);
    let segments = prop::collection::vec((0usize..3, 0u64..400), 0..70);
    let rfs = (0usize..4, 0usize..4, prop::option::of(0usize..3));
    let previous = prop::collection::vec((0usize..80, 0usize..10), 0..120);
    (nodes, segments, rfs, previous).prop_map(|(nodes, segments, (hot, cold, default), prev)| {
        let nodes: Vec<NodeSpec> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (t, quota, healthy))| NodeSpec {
                name: nn(&format!("n{i}")),
                tier: TIERS[t].into(),
                quota_bytes: quota,
                healthy,
            })
            .collect();
        let segments: Vec<SegmentSpec> = segments
            .into_iter()
            .enumerate()
            .map(|(i, (t, size))| seg(&format!("s{i}"), TIERS[t], size))
            .collect();
        let mut tiers = vec![tier("hot", hot), tier("cold", cold)];
        if let Some(rf) = default {
            tiers.push(tier("default", rf));
        }
        let mut previous = Assignment::default();
        for (s, n) in prev {
            // ids beyond the segments are stale; n9 never exists
            previous
                .replicas
                .entry(sid(&format!("s{s}")))
                .or_default()
                .push(nn(&format!("n{n}")));
        }
        Case {
            nodes,
            segments,
            tiers,
            previous,
        }
    })
}

/// A single-tier cluster with room to spare: equal quotas, uniform sizes, RF ≤ nodes - 1.
fn roomy_uniform() -> impl Strategy<Value = (usize, usize, usize, u64)> {
    (3usize..13, 1usize..4, 10usize..400, 1u64..100).prop_filter_map(
        "need at least a few replicas per node",
        |(n, rf, s, size)| (rf < n && s * rf / (n + 1) >= 4).then_some((n, rf, s, size)),
    )
}

proptest! {

    #[test]
    fn rules_always_hold(case in any_case()) {
        let plan = assign(&case.nodes, &case.segments, &case.tiers, &case.previous);
        check_rules(&case.nodes, &case.segments, &case.tiers, &case.previous, &plan);
    }

    #[test]
    fn output_is_a_fixed_point(case in any_case()) {
        let first = assign(&case.nodes, &case.segments, &case.tiers, &case.previous);
        let second = assign(&case.nodes, &case.segments, &case.tiers, &first.assignment);
        prop_assert_eq!(&second.assignment, &first.assignment);
        prop_assert_eq!((second.moves, second.drops), (0, 0));
        prop_assert_eq!(second.under_replicated, first.under_replicated);
    }

    #[test]
    fn input_order_does_not_matter(case in any_case(), seed in any::<u64>()) {
        let base = assign(&case.nodes, &case.segments, &case.tiers, &case.previous);
        let mut rng = Rng(seed);
        let (mut n, mut s, mut t) = (case.nodes.clone(), case.segments.clone(), case.tiers.clone());
        rng.shuffle(&mut n);
        rng.shuffle(&mut s);
        rng.shuffle(&mut t);
        let mut previous = case.previous.clone();
        for holders in previous.replicas.values_mut() {
            rng.shuffle(holders);
        }
        prop_assert_eq!(assign(&n, &s, &t, &previous), base);
    }

    #[test]
    fn full_replication_when_capacity_allows(
        per_tier in (1usize..6, 1usize..6),
        rfs in (1usize..6, 1usize..6),
        sizes in prop::collection::vec((0usize..2, 0u64..1_000), 0..60),
    ) {
        let mut ns = Vec::new();
        for (t, count) in [(0, per_tier.0), (1, per_tier.1)] {
            for i in 0..count {
                ns.push(node(&format!("{}-{i}", TIERS[t]), TIERS[t], 1_000_000));
            }
        }
        let ss: Vec<SegmentSpec> = sizes
            .iter()
            .enumerate()
            .map(|(i, &(t, size))| seg(&format!("s{i}"), TIERS[t], size))
            .collect();
        let rf = [rfs.0.min(per_tier.0), rfs.1.min(per_tier.1)];
        let tiers = [tier("hot", rf[0]), tier("cold", rf[1])];
        let plan = assign(&ns, &ss, &tiers, &Assignment::default());
        check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
        prop_assert!(plan.under_replicated.is_empty());
        for s in &ss {
            let want = if s.tier == "hot" { rf[0] } else { rf[1] };
            prop_assert_eq!(plan.assignment.holders(&s.id).len(), want);
        }
    }

    #[test]
    fn one_join_moves_about_one_share((n, rf, s, size) in roomy_uniform(), vary in any::<bool>()) {
        let ss = varied_segments(s, size, vary);
        let demand: u64 = ss.iter().map(|x| x.size_bytes * rf as u64).sum();
        let mut ns = nodes(n, demand.div_ceil(n as u64) * 2);
        let tiers = [tier("default", rf)];
        let first = assign(&ns, &ss, &tiers, &Assignment::default());
        ns.push(node("node-new", "default", ns[0].quota_bytes));
        let second = assign(&ns, &ss, &tiers, &first.assignment);
        check_rules(&ns, &ss, &tiers, &first.assignment, &second);
        // Ideally the new node takes 1/(N+1) of the replicas (of the bytes, if sizes vary).
        prop_assert!(second.moves > 0);
        let ideal = (s * rf) as f64 / (n + 1) as f64;
        let moved_bytes = second.stored_bytes[&nn("node-new")] as f64;
        let ideal_bytes = demand as f64 / (n + 1) as f64;
        if vary {
            prop_assert!(moved_bytes <= 2.0 * ideal_bytes, "{} bytes, ideal {}", moved_bytes, ideal_bytes);
        } else {
            prop_assert!(second.moves as f64 <= 2.0 * ideal, "{} moves, ideal {}", second.moves, ideal);
        }
        let new = nn("node-new");
        let before = pairs(&first.assignment);
        for pair in pairs(&second.assignment).difference(&before) {
            prop_assert_eq!(&pair.1, &new);
        }
    }

    #[test]
    fn one_leave_moves_only_its_replicas(
        (n, rf, s, size) in roomy_uniform(),
        vary in any::<bool>(),
        unhealthy in any::<bool>(),
        which in any::<prop::sample::Index>(),
    ) {
        let ss = varied_segments(s, size, vary);
        let demand: u64 = ss.iter().map(|x| x.size_bytes * rf as u64).sum();
        let mut ns = nodes(n, demand.div_ceil(n as u64) * 2);
        let tiers = [tier("default", rf)];
        let first = assign(&ns, &ss, &tiers, &Assignment::default());
        let i = which.index(n);
        let gone = ns[i].name.clone();
        if unhealthy {
            ns[i].healthy = false;
        } else {
            ns.remove(i);
        }
        let second = assign(&ns, &ss, &tiers, &first.assignment);
        check_rules(&ns, &ss, &tiers, &first.assignment, &second);
        let lost = first.assignment.segments_on(&gone).count();
        prop_assert_eq!(second.moves, lost);
        let kept: BTreeSet<_> = pairs(&first.assignment)
            .into_iter()
            .filter(|(_, h)| *h != gone)
            .collect();
        prop_assert!(kept.is_subset(&pairs(&second.assignment)));
        prop_assert!(second.under_replicated.is_empty());
    }

}

proptest! {
    // Many generated clusters are rejected as too close to an edge; allow for it.
    #![proptest_config(ProptestConfig {
        max_global_rejects: 1_000_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fresh_assignment_is_within_band(
        (n, rf, s, size) in roomy_uniform(),
        quotas in prop::collection::vec(1u64..4, 13),
        fill in 0.2f64..0.95,
    ) {
        // Quotas in ratios 1:2:3, scaled so the tier is `fill` full.
        let demand = (s as u64 * size * rf as u64) as f64;
        let total: u64 = quotas[..n].iter().sum();
        // A node cannot hold two copies of a segment, so no node can take more than 1/rf of the
        // replicas; keep clear of that edge, where the band may be out of reach.
        prop_assume!(quotas[..n].iter().all(|&q| (q * rf as u64) as f64 <= 0.85 * total as f64));
        let unit = demand / fill / total as f64;
        let ns: Vec<NodeSpec> = (0..n)
            .map(|i| node(&format!("n{i}"), "default", (quotas[i] as f64 * unit).ceil() as u64))
            .collect();
        // And clear of quotas that cut into the band (then the band is not always reachable).
        let r = demand / ns.iter().map(|n| n.quota_bytes as f64).sum::<f64>();
        prop_assume!(ns.iter().all(|n| {
            let target = r * n.quota_bytes as f64;
            n.quota_bytes as f64 >= target + (0.05 * target).max(size as f64)
        }));
        let ss = segments(s, size);
        let tiers = [tier("default", rf)];
        let plan = assign(&ns, &ss, &tiers, &Assignment::default());
        check_rules(&ns, &ss, &tiers, &Assignment::default(), &plan);
        prop_assert!(plan.under_replicated.is_empty());
        assert_within_band(&plan, &ns, &ss, rf);
    }
}
