//! Authentication and authorization at the HTTP edge: who the caller is ([`Gate`]), what each
//! route needs ([`need`]) and the one middleware that checks it before any handler runs
//! ([`enforce`]), writing the audit line of every request.
//!
//! The decisions themselves are pure functions of `trough-auth`; tokens are stored by the
//! coordinator. A node caches a token it read for [`AuthSettings::cache_ttl`] (2 s by
//! default), so a revocation reaches every node within that time, and each request costs at
//! most one point read of the coordinator, whatever the number of tokens and segments.
//!
//! Forwarding: a node that forwards a request (to a replica, to the writer, in a fan-out)
//! sends the caller's own `Authorization` header ([`forward_credential`]) and the receiving
//! node checks it again, so a forwarded request can never do more than its caller.
//!
//! Not here: the token API (`handlers::tokens`), TLS.

pub mod enforce;
pub mod need;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use trough_auth::{Caller, Level, Rejected, Scope, Secret, TokenRecord};
use trough_coord::Coordinator;
use trough_types::error::codes;
use trough_types::{ErrorKind, SegmentId};

use crate::http::HttpError;

/// Most tokens one node keeps cached; past it the cache starts over.
const CACHE_CAPACITY: usize = 10_000;

/// The header `POST /query` answers with: how many selected segments the caller may not read.
pub const NOT_PERMITTED_HEADER: &str = "x-trough-segments-not-permitted";

/// How a node authenticates.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Whether requests need a token.
    pub enabled: bool,
    /// What a request without a credential may do; `None`: nothing (401).
    pub anonymous: Option<Scope>,
    /// How long a token read from the coordinator is trusted before it is read again.
    pub cache_ttl: Duration,
}

impl Default for AuthSettings {
    /// Authorization off.
    fn default() -> Self {
        Self {
            enabled: false,
            anonymous: None,
            cache_ttl: Duration::from_secs(2),
        }
    }
}

/// Checks credentials: the node's authentication state.
pub struct Gate {
    settings: AuthSettings,
    cache: Mutex<HashMap<String, (TokenRecord, Instant)>>,
}

impl Gate {
    /// A gate with `settings`.
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether authorization is on.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Who sent a request with these headers. 401 errors never repeat what was sent.
    pub async fn caller(
        &self,
        coordinator: &dyn Coordinator,
        headers: &HeaderMap,
    ) -> Result<Caller, HttpError> {
        if !self.settings.enabled {
            return Ok(Caller::Unrestricted);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return match &self.settings.anonymous {
                Some(scope) => Ok(Caller::Anonymous(scope.clone())),
                None => Err(unauthenticated(
                    codes::UNAUTHENTICATED,
                    "this request needs a token: send Authorization: Bearer <secret>",
                )),
            };
        };
        let invalid = || unauthenticated(codes::UNAUTHENTICATED, "the token is not valid");
        let secret = value
            .to_str()
            .ok()
            .and_then(bearer)
            .and_then(Secret::parse)
            .ok_or_else(invalid)?;
        let record = self
            .record(coordinator, secret.accessor())
            .await?
            .ok_or_else(invalid)?;
        match record.check(&secret, chrono::Utc::now()) {
            Ok(()) => Ok(Caller::Token {
                accessor: record.accessor,
                scope: record.scope,
            }),
            Err(Rejected::Invalid) => Err(invalid()),
            Err(Rejected::Expired) => Err(unauthenticated(
                codes::TOKEN_EXPIRED,
                "the token has expired",
            )),
        }
    }

    /// A token by accessor: from the cache while fresh, else from the coordinator.
    async fn record(
        &self,
        coordinator: &dyn Coordinator,
        accessor: &str,
    ) -> Result<Option<TokenRecord>, HttpError> {
        let ttl = self.settings.cache_ttl;
        if let Some((r, at)) = self.lock().get(accessor) {
            if at.elapsed() < ttl {
                return Ok(Some(r.clone()));
            }
        }
        let found = coordinator.get_token(accessor).await?;
        let mut cache = self.lock();
        match &found {
            Some(r) if !ttl.is_zero() => {
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(accessor.to_owned(), (r.clone(), Instant::now()));
            }
            _ => {
                cache.remove(accessor);
            }
        }
        Ok(found)
    }

    /// Forgets a cached token (revoked through this node: effective here at once).
    pub fn forget(&self, accessor: &str) {
        self.lock().remove(accessor);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (TokenRecord, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The secret of an `Authorization: Bearer <secret>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// A 401 error (the middleware adds `WWW-Authenticate`).
fn unauthenticated(code: &str, message: &str) -> HttpError {
    HttpError::new(ErrorKind::Unauthenticated, code, message)
}

/// A 403 error.
pub fn forbidden(message: impl Into<String>) -> HttpError {
    HttpError::new(ErrorKind::Forbidden, codes::FORBIDDEN, message)
}

/// The refusal of a request `caller` may not make: 403 for a token, but 401 for a caller without
/// one (anonymous grants did not allow it; a token might), so clients know to authenticate.
pub fn refused(caller: &Caller, message: impl Into<String>) -> HttpError {
    match caller {
        Caller::Anonymous(_) => unauthenticated(
            codes::UNAUTHENTICATED,
            &format!(
                "this request needs a token (anonymous access does not allow it: {}); send \
                 Authorization: Bearer <secret>",
                message.into()
            ),
        ),
        _ => forbidden(message),
    }
}

/// The headers to send with a request forwarded on behalf of the caller of `incoming`: its
/// `Authorization`, nothing else.
pub fn forward_credential(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(v) = incoming.get(header::AUTHORIZATION) {
        out.insert(header::AUTHORIZATION, v.clone());
    }
    out
}

/// A caller and its credential, for work done on its behalf after the middleware (fan-out).
#[derive(Clone, Debug)]
pub struct Access {
    /// Who asked.
    pub caller: Caller,
    /// The `Authorization` header to forward.
    pub credential: Option<HeaderValue>,
}

impl Default for Access {
    /// Nothing allowed: work on behalf of nobody reads nothing.
    fn default() -> Self {
        Self {
            caller: Caller::Anonymous(Scope::default()),
            credential: None,
        }
    }
}

impl Access {
    /// The segments of `ids` the caller may read, and how many it may not.
    pub fn readable(&self, ids: Vec<SegmentId>) -> (Vec<SegmentId>, usize) {
        let total = ids.len();
        let kept: Vec<SegmentId> = ids
            .into_iter()
            .filter(|id| self.caller.allows(id.as_str(), Level::Read))
            .collect();
        let left_out = total - kept.len();
        (kept, left_out)
    }
}
