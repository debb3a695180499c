//! # trough-auth: who may do what
//!
//! Tokens and grants, and every authorization decision as a pure function: what a scope allows
//! on a segment ([`Scope::level`], [`Scope::allows`]), on the cluster ([`Scope::has`]), whether
//! one scope is within another ([`Scope::within`]) and who may manage which tokens
//! ([`Scope::may_manage`]); the secret's format and its check ([`Secret`], [`TokenRecord`]).
//! docs/security.md describes the model; docs/decisions/0012-authorization.md why it is built
//! this way.
//!
//! Not here: storing tokens (`trough_coord`), reading the `Authorization` header, caching
//! tokens and mapping routes to rights (`trough_api::auth`), random numbers.

pub mod grants;
pub mod token;

#[cfg(test)]
mod tests;

pub use grants::{BadGrant, ClusterRight, Grant, Level, Pattern, Right, Scope};
pub use token::{Rejected, Secret, TokenRecord, TokenView};

/// Who is asking, once the request's credential was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authorization is off: everything is allowed.
    Unrestricted,
    /// No credential; the configured anonymous grants apply.
    Anonymous(Scope),
    /// A valid token.
    Token {
        /// Its accessor id (for audit; never the secret).
        accessor: String,
        /// What it allows.
        scope: Scope,
    },
}

impl Caller {
    /// The accessor to log: the token's, `anonymous`, or `-` with authorization off.
    pub fn accessor(&self) -> &str {
        match self {
            Caller::Unrestricted => "-",
            Caller::Anonymous(_) => "anonymous",
            Caller::Token { accessor, .. } => accessor,
        }
    }

    /// The caller's scope; `None` when unrestricted.
    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Caller::Unrestricted => None,
            Caller::Anonymous(s) | Caller::Token { scope: s, .. } => Some(s),
        }
    }

    /// Whether the caller has at least `need` on segment `id`.
    pub fn allows(&self, id: &str, need: Level) -> bool {
        self.scope().is_none_or(|s| s.allows(id, need))
    }

    /// Whether the caller holds the cluster right.
    pub fn has(&self, right: ClusterRight) -> bool {
        self.scope().is_none_or(|s| s.has(right))
    }
}
