//! `/tokens`: create, list, show and revoke tokens (docs/security.md).
//!
//! Who may call these at all is decided by the middleware (`auth::need`: the `tokens` cluster
//! right or `admin` on some segments); here each token concerned is checked against the
//! caller's scope ([`Scope::may_manage`]): a caller creates, sees and revokes only tokens within
//! its own scope, so a token can never mint a broader one. The secret is in the answer to
//! `POST /tokens` and nowhere else, ever.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use trough_auth::{Caller, ClusterRight, Grant, Scope, Secret, TokenRecord};
use trough_types::error::codes;
use trough_types::ErrorKind;

use super::Path;
use crate::body;
use crate::http::HttpError;
use crate::Node;

/// The body of `POST /tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    description: String,
    #[serde(default)]
    grants: Vec<Value>,
    #[serde(default)]
    cluster: Vec<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// Longest lifetime `expires_in_secs` accepts (100 years).
const MAX_EXPIRY_SECS: u64 = 100 * 365 * 24 * 3600;

fn invalid_grant(message: impl Into<String>) -> HttpError {
    HttpError::new(ErrorKind::InvalidInput, codes::INVALID_GRANT, message)
}

fn not_found(accessor: &str) -> HttpError {
    let shown: String = accessor.chars().take(32).collect();
    HttpError::new(
        ErrorKind::NotFound,
        codes::TOKEN_NOT_FOUND,
        format!("no token {shown:?} that this caller may see"),
    )
}

/// Whether `caller` may manage a token with `scope`.
fn may_manage(caller: &Caller, scope: &Scope) -> bool {
    caller.scope().is_none_or(|s| s.may_manage(scope))
}

/// Parses the scope of a new token.
fn scope_of(req: &CreateBody) -> Result<Scope, HttpError> {
    let mut scope = Scope::default();
    for g in &req.grants {
        let grant: Grant = serde_json::from_value(g.clone())
            .map_err(|e| invalid_grant(format!("invalid grant: {e}")))?;
        scope.grants.push(grant);
    }
    for c in &req.cluster {
        let right: ClusterRight = c.parse().map_err(|e| invalid_grant(format!("{e}")))?;
        scope.cluster.insert(right);
    }
    scope.check().map_err(|e| invalid_grant(e.to_string()))?;
    Ok(scope)
}

/// A new random secret.
pub fn new_secret() -> Result<Secret, HttpError> {
    let mut random = [0u8; trough_auth::token::RANDOM_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| HttpError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))?;
    Ok(Secret::from_random(&random))
}

/// `POST /tokens`: 201 with the new token and its secret (shown this once).
pub async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, HttpError> {
    let bytes = body::read_limited(&headers, request_body, node.limits.max_body_bytes).await?;
    let req: CreateBody = body::json(&bytes)?;
    let scope = scope_of(&req)?;
    if !may_manage(&caller, &scope) {
        metrics::counter!("trough_auth_denied_total", "reason" => "forbidden", "operation" => "tokens")
            .increment(1);
        return Err(HttpError::new(
            ErrorKind::Forbidden,
            codes::TOKEN_TOO_BROAD,
            "a token can only create tokens within its own scope",
        ));
    }
    let now = chrono::Utc::now();
    let expires_at = match req.expires_in_secs {
        Some(s) if s == 0 || s > MAX_EXPIRY_SECS => {
            return Err(invalid_grant(format!(
                "expires_in_secs must be between 1 and {MAX_EXPIRY_SECS}"
            )))
        }
        Some(s) => Some(now + chrono::Duration::seconds(s as i64)),
        None => None,
    };
    if req.description.chars().count() > trough_auth::token::MAX_DESCRIPTION {
        return Err(HttpError::new(
            ErrorKind::InvalidInput,
            codes::INVALID_BODY,
            format!(
                "description is longer than {} characters",
                trough_auth::token::MAX_DESCRIPTION
            ),
        ));
    }
    let secret = new_secret()?;
    let record = TokenRecord::new(
        &secret,
        &req.description,
        now,
        expires_at,
        caller.accessor(),
        scope,
    );
    node.coordinator.create_token(&record).await?;
    let mut doc = serde_json::to_value(record.public())
        .map_err(|e| HttpError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()))?;
    doc["secret"] = Value::String(secret.expose().to_owned());
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

/// `GET /tokens`: the tokens within the caller's scope (never their secrets or hashes).
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, HttpError> {
    let tokens: Vec<_> = node
        .coordinator
        .list_tokens()
        .await?
        .into_iter()
        .filter(|t| may_manage(&caller, &t.scope))
        .map(|t| t.public())
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// The token `accessor`, if the caller may manage it.
async fn visible(node: &Node, caller: &Caller, accessor: &str) -> Result<TokenRecord, HttpError> {
    if !trough_auth::token::valid_accessor(accessor) {
        return Err(not_found(accessor));
    }
    match node.coordinator.get_token(accessor).await? {
        Some(t) if may_manage(caller, &t.scope) => Ok(t),
        _ => Err(not_found(accessor)),
    }
}

/// `GET /tokens/{accessor}`.
pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(accessor): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let t = visible(&node, &caller, &accessor).await?;
    Ok(Json(json!(t.public())))
}

/// `DELETE /tokens/{accessor}`: revokes the token. Effective at once on this node, within
/// `auth.cache_ttl_ms` on the others.
pub async fn revoke(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(accessor): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let t = visible(&node, &caller, &accessor).await?;
    if !node.coordinator.delete_token(&t.accessor).await? {
        return Err(not_found(&accessor));
    }
    node.auth.forget(&t.accessor);
    Ok(Json(json!({ "accessor": t.accessor, "revoked": true })))
}
