//! # Assignment: which nodes hold which segments
//!
//! [`assign`] is a pure function: nodes (tier, quota, health), segments (tier, size), tiers
//! (replication factor) and the previous [`Assignment`] in; a new assignment and a report
//! ([`Plan`]) out. No I/O, no clock, no randomness: the leader runs it, and any node can rerun it
//! and get the same answer.
//!
//! ## What it guarantees
//!
//! 1. **Placement rules, always.** A segment's replicas are on *distinct*, *healthy* nodes of the
//!    segment's *own tier*, never more than the tier's replication factor (RF) of them. A
//!    segment whose tier is not in the tier list uses the RF of tier `"default"`, or 1. When the
//!    tier lacks nodes or room, the segment gets fewer replicas and is listed in
//!    [`Plan::under_replicated`]; it is never put on another tier or an unhealthy node.
//! 2. **Quotas, always.** The bytes assigned to a node never exceed its `quota_bytes`, even if
//!    the previous assignment did (the node then drops its least-wanted replicas first).
//! 3. **Determinism.** The output depends on the inputs' content only: nodes are processed in
//!    name order and segments in id order whatever order they come in, every tie is broken by
//!    name, hashes use fixed keys, and the one transcendental function (a logarithm) is computed
//!    from IEEE basic operations, so two machines agree bit for bit. Duplicate entries (a
//!    configuration error) are resolved deterministically: the "largest" node spec (healthy,
//!    then quota, then tier), segment spec (tier, then size) and replication factor win.
//! 4. **A fixed point.** Feeding the output back as `previous` with the same inputs gives the
//!    same assignment and zero moves: the planner does not oscillate between runs (see the end
//!    of "How" for the one caveat).
//!
//! ## What it aims for (best effort, measured by the tests)
//!
//! - **Even fill.** Each node's stored/quota ratio stays close to the tier's overall ratio `r`
//!   (demand ÷ capacity, capped at 1): within a band of ±`w` bytes around its *target* `r·quota`,
//!   where `w = max(tolerance · target, mean segment size)` ([`AssignOptions::tolerance`],
//!   default 5%). The mean-size floor is there because a handful of segments cannot be split
//!   finer than one segment.
//! - **Few moves.** Previous placements that are still valid are kept. When a node leaves, only
//!   its replicas move. When a node joins a tier of `N`, about `1/(N+1)` of the replicas move to
//!   it — its fair share — and nothing else moves. When a node fills up, it simply stops
//!   receiving.
//!
//! ## How: weighted rendezvous hashing, bounded and made sticky
//!
//! Every (segment, node) pair has a score `-ln(u)/quota`, with `u` in (0, 1) a fixed hash of the
//! two names (see `score.rs`). Ranking a segment's nodes by score is *weighted rendezvous
//! hashing* (highest random weight): a node is a segment's first choice with probability
//! proportional to its quota, and adding or removing a node changes only the rankings in which
//! that node takes part. Rendezvous alone is not enough: it ignores quotas (a node can be asked
//! for more than it has), its balance is only statistical (±√k replicas on k), and it ignores
//! where the data already is (a changed quota would reshuffle everything). So each tier is
//! planned separately in four phases:
//!
//! 1. **Keep.** Start from the previous placements that are still valid: node healthy and in the
//!    segment's tier, no duplicates, at most RF per segment (the best-ranked ones if RF shrank).
//! 2. **Fit.** A node over its quota drops its least-wanted replicas (highest score) until it
//!    fits.
//! 3. **Fill.** Every segment missing replicas gets them, largest segments first, one replica per
//!    segment per round (so when space runs out, every segment gets a first copy before any gets
//!    a second). A replica goes to the best-ranked non-holder that is *hungry* (below its band)
//!    and stays within its band; else to the best-ranked one that stays within its band; else, as
//!    a last resort, to the non-holder that ends least full within its quota. Preferring hungry
//!    nodes is what keeps a fresh assignment even from below as well as from above, and what
//!    sends a departed node's replicas to the nodes that need them rather than to whichever
//!    node the hash prefers.
//! 4. **Rebalance.** A replica placed during this run (a copy that has to be made anyway) can be
//!    re-targeted for free; a replica a node already had costs a move. So:
//!    - A hungry node *pulls* the replicas it ranks best, up to its target. For free, from
//!      nodes that received them in this run and stay at least as full as it will be: this
//!      evens out what the greedy fill left uneven (a node that could not get its share because
//!      it already held the remaining segments, say). And, only if it is below `target − 2w` (it
//!      just joined, came back, or its quota grew), from holders that already had them and stay
//!      within their band, holders above their band first, then the holder that ranks the
//!      segment worst. Taking the segments the new node ranks best is what rendezvous hashing
//!      would have moved; taking them first from overfull holders means the others need not
//!      push.
//!    - A node above its band *pushes* its least-wanted replicas to nodes that stay within
//!      theirs (hungry ones first): for free, those it received in this run; and, only if it is
//!      above `target + 2w` (its quota shrank), any.
//!
//! Phases 3 and 4 repeat until nothing changes, which is what makes the output a fixed point:
//! rerun on its own output there is nothing free to re-target, and every costly move was already
//! found impossible. Each move narrows an imbalance (a node outside its band, or the gap between
//! a hungry node and a fuller one) and none widens a band violation, so the loop settles, in
//! practice in one to three rounds; a bound of 16 rounds guarantees termination regardless (an
//! input that hit the bound, none known, would lose the fixed-point guarantee).
//!
//! ## Trade-offs and what it does not do
//!
//! - The hysteresis (costly moves only beyond twice the band) is the stability/evenness
//!   trade-off: a node between its band and twice its band is left alone rather than
//!   rebalanced at the cost of moves no event called for (after a leave raised everyone's
//!   target, say); it gets new data first as data grows. Placements made in the run — fresh
//!   assignments, a departed node's replicas — land within the band. A wider tolerance means
//!   fewer moves and less evenness.
//! - The result is *path-dependent*: it depends on the previous assignment, not only on the
//!   current cluster. Two clusters with the same nodes but different histories can differ (both
//!   valid and balanced). That is the price of moving nothing that need not move.
//! - Bin packing is greedy (largest first). With segments of very different sizes close to full
//!   capacity it may leave a segment under-replicated that a perfect packing could place.
//! - It balances bytes, not load: query traffic, segment popularity and node speed are not
//!   inputs. Nor does it plan the *order* of moves or throttle them; the synchronizer does that.
//! - Tiers are independent: nodes of one tier never hold another tier's segments.
//!
//! ## Cost
//!
//! A fresh tier costs O(S·N) score evaluations (S segments, N nodes of the tier, about RF
//! passes); a re-assignment keeps almost everything and costs O(S) plus O(S log S) per node that
//! pulls. 100,000 segments on 100 nodes at RF 2: see `benches/assign.rs`.
//!
//! Tier rules (which tier a segment id belongs to) are in [`tier`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use trough_types::{NodeName, SegmentId};

mod engine;
mod incremental;
mod score;
pub mod tier;

#[cfg(test)]
mod tests;

pub use incremental::{place_new, Placed};
pub use tier::{tier_for, PatternError, TierMatcher, TierRule, DEFAULT_TIER};

/// A node as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Unique node name.
    pub name: NodeName,
    /// The tier the node serves; it only ever holds segments of this tier.
    pub tier: String,
    /// Bytes of segment copies the node may hold.
    pub quota_bytes: u64,
    /// Unhealthy nodes get nothing, and their previous replicas are re-placed.
    pub healthy: bool,
}

/// A segment as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSpec {
    pub id: SegmentId,
    /// Usually [`tier_for`] of the id.
    pub tier: String,
    /// Size of one copy.
    pub size_bytes: u64,
}

/// A tier of the configuration: `[[tiers]]` with `name` and `replication_factor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub name: String,
    /// Copies wanted of each segment of the tier (0: the tier is not served).
    pub replication_factor: usize,
}

/// Which nodes hold which segments: every segment of the input has an entry (empty if it could
/// not be placed anywhere), with its holders in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub replicas: BTreeMap<SegmentId, Vec<NodeName>>,
}

impl Assignment {
    /// The holders of `id` (empty if unknown).
    pub fn holders(&self, id: &SegmentId) -> &[NodeName] {
        self.replicas.get(id).map_or(&[], Vec::as_slice)
    }

    /// The segments `node` holds, in id order.
    pub fn segments_on<'a>(&'a self, node: &'a NodeName) -> impl Iterator<Item = &'a SegmentId> {
        self.replicas
            .iter()
            .filter(move |(_, holders)| holders.contains(node))
            .map(|(id, _)| id)
    }

    /// Total number of replicas.
    pub fn replica_count(&self) -> usize {
        self.replicas.values().map(Vec::len).sum()
    }
}

/// A segment with fewer replicas than its tier's replication factor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderReplicated {
    pub segment: SegmentId,
    /// Replicas placed.
    pub placed: usize,
    /// The tier's replication factor.
    pub wanted: usize,
}

/// The result of [`assign`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub assignment: Assignment,
    /// Segments with fewer replicas than wanted, in id order.
    pub under_replicated: Vec<UnderReplicated>,
    /// Replicas a node must fetch: (segment, node) pairs in the new assignment but not in the
    /// previous one (new segments count too).
    pub moves: usize,
    /// Replicas a node may delete: pairs in the previous assignment but not in the new one
    /// (including those of segments that no longer exist).
    pub drops: usize,
    /// Bytes assigned to each known node (0 for unhealthy ones), by name.
    pub stored_bytes: BTreeMap<NodeName, u64>,
}

/// Tuning of [`assign_with`].
#[derive(Clone, Debug, PartialEq)]
pub struct AssignOptions {
    /// Half-width of the balance band, as a fraction of a node's target bytes (at least one
    /// mean segment size). Larger: fewer moves, less even. Default 0.05.
    pub tolerance: f64,
}

impl Default for AssignOptions {
    fn default() -> Self {
        Self { tolerance: 0.05 }
    }
}

/// The replication factor of each tier name: the largest configured for it, else that of tier
/// `default`, else 1.
pub(crate) fn replication_factors(tiers: &[TierSpec]) -> impl Fn(&str) -> usize + '_ {
    let mut rf_of: HashMap<&str, usize> = HashMap::new();
    for tier in tiers {
        let rf = rf_of.entry(tier.name.as_str()).or_insert(0);
        *rf = (*rf).max(tier.replication_factor);
    }
    let default_rf = rf_of.get(DEFAULT_TIER).copied().unwrap_or(1);
    move |tier: &str| rf_of.get(tier).copied().unwrap_or(default_rf)
}

/// Assigns segment replicas to nodes with the default options; see the module documentation.
pub fn assign(
    nodes: &[NodeSpec],
    segments: &[SegmentSpec],
    tiers: &[TierSpec],
    previous: &Assignment,
) -> Plan {
    assign_with(nodes, segments, tiers, previous, &AssignOptions::default())
}

/// [`assign`] with explicit options.
pub fn assign_with(
    nodes: &[NodeSpec],
    segments: &[SegmentSpec],
    tiers: &[TierSpec],
    previous: &Assignment,
    options: &AssignOptions,
) -> Plan {
    // Canonical order and deduplication: the greatest spec of a name wins.
    let mut nodes: Vec<&NodeSpec> = nodes.iter().collect();
    nodes.sort_by(|a, b| {
        a.name.cmp(&b.name).then_with(|| {
            (b.healthy, b.quota_bytes, &b.tier).cmp(&(a.healthy, a.quota_bytes, &a.tier))
        })
    });
    nodes.dedup_by(|later, kept| later.name == kept.name);
    let mut segments: Vec<&SegmentSpec> = segments.iter().collect();
    segments.sort_by(|a, b| {
        a.id.cmp(&b.id)
            .then_with(|| (&b.tier, b.size_bytes).cmp(&(&a.tier, a.size_bytes)))
    });
    segments.dedup_by(|later, kept| later.id == kept.id);
    let wanted = replication_factors(tiers);

    // Each segment's previous holders (merge of two id-ordered sequences), and the drops of
    // segments that are gone.
    let mut drops = 0;
    let mut previous_of: Vec<&[NodeName]> = Vec::with_capacity(segments.len());
    {
        let mut prev = previous.replicas.iter().peekable();
        for segment in &segments {
            while let Some((_, holders)) = prev.next_if(|(id, _)| **id < segment.id) {
                drops += distinct(holders);
            }
            match prev.next_if(|(id, _)| **id == segment.id) {
                Some((_, holders)) => previous_of.push(holders),
                None => previous_of.push(&[]),
            }
        }
        drops += prev.map(|(_, holders)| distinct(holders)).sum::<usize>();
    }

    // Group by tier: healthy nodes (name order) and segments (id order).
    let mut by_tier: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if node.healthy {
            by_tier.entry(node.tier.as_str()).or_default().0.push(i);
        }
    }
    for (i, segment) in segments.iter().enumerate() {
        by_tier.entry(segment.tier.as_str()).or_default().1.push(i);
    }

    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); segments.len()];
    let mut stored = vec![0u64; nodes.len()];
    for (tier, (tier_nodes, tier_segments)) in &by_tier {
        if tier_segments.is_empty() {
            continue;
        }
        let engine_nodes: Vec<engine::TierNode<'_>> = tier_nodes
            .iter()
            .map(|&i| engine::TierNode {
                name: &nodes[i].name,
                quota: nodes[i].quota_bytes,
            })
            .collect();
        let engine_segments: Vec<engine::TierSegment<'_>> = tier_segments
            .iter()
            .map(|&i| engine::TierSegment {
                id: segments[i].id.as_str(),
                size: segments[i].size_bytes,
                previous: previous_of[i],
            })
            .collect();
        let result = engine::place_tier(
            &engine_nodes,
            &engine_segments,
            wanted(tier),
            options.tolerance,
        );
        for (local, holders) in result.into_iter().enumerate() {
            let s = tier_segments[local];
            placed[s] = holders.iter().map(|&n| tier_nodes[n as usize]).collect();
            for &n in &placed[s] {
                stored[n] += segments[s].size_bytes;
            }
        }
    }

    let mut moves = 0;
    let mut under_replicated = Vec::new();
    let mut replicas = Vec::with_capacity(segments.len());
    for (s, segment) in segments.iter().enumerate() {
        let holders: Vec<NodeName> = placed[s].iter().map(|&n| nodes[n].name.clone()).collect();
        let before = previous_of[s];
        moves += holders.iter().filter(|h| !before.contains(h)).count();
        drops += distinct(before) - holders.iter().filter(|h| before.contains(h)).count();
        let want = wanted(&segment.tier);
        if holders.len() < want {
            under_replicated.push(UnderReplicated {
                segment: segment.id.clone(),
                placed: holders.len(),
                wanted: want,
            });
        }
        replicas.push((segment.id.clone(), holders));
    }

    Plan {
        assignment: Assignment {
            replicas: replicas.into_iter().collect(),
        },
        under_replicated,
        moves,
        drops,
        stored_bytes: nodes
            .iter()
            .zip(stored)
            .map(|(node, bytes)| (node.name.clone(), bytes))
            .collect(),
    }
}

/// Number of distinct names in a (normally tiny) holder list.
fn distinct(holders: &[NodeName]) -> usize {
    holders
        .iter()
        .enumerate()
        .filter(|(i, h)| !holders[..*i].contains(h))
        .count()
}
