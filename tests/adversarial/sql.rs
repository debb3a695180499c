//! Hostile SQL and request bodies on every SQL endpoint: SQLite escape hatches (ATTACH,
//! load_extension, PRAGMAs, writable_schema, VACUUM INTO, temporary objects), statement
//! smuggling, bad parameters, strict JSON, and the cluster-wide `/query`.

use serde_json::json;

use super::{Case, Expect};
use Expect::*;

const Q: &str = "/segments/s/query";
const QW: &str = "/segments/w/query";
const X: &str = "/segments/w/execute";
const WIRE_S: &str = "/?segment=s";
const WIRE_W: &str = "/?segment=w";
const ALL: &str = "/query";

/// Inputs that escape or abuse SQLite: refused (4xx) on every endpoint that runs SQL.
const ESCAPES: &[(&str, &str)] = &[
    (
        "attach file",
        "ATTACH DATABASE '/tmp/trough-adv-evil.db' AS evil",
    ),
    ("attach memory", "ATTACH DATABASE ':memory:' AS m"),
    ("attach uri", "ATTACH 'file:/etc/passwd?mode=ro' AS p"),
    ("detach main", "DETACH DATABASE main"),
    (
        "load_extension fn",
        "SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')",
    ),
    ("vacuum into tmp", "VACUUM INTO '/tmp/trough-adv-copy.db'"),
    ("vacuum into relative", "VACUUM INTO 'copy.db'"),
    ("vacuum", "VACUUM"),
    ("writable_schema on", "PRAGMA writable_schema = ON"),
    (
        "writable_schema update",
        "PRAGMA writable_schema = 1; UPDATE sqlite_master SET sql = 'x'",
    ),
    ("journal_mode off", "PRAGMA journal_mode = OFF"),
    ("journal_mode delete", "PRAGMA journal_mode = DELETE"),
    ("synchronous off", "PRAGMA synchronous = OFF"),
    ("locking exclusive", "PRAGMA locking_mode = EXCLUSIVE"),
    (
        "temp_store_directory",
        "PRAGMA temp_store_directory = '/tmp'",
    ),
    ("query_only off", "PRAGMA query_only = 0"),
    ("trusted_schema on", "PRAGMA trusted_schema = 1"),
    ("user_version set", "PRAGMA user_version = 7"),
    ("schema_version set", "PRAGMA schema_version = 99"),
    ("mmap_size huge", "PRAGMA mmap_size = 1099511627776"),
    ("cache_size huge", "PRAGMA cache_size = -100000000"),
    ("page_size set", "PRAGMA page_size = 512"),
    ("wal_checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)"),
    ("shrink_memory", "PRAGMA shrink_memory"),
    ("fts3_tokenizer read", "SELECT fts3_tokenizer('simple')"),
    (
        "fts3_tokenizer register",
        "SELECT fts3_tokenizer('evil', x'4141414141414141')",
    ),
    ("create virtual fts", "CREATE VIRTUAL TABLE f USING fts5(x)"),
    ("create temp table", "CREATE TEMP TABLE shadow (a)"),
    ("begin", "BEGIN"),
    ("commit", "COMMIT"),
    ("savepoint", "SAVEPOINT sp"),
    ("reindex", "REINDEX"),
    ("analyze", "ANALYZE"),
];

/// Inputs that only reads could run: refused on the read endpoints (they are writes or several
/// statements), and on `execute` they must leave nothing behind when they fail.
const SMUGGLED: &[(&str, &str)] = &[
    ("select then drop", "SELECT 1; DROP TABLE t"),
    (
        "select then insert",
        "SELECT 1; INSERT INTO t (id) VALUES (99)",
    ),
    ("comment then drop", "/* SELECT */ DROP TABLE t"),
    ("dash comment then delete", "-- SELECT\nDELETE FROM t"),
    ("nul then drop", "SELECT 1\0; DROP TABLE t"),
    ("cte delete", "WITH x AS (SELECT 1) DELETE FROM t"),
    ("update", "UPDATE t SET name = 'pwned'"),
    ("delete", "DELETE FROM t"),
    ("drop", "DROP TABLE t"),
    (
        "create trigger",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END",
    ),
    ("create index", "CREATE INDEX ix ON t (name)"),
    (
        "insert returning",
        "INSERT INTO t (id) VALUES (100) RETURNING *",
    ),
    ("replace", "REPLACE INTO t (id, name) VALUES (1, 'x')"),
];

/// Bad SQL and bodies that every read endpoint refuses with a 4xx.
const BAD_READS: &[(&str, &str)] = &[
    ("empty", ""),
    ("whitespace", "   \n\t  "),
    ("only comment", "-- nothing"),
    ("syntax error", "SELEC 1"),
    ("no such table", "SELECT * FROM nope"),
    ("no such column", "SELECT nope FROM t"),
    ("no such function", "SELECT readfile('/etc/passwd')"),
    ("writefile", "SELECT writefile('/tmp/trough-adv-w', 'x')"),
    ("edit", "SELECT edit('x', 'vi')"),
    ("overflow", "SELECT abs(-9223372036854775808)"),
    ("randomblob too big", "SELECT randomblob(2000000000)"),
    ("zeroblob too big", "SELECT zeroblob(2000000000)"),
    ("missing param", "SELECT ?"),
    (
        "too many rows",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200) SELECT x FROM c",
    ),
    (
        "sqlite_master write",
        "INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, '')",
    ),
];

/// Reads that run into the query time limit (504).
const SLOW_READS: &[(&str, &str)] = &[
    ("recursive cte unbounded", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"),
    ("cross join blowup", "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j, t k, t l, t m, t n, t o, t p, t q, t r, t s, t u"),
];

/// Reads that are allowed and harmless.
const GOOD_READS: &[(&str, &str)] = &[
    ("small recursive cte", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000) SELECT count(*) AS n FROM c"),
    ("read sqlite_master", "SELECT name, sql FROM sqlite_master"),
    ("unicode identifiers", "SELECT 1 AS \"☃\", 2 AS \"\u{202e}rtl\""),
    ("pragma table_info", "SELECT * FROM pragma_table_info('t')"),
];

/// Escapes that are harmless (2xx) on the read endpoints: read-only connections make them
/// no-ops.
const HARMLESS_READS: &[&str] = &["fts3_tokenizer read", "reindex"];

/// Escapes that are legitimate on a writable segment (2xx), or that change it legitimately and
/// are therefore not sent there (`None`; `create temp table` is defect 2, in
/// [`needs_sqlite_fixes`]).
const ON_EXECUTE: &[(&str, Option<Expect>)] = &[
    ("user_version set", None),
    ("fts3_tokenizer read", Some(Ok)),
    ("create virtual fts", None),
    ("create temp table", None),
    ("reindex", Some(Ok)),
    ("analyze", None),
];

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (name, sql) in ESCAPES {
        let read = if HARMLESS_READS.contains(name) {
            Ok
        } else {
            Client
        };
        v.push(Case::text(format!("query: {name}"), Q, sql, read));
        v.push(Case::text(
            format!("wire read-only: {name}"),
            WIRE_S,
            sql,
            read,
        ));
        // The cluster-wide planner refuses anything but a SELECT over a table.
        v.push(Case::json(
            format!("/query: {name}"),
            ALL,
            json!({"sql": sql, "segments": "*"}),
            Client,
        ));
        let exec = ON_EXECUTE
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Some(Client), |(_, e)| *e);
        if let Some(e) = exec {
            v.push(Case::text(format!("execute: {name}"), X, sql, e));
        }
    }
    for (name, sql) in SMUGGLED {
        v.push(Case::text(format!("query: {name}"), Q, sql, Client));
        v.push(Case::text(
            format!("wire read-only: {name}"),
            WIRE_S,
            sql,
            Client,
        ));
        v.push(Case::json(
            format!("/query: {name}"),
            ALL,
            json!({"sql": sql, "segments": ["s"]}),
            Client,
        ));
    }
    for (name, sql) in BAD_READS {
        v.push(Case::text(format!("query: {name}"), Q, sql, Client));
        v.push(Case::text(
            format!("query writable: {name}"),
            QW,
            sql,
            Client,
        ));
    }
    for (name, sql) in SLOW_READS {
        v.push(Case::text(format!("query: {name}"), Q, sql, Status(504)));
        let sql = sql.replace(" t ", " items ");
        v.push(Case::text(
            format!("query writable: {name}"),
            QW,
            &sql,
            Status(504),
        ));
    }
    for (name, sql) in GOOD_READS {
        v.push(Case::text(format!("query: {name}"), Q, sql, Ok));
    }
    v.extend(execute_cases());
    v.extend(body_cases());
    v.extend(scatter_cases());
    v
}

/// Writes that fail part-way: the whole request rolls back.
fn execute_cases() -> Vec<Case> {
    let atomic: &[(&str, &str)] = &[
        (
            "insert then bad table",
            "INSERT INTO items VALUES (10, 'x'); INSERT INTO nope VALUES (1)",
        ),
        (
            "insert then overflow",
            "INSERT INTO items VALUES (11, 'x'); SELECT abs(-9223372036854775808)",
        ),
        (
            "insert then not null",
            "INSERT INTO items VALUES (12, 'x'); INSERT INTO items VALUES (13, NULL)",
        ),
        (
            "insert then duplicate",
            "INSERT INTO items VALUES (14, 'x'); INSERT INTO items VALUES (1, 'dup')",
        ),
        (
            "insert then attach",
            "INSERT INTO items VALUES (15, 'x'); ATTACH ':memory:' AS m",
        ),
        (
            "insert then vacuum into",
            "INSERT INTO items VALUES (16, 'x'); VACUUM INTO '/tmp/trough-adv-v.db'",
        ),
        (
            "insert then commit",
            "INSERT INTO items VALUES (17, 'x'); COMMIT",
        ),
        (
            "insert then rollback",
            "INSERT INTO items VALUES (18, 'x'); ROLLBACK",
        ),
        (
            "insert then begin",
            "INSERT INTO items VALUES (19, 'x'); BEGIN",
        ),
        ("update then syntax", "UPDATE items SET v = 'pwned'; SELEC"),
        (
            "delete then writable_schema",
            "DELETE FROM items; PRAGMA writable_schema = 1",
        ),
        ("drop then error", "DROP TABLE items; SELECT nope"),
        ("release unknown savepoint", "RELEASE nothing"),
        ("empty", ""),
        ("syntax", "INSRT INTO items VALUES (1)"),
        (
            "insert then NUL then delete",
            "INSERT INTO items VALUES (20, 'x');\0 DELETE FROM items",
        ),
        (
            "NUL inside a string",
            "INSERT INTO items VALUES (21, 'a\0b')",
        ),
    ];
    let mut v: Vec<Case> = atomic
        .iter()
        .map(|(name, sql)| Case::text(format!("execute atomic: {name}"), X, sql, Client))
        .collect();
    let json_cases = vec![
        (
            "params with several statements",
            json!({"sql": "INSERT INTO items VALUES (?, 'a'); DELETE FROM items", "params": [30]}),
        ),
        (
            "batch with a bad entry",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "batch": [[31, "a"], [32, null], [33, "c"]]}),
        ),
        (
            "batch not array",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "batch": {"a": 1}}),
        ),
        (
            "batch of strings",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "batch": ["x", "y"]}),
        ),
        (
            "batch duplicate key",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "batch": [[34, "a"], [34, "b"]]}),
        ),
        (
            "bad blob param",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "params": [35, {"$blob": "!!!"}]}),
        ),
        (
            "bad float param",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "params": [36, {"$float": "nan2"}]}),
        ),
        (
            "nested array param",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "params": [37, [1, 2]]}),
        ),
        (
            "object param",
            json!({"sql": "INSERT INTO items VALUES (?, ?)", "params": [38, {"a": 1}]}),
        ),
        (
            "params as string",
            json!({"sql": "INSERT INTO items VALUES (39, 'x')", "params": "x"}),
        ),
        ("sql not string", json!({"sql": 5})),
        ("sql missing", json!({"params": []})),
        (
            "unknown field",
            json!({"sql": "INSERT INTO items VALUES (40, 'x')", "parms": []}),
        ),
        ("array body", json!(["INSERT INTO items VALUES (41, 'x')"])),
    ];
    for (name, body) in json_cases {
        v.push(Case::json(format!("execute json: {name}"), X, body, Client));
    }
    v.push(Case::text(
        "execute read-only segment",
        "/segments/s/execute",
        "INSERT INTO t (id) VALUES (50)",
        Status(409),
    ));
    v.push(Case::text(
        "execute unknown segment",
        "/segments/nope/execute",
        "SELECT 1",
        Status(404),
    ));
    v.push(Case::text(
        "wire writable: attach",
        WIRE_W,
        "ATTACH ':memory:' AS m",
        Client,
    ));
    v.push(Case::text(
        "wire writable: insert then error",
        WIRE_W,
        "INSERT INTO items VALUES (60, 'x'); SELECT nope",
        Client,
    ));
    v.push(Case::text(
        "wire writable: vacuum into",
        WIRE_W,
        "VACUUM INTO '/tmp/trough-adv-wire.db'",
        Client,
    ));
    v
}

/// Request bodies and parameters on the read endpoints.
fn body_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let bodies = vec![
        ("array", json!(["SELECT 1"])),
        ("string", json!("SELECT 1")),
        ("number", json!(5)),
        ("null", json!(null)),
        ("unknown field", json!({"sql": "SELECT 1", "parms": [1]})),
        ("sql not string", json!({"sql": ["SELECT 1"]})),
        (
            "params not list or map",
            json!({"sql": "SELECT ?", "params": 5}),
        ),
        (
            "bad blob",
            json!({"sql": "SELECT ?", "params": [{"$blob": "%%%"}]}),
        ),
        (
            "bad float",
            json!({"sql": "SELECT ?", "params": [{"$float": "huge"}]}),
        ),
        (
            "blob and float",
            json!({"sql": "SELECT ?", "params": [{"$blob": "", "$float": "NaN"}]}),
        ),
        (
            "missing named",
            json!({"sql": "SELECT :a, :b", "params": {"a": 1}}),
        ),
        (
            "too many params",
            json!({"sql": "SELECT ?", "params": [1, 2, 3]}),
        ),
        (
            "param index too high",
            json!({"sql": "SELECT ?40000", "params": [1]}),
        ),
    ];
    for (name, body) in bodies {
        v.push(Case::json(format!("query json: {name}"), Q, body, Client));
    }
    let raw_bodies: Vec<(&str, Vec<u8>, Option<&'static str>)> = vec![
        (
            "json not utf8",
            b"{\"sql\": \"SELECT \xff\"}".to_vec(),
            Some("application/json"),
        ),
        (
            "text not utf8",
            b"SELECT '\xff\xfe'".to_vec(),
            Some("text/plain"),
        ),
        (
            "truncated json",
            b"{\"sql\": \"SELECT 1\"".to_vec(),
            Some("application/json"),
        ),
        (
            "json trailing garbage",
            b"{\"sql\": \"SELECT 1\"} x".to_vec(),
            Some("application/json"),
        ),
        (
            "json duplicate key",
            b"{\"sql\": \"SELECT 1\", \"sql\": \"DROP TABLE t\"}".to_vec(),
            Some("application/json"),
        ),
        (
            "json deep nesting",
            format!(
                "{{\"sql\": \"SELECT 1\", \"params\": {}{}}}",
                "[".repeat(5000),
                "]".repeat(5000)
            )
            .into_bytes(),
            Some("application/json"),
        ),
        (
            "json huge number",
            b"{\"sql\": \"SELECT ?\", \"params\": [1e999999]}".to_vec(),
            Some("application/json"),
        ),
        (
            "body over limit",
            vec![b' '; (1 << 20) + 10],
            Some("text/plain"),
        ),
        (
            "deep parentheses",
            format!("SELECT {}1{}", "(".repeat(20000), ")".repeat(20000)).into_bytes(),
            Some("text/plain"),
        ),
        (
            "long expression",
            format!("SELECT 1{}", "+1".repeat(200_000)).into_bytes(),
            Some("text/plain"),
        ),
    ];
    for (name, body, ct) in raw_bodies {
        v.push(Case::http(
            format!("query raw: {name}"),
            "POST",
            Q,
            ct,
            body.clone(),
            Client,
        ));
        v.push(Case::http(
            format!("wire raw: {name}"),
            "POST",
            WIRE_S,
            ct,
            body,
            Client,
        ));
    }
    v.push(Case::text(
        "query unknown segment",
        "/segments/nope/query",
        "SELECT 1",
        Status(404),
    ));
    v.push(Case::text(
        "query invalid id",
        "/segments/..%2Fetc/query",
        "SELECT 1",
        Status(400),
    ));
    v.push(Case::text(
        "wire missing segment",
        "/",
        "SELECT 1",
        Status(400),
    ));
    v.push(Case::text(
        "wire invalid segment",
        "/?segment=..%2F",
        "SELECT 1",
        Status(400),
    ));
    v.push(Case::text(
        "wire two segments",
        "/?segment=s&segment=w",
        "SELECT 1",
        Ok,
    ));
    v.push(Case::text(
        "wire unknown segment",
        "/?segment=nope",
        "SELECT 1",
        Status(404),
    ));
    v
}

/// The cluster-wide query: selectors, plans and bodies.
fn scatter_cases() -> Vec<Case> {
    let bodies = vec![
        ("no segments", json!({"sql": "SELECT 1"})),
        ("segments number", json!({"sql": "SELECT 1", "segments": 5})),
        (
            "unknown segment in list",
            json!({"sql": "SELECT 1", "segments": ["s", "nope"]}),
        ),
        (
            "invalid id in list",
            json!({"sql": "SELECT 1", "segments": ["../x"]}),
        ),
        (
            "bad regex",
            json!({"sql": "SELECT 1", "segments": {"regex": "("}}),
        ),
        (
            "huge regex",
            json!({"sql": "SELECT 1", "segments": {"regex": "a".repeat(5000)}}),
        ),
        (
            "regex unknown key",
            json!({"sql": "SELECT 1", "segments": {"regex": ".*", "flags": "i"}}),
        ),
        (
            "partial unknown",
            json!({"sql": "SELECT 1", "segments": "*", "partial": "maybe"}),
        ),
        (
            "unknown field",
            json!({"sql": "SELECT 1", "segments": "*", "parms": []}),
        ),
        ("array body", json!(["SELECT 1", "*"])),
        (
            "two statements",
            json!({"sql": "SELECT 1; SELECT 2", "segments": "*"}),
        ),
        ("syntax error", json!({"sql": "SELEC 1", "segments": "*"})),
        ("empty sql", json!({"sql": "", "segments": "*"})),
        (
            "missing param",
            json!({"sql": "SELECT ? AS a", "segments": ["s"]}),
        ),
    ];
    let mut v: Vec<Case> = bodies
        .into_iter()
        .map(|(name, body)| Case::json(format!("/query: {name}"), ALL, body, Client))
        .collect();
    v.push(Case::json(
        "/query: catastrophic regex",
        ALL,
        json!({"sql": "SELECT count(*) AS n FROM t", "segments": {"regex": "(a+)+$"}}),
        Ok,
    ));
    v.push(Case::json(
        "/query: many listed ids",
        ALL,
        json!({"sql": "SELECT 1", "segments": (0..5000).map(|i| format!("id{i}")).collect::<Vec<_>>()}),
        Client,
    ));
    v
}

/// Files `TMPDIR` may still receive until the SQLite-level fixes land, with the defect number.
pub const KNOWN_TMPDIR: &[(&str, &str)] = &[];

/// Inputs whose expectation needs issue 10's SQLite-level fixes (run by the ignored test).
pub fn needs_sqlite_fixes() -> Vec<Case> {
    vec![
        Case::text("defect 1: endless write", X, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", Status(504)),
        Case::text("defect 2: temp table on execute", X, "CREATE TEMP TABLE items (id INTEGER PRIMARY KEY, v TEXT)", Client),
        Case::text("defect 2: temp trigger on execute", X, "CREATE TEMP TRIGGER eat BEFORE INSERT ON main.items BEGIN SELECT RAISE(IGNORE); END", Client),
        Case::text("defect 2: temp view on execute", X, "CREATE TEMP VIEW vv AS SELECT 1", Client),
        Case::http("defect 3: endless schema", "PUT", "/schemas/endless", Some("text/plain"), "CREATE TABLE a (x); INSERT INTO a WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c;", Client),
        Case::http("defect 3: filling schema", "PUT", "/schemas/filling", Some("text/plain"), "CREATE TABLE a (x); INSERT INTO a WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 3000000) SELECT randomblob(100) FROM c; SELECT nope;", Client),
        Case::text("defect 5: big blobs overshoot", Q, "SELECT sum(length(hex(zeroblob(20000000 + id % 2)))) FROM t", Status(504)),
        Case::text("defect 6: one huge string", Q, "SELECT length(printf('%.*c', 1000000000, 'x'))", Client),
        Case::json("defect 7: many named params", Q, json!({"sql": format!("SELECT {}", (0..20000).map(|i| format!(":p{i}")).collect::<Vec<_>>().join(",")), "params": (0..20000).map(|i| (format!("p{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}), Client),
        Case::text("defect 10: wire read over the row limit", WIRE_W, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 20000) SELECT x FROM c", Client),
        Case::json("defect 12 (helper h1): client error on every segment", ALL, json!({"sql": "SELECT * FROM nope", "segments": "*"}), Status(400)),
        Case::http("defect 4: damaged table page", "PUT", "/segments/d4", Some("application/octet-stream"), crate::files::damaged_table_page(), Status(400)),
        Case::text("defect 11: big sort", Q, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000000) SELECT x % 7 AS k, count(DISTINCT randomblob(50)) FROM c GROUP BY k", Client),
    ]
}
