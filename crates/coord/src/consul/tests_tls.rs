//! The Consul coordinator over HTTPS, against a real agent serving its API with a certificate of
//! a private CA made by the `openssl` command (as in tests/tls.rs).

use trough_testkit::ConsulAgent;

use super::tests::{node, opts};
use super::ConsulCoordinator;
use crate::conformance;

/// The same contract over HTTPS, the agent's certificate signed by a CA given as `ca_pem`
/// (made with the `openssl` command, as in tests/tls.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "c.key", "-out", "c.csr", "-subj", "/CN=consul"],
    ]
    .concat());
    std::fs::write(dir.path().join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "c.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "c.pem",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    let agent = tokio::task::spawn_blocking(move || ConsulAgent::start_tls(&cert, &key))
        .await
        .expect("start consul");
    let url = agent.https_url().unwrap();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let mut o = opts("tls");
    o.ca_pem = Some(ca);
    let c = ConsulCoordinator::connect_with(&url, &node("tls"), o).unwrap();
    c.check().await.unwrap();
    conformance::run_all(&c).await;
    c.close().await.unwrap();
    // Without the CA the agent's certificate is not trusted.
    let untrusted = ConsulCoordinator::connect_with(&url, &node("tls2"), opts("tls2")).unwrap();
    assert!(untrusted.check().await.is_err());
}
