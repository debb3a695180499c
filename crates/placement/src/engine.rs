//! The placement of one tier: keep, fill, rebalance (see the module documentation of
//! [`super`] for the why).

use std::collections::HashMap;

use trough_types::NodeName;

use super::score::{name_hash, neg_ln, node_key, unit};

/// Rounds of fill + rebalance before giving up on reaching a fixed point. Normal inputs settle in
/// one or two; the bound only guards against a pathological ping-pong.
const MAX_ROUNDS: usize = 16;

/// No holder (a free slot in [`Tier::holders`]).
const NONE: u32 = u32::MAX;

/// Above this fill ratio (demand ÷ capacity), the fill places first copies of every segment
/// before second copies.
const ROUNDS_ABOVE_FILL: f64 = 0.9;

/// Where [`Tier::pull`] may take a replica from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A holder that did not have it when this run started: free to re-target.
    Fresh,
    /// A holder above its band.
    OverBand,
    /// Any holder.
    Any,
}

/// One node of the tier, as the engine sees it.
pub(super) struct TierNode<'a> {
    pub name: &'a NodeName,
    pub quota: u64,
}

/// One segment of the tier.
pub(super) struct TierSegment<'a> {
    pub id: &'a str,
    pub size: u64,
    /// The previous holders' names (validated and deduplicated by the engine).
    pub previous: &'a [NodeName],
}

/// Per-tier state. Nodes are indexed in name order, segments in id order; every decision breaks
/// ties by index, so the result depends on the inputs' content, never on their order.
struct Tier {
    rf: usize,
    /// Demand ÷ capacity, at most 1.
    fill_ratio: f64,
    size: Vec<u64>,
    seg_hash: Vec<u64>,
    node_key: Vec<u64>,
    /// 1 / quota (infinite for a zero quota: such a node ranks last everywhere).
    inv_weight: Vec<f64>,
    quota: Vec<u64>,
    load: Vec<u64>,
    target: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    pull_below: Vec<f64>,
    push_above: Vec<f64>,
    /// `rf` slots per segment, the first `count[s]` used, sorted ascending.
    holders: Vec<u32>,
    count: Vec<u32>,
    /// The holders after phase 1, same layout: moving a replica its holder did not have then
    /// costs no extra move.
    initial: Vec<u32>,
    initial_count: Vec<u32>,
    /// Scratch: one flag per node.
    mark: Vec<bool>,
    /// Scratch, per node, for the segment being placed: the exact score (NaN until computed),
    /// the pair's variate, and a lower bound of the score.
    scores: Vec<f64>,
    variate: Vec<f64>,
    bound: Vec<f64>,
}

/// Places one tier; returns each segment's holders as indices into `nodes`, ascending.
pub(super) fn place_tier(
    nodes: &[TierNode<'_>],
    segments: &[TierSegment<'_>],
    replication_factor: usize,
    tolerance: f64,
) -> Vec<Vec<u32>> {
    let rf = replication_factor.min(nodes.len());
    if rf == 0 || segments.is_empty() {
        return vec![Vec::new(); segments.len()];
    }
    let mut tier = Tier::new(nodes, segments, rf, tolerance);
    tier.keep_previous(nodes, segments);
    tier.enforce_quotas();
    for _ in 0..MAX_ROUNDS {
        let mut changed = tier.fill();
        changed |= tier.pull();
        changed |= tier.push();
        if !changed {
            break;
        }
    }
    (0..segments.len())
        .map(|s| tier.holders_of(s).to_vec())
        .collect()
}

impl Tier {
    fn new(
        nodes: &[TierNode<'_>],
        segments: &[TierSegment<'_>],
        rf: usize,
        tolerance: f64,
    ) -> Self {
        let n = nodes.len();
        let size: Vec<u64> = segments.iter().map(|s| s.size).collect();
        let quota: Vec<u64> = nodes.iter().map(|node| node.quota).collect();
        let demand: u128 = size.iter().map(|&s| u128::from(s) * rf as u128).sum();
        let capacity: u128 = quota.iter().map(|&q| u128::from(q)).sum();
        let fill_ratio = if capacity == 0 {
            1.0
        } else {
            (demand as f64 / capacity as f64).min(1.0)
        };
        let mean_size =
            size.iter().map(|&s| u128::from(s)).sum::<u128>() as f64 / size.len() as f64;
        let tolerance = if tolerance.is_finite() {
            tolerance.max(0.0)
        } else {
            0.0
        };
        let mut target = Vec::with_capacity(n);
        let mut lower = Vec::with_capacity(n);
        let mut upper = Vec::with_capacity(n);
        let mut pull_below = Vec::with_capacity(n);
        let mut push_above = Vec::with_capacity(n);
        for &q in &quota {
            let t = fill_ratio * q as f64;
            let w = (tolerance * t).max(mean_size);
            target.push(t);
            lower.push(t - w);
            upper.push((t + w).min(q as f64));
            pull_below.push(t - 2.0 * w);
            push_above.push(t + 2.0 * w);
        }
        Self {
            rf,
            fill_ratio,
            seg_hash: segments.iter().map(|s| name_hash(s.id)).collect(),
            node_key: nodes
                .iter()
                .map(|node| node_key(node.name.as_str()))
                .collect(),
            inv_weight: quota
                .iter()
                .map(|&q| {
                    if q == 0 {
                        f64::INFINITY
                    } else {
                        1.0 / q as f64
                    }
                })
                .collect(),
            load: vec![0; n],
            holders: vec![NONE; segments.len() * rf],
            count: vec![0; segments.len()],
            initial: Vec::new(),
            initial_count: Vec::new(),
            mark: vec![false; n],
            scores: vec![0.0; n],
            variate: vec![0.0; n],
            bound: vec![0.0; n],
            size,
            quota,
            target,
            lower,
            upper,
            pull_below,
            push_above,
        }
    }

    /// Score of node `n` for segment `s`: lower is better.
    fn score(&self, s: usize, n: usize) -> f64 {
        neg_ln(unit(self.seg_hash[s], self.node_key[n])) * self.inv_weight[n]
    }

    fn holders_of(&self, s: usize) -> &[u32] {
        &self.holders[s * self.rf..s * self.rf + self.count[s] as usize]
    }

    fn holds(&self, s: usize, n: usize) -> bool {
        self.holders_of(s).contains(&(n as u32))
    }

    fn add(&mut self, s: usize, n: usize) {
        let start = s * self.rf;
        let c = self.count[s] as usize;
        debug_assert!(c < self.rf && !self.holds(s, n));
        let slots = &mut self.holders[start..start + c + 1];
        slots[c] = n as u32;
        slots.sort_unstable();
        self.count[s] += 1;
        self.load[n] += self.size[s];
    }

    fn remove(&mut self, s: usize, n: usize) {
        let start = s * self.rf;
        let c = self.count[s] as usize;
        let slots = &mut self.holders[start..start + c];
        let i = slots
            .iter()
            .position(|&h| h == n as u32)
            .expect("removing a replica the node holds");
        slots.copy_within(i + 1.., i);
        slots[c - 1] = NONE;
        self.count[s] -= 1;
        self.load[n] -= self.size[s];
    }

    fn would_fit(&self, n: usize, s: usize) -> Option<u64> {
        self.load[n]
            .checked_add(self.size[s])
            .filter(|&after| after <= self.quota[n])
    }

    /// The segments node `n` holds, least wanted (highest score) first.
    fn held_least_wanted_first(&self, n: usize) -> Vec<(f64, usize)> {
        let mut held: Vec<(f64, usize)> = (0..self.count.len())
            .filter(|&s| self.holds(s, n))
            .map(|s| (self.score(s, n), s))
            .collect();
        held.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        held
    }

    /// Phase 1: previous placements on healthy nodes of this tier, deduplicated, at most `rf`
    /// per segment (the best-ranked ones if there were more).
    fn keep_previous(&mut self, nodes: &[TierNode<'_>], segments: &[TierSegment<'_>]) {
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.as_str(), i))
            .collect();
        let mut kept = Vec::new();
        for (s, segment) in segments.iter().enumerate() {
            kept.clear();
            kept.extend(
                segment
                    .previous
                    .iter()
                    .filter_map(|name| index.get(name.as_str()).copied()),
            );
            kept.sort_unstable();
            kept.dedup();
            if kept.len() > self.rf {
                kept.sort_unstable_by(|&a, &b| {
                    self.score(s, a)
                        .total_cmp(&self.score(s, b))
                        .then(a.cmp(&b))
                });
                kept.truncate(self.rf);
            }
            for &n in &kept {
                self.add(s, n);
            }
        }
        self.initial = self.holders.clone();
        self.initial_count = self.count.clone();
    }

    /// Phase 2: a node over its quota (it shrank, or segments grew) drops its least-wanted
    /// replicas until it fits; the fill re-places them.
    fn enforce_quotas(&mut self) {
        for n in 0..self.quota.len() {
            if self.load[n] <= self.quota[n] {
                continue;
            }
            for (_, s) in self.held_least_wanted_first(n) {
                if self.load[n] <= self.quota[n] {
                    break;
                }
                self.remove(s, n);
            }
        }
    }

    /// Prepares [`Self::exact_score`] for segment `s`: each node's variate and a cheap lower
    /// bound of its score (`-ln u ≥ 1 − u`, shaded by 2⁻⁴⁰ against rounding). Computing the
    /// logarithm only for nodes whose bound beats the best so far saves most of them: with the
    /// nodes in random order, the best so far improves about ln N times.
    fn compute_scores(&mut self, s: usize) {
        const SHADE: f64 = 1.0 - 1.0 / (1u64 << 40) as f64;
        for n in 0..self.scores.len() {
            let u = unit(self.seg_hash[s], self.node_key[n]);
            self.variate[n] = u;
            self.bound[n] = (1.0 - u) * self.inv_weight[n] * SHADE;
            self.scores[n] = f64::NAN;
        }
    }

    /// The exact score of node `n` for the segment of the last [`Self::compute_scores`].
    fn exact_score(&mut self, n: usize) -> f64 {
        if self.scores[n].is_nan() {
            self.scores[n] = neg_ln(self.variate[n]) * self.inv_weight[n];
        }
        self.scores[n]
    }

    /// Where a new replica of `s` goes, from the scores in `self.scores`: the best-ranked
    /// non-holder that is below its lower band ("hungry") and stays within its upper band; else
    /// the best-ranked non-holder that stays within its upper band; else (only if
    /// `allow_over_band`) the non-holder that ends least full, within its quota.
    fn choose(&mut self, s: usize, allow_over_band: bool) -> Option<usize> {
        let slots = s * self.rf..s * self.rf + self.count[s] as usize;
        for &h in &self.holders[slots.clone()] {
            self.mark[h as usize] = true;
        }
        let mut hungry: Option<(f64, usize)> = None;
        let mut banded: Option<(f64, usize)> = None;
        let mut over_band: Option<(f64, f64, usize)> = None;
        for n in 0..self.quota.len() {
            if self.mark[n] {
                continue;
            }
            let Some(after) = self.would_fit(n, s) else {
                continue;
            };
            // A node can only win a category if its lower bound beats that category's best
            // (ties go to the earlier node, which came first).
            let bound = self.bound[n];
            let beats = |best: Option<(f64, usize)>| best.is_none_or(|(b, _)| bound < b);
            if after as f64 <= self.upper[n] {
                let is_hungry = (self.load[n] as f64) < self.lower[n];
                let may_win = beats(banded) || (is_hungry && beats(hungry));
                if !may_win {
                    continue;
                }
                let score = self.exact_score(n);
                if is_hungry && hungry.is_none_or(|(b, _)| score < b) {
                    hungry = Some((score, n));
                }
                if banded.is_none_or(|(b, _)| score < b) {
                    banded = Some((score, n));
                }
            } else if allow_over_band {
                let ratio = after as f64 / self.quota[n] as f64;
                let score = self.exact_score(n);
                if over_band.is_none_or(|(r, b, _)| ratio < r || (ratio == r && score < b)) {
                    over_band = Some((ratio, score, n));
                }
            }
        }
        for &h in &self.holders[slots] {
            self.mark[h as usize] = false;
        }
        hungry
            .or(banded)
            .map(|(_, n)| n)
            .or(over_band.map(|(_, _, n)| n))
    }

    /// Phase 3: give every under-replicated segment its missing replicas, segments in order of
    /// decreasing size (big ones are the hardest to fit). When the tier is nearly full, one
    /// replica per segment per round, so that every segment gets a first copy before any gets a
    /// second; otherwise all of a segment's replicas at once (cheaper, and evener: a hungry node
    /// is a candidate for every segment, not only those whose first copy is elsewhere).
    fn fill(&mut self) -> bool {
        let mut order: Vec<usize> = (0..self.count.len())
            .filter(|&s| (self.count[s] as usize) < self.rf)
            .collect();
        if order.is_empty() {
            return false;
        }
        order.sort_unstable_by(|&a, &b| self.size[b].cmp(&self.size[a]).then(a.cmp(&b)));
        let mut changed = false;
        if self.fill_ratio > ROUNDS_ABOVE_FILL {
            for round in 1..=self.rf {
                for &s in &order {
                    if (self.count[s] as usize) < round {
                        self.compute_scores(s);
                        if let Some(n) = self.choose(s, true) {
                            self.add(s, n);
                            changed = true;
                        }
                    }
                }
            }
        } else {
            for &s in &order {
                self.compute_scores(s);
                while (self.count[s] as usize) < self.rf {
                    let Some(n) = self.choose(s, true) else {
                        break;
                    };
                    self.add(s, n);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Phase 4b: a node above its band hands replicas to nodes that stay within theirs (the
    /// best-ranked, hungry ones first), least wanted first, until it is back within its band:
    /// for free, the replicas placed on it during this run; then, only if it is above its push
    /// threshold (its quota shrank, or a join lowered everyone's target), any.
    fn push(&mut self) -> bool {
        let mut changed = false;
        for o in 0..self.quota.len() {
            if self.load[o] as f64 <= self.upper[o] {
                continue;
            }
            let held = self.held_least_wanted_first(o);
            for fresh_only in [true, false] {
                // Costly moves only if the free pass was not enough.
                if !fresh_only && self.load[o] as f64 <= self.push_above[o] {
                    break;
                }
                for &(_, s) in &held {
                    if self.load[o] as f64 <= self.upper[o] {
                        break;
                    }
                    if !self.holds(s, o) || (fresh_only && self.initially_held(s, o)) {
                        continue;
                    }
                    if ((self.load[o] - self.size[s]) as f64) < self.lower[o] {
                        continue;
                    }
                    self.compute_scores(s);
                    if let Some(d) = self.choose(s, false) {
                        self.remove(s, o);
                        self.add(s, d);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// Phase 4a: a hungry node (below its band) takes the replicas it ranks best, up to its
    /// target, from holders that stay within their band, taking each from the holder that ranks
    /// the segment worst. First, for free, replicas placed during this run (re-targeting them
    /// costs no extra move): this evens out what the greedy fill left uneven. Then, only if the
    /// node is below its pull threshold (it just joined, came back, or its quota grew), replicas
    /// the holders already had: first from holders above their band (relieving them, so they
    /// need not push), then from any.
    fn pull(&mut self) -> bool {
        let mut changed = false;
        for u in 0..self.quota.len() {
            if self.load[u] as f64 >= self.lower[u] {
                continue;
            }
            let mut candidates: Vec<(f64, usize)> = (0..self.count.len())
                .filter(|&s| self.count[s] > 0 && !self.holds(s, u))
                .map(|s| (self.score(s, u), s))
                .collect();
            candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut costly = false;
            for source in [Source::Fresh, Source::OverBand, Source::Any] {
                if source == Source::OverBand {
                    // Decided after the free pass: costly moves only if that was not enough.
                    costly = (self.load[u] as f64) < self.pull_below[u];
                }
                if source != Source::Fresh && !costly {
                    break;
                }
                for &(_, s) in &candidates {
                    if self.load[u] as f64 >= self.target[u] {
                        break;
                    }
                    if self.holds(s, u) {
                        continue; // taken in an earlier pass
                    }
                    match self.would_fit(u, s) {
                        Some(after) if after as f64 <= self.upper[u] => {}
                        _ => continue,
                    }
                    if let Some(h) = self.pick_source(s, source, u) {
                        self.remove(s, h);
                        self.add(s, u);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// The holder of `s` that node `u` takes it from, of the kind `source` asks for: one that
    /// stays within its band — or, for a free re-target, one that stays at least as far above
    /// its target as `u` will be — preferring one above its band, then the one that ranks `s`
    /// worst.
    fn pick_source(&self, s: usize, source: Source, u: usize) -> Option<usize> {
        let size = self.size[s];
        let u_after = (self.load[u] + size) as f64 - self.target[u];
        let mut best: Option<(bool, f64, usize)> = None;
        for &h in self.holders_of(s) {
            let h = h as usize;
            let h_after = (self.load[h] - size) as f64;
            let over = self.load[h] as f64 > self.upper[h];
            let eligible = match source {
                Source::Fresh => {
                    !self.initially_held(s, h)
                        && (h_after >= self.lower[h] || h_after - self.target[h] >= u_after)
                }
                Source::OverBand => over && h_after >= self.lower[h],
                Source::Any => h_after >= self.lower[h],
            };
            if !eligible {
                continue;
            }
            let score = self.score(s, h);
            if best.is_none_or(|(bo, bs, _)| (over, score) > (bo, bs)) {
                best = Some((over, score, h));
            }
        }
        best.map(|(_, _, h)| h)
    }

    /// Whether node `n` held `s` when this run started (after phase 1).
    fn initially_held(&self, s: usize, n: usize) -> bool {
        let start = s * self.rf;
        self.initial[start..start + self.initial_count[s] as usize].contains(&(n as u32))
    }
}
