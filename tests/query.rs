//! POST /segments/{id}/query: body forms, params, value encoding, NDJSON, limits and errors.
//! Every successful answer is compared with SQLite itself running the same SQL on the same file.
//!
//! The servers run in-process (`TestServer::in_process`, see tests/common/in_process.rs),
//! except in the one test that watches the server's CPU time.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Publishes SAMPLE_SQL as `id` and waits until it answers queries.
fn sample(s: &TestServer, id: &str) -> SqliteFile {
    let f = SqliteFile::new(SAMPLE_SQL);
    s.publish(id, f.bytes());
    s.query_ok(id, "SELECT 1");
    f
}

/// Everything observable about the segment, to check that a rejected statement changed nothing.
fn snapshot(s: &TestServer, id: &str) -> (Vec<Value>, Vec<Value>, Value) {
    let rows = s.query_ok(id, "SELECT * FROM t ORDER BY id");
    let schema = s.query_ok(
        id,
        "SELECT type, name, sql FROM sqlite_master ORDER BY name",
    );
    let (_, doc) = s.get_json(&format!("/segments/{id}"));
    (rows, schema, doc["versions"].clone())
}

#[test]
fn raw_text_body_any_content_type_matches_sqlite() {
    let s = TestServer::in_process();
    let f = sample(&s, "q.raw");
    let sql = "SELECT * FROM t ORDER BY id";
    let want = f.rows(sql, &json!([]));
    for ct in [
        None,
        Some("text/plain"),
        Some("application/sql"),
        Some("text/plain; charset=utf-8"),
    ] {
        let mut req = s.client().post(s.at("/segments/q.raw/query")).body(sql);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 200, "content-type {ct:?}");
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            ctype
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "content-type of answer: {ctype:?}"
        );
        let got: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        assert_rows_eq(got.as_array().unwrap(), &want);
    }
    // Empty result is an empty array.
    assert_eq!(
        s.query_ok("q.raw", "SELECT * FROM t WHERE id < 0"),
        Vec::<Value>::new()
    );
    // A trailing semicolon is still one statement.
    assert_rows_eq(
        &s.query_ok("q.raw", "SELECT id FROM t ORDER BY id;"),
        &f.rows("SELECT id FROM t ORDER BY id", &json!([])),
    );
    // Many rows.
    let big = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 2000) \
               SELECT x, x * 0.5 AS half, printf('row %d', x) AS label FROM c";
    assert_rows_eq(&s.query_ok("q.raw", big), &f.rows(big, &json!([])));
}

#[test]
fn value_encoding_and_column_order_match_sqlite() {
    let s = TestServer::in_process();
    let f = sample(&s, "q.enc");
    let sql = "SELECT 3 AS z, 1 AS a, 2.0 AS m, 1.0 AS one, 0.1 AS tenth, -2.5e-7 AS tiny, \
               1e999 AS inf, -1e999 AS ninf, x'0001ff' AS b, x'' AS empty_blob, NULL AS n, \
               'é ☃ \"q\" \\ \n' AS s, '' AS empty, 9223372036854775807 AS big, \
               -9223372036854775807 - 1 AS small, 123456789012 AS mid";
    let got = s.query_ok("q.enc", sql);
    let want = f.rows(sql, &json!([]));
    assert_rows_eq(&got, &want);
    // Spot-check the encoding itself, independently of the reference conversion.
    let row = &got[0];
    assert!(
        row["one"].is_f64(),
        "integral REAL must keep a fraction (1.0): {row}"
    );
    assert!(row["z"].is_i64() || row["z"].is_u64(), "{row}");
    assert_eq!(row["inf"], json!({"$float": "Infinity"}));
    assert_eq!(row["ninf"], json!({"$float": "-Infinity"}));
    assert_eq!(row["b"], json!({"$blob": "AAH/"}));
    assert_eq!(row["big"], json!(i64::MAX));
    assert_eq!(row["small"], json!(i64::MIN));
    // The raw text keeps the fraction too.
    let r = s
        .client()
        .post(s.at("/segments/q.enc/query"))
        .header("content-type", "text/plain")
        .body("SELECT 1.0 AS one")
        .send()
        .unwrap();
    let text = r.text().unwrap();
    assert!(
        text.contains("1.0") || text.contains("1e0") || text.contains("1E0"),
        "raw answer {text}"
    );

    let sql = "SELECT 1 AS \"ключ\", 2 AS \"with space\", 3 AS \"q\"\"uote\", 4 AS \"\"";
    assert_rows_eq(&s.query_ok("q.enc", sql), &f.rows(sql, &json!([])));

    // Stored values, blobs and infinities included.
    let sql = "SELECT * FROM t ORDER BY id";
    assert_rows_eq(&s.query_ok("q.enc", sql), &f.rows(sql, &json!([])));
    // Duplicate-free aliases keep column order even when it is not alphabetical.
    let got = s.query_ok("q.enc", "SELECT note, id, name FROM t WHERE id = 2");
    let keys: Vec<&String> = got[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["note", "id", "name"]);
}

#[test]
fn json_body_positional_params_match_sqlite() {
    let s = TestServer::in_process();
    let f = sample(&s, "q.pos");
    let params = json!([1, 2.5, "text ☃", null, {"$blob": "AAEC/w=="}, {"$float": "Infinity"},
                        {"$float": "-Infinity"}, {"$float": "NaN"}, 1.0, -7]);
    let sql =
        "SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e, ? AS f, ? AS g, ? AS h, ? AS i, ? AS j";
    let body = json!({"sql": sql, "params": params});
    assert_rows_eq(&s.query_json_ok("q.pos", &body), &f.rows(sql, &params));

    // typeof() of each bound value, as SQLite sees it.
    for p in params.as_array().unwrap() {
        let sql = "SELECT ?1 AS v, typeof(?1) AS t";
        let ps = json!([p]);
        let got = s.query_json_ok("q.pos", &json!({"sql": sql, "params": ps}));
        assert_rows_eq(&got, &f.rows(sql, &ps));
    }
    // Blob and infinity round-trip exactly.
    let got = s.query_json_ok("q.pos", &json!({"sql": "SELECT ? AS b, ? AS x", "params": [{"$blob": "AAEC/w=="}, {"$float": "-Infinity"}]}));
    assert_eq!(
        got,
        vec![json!({"b": {"$blob": "AAEC/w=="}, "x": {"$float": "-Infinity"}})]
    );

    // A large blob survives the round trip.
    let blob: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let ps = json!([sql_to_json(rusqlite::types::ValueRef::Blob(&blob))]);
    let sql = "SELECT length(?1) AS n, ?1 AS b, hex(substr(?1, 1000, 8)) AS h";
    assert_rows_eq(
        &s.query_json_ok("q.pos", &json!({"sql": sql, "params": ps})),
        &f.rows(sql, &ps),
    );

    // Params against stored data.
    let sql = "SELECT id, name FROM t WHERE id > ? AND name <> ? ORDER BY id";
    let ps = json!([1, "gamma"]);
    assert_rows_eq(
        &s.query_json_ok("q.pos", &json!({"sql": sql, "params": ps})),
        &f.rows(sql, &ps),
    );
    let sql = "SELECT id FROM t WHERE data = ?";
    let ps = json!([{"$blob": "3q2+7w=="}]);
    let got = s.query_json_ok("q.pos", &json!({"sql": sql, "params": ps}));
    assert_rows_eq(&got, &f.rows(sql, &ps));
    assert_eq!(got, vec![json!({"id": 4})]);
    // JSON body without params.
    let sql = "SELECT count(*) AS n FROM t";
    assert_rows_eq(
        &s.query_json_ok("q.pos", &json!({"sql": sql})),
        &f.rows(sql, &json!([])),
    );
}

#[test]
fn json_body_named_params_with_and_without_prefix() {
    let s = TestServer::in_process();
    let f = sample(&s, "q.named");
    let sql = "SELECT :a AS a, @b AS b, $c AS c, :a + 1 AS a1";
    let bare = json!({"a": 1, "b": "two", "c": 3.5});
    let got = s.query_json_ok("q.named", &json!({"sql": sql, "params": bare}));
    assert_rows_eq(&got, &f.rows(sql, &bare));
    assert_eq!(got, vec![json!({"a": 1, "b": "two", "c": 3.5, "a1": 2})]);
    let prefixed = json!({":a": 1, "@b": "two", "$c": 3.5});
    let got = s.query_json_ok("q.named", &json!({"sql": sql, "params": prefixed}));
    assert_rows_eq(&got, &f.rows(sql, &prefixed));
    let sql = "SELECT name FROM t WHERE id BETWEEN :lo AND :hi ORDER BY id";
    let ps = json!({"lo": 2, "hi": 4});
    assert_rows_eq(
        &s.query_json_ok("q.named", &json!({"sql": sql, "params": ps})),
        &f.rows(sql, &ps),
    );
}

#[test]
fn ndjson_one_object_per_line() {
    let s = TestServer::in_process();
    let f = sample(&s, "q.nd");
    for (sql, params) in [
        ("SELECT * FROM t ORDER BY id", json!([])),
        ("SELECT * FROM t WHERE id >= ? ORDER BY id", json!([3])),
        ("SELECT * FROM t WHERE id < 0", json!([])),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1500) SELECT x, 'r' || x AS r FROM c", json!([])),
    ] {
        let want = f.rows(sql, &params);
        for json_body in [false, true] {
            if !json_body && params != json!([]) {
                continue;
            }
            let mut req = s.client().post(s.at("/segments/q.nd/query")).header("accept", "application/x-ndjson");
            req = if json_body {
                req.header("content-type", "application/json").body(json!({"sql": sql, "params": params}).to_string())
            } else {
                req.header("content-type", "text/plain").body(sql)
            };
            let r = req.send().unwrap();
            assert_eq!(r.status(), 200, "{sql}");
            let text = r.text().unwrap();
            let got: Vec<Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?} is not JSON: {e}")))
                .collect();
            assert!(got.iter().all(Value::is_object), "every line must be one row object: {text}");
            assert_rows_eq(&got, &want);
        }
    }
    // Errors found before the first row are ordinary JSON error documents.
    for (id, sql, status, code) in [
        ("q.nd", "SELEC 1", 400, "sql_error"),
        ("q.none", "SELECT 1", 404, "segment_not_found"),
    ] {
        let r = s
            .client()
            .post(s.at(&format!("/segments/{id}/query")))
            .header("accept", "application/x-ndjson")
            .header("content-type", "text/plain")
            .body(sql)
            .send()
            .unwrap();
        let (st, body) = json_of(r);
        assert_error(st, &body, status, code);
    }
}

#[test]
fn write_statements_are_not_read_only_and_change_nothing() {
    let s = TestServer::in_process();
    sample(&s, "q.ro");
    let before = snapshot(&s, "q.ro");
    for sql in [
        "INSERT INTO t (id, name) VALUES (10, 'x')",
        "UPDATE t SET name = 'changed'",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (a)",
        "ALTER TABLE t ADD COLUMN extra",
        "CREATE INDEX t_name ON t(name)",
        "REPLACE INTO t (id, name) VALUES (1, 'replaced')",
        "INSERT INTO t (id, name) VALUES (11, 'y') RETURNING id",
        "WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)",
    ] {
        let (status, body) = s.query_text("q.ro", sql);
        assert_error(status, &body, 400, "not_read_only");
        let (status, body) = s.query_json("q.ro", &json!({"sql": sql}));
        assert_error(status, &body, 400, "not_read_only");
    }
    // Temporary objects are refused outright (they would outlive the request on a pooled
    // connection).
    let (status, body) = s.query_text("q.ro", "CREATE TEMP TABLE tmp AS SELECT * FROM t");
    assert_error(status, &body, 400, "forbidden_statement");
    let (status, body) = s.query_text("q.ro", "PRAGMA user_version = 7");
    assert_error_any(
        status,
        &body,
        400,
        &["not_read_only", "forbidden_statement"],
    );
    // Turning query_only off must not open a door for the next request on the same connection.
    for _ in 0..4 {
        let (status, body) = s.query_text("q.ro", "PRAGMA query_only = 0");
        assert_eq!(status, 400, "PRAGMA query_only = 0: {body}");
        let (status, body) = s.query_text("q.ro", "DELETE FROM t");
        assert_error(status, &body, 400, "not_read_only");
    }
    assert_eq!(
        snapshot(&s, "q.ro"),
        before,
        "a rejected statement changed the segment"
    );
}

#[test]
fn forbidden_statements_are_400_and_change_nothing() {
    let s = TestServer::in_process();
    sample(&s, "q.forbid");
    let before = snapshot(&s, "q.forbid");
    let outside = tempfile::tempdir().unwrap();
    let attach_path = outside.path().join("attached.db");
    let vacuum_path = outside.path().join("copy.db");
    let statements = [
        format!("ATTACH DATABASE '{}' AS other", attach_path.display()),
        format!("ATTACH '{}' AS other", attach_path.display()),
        "ATTACH ':memory:' AS mem".to_owned(),
        format!("VACUUM INTO '{}'", vacuum_path.display()),
        "SELECT load_extension('/nonexistent/libevil')".to_owned(),
        "SELECT load_extension('/nonexistent/libevil', 'sqlite3_evil_init')".to_owned(),
        "PRAGMA writable_schema=1".to_owned(),
        "PRAGMA writable_schema = ON".to_owned(),
    ];
    for sql in &statements {
        let (status, body) = s.query_text("q.forbid", sql);
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{sql}: {body}"
        );
        let (status, body) = s.query_json("q.forbid", &json!({"sql": sql}));
        assert_eq!(status, 400, "{sql}: {body}");
    }
    assert!(
        !attach_path.exists(),
        "ATTACH created {}",
        attach_path.display()
    );
    assert!(
        !vacuum_path.exists(),
        "VACUUM INTO created {}",
        vacuum_path.display()
    );
    assert_eq!(snapshot(&s, "q.forbid"), before);
}

#[test]
fn sql_errors_carry_sqlite_message() {
    let s = TestServer::in_process();
    sample(&s, "q.err");
    let (status, body) = s.query_text("q.err", "SELEC 1");
    assert_error(status, &body, 400, "sql_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("near \"SELEC\": syntax error"),
        "message: {msg}"
    );
    let (status, body) = s.query_json("q.err", &json!({"sql": "SELEC 1"}));
    assert_error(status, &body, 400, "sql_error");

    let (status, body) = s.query_text("q.err", "SELECT * FROM no_such_table");
    assert_error(status, &body, 400, "sql_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such table: no_such_table"),
        "{body}"
    );

    let (status, body) = s.query_text("q.err", "SELECT nope FROM t");
    assert_error(status, &body, 400, "sql_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such column: nope"),
        "{body}"
    );
}

#[test]
fn multiple_statements_rejected() {
    let s = TestServer::in_process();
    sample(&s, "q.multi");
    let before = snapshot(&s, "q.multi");
    let (status, body) = s.query_text("q.multi", "SELECT 1; SELECT 2");
    assert_error(status, &body, 400, "multiple_statements");
    let (status, body) = s.query_json("q.multi", &json!({"sql": "SELECT 1; SELECT 2"}));
    assert_error(status, &body, 400, "multiple_statements");
    let (status, body) = s.query_text("q.multi", "SELECT 1; DELETE FROM t");
    assert_error_any(
        status,
        &body,
        400,
        &["multiple_statements", "not_read_only"],
    );
    assert_eq!(snapshot(&s, "q.multi"), before);
}

#[test]
fn bad_bodies_and_unknown_segment() {
    let s = TestServer::in_process();
    sample(&s, "q.body");
    // Not UTF-8.
    let r = s
        .client()
        .post(s.at("/segments/q.body/query"))
        .header("content-type", "text/plain")
        .body(vec![
            b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'\'', 0xff, 0xfe, b'\'',
        ])
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "invalid_body");
    // Malformed JSON / JSON without sql / wrong params type.
    for bad in [
        "{\"sql\": ",
        "{}",
        "{\"params\": [1]}",
        "{\"sql\": 5}",
        "[1,2]",
        "{\"sql\": \"SELECT ?\", \"params\": 7}",
    ] {
        let r = s
            .client()
            .post(s.at("/segments/q.body/query"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .unwrap();
        let (status, body) = json_of(r);
        assert_eq!(status, 400, "JSON body {bad:?}: {body}");
        assert!(
            body["error"]["code"].is_string(),
            "JSON body {bad:?}: {body}"
        );
    }
    // Unknown segment.
    let (status, body) = s.query_text("q.nope", "SELECT 1");
    assert_error(status, &body, 404, "segment_not_found");
    let (status, body) = s.query_json("q.nope", &json!({"sql": "SELECT 1"}));
    assert_error(status, &body, 404, "segment_not_found");
}

#[test]
fn slow_query_times_out_while_others_are_served() {
    // A process: the wait below watches the server's CPU time.
    let s = TestServer::start_with(&[], &[("TROUGH_LIMITS__QUERY__TIMEOUT_MS", "300")]);
    let f = sample(&s, "q.slow");
    sample(&s, "q.fast");
    let slow_sql =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000000000) \
                    SELECT count(*) AS n FROM c";
    let client = s.client().clone();
    let url = s.at("/segments/q.slow/query");
    let busy_from = s.cpu_ticks();
    let start = Instant::now();
    let slow = thread::spawn(move || {
        let r = client
            .post(url)
            .header("content-type", "text/plain")
            .body(slow_sql)
            .timeout(Duration::from_secs(20))
            .send()
            .expect("slow query request (server never interrupted it?)");
        let out = json_of(r);
        (out, start.elapsed())
    });
    // Wait until the server is executing the slow query: it burns CPU (an idle server burns
    // next to none; 2 ticks are 20 ms of CPU time, well inside the query's 300 ms).
    let running = wait_until(Duration::from_secs(10), || {
        s.cpu_ticks() >= busy_from + 2 || slow.is_finished()
    });
    assert!(
        running && !slow.is_finished(),
        "the slow query was not seen running (CPU ticks {busy_from} → {})",
        s.cpu_ticks()
    );
    let t0 = Instant::now();
    let (status, body) = s.query_text("q.fast", "SELECT count(*) AS n FROM t");
    let fast_latency = t0.elapsed();
    let fast_done = start.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([{"n": 5}]));
    let ((slow_status, slow_body), slow_done) = slow.join().unwrap();
    assert_error(slow_status, &slow_body, 504, "query_timeout");
    assert!(
        slow_done < Duration::from_secs(10),
        "timeout took {slow_done:?}"
    );
    assert!(
        fast_done < slow_done,
        "the simple query ({fast_latency:?}) waited for the slow one ({slow_done:?})"
    );
    // Server keeps serving the same segment afterwards.
    let sql = "SELECT * FROM t ORDER BY id";
    assert_rows_eq(&s.query_ok("q.slow", sql), &f.rows(sql, &json!([])));

    // The limit holds for every body form and on writable segments too.
    let (status, body) = s.query_json("q.slow", &json!({"sql": slow_sql}));
    assert_error(status, &body, 504, "query_timeout");
    s.provision("q.live", &json!({"schema_sql": "CREATE TABLE t (a);"}));
    let (status, body) = s.query_text("q.live", slow_sql);
    assert_error(status, &body, 504, "query_timeout");
    let r = s
        .client()
        .post(s.at("/?segment=q.live"))
        .body(slow_sql)
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 504, "query_timeout");
    let r = s
        .client()
        .post(s.at("/segments/q.slow/query"))
        .header("accept", "application/x-ndjson")
        .header("content-type", "text/plain")
        .body(slow_sql)
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 504, "query_timeout");
    assert_eq!(
        s.query_ok("q.live", "SELECT count(*) AS n FROM t"),
        vec![json!({"n": 0})]
    );
}

#[test]
fn more_rows_than_max_rows_is_result_too_large() {
    let s = TestServer::in_process_with(&[("TROUGH_LIMITS__QUERY__MAX_ROWS", "10")]);
    let f = sample(&s, "q.max");
    let rows = |n: u32| {
        format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {n}) SELECT x FROM c")
    };
    assert_rows_eq(
        &s.query_ok("q.max", &rows(10)),
        &f.rows(&rows(10), &json!([])),
    );
    let (status, body) = s.query_text("q.max", &rows(11));
    assert_error(status, &body, 400, "result_too_large");
    let (status, body) = s.query_text("q.max", &rows(1_000_000));
    assert_error(status, &body, 400, "result_too_large");
    let r = s
        .client()
        .post(s.at("/segments/q.max/query"))
        .header("accept", "application/x-ndjson")
        .header("content-type", "text/plain")
        .body(rows(11))
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "result_too_large");
    // Writable segments and the wire format obey the same limit.
    s.provision("q.maxw", &json!({"schema_sql": "CREATE TABLE t (a);"}));
    let (status, body) = s.query_text("q.maxw", &rows(11));
    assert_error(status, &body, 400, "result_too_large");
    let r = s
        .client()
        .post(s.at("/?segment=q.max"))
        .body(rows(11))
        .send()
        .unwrap();
    let (status, body) = json_of(r);
    assert_error(status, &body, 400, "result_too_large");
}
