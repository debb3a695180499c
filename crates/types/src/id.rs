//! Validated names: segment ids, schema names and node names.
//!
//! Every name that reaches a file path, an object-store key, a Consul key or a URL goes through
//! one of these types first, so an id like `../etc` is rejected (400) before anything is touched.
//! This module only validates; it does not know where the names are used.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, ErrorKind};

/// Maximum length of a segment id, in bytes (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub const SEGMENT_ID_MAX_LEN: usize = 128;

/// `[A-Za-z0-9_][A-Za-z0-9._-]*` of at most `max_len` bytes. A leading `_` is allowed because
/// Trough's clients use ids like `__unspecified__` (warcprox's default bucket); it is safe as a
/// file name, object key, URL part and Consul tag (a DNS label `__x` before
/// `trough-read.service.consul` is read as a tag, not as an RFC 2782 `_service._proto` name).
/// A leading `.` or `-` is not (hidden files, command-line options).
fn valid_name(s: &str, max_len: usize) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max_len
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s`: `[A-Za-z0-9_][A-Za-z0-9._-]*`, at most the maximum length.
            pub fn new(s: &str) -> Result<Self, Error> {
                if valid_name(s, $max) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Error::new(
                        ErrorKind::InvalidInput,
                        concat!("invalid_", $what),
                        format!(
                            concat!(
                                "invalid ",
                                $what,
                                " {:?}: must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,{}}}"
                            ),
                            truncate_for_message(s),
                            $max - 1
                        ),
                    ))
                }
            }

            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Ordered and hashed as its string, so maps keyed by it can be searched by `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A segment id: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. Safe as a path component, key and URL part.
    SegmentId,
    "segment_id",
    SEGMENT_ID_MAX_LEN
);
name_type!(
    /// A registered schema's name; same alphabet as a segment id.
    SchemaName,
    "schema_name",
    SEGMENT_ID_MAX_LEN
);
name_type!(
    /// A node's name (unique in a cluster); same alphabet as a segment id.
    NodeName,
    "node_name",
    SEGMENT_ID_MAX_LEN
);

fn truncate_for_message(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}…")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in [
            "a",
            "A0",
            "seg-1.2_3",
            &"x".repeat(128),
            "0",
            "__unspecified__",
            "_x",
        ] {
            assert!(SegmentId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for bad in [
            "",
            "../etc",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "é",
            "a\0",
            &"x".repeat(129),
            &"y".repeat(200),
        ] {
            let err = SegmentId::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<SegmentId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<SegmentId>("\"../x\"").is_err());
    }
}
