//! The client subcommands of the same binary: `trough segment
//! upload|ls|show|promote|describe|label|restore|delete`, `trough query`, and `--help` everywhere.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{json, Value};

fn trough(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run trough")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[track_caller]
fn fails(o: &Output) {
    assert!(
        !o.status.success(),
        "expected failure, got success\nstdout: {}",
        stdout(o)
    );
    assert!(
        !stderr(o).trim().is_empty() || !stdout(o).trim().is_empty(),
        "failure without a message"
    );
}

/// Parses stdout as one JSON document, or as JSON lines (→ array).
fn parse_json(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|_| {
        Value::Array(
            out.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}\n{out}"))
                })
                .collect(),
        )
    })
}

#[test]
fn help_everywhere() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["segment", "--help"],
        vec!["segment", "upload", "--help"],
        vec!["segment", "ls", "--help"],
        vec!["segment", "show", "--help"],
        vec!["segment", "promote", "--help"],
        vec!["segment", "describe", "--help"],
        vec!["segment", "label", "--help"],
        vec!["segment", "restore", "--help"],
        vec!["segment", "delete", "--help"],
        vec!["query", "--help"],
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
    ] {
        let o = trough(&args);
        let out = ok(&o);
        assert!(
            out.to_lowercase().contains("usage"),
            "trough {args:?} --help: {out}"
        );
    }
    let serve_help = stdout(&trough(&["serve", "--help"]));
    for flag in [
        "--data-dir",
        "--listen",
        "--max-body-bytes",
        "--max-upload-bytes",
    ] {
        assert!(
            serve_help.contains(flag),
            "serve --help lacks {flag}: {serve_help}"
        );
    }
    let o = trough(&["segment", "upload", "--help"]);
    assert!(stdout(&o).contains("--url"), "{}", stdout(&o));
    // Unknown subcommand → error.
    fails(&trough(&["no-such-subcommand"]));
}

#[test]
fn upload_ls_show_query() {
    let s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    let path = f.path.to_str().unwrap();

    let out = ok(&trough(&[
        "segment",
        "upload",
        "cli.seg",
        path,
        "--url",
        s.url(),
    ]));
    let m = parse_json(&out);
    assert_eq!(m["id"], "cli.seg", "{out}");
    assert_eq!(m["version"], 1, "{out}");
    assert_eq!(m["sha256"], sha256_hex(&f.bytes()), "{out}");
    assert_eq!(m["size"], f.bytes().len() as u64, "{out}");
    let out = ok(&trough(&[
        "segment",
        "upload",
        "cli.seg",
        path,
        "--url",
        s.url(),
    ]));
    assert_eq!(parse_json(&out)["version"], 2, "{out}");
    // Same as the HTTP API says.
    let (_, doc) = s.get_json("/segments/cli.seg");
    assert_eq!(doc["latest"], parse_json(&out));

    let out = ok(&trough(&["segment", "ls", "--url", s.url()]));
    assert!(out.contains("cli.seg"), "ls: {out}");

    let out = ok(&trough(&["segment", "show", "cli.seg", "--url", s.url()]));
    assert!(out.contains("cli.seg"), "show: {out}");
    assert!(
        out.contains(&m["sha256"].as_str().unwrap()[..12]),
        "show tells the segment's sha256: {out}"
    );

    // Wait until the node holds it, then query through the CLI.
    s.wait_synced("cli.seg", 2);
    let sql = "SELECT * FROM t ORDER BY id";
    let out = ok(&trough(&["query", "cli.seg", sql, "--url", s.url()]));
    let rows = parse_json(&out);
    assert_rows_eq(
        rows.as_array().unwrap_or_else(|| panic!("{out}")),
        &f.rows(sql, &json!([])),
    );
}

#[test]
fn promote_via_cli() {
    let s = TestServer::start();
    s.provision("cli.w", &json!({"schema_sql": "CREATE TABLE t (a);"}));
    s.execute_ok("cli.w", "INSERT INTO t VALUES (1), (2)");
    ok(&trough(&["segment", "promote", "cli.w", "--url", s.url()]));
    let (_, doc) = s.get_json("/segments/cli.w");
    assert_eq!(doc["latest"]["version"], 1, "{doc}");
    assert_eq!(doc["versions"].as_array().map(Vec::len), Some(1), "{doc}");
    let out = ok(&trough(&["segment", "show", "cli.w", "--url", s.url()]));
    assert!(out.contains("cli.w"), "{out}");
    assert_eq!(
        parse_json(&ok(&trough(&[
            "query",
            "cli.w",
            "SELECT count(*) AS n FROM t",
            "--url",
            s.url()
        ]))),
        json!([{"n": 2}])
    );
}

#[test]
fn cli_errors_exit_non_zero() {
    let s = TestServer::start();
    let f = SqliteFile::new(SAMPLE_SQL);
    let path = f.path.to_str().unwrap();
    // Unknown segment.
    fails(&trough(&[
        "query",
        "cli.none",
        "SELECT 1",
        "--url",
        s.url(),
    ]));
    fails(&trough(&["segment", "show", "cli.none", "--url", s.url()]));
    fails(&trough(&[
        "segment",
        "promote",
        "cli.none",
        "--url",
        s.url(),
    ]));
    // Invalid id.
    let o = trough(&["segment", "upload", ".bad", path, "--url", s.url()]);
    fails(&o);
    // Missing file / not SQLite.
    fails(&trough(&[
        "segment",
        "upload",
        "cli.x",
        "/nonexistent/file.sqlite",
        "--url",
        s.url(),
    ]));
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"not a database").unwrap();
    fails(&trough(&[
        "segment",
        "upload",
        "cli.x",
        junk.path().to_str().unwrap(),
        "--url",
        s.url(),
    ]));
    // Bad SQL is reported.
    s.provision("cli.q", &json!({}));
    fails(&trough(&["query", "cli.q", "SELEC 1", "--url", s.url()]));
    // Nothing listening.
    fails(&trough(&["segment", "ls", "--url", "http://127.0.0.1:1"]));
    // Missing arguments.
    fails(&trough(&["segment", "upload", "cli.x"]));
    assert_eq!(s.get_json("/segments/cli.x").0, 404);
}

/// `trough segment upload --dir`: every SQLite file of a directory becomes a segment named after
/// it; a file the server refuses is reported and fails the command while the others are
/// published; running it again publishes only what changed; bad names stop it before anything
/// is sent.
#[test]
fn upload_a_directory_resumably() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..5 {
        let f = SqliteFile::new(&format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES ({i}, 'row {i}');"
        ));
        std::fs::write(dir.path().join(format!("bulk-{i}.sqlite")), f.bytes()).unwrap();
        files.push(f);
    }
    std::fs::write(dir.path().join("bulk-junk.db"), b"not a database").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"ignored").unwrap();
    let d = dir.path().to_str().unwrap();

    let o = trough(&["segment", "upload", "--dir", d, "--url", s.url()]);
    fails(&o);
    let summary = parse_json(&stdout(&o));
    assert_eq!(summary["files"], 6, "{summary}");
    assert_eq!(summary["published"], 5, "{summary}");
    assert_eq!(summary["failed"][0]["segment"], "bulk-junk", "{summary}");
    assert!(
        summary["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not_sqlite"),
        "{summary}"
    );
    let (status, _) = s.get_json("/segments/bulk-junk");
    assert_eq!(status, 404, "a refused file publishes nothing");
    for (i, f) in files.iter().enumerate() {
        let id = format!("bulk-{i}");
        s.wait_synced(&id, 1);
        let sql = "SELECT * FROM t";
        assert_rows_eq(&s.query_ok(&id, sql), &f.rows(sql, &json!([])));
    }

    // Again, without the junk and with one file changed: only that one is published.
    std::fs::remove_file(dir.path().join("bulk-junk.db")).unwrap();
    let changed = SqliteFile::new(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (9, 'new');",
    );
    std::fs::write(dir.path().join("bulk-3.sqlite"), changed.bytes()).unwrap();
    let summary = parse_json(&ok(&trough(&[
        "segment",
        "upload",
        "--dir",
        d,
        "--url",
        s.url(),
    ])));
    assert_eq!(
        (&summary["published"], &summary["unchanged"]),
        (&json!(1), &json!(4)),
        "{summary}"
    );
    let (_, doc) = s.get_json("/segments/bulk-3");
    assert_eq!(doc["latest"]["version"], 2, "{doc}");
    let (_, doc) = s.get_json("/segments/bulk-0");
    assert_eq!(
        doc["latest"]["version"], 1,
        "unchanged files are not re-published: {doc}"
    );

    // A file name that is not a segment id: nothing is sent.
    std::fs::write(dir.path().join("bad name.sqlite"), changed.bytes()).unwrap();
    std::fs::write(dir.path().join("bulk-4.sqlite"), changed.bytes()).unwrap();
    let o = trough(&["segment", "upload", "--dir", d, "--url", s.url()]);
    fails(&o);
    assert!(stderr(&o).contains("bad name.sqlite"), "{}", stderr(&o));
    let (_, doc) = s.get_json("/segments/bulk-4");
    assert_eq!(doc["latest"]["version"], 1, "nothing was uploaded: {doc}");
}

#[test]
fn describe_label_restore_delete_via_cli() {
    let s = TestServer::in_process();
    let url = s.url();
    let v1 = SqliteFile::new(
        "CREATE TABLE pages (url TEXT PRIMARY KEY); INSERT INTO pages VALUES ('a');",
    );
    let v2 = SqliteFile::new(
        "CREATE TABLE pages (url TEXT PRIMARY KEY); INSERT INTO pages VALUES ('b');",
    );
    s.publish("cli.life", v1.bytes());
    s.publish("cli.life", v2.bytes());
    s.publish(
        "cli.other",
        SqliteFile::new("CREATE TABLE other (x);").bytes(),
    );
    s.wait_synced("cli.life", 2);

    let d = parse_json(&ok(&trough(&[
        "segment", "describe", "cli.life", "--url", url,
    ])));
    assert_eq!(d["tables"][0]["name"], "pages", "{d}");
    assert_eq!(d["tables"][0]["primary_key"], json!(["url"]), "{d}");

    let doc = parse_json(&ok(&trough(&[
        "segment",
        "label",
        "cli.life",
        "kind=pages",
        "team=web",
        "--description",
        "test pages",
        "--url",
        url,
    ])));
    assert_eq!(
        doc["labels"],
        json!({"kind": "pages", "team": "web"}),
        "{doc}"
    );
    assert_eq!(doc["description"], "test pages");
    let doc = parse_json(&ok(&trough(&[
        "segment", "label", "cli.life", "--remove", "team", "--url", url,
    ])));
    assert_eq!(doc["labels"], json!({"kind": "pages"}), "{doc}");
    fails(&trough(&[
        "segment",
        "label",
        "cli.life",
        "no-equals-sign",
        "--url",
        url,
    ]));

    // Only the labelled segment is queried: cli.other has no `pages` table.
    let out = parse_json(&ok(&trough(&[
        "query",
        "--label",
        "kind:pages",
        "SELECT url FROM pages",
        "--url",
        url,
    ])));
    assert_eq!(out["rows"], json!([{"url": "b"}]), "{out}");

    let m = parse_json(&ok(&trough(&[
        "segment", "restore", "cli.life", "1", "--url", url,
    ])));
    assert_eq!(m["version"], 3, "{m}");
    s.wait_synced("cli.life", 3);
    assert_eq!(
        s.query_ok("cli.life", "SELECT url FROM pages"),
        [json!({"url": "a"})]
    );
    fails(&trough(&[
        "segment", "restore", "cli.life", "9", "--url", url,
    ]));

    ok(&trough(&["segment", "delete", "cli.life", "--url", url]));
    let (status, _) = s.get_json("/segments/cli.life");
    assert_eq!(status, 404);
    fails(&trough(&["segment", "delete", "cli.life", "--url", url]));
}
