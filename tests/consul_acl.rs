//! Consul with its ACLs on and denying by default (docs/security.md, "Consul ACLs"): trough nodes
//! given a token of the documented policy (`consul_token_file`) register, elect, publish,
//! replicate and answer queries; a node without a token cannot start, and says why.
//!
//! The policy is read from docs/security.md itself, so the documentation is what is tested.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};
use trough_testkit::{wait_until, ConsulAgent};

const MANAGEMENT: &str = "6f1d33ae-52b4-4c4e-9a0f-3d1b0c7e2a11";

/// The ```hcl block of the "Consul ACLs" section of docs/security.md.
fn documented_policy() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/security.md"))
            .expect("read docs/security.md");
    let section = doc
        .split("### Consul ACLs")
        .nth(1)
        .expect("docs/security.md has a \"Consul ACLs\" section");
    let block = section
        .split("```hcl\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has an hcl block");
    block.to_owned()
}

/// A Consul API call with the management token; the JSON answer.
fn consul(agent: &ConsulAgent, path: &str, body: Value) -> Value {
    let resp = reqwest::blocking::Client::new()
        .put(format!("{}/v1/{path}", agent.url()))
        .header("X-Consul-Token", MANAGEMENT)
        .json(&body)
        .send()
        .expect("consul request");
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    assert!(status.is_success(), "consul {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A token of the documented policy, written to a file as the Ansible role does.
fn trough_token(agent: &ConsulAgent, dir: &Path) -> std::path::PathBuf {
    consul(
        agent,
        "acl/policy",
        json!({"Name": "trough", "Rules": documented_policy()}),
    );
    let token = consul(
        agent,
        "acl/token",
        json!({"Description": "trough", "Policies": [{"Name": "trough"}]}),
    );
    let secret = token["SecretID"].as_str().expect("SecretID").to_owned();
    let path = dir.join("consul-token");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

#[test]
fn trough_runs_on_consul_with_acls_using_the_documented_policy() {
    let dir = tempfile::tempdir().unwrap();
    let agent = ConsulAgent::start_acl(MANAGEMENT);
    // ACLs are on and deny by default: anonymous writes to trough's prefix are refused.
    let anonymous = reqwest::blocking::Client::new()
        .put(format!("{}/v1/kv/trough/probe", agent.url()))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 403, "Consul's ACLs are not enforced");

    let token_file = trough_token(&agent, dir.path());
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let (consul_url, store, token_path) = (
        agent.url(),
        format!("file://{}", objects.display()),
        token_file.display().to_string(),
    );
    let node = |name: &'static str| {
        TestServer::in_process_with(&[
            ("TROUGH_NODE_NAME", name),
            ("TROUGH_CONSUL", &consul_url),
            ("TROUGH_CONSUL_TOKEN_FILE", &token_path),
            ("TROUGH_OBJECT_STORE", &store),
            ("TROUGH_SYNC__INTERVAL_SECS", "1"),
        ])
    };
    let (a, b) = (node("acl-a"), node("acl-b"));
    let http = reqwest::blocking::Client::new();
    let bytes =
        common::SqliteFile::new("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);")
            .bytes();
    let resp = http
        .put(format!("{}/segments/acl-1", a.url()))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().unwrap_or_default());
    // Placed and verified on a node (the leader's assignment and the node's registration go
    // through Consul with the token), then answered through both nodes.
    let placed = wait_until(Duration::from_secs(30), || {
        let doc: Value = http
            .get(format!("{}/segments/acl-1", b.url()))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        doc["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["verified"] == true)
    });
    assert!(placed, "acl-1 was never placed on a node");
    for s in [&a, &b] {
        let resp = http
            .post(format!("{}/segments/acl-1/query", s.url()))
            .body("SELECT sum(x) AS s FROM t")
            .send()
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().unwrap();
        assert_eq!(status, 200, "via {}: {body}", s.url());
        assert_eq!(body, json!([{"s": 6}]), "via {}", s.url());
    }
    // Both nodes registered their services in Consul's catalog (read with the management
    // token: the catalog is not readable anonymously).
    let nodes: Value = reqwest::blocking::Client::new()
        .get(format!(
            "{}/v1/health/service/trough-node?passing",
            agent.url()
        ))
        .header("X-Consul-Token", MANAGEMENT)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");

    // Without a token the same node cannot start: it exits with an error instead of serving.
    let out = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("no-token"))
        .env("TROUGH_NODE_NAME", "acl-none")
        .env("TROUGH_CONSUL", &consul_url)
        .env("TROUGH_OBJECT_STORE", &store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trough");
    let out = wait_with_timeout(out, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- the node without a token:\n{stderr}");
    assert!(
        !out.status.success(),
        "a node without a Consul token started"
    );
    assert!(
        stderr.contains("403"),
        "the node without a token does not say Consul refused it: {stderr}"
    );
}

/// Waits for `child` to exit, killing it after `timeout` (then its status is not a success).
fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let exited = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    child.wait_with_output().expect("wait for trough")
}
