//! Authentication and authorization end to end on in-process nodes (docs/security.md): each
//! right allows exactly what it names (a token × endpoint × segment matrix checked for
//! 200/401/403 and for "nothing changed" on refusal), minting limits, revocation and expiry,
//! cluster-wide queries that leave out what the caller may not read and say so, anonymous
//! grants. The real binary's start-up, log and CLI: tests/auth_process.rs.

mod common;

use std::time::Duration;

use common::auth::*;
use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use trough_testkit::wait_until;

/// Who may do what, written out by hand (not with trough-auth): the oracle of the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    Garbage,
    Unknown,
    Reader,
    Writer,
    ReadAllButLogs,
    Operator,
    Admin,
}

fn may_read(who: Who, seg: &str) -> bool {
    match who {
        Who::Reader | Who::Writer => seg.starts_with("pages-"),
        Who::ReadAllButLogs => !seg.starts_with("logs-"),
        Who::Admin => true,
        _ => false,
    }
}

fn may_write(who: Who, seg: &str) -> bool {
    match who {
        Who::Writer => seg.starts_with("pages-"),
        Who::Admin => true,
        _ => false,
    }
}

fn authenticated(who: Who) -> bool {
    !matches!(who, Who::Nobody | Who::Garbage | Who::Unknown)
}

fn expect(who: Who, allowed: bool) -> u16 {
    match (authenticated(who), allowed) {
        (false, _) => 401,
        (true, true) => 200,
        (true, false) => 403,
    }
}

fn check(
    what: &str,
    who: Who,
    status: StatusCode,
    body: &Value,
    headers: &reqwest::header::HeaderMap,
    want: u16,
) {
    let got = match status.as_u16() {
        200 | 201 | 204 => 200,
        other => other,
    };
    assert_eq!(got, want, "{what} as {who:?}: {status} {body}");
    match want {
        401 => {
            assert!(
                headers
                    .get("www-authenticate")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
                "{what}: 401 without WWW-Authenticate: Bearer"
            );
            assert!(body["error"]["code"].is_string(), "{what}: {body}");
        }
        403 => assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}"),
        _ => {}
    }
}

#[test]
fn each_right_allows_exactly_what_it_names_and_refusals_change_nothing() {
    let s = TestServer::in_process_with(&auth_env());
    for id in ["pages-1", "logs-1"] {
        assert_eq!(publish(&s, id, Some(ADMIN), 2), StatusCode::CREATED);
    }
    for id in ["pages-w", "logs-w"] {
        let (status, doc, _) = call(
            &s,
            Method::POST,
            &format!("/segments/{id}/provision"),
            Some(ADMIN),
            json_body(json!({"schema_sql": "CREATE TABLE t (x INTEGER)"})),
        );
        assert_eq!(status, StatusCode::CREATED, "{doc}");
    }
    let reader = token(&s, &[("read", "pages-*")], &[], None).0;
    let writer = token(&s, &[("write", "pages-*")], &[], None).0;
    let most = token(&s, &[("read", "*"), ("deny", "logs-*")], &[], None).0;
    let operator = token(&s, &[], &["status", "metrics"], None).0;
    let unknown = "trough_0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef";
    let who: Vec<(Who, Option<&str>)> = vec![
        (Who::Nobody, None),
        (Who::Garbage, Some("not-a-token")),
        (Who::Unknown, Some(unknown)),
        (Who::Reader, Some(&reader)),
        (Who::Writer, Some(&writer)),
        (Who::ReadAllButLogs, Some(&most)),
        (Who::Operator, Some(&operator)),
        (Who::Admin, Some(ADMIN)),
    ];
    let mut executed = std::collections::BTreeMap::<&str, i64>::new();
    let mut published = std::collections::BTreeMap::<&str, u64>::new();
    for &(w, t) in &who {
        for seg in ["pages-1", "logs-1"] {
            let (st, b, h) = call(&s, Method::GET, &format!("/segments/{seg}"), t, no_body);
            check(
                &format!("GET /segments/{seg}"),
                w,
                st,
                &b,
                &h,
                expect(w, may_read(w, seg)),
            );
            let (st, b, h) = call(
                &s,
                Method::POST,
                &format!("/segments/{seg}/query"),
                t,
                text_body("SELECT 1 AS one"),
            );
            check(
                &format!("query {seg}"),
                w,
                st,
                &b,
                &h,
                expect(w, may_read(w, seg)),
            );
            let (st, b, h) = call(
                &s,
                Method::POST,
                &format!("/?segment={seg}"),
                t,
                text_body("SELECT 1 AS one"),
            );
            check(
                &format!("POST /?segment={seg} read"),
                w,
                st,
                &b,
                &h,
                expect(w, may_read(w, seg)),
            );
            let st = publish(&s, seg, t, 3);
            let want = expect(w, may_write(w, seg));
            assert_eq!(
                if st.is_success() { 200 } else { st.as_u16() },
                want,
                "publish {seg} as {w:?}"
            );
            if st.is_success() {
                *published.entry(seg).or_default() += 1;
            }
        }
        for seg in ["pages-w", "logs-w"] {
            let (st, b, h) = call(
                &s,
                Method::POST,
                &format!("/segments/{seg}/execute"),
                t,
                text_body("INSERT INTO t VALUES (1)"),
            );
            check(
                &format!("execute {seg}"),
                w,
                st,
                &b,
                &h,
                expect(w, may_write(w, seg)),
            );
            if st.is_success() {
                *executed.entry(seg).or_default() += 1;
            }
            // Trough's wire format: a write through POST / needs write, a read right is not enough.
            let (st, b, h) = call(
                &s,
                Method::POST,
                &format!("/?segment={seg}"),
                t,
                text_body("INSERT INTO t VALUES (2)"),
            );
            check(
                &format!("POST /?segment={seg} write"),
                w,
                st,
                &b,
                &h,
                expect(w, may_write(w, seg)),
            );
            if st.is_success() {
                *executed.entry(seg).or_default() += 1;
            }
            // Trough's provision call names the segment in the body.
            let (st, b, h) = call(
                &s,
                Method::POST,
                "/provision",
                t,
                json_body(json!({"segment": seg})),
            );
            check(
                &format!("POST /provision {seg}"),
                w,
                st,
                &b,
                &h,
                expect(w, may_write(w, seg)),
            );
        }
        let (st, b, h) = call(
            &s,
            Method::PUT,
            "/schemas/s1",
            t,
            text_body("CREATE TABLE u (y INTEGER)"),
        );
        check("PUT /schemas/s1", w, st, &b, &h, expect(w, w == Who::Admin));
        let (st, b, h) = call(&s, Method::GET, "/health", t, no_body);
        check(
            "GET /health",
            w,
            st,
            &b,
            &h,
            expect(w, matches!(w, Who::Operator | Who::Admin)),
        );
        let (st, b, h) = call(&s, Method::GET, "/metrics", t, no_body);
        check(
            "GET /metrics",
            w,
            st,
            &b,
            &h,
            expect(w, matches!(w, Who::Operator | Who::Admin)),
        );
        let (st, b, h) = call(
            &s,
            Method::POST,
            "/tokens",
            t,
            json_body(json!({"grants": [{"segments": "pages-1", "right": "read"}]})),
        );
        let want = if authenticated(w) && w != Who::Admin {
            403
        } else {
            expect(w, true)
        };
        let got = if st.is_success() { 200 } else { st.as_u16() };
        assert_eq!(got, want, "POST /tokens as {w:?}: {b}");
        let _ = h;
        // Unknown routes are 401 before 404 for unauthenticated callers.
        let (st, _, _) = call(&s, Method::GET, "/no/such/route", t, no_body);
        assert_eq!(st.as_u16(), if authenticated(w) { 404 } else { 401 });
    }
    // Nothing changed on refusal: exactly the allowed writes happened.
    for seg in ["pages-w", "logs-w"] {
        assert_eq!(
            count(&s, seg),
            *executed.get(seg).unwrap_or(&0),
            "rows of {seg}"
        );
    }
    for seg in ["pages-1", "logs-1"] {
        assert_eq!(
            version(&s, seg),
            1 + published.get(seg).unwrap_or(&0),
            "versions of {seg}"
        );
    }
    assert_eq!(
        executed.get("pages-w"),
        Some(&4),
        "writer and admin, twice each"
    );
    assert_eq!(executed.get("logs-w"), Some(&2), "admin only");
    let (st, schema, _) = call(&s, Method::GET, "/schemas/s1", Some(ADMIN), no_body);
    assert_eq!(st, StatusCode::OK, "{schema}");
}

#[test]
fn tokens_cannot_mint_broader_tokens_and_only_see_their_scope() {
    let s = TestServer::in_process_with(&auth_env());
    let (pages_admin, pa) = token(&s, &[("admin", "pages-*")], &[], None);
    let (st, b, _) = call(
        &s,
        Method::POST,
        "/tokens",
        Some(&pages_admin),
        json_body(json!({"grants": [{"segments": "pages-1", "right": "write"}]})),
    );
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert!(b.get("secret_sha256").is_none());
    let child = b["accessor"].as_str().unwrap().to_owned();
    for broader in [
        json!({"grants": [{"segments": "*", "right": "read"}]}),
        json!({"grants": [{"segments": "logs-1", "right": "read"}]}),
        json!({"cluster": ["tokens"]}),
    ] {
        let (st, b, _) = call(
            &s,
            Method::POST,
            "/tokens",
            Some(&pages_admin),
            json_body(broader.clone()),
        );
        assert_eq!(st, StatusCode::FORBIDDEN, "{broader}: {b}");
        assert_eq!(b["error"]["code"], "token_too_broad");
    }
    let (st, b, _) = call(
        &s,
        Method::POST,
        "/tokens",
        Some(ADMIN),
        json_body(json!({"grants": [{"segments": "../x", "right": "read"}]})),
    );
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    // The scoped admin lists its own token and the child, not the bootstrap token.
    let (st, list, _) = call(&s, Method::GET, "/tokens", Some(&pages_admin), no_body);
    assert_eq!(st, StatusCode::OK);
    let seen: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap())
        .collect();
    assert!(
        seen.contains(&child.as_str()) && seen.contains(&pa.as_str()),
        "{list}"
    );
    assert!(!seen.contains(&&ADMIN[7..23]), "{list}");
    assert!(!list.to_string().contains("secret"), "{list}");
    let (st, _, _) = call(
        &s,
        Method::GET,
        &format!("/tokens/{}", &ADMIN[7..23]),
        Some(&pages_admin),
        no_body,
    );
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = call(
        &s,
        Method::DELETE,
        &format!("/tokens/{}", &ADMIN[7..23]),
        Some(&pages_admin),
        no_body,
    );
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, doc, _) = call(
        &s,
        Method::GET,
        &format!("/tokens/{child}"),
        Some(&pages_admin),
        no_body,
    );
    assert_eq!(
        (st, doc["grants"][0]["right"].clone()),
        (StatusCode::OK, json!("write"))
    );
}

#[test]
fn revocation_and_expiry_take_effect() {
    let s = TestServer::in_process_with(&auth_env());
    publish(&s, "pages-1", Some(ADMIN), 1);
    let (secret, accessor) = token(&s, &[("read", "*")], &[], None);
    let read = |t: &str| call(&s, Method::GET, "/segments/pages-1", Some(t), no_body);
    assert_eq!(read(&secret).0, StatusCode::OK);
    let (st, b, _) = call(
        &s,
        Method::DELETE,
        &format!("/tokens/{accessor}"),
        Some(ADMIN),
        no_body,
    );
    assert_eq!(st, StatusCode::OK, "{b}");
    // Revoked through this node: refused at once.
    let (st, b, _) = read(&secret);
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthenticated"))
    );
    let (st, _, _) = call(
        &s,
        Method::DELETE,
        &format!("/tokens/{accessor}"),
        Some(ADMIN),
        no_body,
    );
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (short, _) = token(&s, &[("read", "*")], &[], Some(1));
    assert_eq!(read(&short).0, StatusCode::OK);
    let mut last = Value::Null;
    let expired = wait_until(Duration::from_secs(10), || {
        let (st, b, _) = read(&short);
        last = b;
        st == StatusCode::UNAUTHORIZED
    });
    assert!(expired, "{last}");
    assert_eq!(last["error"]["code"], "token_expired");
}

#[test]
fn cluster_wide_queries_read_only_what_the_token_may_and_say_how_much_was_left_out() {
    let s = TestServer::in_process_with(&auth_env());
    for (id, rows) in [("pages-1", 2), ("pages-2", 3), ("logs-1", 5), ("logs-2", 7)] {
        publish(&s, id, Some(ADMIN), rows);
        count(&s, id);
    }
    let (most, _) = token(&s, &[("read", "*"), ("deny", "logs-*")], &[], None);
    let (logs_only, _) = token(&s, &[("read", "logs-2")], &[], None);
    let q = |t: &str, mode: &str| {
        call(
            &s,
            Method::POST,
            "/query",
            Some(t),
            json_body(json!({"sql": "SELECT count(*) AS n FROM t", "segments": "*", "mode": mode})),
        )
    };
    let (st, b, h) = q(&most, "exact");
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["rows"][0]["n"], 5, "{b}");
    assert_eq!(b["segments"]["not_permitted"], 2, "{b}");
    assert_eq!(b["segments"]["queried"], 2, "{b}");
    assert_eq!(h.get("x-trough-segments-not-permitted").unwrap(), "2");
    let (st, b, h) = q(&logs_only, "per_segment");
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["segments"]["not_permitted"], 3, "{b}");
    assert_eq!(h.get("x-trough-segments-not-permitted").unwrap(), "3");
    assert_eq!(b["rows"].as_array().unwrap().len(), 1, "{b}");
    let (st, b, h) = q(ADMIN, "exact");
    assert_eq!((st, b["rows"][0]["n"].clone()), (StatusCode::OK, json!(17)));
    assert_eq!(h.get("x-trough-segments-not-permitted").unwrap(), "0");
    // The catalog listing leaves them out too.
    let (st, b, _) = call(&s, Method::GET, "/segments", Some(&most), no_body);
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = b["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pages-1", "pages-2"]);
    // No token, no anonymous access: 401.
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/query",
        None,
        json_body(json!({"sql": "SELECT 1", "segments": "*"})),
    );
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[test]
fn anonymous_access_is_a_grant_like_any_other() {
    let mut env = auth_env();
    env.push(("TROUGH_AUTH__ANONYMOUS", "read:public-*, status"));
    let s = TestServer::in_process_with(&env);
    publish(&s, "public-1", Some(ADMIN), 1);
    publish(&s, "private-1", Some(ADMIN), 1);
    assert_eq!(
        call(&s, Method::GET, "/segments/public-1", None, no_body).0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, Method::GET, "/health", None, no_body).0,
        StatusCode::OK
    );
    // Without a token, what the anonymous grants do not allow needs one: 401, not 403.
    assert_eq!(
        call(&s, Method::GET, "/segments/private-1", None, no_body).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(publish(&s, "public-1", None, 1), StatusCode::UNAUTHORIZED);
    // A bad credential is not anonymous.
    assert_eq!(
        call(&s, Method::GET, "/segments/public-1", Some("x"), no_body).0,
        StatusCode::UNAUTHORIZED
    );
}
