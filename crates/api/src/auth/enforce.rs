//! The one middleware that authenticates and authorizes every request, and writes its audit
//! line. Handlers receive the [`Caller`] (and an [`Access`]) as request extensions; they only
//! narrow what they answer (`POST /query`, `GET /segments`) or check the token a `/tokens`
//! call is about.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trough_auth::{Caller, Level};

use super::need::{self, BodySegment, Need};
use super::{refused, Access};
use crate::body;
use crate::http::HttpError;
use crate::Node;

/// What a handler adds to its response for the audit line (e.g. how many segments a fan-out
/// read and left out).
#[derive(Clone, Debug)]
pub struct AuditNote(pub String);

/// Whether `caller` may make a request needing `need`; `body_id` is the segment a legacy
/// request names in its body (`None` when it names none: the handler then refuses it). The
/// error message says what was missing, never anything of the credential.
pub fn check(caller: &Caller, need: &Need, body_id: Option<&str>) -> Result<(), String> {
    let Some(scope) = caller.scope() else {
        return Ok(());
    };
    let ok = match need {
        Need::Caller => true,
        Need::Segment { id, level } => scope.allows(id, *level),
        Need::ReadOrWrite(id) => scope.allows(id, Level::Read),
        Need::WriteFromBody(_) => body_id.is_none_or(|id| scope.allows(id, Level::Write)),
        Need::Cluster(r) => scope.has(*r),
        Need::AdminEverywhere => scope.level_everywhere() == Level::Admin,
        Need::ManageTokens => scope.manages_tokens(),
    };
    if ok {
        return Ok(());
    }
    Err(match need {
        Need::Segment { id, level } => {
            format!(
                "this token has no {} right on segment {id}",
                level_name(*level)
            )
        }
        Need::ReadOrWrite(id) => format!("this token may not read segment {id}"),
        Need::WriteFromBody(_) => format!(
            "this token may not write segment {}",
            body_id.unwrap_or_default()
        ),
        Need::Cluster(r) => format!(
            "this token lacks the cluster right {}",
            format!("{r:?}").to_lowercase()
        ),
        Need::AdminEverywhere => "changing schemas needs admin on every segment (*)".to_owned(),
        Need::ManageTokens => {
            "managing tokens needs the tokens cluster right or admin on some segments".to_owned()
        }
        Need::Caller => String::new(),
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::None | Level::Read => "read",
        Level::Write => "write",
        Level::Admin => "admin",
    }
}

/// The segment id a legacy body names, as its handler will read it.
fn body_segment(kind: BodySegment, bytes: &[u8]) -> Option<String> {
    match kind {
        BodySegment::Text => std::str::from_utf8(bytes).ok().map(|s| s.trim().to_owned()),
        BodySegment::JsonField => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()?
            .get("segment")?
            .as_str()
            .map(str::to_owned),
    }
}

/// Authenticates, authorizes, runs the handler, and logs one audit line.
///
/// With authorization off every request is let through as [`Caller::Unrestricted`] and its
/// audit line is logged at debug level only (there is no "who" to record, and an info line per
/// request would cost the unauthenticated fast path).
pub async fn enforce(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    if !node.auth.enabled() {
        return open(req, next).await;
    }
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let id = {
        use axum::extract::FromRequestParts;
        axum::extract::Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|p| p.0.get("id").cloned())
    };
    let segment = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|q| q.0.get("segment").cloned());
    let need = need::need(
        &parts.method,
        route.as_deref(),
        id.as_deref(),
        segment.as_deref(),
    );
    let op = need::operation(&need);
    let method = parts.method.clone();
    let mut seg_note = id.clone().or(segment.clone());

    let outcome: Result<(Caller, Body), (Option<Caller>, HttpError)> = async {
        let caller = node
            .auth
            .caller(node.coordinator.as_ref(), &parts.headers)
            .await
            .map_err(|e| (None, e))?;
        let (body, body_id) = match (&need, &caller) {
            (Need::WriteFromBody(kind), Caller::Anonymous(_) | Caller::Token { .. }) => {
                let bytes = body::read_limited(&parts.headers, body, node.limits.max_body_bytes)
                    .await
                    .map_err(|e| (Some(caller.clone()), e))?;
                let id = body_segment(*kind, &bytes);
                (Body::from(bytes), id)
            }
            _ => (body, None),
        };
        if body_id.is_some() {
            seg_note = body_id.clone();
        }
        check(&caller, &need, body_id.as_deref())
            .map_err(|why| (Some(caller.clone()), refused(&caller, why)))?;
        Ok((caller, body))
    }
    .await;

    let (caller, resp) = match outcome {
        Ok((caller, body)) => {
            parts.extensions.insert(caller.clone());
            parts.extensions.insert(Access {
                caller: caller.clone(),
                credential: parts.headers.get(header::AUTHORIZATION).cloned(),
            });
            let resp = next.run(Request::from_parts(parts, body)).await;
            (Some(caller), resp)
        }
        Err((caller, e)) => {
            // A legacy body that could not be read (413, 408) is not a refusal of authorization.
            let reason = match e.status() {
                StatusCode::UNAUTHORIZED => Some("unauthenticated"),
                StatusCode::FORBIDDEN => Some("forbidden"),
                _ => None,
            };
            if let Some(reason) = reason {
                metrics::counter!("trough_auth_denied_total", "reason" => reason, "operation" => op)
                    .increment(1);
            }
            let mut resp = e.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"trough\""),
                );
            }
            (caller, resp)
        }
    };
    let note = resp.extensions().get::<AuditNote>().map(|n| n.0.clone());
    tracing::info!(
        target: "trough::audit",
        accessor = caller.as_ref().map_or("-", |c| c.accessor()),
        operation = op,
        method = %method,
        route = route.as_deref().unwrap_or("unmatched"),
        segment = seg_note.as_deref().unwrap_or("-"),
        note = note.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// The path of a node with authorization off.
async fn open(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let credential = req.headers().get(header::AUTHORIZATION).cloned();
    req.extensions_mut().insert(Caller::Unrestricted);
    req.extensions_mut().insert(Access {
        caller: Caller::Unrestricted,
        credential,
    });
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    tracing::debug!(
        target: "trough::audit",
        accessor = "-",
        method = %method,
        route = route.as_ref().map_or("unmatched", |r| r.as_str()),
        status = resp.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use trough_auth::{ClusterRight, Scope};

    fn token(items: &[&str]) -> Caller {
        Caller::Token {
            accessor: "0123456789abcdef".into(),
            scope: Scope::parse_items(items).unwrap(),
        }
    }

    #[test]
    fn checks_follow_the_route_table() {
        let seg = |id: &str, level| Need::Segment {
            id: id.into(),
            level,
        };
        let reader = token(&["read:pages-*", "status"]);
        assert!(check(&reader, &seg("pages-1", Level::Read), None).is_ok());
        assert!(check(&reader, &seg("pages-1", Level::Write), None).is_err());
        assert!(check(&reader, &seg("logs-1", Level::Read), None).is_err());
        assert!(check(&reader, &Need::ReadOrWrite("pages-1".into()), None).is_ok());
        assert!(check(&reader, &Need::Cluster(ClusterRight::Status), None).is_ok());
        assert!(check(&reader, &Need::Cluster(ClusterRight::Metrics), None).is_err());
        assert!(check(&reader, &Need::AdminEverywhere, None).is_err());
        assert!(check(&reader, &Need::ManageTokens, None).is_err());
        let body = Need::WriteFromBody(BodySegment::JsonField);
        assert!(check(&reader, &body, Some("pages-1")).is_err());
        assert!(check(&token(&["write:pages-*"]), &body, Some("pages-1")).is_ok());
        assert!(check(&token(&["admin:*"]), &Need::AdminEverywhere, None).is_ok());
        assert!(check(&token(&["admin:p*"]), &Need::AdminEverywhere, None).is_err());
        assert!(check(&token(&["admin:p*"]), &Need::ManageTokens, None).is_ok());
        assert!(check(&Caller::Unrestricted, &Need::AdminEverywhere, None).is_ok());
        let msg = check(&reader, &seg("logs-1", Level::Write), None).unwrap_err();
        assert!(msg.contains("logs-1"), "{msg}");
    }

    #[test]
    fn legacy_bodies_name_their_segment() {
        assert_eq!(
            body_segment(BodySegment::JsonField, br#"{"segment":"a","schema":"s"}"#),
            Some("a".into())
        );
        assert_eq!(body_segment(BodySegment::JsonField, b"{}"), None);
        assert_eq!(body_segment(BodySegment::Text, b" a\n"), Some("a".into()));
    }
}
