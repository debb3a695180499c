//! The Ansible deployment, for real: `scripts/ansible-test.sh` lints `ansible/` (production
//! profile), checks that the role refuses an inventory without authorization and TLS settings,
//! deploys Consul and a trough cluster (three read nodes, two sync servers, a writer and a
//! router) with `ansible-playbook` onto test hosts on this machine from the binary cargo just
//! built, with authorization, TLS and mutual TLS on (a test CA made by `openssl`, a bootstrap
//! token, a Consul token), checks 401 without a token, publishes and queries a segment through
//! the deployed router over HTTPS, checks that a read-only token made through the API may query
//! but not publish (403), that a second run changes nothing, that a killed reader is restarted,
//! that a renewed certificate is served, that a rolling upgrade fails no query, that a node can
//! be removed, and that no secret appears in any configuration, log or playbook output, then
//! stops everything it started.
//!
//! The script installs what it needs (Consul, s3s-fs, ansible-core and ansible-lint in a venv
//! under `~/.cache/trough-tools`) idempotently, asks nothing and needs no sudo.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Upper bound on the whole script (it bounds each playbook run itself, too).
const TIMEOUT_SECS: &str = "900";

#[test]
fn ansible_deploys_a_working_cluster() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/ansible-test.sh");
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=30", TIMEOUT_SECS, "bash"])
        .arg(&script)
        .current_dir(root)
        .env("TROUGH_BIN", env!("CARGO_BIN_EXE_trough"))
        .output()
        .expect("run scripts/ansible-test.sh (needs bash and coreutils' timeout)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/ansible-test.sh failed ({}) after {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        start.elapsed()
    );
    assert!(
        stderr.contains("all checks passed"),
        "scripts/ansible-test.sh exited 0 without finishing its checks\n--- stderr\n{stderr}"
    );
}
