//! TLS on the listener (docs/security.md) with a test CA made by `openssl`: a client trusting the
//! CA is served, one trusting another CA is refused, an expired certificate is refused, new
//! certificate files are picked up without a restart, and client certificates are required when
//! a client CA is configured.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use reqwest::blocking::Client;
use trough_testkit::wait_until;

/// Runs openssl; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA: `<name>.pem`, `<name>.key`.
fn ca(dir: &Path, name: &str) -> PathBuf {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.join(pem)
}

/// A certificate for 127.0.0.1 signed by CA `ca`, valid for `days` (negative: expired).
fn leaf(dir: &Path, ca: &str, name: &str, days: i32) -> (PathBuf, PathBuf) {
    let (pem, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            &days.to_string(),
            "-extfile",
            "ext",
        ],
    );
    (dir.join(pem), dir.join(key))
}

/// A client trusting only `ca`, without connection reuse, optionally presenting `identity`.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
    let mut b = Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn https(s: &TestServer) -> String {
    s.url().replacen("http://", "https://", 1)
}

fn serve(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TestServer {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut env = vec![
        ("TROUGH_TLS__CERT_FILE", cert),
        ("TROUGH_TLS__KEY_FILE", key),
    ];
    if let Some(ca) = client_ca {
        env.push(("TROUGH_TLS__CLIENT_CA_FILE", ca.to_str().unwrap()));
    }
    TestServer::in_process_with(&env)
}

#[test]
fn clients_of_the_ca_are_served_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (ca(dir.path(), "ca1"), ca(dir.path(), "ca2"));
    let (cert, key) = leaf(dir.path(), "ca1", "node", 1);
    let s = serve(&cert, &key, None);
    let url = format!("{}/health", https(&s));
    let resp = client(&ca1, None).get(&url).send().expect("TLS request");
    assert_eq!(resp.status(), 200);
    assert!(
        client(&ca2, None).get(&url).send().is_err(),
        "a wrong CA was accepted"
    );
    // Plain HTTP on the TLS port gets no answer.
    assert!(s.client().get(s.at("/health")).send().is_err());
}

#[test]
fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca(dir.path(), "ca1");
    let (cert, key) = leaf(dir.path(), "ca1", "node", -1);
    let s = serve(&cert, &key, None);
    let err = client(&ca1, None)
        .get(format!("{}/health", https(&s)))
        .send()
        .expect_err("an expired certificate was accepted");
    let chain = format!("{err:?}");
    assert!(chain.to_lowercase().contains("expired"), "{chain}");
}

#[test]
fn new_certificate_files_are_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (ca(dir.path(), "ca1"), ca(dir.path(), "ca2"));
    let (cert, key) = leaf(dir.path(), "ca1", "node", 1);
    let s = serve(&cert, &key, None);
    let url = format!("{}/health", https(&s));
    assert!(client(&ca1, None).get(&url).send().is_ok());
    assert!(client(&ca2, None).get(&url).send().is_err());
    // Renewal: a certificate of another CA written over the same files.
    let (cert2, key2) = leaf(dir.path(), "ca2", "node2", 1);
    std::fs::copy(&key2, &key).unwrap();
    std::fs::copy(&cert2, &cert).unwrap();
    let reloaded = wait_until(Duration::from_secs(10), || {
        client(&ca2, None).get(&url).send().is_ok()
    });
    assert!(reloaded, "the new certificate is not served");
    assert!(client(&ca1, None).get(&url).send().is_err());
}

#[test]
fn client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (ca(dir.path(), "ca1"), ca(dir.path(), "ca2"));
    let (cert, key) = leaf(dir.path(), "ca1", "node", 1);
    let (ccert, ckey) = leaf(dir.path(), "ca1", "client", 1);
    let (ocert, okey) = leaf(dir.path(), "ca2", "other", 1);
    let s = serve(&cert, &key, Some(&ca1));
    let url = format!("{}/health", https(&s));
    assert!(
        client(&ca1, None).get(&url).send().is_err(),
        "no client certificate"
    );
    assert!(
        client(&ca1, Some((&ocert, &okey)))
            .get(&url)
            .send()
            .is_err(),
        "a client certificate of another CA"
    );
    let resp = client(&ca1, Some((&ccert, &ckey)))
        .get(&url)
        .send()
        .expect("client certificate of the CA");
    assert_eq!(resp.status(), 200);
    let _ = ca2;
}

/// Two nodes on one Consul, each serving TLS with a certificate of a private CA and trusting it
/// (`tls.ca_file`) when forwarding: a read of a segment the other node holds, and a fan-out over
/// both, go node to node over TLS.
#[test]
fn nodes_forward_to_each_other_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca(dir.path(), "ca1");
    let (cert, key) = leaf(dir.path(), "ca1", "node", 1);
    let consul = trough_testkit::ConsulAgent::start();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let (consul_url, store) = (consul.url(), format!("file://{}", objects.display()));
    let (cert, key, ca_path) = (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
        ca1.to_str().unwrap().to_owned(),
    );
    let node = |name: &'static str| {
        TestServer::in_process_with(&[
            ("TROUGH_NODE_NAME", name),
            ("TROUGH_CONSUL", &consul_url),
            ("TROUGH_OBJECT_STORE", &store),
            ("TROUGH_SYNC__INTERVAL_SECS", "1"),
            ("TROUGH_TLS__CERT_FILE", &cert),
            ("TROUGH_TLS__KEY_FILE", &key),
            ("TROUGH_TLS__CA_FILE", &ca_path),
        ])
    };
    let (a, b) = (node("tls-a"), node("tls-b"));
    let http = client(&ca1, None);
    let ids: Vec<String> = (0..4).map(|i| format!("tls-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let bytes = common::SqliteFile::new(&format!(
            "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES ({i});"
        ))
        .bytes();
        let resp = http
            .put(format!("{}/segments/{id}", https(&a)))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // Each segment is held by one node (replication factor 1): wait until it is verified there.
    let mut holders = std::collections::BTreeMap::new();
    for id in &ids {
        let placed = wait_until(Duration::from_secs(30), || {
            let doc: serde_json::Value = http
                .get(format!("{}/segments/{id}", https(&a)))
                .send()
                .and_then(|r| r.json())
                .unwrap_or_default();
            let verified: Vec<String> = doc["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["verified"] == true)
                .filter_map(|r| r["node"].as_str().map(str::to_owned))
                .collect();
            if let Some(n) = verified.first() {
                holders.insert(id.clone(), n.clone());
            }
            !verified.is_empty()
        });
        assert!(placed, "{id} not placed");
    }
    // Both nodes answer every segment: the one not holding it forwards over TLS.
    for s in [&a, &b] {
        for (i, id) in ids.iter().enumerate() {
            let resp = http
                .post(format!("{}/segments/{id}/query", https(s)))
                .body("SELECT x FROM t")
                .send()
                .unwrap();
            let status = resp.status();
            let body: serde_json::Value = resp.json().unwrap();
            assert_eq!(status, 200, "{id} via {}: {body}", s.url());
            assert_eq!(body[0]["x"], i as i64);
        }
        let v: serde_json::Value = http
            .post(format!("{}/query", https(s)))
            .json(&serde_json::json!({"sql": "SELECT sum(x) AS s FROM t", "segments": "tls-*"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["rows"][0]["s"], 6, "{v}");
    }
    let distinct: std::collections::BTreeSet<_> = holders.values().collect();
    eprintln!("holders: {holders:?} ({} nodes)", distinct.len());
}
