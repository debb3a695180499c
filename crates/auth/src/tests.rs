//! Decision tables for grants, minting and secrets.

use chrono::{Duration, TimeZone, Utc};

use super::*;

fn scope(items: &[&str]) -> Scope {
    Scope::parse_items(items).unwrap()
}

#[test]
fn patterns_parse_and_refuse() {
    assert_eq!("*".parse::<Pattern>(), Ok(Pattern::Prefix(String::new())));
    assert_eq!(
        "pages-*".parse::<Pattern>(),
        Ok(Pattern::Prefix("pages-".into()))
    );
    assert_eq!("a.b".parse::<Pattern>(), Ok(Pattern::Exact("a.b".into())));
    for bad in [
        "",
        "**",
        "a*b",
        "../x",
        "-x",
        "x y",
        "p*q*",
        &"a".repeat(129),
    ] {
        assert!(bad.parse::<Pattern>().is_err(), "{bad:?} accepted");
    }
    assert!("read:".parse::<Grant>().is_err());
    assert!("own:x".parse::<Grant>().is_err());
    assert!("x".parse::<Grant>().is_err());
    assert!(Scope::parse_items(&["superuser"]).is_err());
    let s = scope(&["read:pages-*", "status", "deny:secret"]);
    assert_eq!(s.grants.len(), 2);
    assert!(s.has(ClusterRight::Status) && !s.has(ClusterRight::Metrics));
}

/// The decision table: grants × segment → effective level.
#[test]
fn most_specific_pattern_wins_then_deny_write_read() {
    use Level::*;
    let table: &[(&[&str], &str, Level)] = &[
        // Default deny.
        (&[], "a", None),
        (&["read:pages-*"], "logs-1", None),
        // Each right alone.
        (&["read:*"], "a", Read),
        (&["write:*"], "a", Write),
        (&["admin:*"], "a", Admin),
        (&["deny:*"], "a", None),
        (&["read:a"], "a", Read),
        (&["read:a"], "ab", None),
        (&["read:a*"], "ab", Read),
        (&["read:a*"], "a", Read),
        // More specific wins, whatever the rights.
        (&["admin:*", "deny:pages-*"], "pages-1", None),
        (&["admin:*", "deny:pages-*"], "logs-1", Admin),
        (&["deny:*", "read:pages-*"], "pages-1", Read),
        (
            &["write:pages-*", "read:pages-secret*"],
            "pages-secret-1",
            Read,
        ),
        (&["write:pages-*", "read:pages-secret*"], "pages-2", Write),
        (&["deny:pages-*", "write:pages-1"], "pages-1", Write),
        (&["read:pages-1*", "deny:pages-1"], "pages-1", None),
        (&["read:pages-1*", "deny:pages-1"], "pages-10", Read),
        // Equal specificity: deny beats admin beats write beats read, in any order.
        (&["read:a", "write:a"], "a", Write),
        (&["write:a", "read:a"], "a", Write),
        (&["write:a", "deny:a"], "a", None),
        (&["deny:a", "admin:a"], "a", None),
        (&["admin:p*", "write:p*"], "p1", Admin),
        (&["read:*", "deny:*", "write:*"], "x", None),
    ];
    for (items, id, want) in table {
        let s = scope(items);
        assert_eq!(s.level(id), *want, "{items:?} on {id}");
        for need in [Read, Write, Admin] {
            assert_eq!(s.allows(id, need), *want >= need, "{items:?} {need:?} {id}");
        }
        assert!(!s.allows(id, None), "None is never a right to ask for");
    }
}

#[test]
fn within_compares_every_segment() {
    let table: &[(&[&str], &[&str], bool)] = &[
        (&[], &[], true),
        (&[], &["read:*"], true),
        (&["read:*"], &[], false),
        (&["read:pages-*"], &["read:*"], true),
        (&["read:*"], &["read:pages-*"], false),
        (&["read:pages-1"], &["read:pages-*"], true),
        (&["write:pages-1"], &["read:pages-*"], false),
        (&["read:pages-*"], &["write:*"], true),
        // A deny in the parent must be respected.
        (&["read:pages-*"], &["write:*", "deny:pages-secret"], false),
        (
            &["read:pages-*", "deny:pages-secret"],
            &["write:*", "deny:pages-secret"],
            true,
        ),
        // A longer prefix denied in the parent.
        (&["read:p*"], &["read:p*", "deny:pq*"], false),
        (&["read:p*", "deny:pq*"], &["read:p*", "deny:pq*"], true),
        // A child's deny never widens.
        (&["deny:*"], &[], true),
        // Cluster rights.
        (&["status"], &["status", "metrics"], true),
        (&["tokens"], &["status"], false),
        (&["admin:*"], &["write:*"], false),
    ];
    for (child, parent, want) in table {
        assert_eq!(
            scope(child).within(&scope(parent)),
            *want,
            "{child:?} within {parent:?}"
        );
    }
}

#[test]
fn a_token_cannot_mint_a_broader_one() {
    let table: &[(&[&str], &[&str], bool)] = &[
        // With the tokens right: anything within itself.
        (&["tokens", "read:*"], &["read:pages-*"], true),
        (&["tokens", "read:*"], &["write:pages-*"], false),
        (&["tokens", "read:*"], &["tokens"], true),
        (&["tokens", "read:*"], &["metrics"], false),
        // Admin of a scope: tokens of that scope, no cluster rights.
        (&["admin:pages-*"], &["read:pages-1"], true),
        (&["admin:pages-*"], &["write:pages-*"], true),
        (&["admin:pages-*"], &["read:logs-*"], false),
        (&["admin:pages-*"], &["read:*"], false),
        (&["admin:pages-*"], &["status"], false),
        (&["admin:pages-*", "read:*"], &["read:logs-1"], false),
        (&["admin:pages-*", "deny:pages-x"], &["read:pages-x"], false),
        // Write without tokens or admin: nothing.
        (&["write:*"], &["read:a"], false),
        (&[], &[], false),
    ];
    for (caller, target, want) in table {
        let (c, t) = (scope(caller), scope(target));
        assert_eq!(c.may_manage(&t), *want, "{caller:?} mints {target:?}");
        if *want {
            assert!(c.manages_tokens());
        }
    }
}

#[test]
fn callers_decide_by_their_scope() {
    let anon = Caller::Anonymous(scope(&["read:public-*"]));
    assert!(anon.allows("public-1", Level::Read));
    assert!(!anon.allows("public-1", Level::Write));
    assert!(!anon.has(ClusterRight::Status));
    assert_eq!(anon.accessor(), "anonymous");
    assert!(Caller::Unrestricted.allows("x", Level::Admin));
    assert!(Caller::Unrestricted.has(ClusterRight::Tokens));
}

#[test]
fn secrets_round_trip_and_only_their_hash_opens_a_token() {
    let secret = Secret::from_random(&[7u8; token::RANDOM_BYTES]);
    assert!(secret.expose().starts_with("trough_0707070707070707_"));
    assert_eq!(secret.accessor(), "0707070707070707");
    assert_eq!(Secret::parse(secret.expose()), Some(secret.clone()));
    assert!(!format!("{secret:?}").contains(&secret.expose()[30..]));
    for bad in [
        "",
        "trough_",
        "Bearer x",
        "trough_0707070707070707",
        "trough_07070707070707_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "trough_0707070707070707_short",
        "trough_070707070707070G_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "trough_0707070707070707_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
    ] {
        assert!(Secret::parse(bad).is_none(), "{bad:?}");
    }
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let rec = TokenRecord::new(
        &secret,
        "ci",
        now,
        Some(now + Duration::hours(1)),
        "bootstrap",
        scope(&["read:*"]),
    );
    assert_eq!(rec.secret_sha256.len(), 64);
    assert!(!serde_json::to_string(&rec)
        .unwrap()
        .contains(secret.expose()));
    assert_eq!(rec.check(&secret, now), Ok(()));
    assert_eq!(
        rec.check(&secret, now + Duration::hours(1)),
        Err(Rejected::Expired)
    );
    let mut other = [7u8; token::RANDOM_BYTES];
    other[20] = 8;
    let forged = Secret::from_random(&other);
    assert_eq!(forged.accessor(), secret.accessor());
    assert_eq!(rec.check(&forged, now), Err(Rejected::Invalid));
    // The stored hash is not itself a secret that works.
    let as_secret = format!("trough_{}_{}", rec.accessor, rec.secret_sha256);
    assert_eq!(
        rec.check(&Secret::parse(&as_secret).unwrap(), now),
        Err(Rejected::Invalid)
    );
    let view = serde_json::to_value(rec.public()).unwrap();
    assert!(view.get("secret_sha256").is_none());
    assert_eq!(view["grants"][0]["segments"], "*");
}

#[test]
fn scopes_serialize_as_documented() {
    let s: Scope = serde_json::from_str(
        r#"{"grants":[{"segments":"pages-*","right":"write"}],"cluster":["status"]}"#,
    )
    .unwrap();
    assert_eq!(s, scope(&["write:pages-*", "status"]));
    assert!(
        serde_json::from_str::<Scope>(r#"{"grants":[{"segments":"../x","right":"read"}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<Scope>(r#"{"grants":[],"extra":1}"#).is_err());
}
