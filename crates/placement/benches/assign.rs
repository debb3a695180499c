//! Benchmark of the assignment planner: 100,000 segments on 100 nodes at RF 2.
//!
//! `cargo bench -p trough-placement --bench assign`
//!
//! Times (median of 5 runs) a fresh assignment, a no-op re-assignment (same inputs, previous =
//! output), a re-assignment after one node joins and one after one node leaves, and prints the
//! moves and the evenness of each. Prints figures only; asserts nothing about time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use trough_placement::{assign, Assignment, NodeSpec, Plan, SegmentSpec, TierSpec};
use trough_types::{NodeName, SegmentId};

const SEGMENTS: usize = 100_000;
const NODES: usize = 100;
const RF: usize = 2;
const RUNS: usize = 5;

/// splitmix64: deterministic sizes without a dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn main() {
    // Sizes log-uniform between 1 MiB and 256 MiB.
    let segments: Vec<SegmentSpec> = (0..SEGMENTS)
        .map(|i| {
            let u = (mix(i as u64) >> 11) as f64 / (1u64 << 53) as f64;
            SegmentSpec {
                id: SegmentId::new(&format!("seg-{i:07}")).unwrap(),
                tier: "default".into(),
                size_bytes: (f64::from(1u32 << 20) * 256f64.powf(u)) as u64,
            }
        })
        .collect();
    let total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    // Quotas so that the cluster is about 60% full, half the nodes twice as big as the others.
    let unit = (total as f64 * RF as f64 / 0.6 / (NODES as f64 * 1.5)) as u64;
    let node = |i: usize| NodeSpec {
        name: NodeName::new(&format!("node-{i:03}")).unwrap(),
        tier: "default".into(),
        quota_bytes: [unit, 2 * unit][i % 2],
        healthy: true,
    };
    let nodes: Vec<NodeSpec> = (0..NODES).map(node).collect();
    let joined: Vec<NodeSpec> = (0..=NODES).map(node).collect();
    let left: Vec<NodeSpec> = nodes
        .iter()
        .filter(|n| n.name.as_str() != "node-042")
        .cloned()
        .collect();
    let tiers = [TierSpec {
        name: "default".into(),
        replication_factor: RF,
    }];

    let fresh = assign(&nodes, &segments, &tiers, &Assignment::default());
    let cases: [(&str, &[NodeSpec], &Assignment); 4] = [
        ("fresh", &nodes, &Assignment::default()),
        ("unchanged", &nodes, &fresh.assignment),
        ("one node joins", &joined, &fresh.assignment),
        ("one node leaves", &left, &fresh.assignment),
    ];
    println!(
        "assign: {SEGMENTS} segments ({:.1} TiB), {NODES} nodes, RF {RF}, median of {RUNS} runs",
        total as f64 / (1u64 << 40) as f64
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>10}",
        "case", "median", "min", "max", "moves", "ideal", "under", "spread"
    );
    for (name, nodes, previous) in cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut plan = Plan::default();
        for _ in 0..RUNS {
            let start = Instant::now();
            plan = black_box(assign(
                black_box(nodes),
                black_box(&segments),
                &tiers,
                previous,
            ));
            times.push(start.elapsed());
        }
        times.sort();
        let ideal = match name {
            // The new node's quota-weighted share of the replicas.
            "one node joins" => {
                let all: u64 = joined.iter().map(|n| n.quota_bytes).sum();
                let new = joined[NODES].quota_bytes;
                format!("{}", (SEGMENTS * RF) as u64 * new / all)
            }
            "one node leaves" => format!(
                "{}",
                previous
                    .replicas
                    .values()
                    .filter(|h| h.iter().any(|n| n.as_str() == "node-042"))
                    .count()
            ),
            "unchanged" => "0".into(),
            _ => "-".into(),
        };
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>10.4}",
            name,
            ms(times[RUNS / 2]),
            ms(times[0]),
            ms(times[RUNS - 1]),
            plan.moves,
            ideal,
            plan.under_replicated.len(),
            spread(&plan, nodes),
        );
    }
    println!(
        "spread: max - min of stored/quota over nodes. ideal moves: on a join, the new node's"
    );
    println!("quota-weighted share of the replicas; on a leave, the departed node's replicas.");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn spread(plan: &Plan, nodes: &[NodeSpec]) -> f64 {
    let ratios: Vec<f64> = nodes
        .iter()
        .map(|n| plan.stored_bytes[&n.name] as f64 / n.quota_bytes as f64)
        .collect();
    ratios.iter().copied().fold(f64::MIN, f64::max)
        - ratios.iter().copied().fold(f64::MAX, f64::min)
}
