//! Hostile segment files (not SQLite, truncated, damaged, lying headers), schemas, provisioning,
//! promotion and unknown routes or methods.

use serde_json::json;

use super::{Case, Expect};
use crate::common::{SqliteFile, SAMPLE_SQL};
use Expect::*;

/// A valid segment file to damage.
fn good() -> Vec<u8> {
    SqliteFile::new(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT);
         CREATE INDEX t_name ON t (name);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)
         INSERT INTO t SELECT x, 'name-' || x FROM c;",
    )
    .bytes()
}

fn with(mut bytes: Vec<u8>, at: usize, patch: &[u8]) -> Vec<u8> {
    bytes[at..at + patch.len()].copy_from_slice(patch);
    bytes
}

fn put(name: &str, id: &str, body: Vec<u8>, expect: Expect) -> Case {
    Case::http(
        format!("segment file: {name}"),
        "PUT",
        format!("/segments/{id}"),
        Some("application/octet-stream"),
        body,
        expect,
    )
}

pub fn cases() -> Vec<Case> {
    let g = good();
    let page = 4096;
    let mut header_only = g[..100].to_vec();
    header_only.resize(100, 0);
    let mut v = vec![
        put("empty", "f1", Vec::new(), Status(400)),
        put(
            "text",
            "f2",
            b"hello, I am not a database".to_vec(),
            Status(400),
        ),
        put("zeros", "f3", vec![0u8; 8192], Status(400)),
        put(
            "magic only",
            "f4",
            b"SQLite format 3\0".to_vec(),
            Status(400),
        ),
        put("header only", "f5", header_only, Status(400)),
        put(
            "truncated to one page",
            "f6",
            g[..page].to_vec(),
            Status(400),
        ),
        put(
            "truncated mid page",
            "f7",
            g[..g.len() - 1000].to_vec(),
            Status(400),
        ),
        put(
            "page size 65536 header on 4 KiB pages",
            "f8",
            with(g.clone(), 16, &[0, 1]),
            Status(400),
        ),
        put(
            "page size 3",
            "f9",
            with(g.clone(), 16, &[0, 3]),
            Status(400),
        ),
        put(
            "page size 512 header on 4 KiB pages",
            "f10",
            with(g.clone(), 16, &[2, 0]),
            Status(400),
        ),
        put(
            "page size 32768 header on 4 KiB pages",
            "f10b",
            with(g.clone(), 16, &[0x80, 0]),
            Status(400),
        ),
        put(
            "huge page count",
            "f11",
            with(g.clone(), 28, &[0x7f, 0xff, 0xff, 0xff]),
            Client,
        ),
        put(
            "bad write version",
            "f12",
            with(g.clone(), 18, &[9, 9]),
            Status(400),
        ),
        put(
            "reserved bytes 255",
            "f13",
            with(g.clone(), 20, &[255]),
            Status(400),
        ),
        put(
            "bad payload fractions",
            "f14",
            with(g.clone(), 21, &[1, 1, 1]),
            Status(400),
        ),
        put(
            "damaged schema page",
            "f15",
            with(g.clone(), 100 + 8, &[0xff; 64]),
            Status(400),
        ),
        put(
            "damaged btree header",
            "f17",
            with(g.clone(), page, &[0x42, 0xff, 0xff, 0xff]),
            Status(400),
        ),
        put(
            "random bytes",
            "f19",
            (0..65536u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            Status(400),
        ),
        put(
            "over the upload limit",
            "f20",
            vec![0u8; (4 << 20) + 1],
            Status(413),
        ),
        put("invalid id", "..bad", g.clone(), Status(400)),
        put("onto the writable segment", "w", g.clone(), Status(409)),
        put(
            "gzip of a database",
            "f21",
            {
                let mut b = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
                b.extend_from_slice(&g[..1000]);
                b
            },
            Status(400),
        ),
        put(
            "html",
            "f22",
            b"<html><body>SQLite format 3</body></html>".to_vec(),
            Status(400),
        ),
    ];
    // Schemas: refused and not registered.
    let schemas: &[(&str, &str, &str)] = &[
        ("syntax", "bad1", "CREATE TABLE (oops"),
        (
            "attach",
            "bad2",
            "ATTACH ':memory:' AS m; CREATE TABLE m.x (a)",
        ),
        (
            "load_extension",
            "bad3",
            "SELECT load_extension('libc.so.6')",
        ),
        (
            "vacuum into",
            "bad4",
            "CREATE TABLE a (x); VACUUM INTO '/tmp/trough-adv-schema.db'",
        ),
        ("empty", "bad5", ""),
        (
            "runtime error",
            "bad6",
            "CREATE TABLE a (x); SELECT abs(-9223372036854775808)",
        ),
        ("not utf8 name", "%FF", "CREATE TABLE a (x)"),
        ("invalid name", "..%2Fx", "CREATE TABLE a (x)"),
        ("long name", &"n".repeat(300), "CREATE TABLE a (x)"),
    ];
    for (name, schema, sql) in schemas {
        v.push(Case::http(
            format!("schema: {name}"),
            "PUT",
            format!("/schemas/{schema}"),
            Some("text/plain"),
            sql.as_bytes(),
            Client,
        ));
    }
    v.push(Case::http(
        "schema: not utf8 body",
        "PUT",
        "/schemas/bad7",
        Some("text/plain"),
        b"CREATE TABLE a (x \xff)".to_vec(),
        Client,
    ));
    // Provisioning: refused, nothing created.
    let provisions = vec![
        (
            "unknown schema",
            "p1",
            json!({"schema": "nope"}),
            Status(404),
        ),
        (
            "bad schema sql",
            "p2",
            json!({"schema_sql": "CREATE TABL x"}),
            Client,
        ),
        (
            "attach in schema",
            "p3",
            json!({"schema_sql": "ATTACH ':memory:' AS m"}),
            Client,
        ),
        (
            "both forms",
            "p4",
            json!({"schema": "base", "schema_sql": "CREATE TABLE x (a)"}),
            Client,
        ),
        (
            "unknown field",
            "p5",
            json!({"schema": "base", "replicas": 3}),
            Client,
        ),
        ("array", "p6", json!(["base"]), Client),
        (
            "invalid schema name",
            "p7",
            json!({"schema": "../../etc"}),
            Client,
        ),
        (
            "schema_sql not string",
            "p8",
            json!({"schema_sql": 5}),
            Client,
        ),
        ("invalid id", "..x", json!({"schema": "base"}), Status(400)),
    ];
    for (name, id, body, expect) in provisions {
        v.push(Case::json(
            format!("provision: {name}"),
            format!("/segments/{id}/provision"),
            body,
            expect,
        ));
    }
    v.push(Case::http(
        "provision: not json",
        "POST",
        "/segments/p9/provision",
        Some("application/json"),
        b"{schema".to_vec(),
        Client,
    ));
    // Promotion, routes and methods.
    v.extend([
        Case::http(
            "promote read-only",
            "POST",
            "/segments/s/promote",
            None,
            Vec::new(),
            Status(409),
        ),
        Case::http(
            "promote unknown",
            "POST",
            "/segments/nope/promote",
            None,
            Vec::new(),
            Status(404),
        ),
        Case::http(
            "promote invalid id",
            "POST",
            "/segments/.x/promote",
            None,
            Vec::new(),
            Status(400),
        ),
        Case::http(
            "delete unknown segment",
            "DELETE",
            "/segments/nope",
            None,
            Vec::new(),
            Status(404),
        ),
        Case::http(
            "delete invalid id",
            "DELETE",
            "/segments/.x",
            None,
            Vec::new(),
            Status(400),
        ),
        Case::http(
            "legacy delete unknown segment",
            "DELETE",
            "/segment/nope",
            None,
            Vec::new(),
            Status(404),
        ),
        Case::http(
            "delete schema",
            "DELETE",
            "/schemas/base",
            None,
            Vec::new(),
            Status(405),
        ),
        Case::http(
            "patch segment with a bad label",
            "PATCH",
            "/segments/s",
            Some("application/json"),
            br#"{"labels": {"bad key": "x"}}"#.to_vec(),
            Status(400),
        ),
        Case::http(
            "patch segment with a long description",
            "PATCH",
            "/segments/w",
            Some("application/json"),
            format!(r#"{{"description": "{}"}}"#, "d".repeat(5000)).into_bytes(),
            Status(400),
        ),
        Case::http(
            "restore a version that does not exist",
            "POST",
            "/segments/s/restore",
            Some("application/json"),
            br#"{"version": 99}"#.to_vec(),
            Status(404),
        ),
        Case::http(
            "restore with a bad body",
            "POST",
            "/segments/s/restore",
            Some("application/json"),
            br#"{"version": -1}"#.to_vec(),
            Status(400),
        ),
        Case::http(
            "get query",
            "GET",
            "/segments/s/query",
            None,
            Vec::new(),
            Status(405),
        ),
        Case::http("put query", "PUT", "/query", None, Vec::new(), Status(405)),
        Case::http(
            "unknown route",
            "GET",
            "/admin",
            None,
            Vec::new(),
            Status(404),
        ),
        Case::http(
            "dot dot route",
            "GET",
            "/segments/../etc/passwd",
            None,
            Vec::new(),
            Client,
        ),
        Case::http(
            "encoded slash route",
            "GET",
            "/segments/s%2F..%2F..%2Fetc",
            None,
            Vec::new(),
            Status(400),
        ),
        Case::http(
            "non-utf8 segment",
            "GET",
            "/segments/%C0%AF",
            None,
            Vec::new(),
            Status(400),
        ),
        Case::http(
            "segment subpath",
            "GET",
            "/segments/s/versions/1",
            None,
            Vec::new(),
            Status(404),
        ),
        Case::http(
            "publish over existing with garbage",
            "PUT",
            "/segments/s",
            Some("application/octet-stream"),
            SAMPLE_SQL.as_bytes().to_vec(),
            Status(400),
        ),
    ]);
    v
}
