//! A node restarted after its Consul check went critical (issue 15): Consul 1.8 keeps a critical
//! check critical across re-registration, so the new process must pass it itself, or it is not
//! listed (and start-up waits out the request timeout) until its next heartbeat.

use std::time::Duration;

use super::tests::{agent, coordinator, eventually, node_info, opts};
use super::ConsulOptions;
use crate::{Coordinator, NodeInfo};

fn names(v: Vec<NodeInfo>) -> Vec<String> {
    v.into_iter().map(|n| n.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_its_check_expired_is_listed_when_registration_returns() {
    let agent = agent().await;
    let o = ConsulOptions {
        node_ttl: Duration::from_secs(1),
        ..opts("restart")
    };
    let info = node_info("back", 7101, &["reader", "writer"], &[("x", 1)]);
    let before = coordinator(&agent, "before", o.clone());
    before.register_node(&info).await.unwrap();
    assert_eq!(names(before.list_nodes().await.unwrap()), ["back"]);
    // The process stops heartbeating: its checks go critical.
    eventually(
        Duration::from_secs(20),
        "the silent node drops out",
        || async { before.list_nodes().await.unwrap().is_empty() },
    )
    .await;
    // The restarted process: a new coordinator that has registered nothing yet.
    let after = coordinator(&agent, "after", o);
    after.register_node(&info).await.unwrap();
    assert_eq!(
        names(after.list_nodes().await.unwrap()),
        ["back"],
        "listed as soon as its registration returned"
    );
}
