//! Authorization on the real binary: the bootstrap admin token printed once, the refusal of a
//! non-loopback address without auth or `--insecure`, secrets absent from the log and metrics,
//! and the CLI's `token` commands and `TROUGH_TOKEN`.

mod common;

use std::io::{BufRead, BufReader};

use common::auth::*;
use common::{TestServer, BIN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Starts `trough serve` with `args`, returning the child and every stdout line up to the URL.
fn serve_until_url(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn trough serve");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("http://");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

#[test]
fn the_first_start_with_auth_prints_an_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, lines) = serve_until_url(dir.path(), &["--auth"]);
    first.kill().unwrap();
    first.wait().unwrap();
    let secret = lines
        .iter()
        .find_map(|l| l.split("keep it safe): ").nth(1))
        .unwrap_or_else(|| panic!("no bootstrap token in {lines:?}"))
        .to_owned();
    assert!(secret.starts_with("trough_"), "{secret}");
    let (mut again, lines) = serve_until_url(dir.path(), &["--auth"]);
    assert!(!lines.iter().any(|l| l.contains("trough_")), "{lines:?}");
    let url = lines
        .last()
        .unwrap()
        .split("http://")
        .nth(1)
        .unwrap()
        .to_owned();
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{url}/metrics"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn a_non_loopback_address_needs_auth_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn secrets_never_reach_the_log() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let process = trough_testkit::process::TroughCommand::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-json",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TROUGH_AUTH__ENABLED", "true")
        .env("TROUGH_AUTH__BOOTSTRAP_TOKEN", ADMIN)
        .env("TROUGH_AUTH__ANONYMOUS", "status")
        .env("RUST_LOG", "debug")
        .output(trough_testkit::process::Output::File(log.path().to_owned()))
        .start()
        .expect("start trough serve");
    let http = reqwest::blocking::Client::new();
    let url = process.url().to_owned();
    let created: Value = http
        .post(format!("{url}/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"grants": [{"segments": "*", "right": "read"}], "cluster": ["metrics"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let wrong = format!("{}ffff", &secret[..secret.len() - 4]);
    for t in [ADMIN, secret.as_str(), wrong.as_str()] {
        let _ = http
            .get(format!("{url}/metrics"))
            .bearer_auth(t)
            .send()
            .unwrap();
        let _ = http
            .get(format!("{url}/segments/x"))
            .bearer_auth(t)
            .send()
            .unwrap();
    }
    let metrics = http
        .get(format!("{url}/metrics"))
        .bearer_auth(&secret)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("trough_auth_denied_total"),
        "no denial counted"
    );
    drop(process);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("\"accessor\""), "no audit line in the log");
    let key = |s: &str| s[24..].to_owned();
    for s in [ADMIN, secret.as_str(), wrong.as_str()] {
        assert!(!text.contains(&key(s)), "a secret is in the log");
    }
    assert!(
        !metrics.contains(&key(&secret)),
        "a secret is in the metrics"
    );
}

fn cli(url: &str, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .args(["--url", url])
        .env_remove("TROUGH_TOKEN");
    if let Some(t) = token {
        cmd.env("TROUGH_TOKEN", t);
    }
    cmd.output().expect("run trough")
}

#[test]
fn the_cli_manages_tokens_and_sends_one() {
    let s = TestServer::in_process_with(&auth_env());
    publish(&s, "pages-1", Some(ADMIN), 1);
    let out = cli(
        s.url(),
        &[
            "token",
            "create",
            "--description",
            "ci",
            "--grant",
            "read:pages-*",
            "--expires-in",
            "3600",
            "--token",
            ADMIN,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (secret, accessor) = (
        doc["secret"].as_str().unwrap().to_owned(),
        doc["accessor"].as_str().unwrap().to_owned(),
    );
    assert!(doc["expires_at"].is_string(), "{doc}");
    // Without a token: the server's 401, non-zero exit.
    let out = cli(s.url(), &["segment", "ls"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthenticated"));
    // With TROUGH_TOKEN: the segments it may read.
    let out = cli(s.url(), &["segment", "ls"], Some(&secret));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pages-1"));
    for args in [vec!["token", "list"], vec!["token", "show", &accessor]] {
        let out = cli(s.url(), &args, Some(ADMIN));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(&accessor),
            "{args:?}: {text}"
        );
        assert!(!text.contains(&secret[24..]), "{args:?} shows a secret");
    }
    // A read-only token cannot create tokens.
    let out = cli(
        s.url(),
        &["token", "create", "--grant", "read:pages-1"],
        Some(&secret),
    );
    assert!(!out.status.success());
    let out = cli(s.url(), &["token", "revoke", &accessor], Some(ADMIN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(s.url(), &["segment", "ls"], Some(&secret));
    assert!(!out.status.success());
}
