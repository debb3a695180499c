//! Grants and the decisions made from them: what a set of grants allows on a segment, on the
//! cluster, and whether one set of grants is within another (minting, managing tokens).
//!
//! The rules (docs/security.md):
//! - A grant is a segment [`Pattern`] (an exact id, a prefix `pages-*`, or `*`) with a
//!   [`Right`]. Rights nest: `admin` ⊇ `write` ⊇ `read`; `deny` takes every right away.
//! - For one segment, only the most specific matching pattern counts: an exact id beats any
//!   prefix, a longer prefix beats a shorter one, `*` is the least specific. Among grants of
//!   equally specific patterns (the same pattern given twice), `deny` beats `admin` beats
//!   `write` beats `read`.
//! - No matching grant: no right (default deny).
//! - Cluster rights (`status`, `metrics`, `tokens`) are separate from segment rights.
//!
//! Everything here is a pure function of its arguments. Not here: tokens and secrets
//! ([`crate::token`]), which route needs what (`trough_api::auth`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a grant gives on the segments its pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Read: `POST /segments/{id}/query`, `GET /segments/{id}`, reads through `POST /` and the
    /// segment's part of `POST /query`.
    Read,
    /// Read, and change: execute, provision, promote, publish.
    Write,
    /// Write, and administer: schemas (with `admin` on `*`), tokens within its own scope.
    Admin,
    /// Nothing, whatever a less specific pattern gives.
    Deny,
}

/// What a caller may do to one segment, from nothing to everything. The effective right of a
/// set of grants on one segment ([`Scope::level`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No right.
    None,
    /// Read.
    Read,
    /// Read and write.
    Write,
    /// Read, write and administer.
    Admin,
}

impl Right {
    /// The level this right gives.
    pub fn level(self) -> Level {
        match self {
            Right::Read => Level::Read,
            Right::Write => Level::Write,
            Right::Admin => Level::Admin,
            Right::Deny => Level::None,
        }
    }

    /// Precedence among equally specific grants: deny, then admin, write, read.
    fn precedence(self) -> u8 {
        match self {
            Right::Read => 0,
            Right::Write => 1,
            Right::Admin => 2,
            Right::Deny => 3,
        }
    }
}

/// A cluster-wide right, not tied to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRight {
    /// `GET /health`.
    Status,
    /// `GET /metrics`.
    Metrics,
    /// `/tokens`: create, list, show and revoke tokens within one's own scope.
    Tokens,
}

/// Which segments a grant covers: `*` (all), `prefix*` or one exact id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pattern {
    /// One segment id.
    Exact(String),
    /// Every id starting with this (possibly empty: `*`).
    Prefix(String),
}

/// Why a pattern or grant was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadGrant(pub String);

impl fmt::Display for BadGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadGrant {}

/// The characters of a segment id (`trough_types::SegmentId`): `[A-Za-z0-9_][A-Za-z0-9._-]*`.
fn id_chars(s: &str, first: bool) -> bool {
    s.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphanumeric() || b == b'_' || (!(first && i == 0) && matches!(b, b'.' | b'-'))
    })
}

/// Longest pattern accepted (the longest segment id).
const MAX_PATTERN: usize = 128;

impl Pattern {
    /// Whether `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == id,
            Pattern::Prefix(p) => id.starts_with(p.as_str()),
        }
    }

    /// How specific the pattern is: an exact id beats every prefix, a longer prefix a shorter.
    fn specificity(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(e) => (1, e.len()),
            Pattern::Prefix(p) => (0, p.len()),
        }
    }

    /// One id standing for every id whose matching patterns (among any set) are the same as
    /// this pattern's "generic" member: the exact id itself, or the prefix followed by a byte no
    /// segment id contains. See [`Scope::within`].
    fn representative(&self) -> String {
        match self {
            Pattern::Exact(e) => e.clone(),
            Pattern::Prefix(p) => format!("{p}\0"),
        }
    }
}

impl FromStr for Pattern {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        let bad = || {
            BadGrant(format!(
                "invalid segment pattern {:?}: an id, a prefix ending in `*`, or `*`",
                s.chars().take(MAX_PATTERN + 8).collect::<String>()
            ))
        };
        if s.len() > MAX_PATTERN {
            return Err(bad());
        }
        match s.strip_suffix('*') {
            Some(p) if id_chars(p, true) => Ok(Pattern::Prefix(p.to_owned())),
            Some(_) => Err(bad()),
            None if !s.is_empty() && id_chars(s, true) => Ok(Pattern::Exact(s.to_owned())),
            None => Err(bad()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(e) => f.write_str(e),
            Pattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One segment grant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The segments it covers.
    pub segments: Pattern,
    /// What it gives there.
    pub right: Right,
}

impl FromStr for Grant {
    type Err = BadGrant;
    /// `right:pattern`, e.g. `read:pages-*`, `deny:secret`, `admin:*`.
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        let (right, pattern) = s.split_once(':').ok_or_else(|| {
            BadGrant(format!(
                "invalid grant {:?}: expected right:pattern, e.g. read:pages-*",
                s.chars().take(MAX_PATTERN + 16).collect::<String>()
            ))
        })?;
        let right = match right {
            "read" => Right::Read,
            "write" => Right::Write,
            "admin" => Right::Admin,
            "deny" => Right::Deny,
            other => {
                return Err(BadGrant(format!(
                    "invalid right {:?}: read, write, admin or deny",
                    other.chars().take(16).collect::<String>()
                )))
            }
        };
        Ok(Grant {
            segments: pattern.parse()?,
            right,
        })
    }
}

impl FromStr for ClusterRight {
    type Err = BadGrant;
    fn from_str(s: &str) -> Result<Self, BadGrant> {
        match s {
            "status" => Ok(ClusterRight::Status),
            "metrics" => Ok(ClusterRight::Metrics),
            "tokens" => Ok(ClusterRight::Tokens),
            other => Err(BadGrant(format!(
                "invalid cluster right {:?}: status, metrics or tokens",
                other.chars().take(16).collect::<String>()
            ))),
        }
    }
}

/// What one caller may do: segment grants and cluster rights.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Segment grants.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Cluster rights.
    #[serde(default)]
    pub cluster: BTreeSet<ClusterRight>,
}

/// Most grants one scope may hold (keeps every decision cheap).
pub const MAX_GRANTS: usize = 256;

impl Scope {
    /// Parses the configuration form: each item is `right:pattern` or a cluster right name.
    pub fn parse_items<S: AsRef<str>>(items: &[S]) -> Result<Scope, BadGrant> {
        let mut scope = Scope::default();
        for item in items {
            let item = item.as_ref().trim();
            if item.contains(':') {
                scope.grants.push(item.parse()?);
            } else {
                scope.cluster.insert(item.parse()?);
            }
        }
        scope.check()?;
        Ok(scope)
    }

    /// Checks the limits of a scope received from outside.
    pub fn check(&self) -> Result<(), BadGrant> {
        if self.grants.len() > MAX_GRANTS {
            return Err(BadGrant(format!(
                "too many grants: {} (at most {MAX_GRANTS})",
                self.grants.len()
            )));
        }
        Ok(())
    }

    /// The effective right on segment `id`: the most specific matching pattern's, deny first
    /// among equals; [`Level::None`] when nothing matches.
    pub fn level(&self, id: &str) -> Level {
        let mut best: Option<((u8, usize), Right)> = None;
        for g in self.grants.iter().filter(|g| g.segments.matches(id)) {
            let spec = g.segments.specificity();
            best = match best {
                Some((s, r))
                    if s > spec || (s == spec && r.precedence() >= g.right.precedence()) =>
                {
                    Some((s, r))
                }
                _ => Some((spec, g.right)),
            };
        }
        best.map_or(Level::None, |(_, r)| r.level())
    }

    /// Whether the scope gives at least `need` on segment `id`.
    pub fn allows(&self, id: &str, need: Level) -> bool {
        need != Level::None && self.level(id) >= need
    }

    /// Whether the scope holds the cluster right.
    pub fn has(&self, right: ClusterRight) -> bool {
        self.cluster.contains(&right)
    }

    /// The right on a segment no exact or prefix grant names: what `*` gives.
    pub fn level_everywhere(&self) -> Level {
        self.level("\0")
    }

    /// Whether the scope may manage tokens at all: the `tokens` cluster right, or `admin` on
    /// some pattern.
    pub fn manages_tokens(&self) -> bool {
        self.has(ClusterRight::Tokens) || self.grants.iter().any(|g| g.right == Right::Admin)
    }

    /// Ids that stand for every segment as far as `self` and `other` can tell: on each of them
    /// both scopes decide exactly as on the ids they stand for.
    fn representatives<'a>(&'a self, other: &'a Scope) -> impl Iterator<Item = String> + 'a {
        std::iter::once("\0".to_owned()).chain(
            self.grants
                .iter()
                .chain(&other.grants)
                .map(|g| g.segments.representative()),
        )
    }

    /// Whether everything `self` allows, `other` allows too: on every segment `self`'s level is
    /// at most `other`'s, and `self`'s cluster rights are among `other`'s.
    ///
    /// Deciding it on finitely many ids is exact: the patterns matching an id are the exact id
    /// (if named) plus the named prefixes of it. Two ids with the same matching patterns get the
    /// same level from both scopes, and every such class contains a representative: the exact
    /// id, the longest matching prefix followed by `\0`, or `\0` itself (nothing but `*`).
    pub fn within(&self, other: &Scope) -> bool {
        self.cluster.is_subset(&other.cluster)
            && self
                .representatives(other)
                .all(|id| self.level(&id) <= other.level(&id))
    }

    /// Whether a caller with this scope may create, see or revoke a token with `target`:
    /// `target` must be within the caller's scope, and either the caller holds the `tokens`
    /// cluster right, or it is `admin` wherever `target` gives anything (tokens of its own
    /// scope) and `target` has no cluster rights.
    pub fn may_manage(&self, target: &Scope) -> bool {
        if !self.manages_tokens() || !target.within(self) {
            return false;
        }
        if self.has(ClusterRight::Tokens) {
            return true;
        }
        target.cluster.is_empty()
            && self
                .representatives(target)
                .all(|id| target.level(&id) == Level::None || self.level(&id) == Level::Admin)
    }
}
