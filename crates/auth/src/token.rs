//! Tokens: the stored record, the secret's format, hashing and checking a presented secret.
//!
//! A secret is `trough_<accessor>_<key>`: the accessor (16 lowercase hex digits) is the token's
//! public id, so a node finds the one record to check with a point read; the key (64 hex
//! digits, 256 random bits) is what makes it a secret. Only the SHA-256 of the whole secret is
//! stored: a stolen record does not work as a credential (rqlite's lesson with stored hashes
//! that worked as passwords), and a fast hash is enough because the key is random, not a
//! password. Comparison is constant-time.
//!
//! Pure: random bytes come from the caller ([`Secret::from_random`]). Not here: storage
//! (`trough_coord`), caching and HTTP (`trough_api::auth`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::grants::Scope;

/// The prefix every secret starts with (recognisable in a leaked-credential scan).
pub const SECRET_PREFIX: &str = "trough_";
/// Hex digits of an accessor id.
pub const ACCESSOR_LEN: usize = 16;
/// Hex digits of a generated key.
pub const KEY_LEN: usize = 64;
/// Fewest characters of a key given by an operator (bootstrap token from a file).
pub const MIN_KEY_LEN: usize = 32;
/// Random bytes [`Secret::from_random`] needs.
pub const RANDOM_BYTES: usize = ACCESSOR_LEN / 2 + KEY_LEN / 2;
/// Longest description kept.
pub const MAX_DESCRIPTION: usize = 256;

/// Whether `s` is a well-formed accessor id.
pub fn valid_accessor(s: &str) -> bool {
    s.len() == ACCESSOR_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A token's secret, as presented by a client or just generated. Its `Debug` shows the accessor
/// only, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}…)", self.accessor())
    }
}

impl Secret {
    /// Parses a presented secret: `trough_<16 hex>_<key>`, the key at least [`MIN_KEY_LEN`]
    /// ASCII letters and digits. `None` for anything else (the caller answers 401 without
    /// saying more).
    pub fn parse(s: &str) -> Option<Secret> {
        let rest = s.strip_prefix(SECRET_PREFIX)?;
        let (accessor, key) = rest.split_once('_')?;
        let ok = valid_accessor(accessor)
            && key.len() >= MIN_KEY_LEN
            && key.len() <= 256
            && key.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Secret(s.to_owned()))
    }

    /// A new secret from [`RANDOM_BYTES`] random bytes.
    pub fn from_random(random: &[u8; RANDOM_BYTES]) -> Secret {
        let (a, k) = random.split_at(ACCESSOR_LEN / 2);
        Secret(format!(
            "{SECRET_PREFIX}{}_{}",
            hex::encode(a),
            hex::encode(k)
        ))
    }

    /// The public accessor id inside it.
    pub fn accessor(&self) -> &str {
        &self.0[SECRET_PREFIX.len()..SECRET_PREFIX.len() + ACCESSOR_LEN]
    }

    /// The secret itself (to show once, or to send).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, hex: what is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

/// A token as stored by the coordinator. Never sent to clients as is ([`TokenRecord::public`]
/// drops the hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id.
    pub accessor: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working (never when `None`).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The accessor of the token that created it (`bootstrap` for the first one).
    #[serde(default)]
    pub created_by: String,
    /// What it allows.
    pub scope: Scope,
}

/// A token as shown by the API: everything but the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Public id.
    pub accessor: String,
    /// What it is for.
    pub description: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
    /// Segment grants.
    pub grants: Vec<crate::Grant>,
    /// Cluster rights.
    pub cluster: std::collections::BTreeSet<crate::ClusterRight>,
}

/// Why a presented secret was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No such token, or the secret does not match it.
    Invalid,
    /// The token expired.
    Expired,
}

impl TokenRecord {
    /// A new record for `secret`.
    pub fn new(
        secret: &Secret,
        description: &str,
        created_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        created_by: &str,
        scope: Scope,
    ) -> TokenRecord {
        TokenRecord {
            accessor: secret.accessor().to_owned(),
            secret_sha256: secret.hash(),
            description: description.chars().take(MAX_DESCRIPTION).collect(),
            created_at,
            expires_at,
            created_by: created_by.to_owned(),
            scope,
        }
    }

    /// Whether `secret` opens this token at `now`.
    pub fn check(&self, secret: &Secret, now: DateTime<Utc>) -> Result<(), Rejected> {
        let same = secret.accessor() == self.accessor
            && bool::from(
                secret
                    .hash()
                    .as_bytes()
                    .ct_eq(self.secret_sha256.as_bytes()),
            );
        if !same {
            return Err(Rejected::Invalid);
        }
        match self.expires_at {
            Some(t) if t <= now => Err(Rejected::Expired),
            _ => Ok(()),
        }
    }

    /// The record without its hash.
    pub fn public(&self) -> TokenView {
        TokenView {
            accessor: self.accessor.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            created_by: self.created_by.clone(),
            grants: self.scope.grants.clone(),
            cluster: self.scope.cluster.clone(),
        }
    }
}
