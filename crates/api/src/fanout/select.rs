//! Choosing the segments of a cluster-wide query. Pure.

use crate::http::HttpError;
use serde::Deserialize;
use trough_types::error::codes;
use trough_types::{ErrorKind, SegmentId};

/// What a selector may be, for error messages.
const SELECTOR_FORMS: &str = "use \"*\", \"prefix*\", an id, a list of ids, or {\"regex\": ...}";

/// Longest regex accepted in a selector, in bytes.
const MAX_REGEX_BYTES: usize = 1024;

/// Which segments a cluster-wide query covers.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Selector {
    /// Exactly these ids (each must exist).
    List(Vec<String>),
    /// `"*"` for all, `"prefix*"` for ids starting with `prefix`, or one exact id.
    Pattern(String),
    /// Ids matching a regular expression (anchored: it must match the whole id).
    Regex {
        /// The expression.
        regex: String,
    },
}

fn invalid(code: &str, msg: String) -> HttpError {
    HttpError::new(ErrorKind::InvalidInput, code, msg)
}

/// The ids of `catalog` that `selector` chooses, sorted. Listed ids must all exist (404
/// otherwise); patterns may match nothing (an empty answer).
pub fn select(catalog: &[SegmentId], selector: &Selector) -> Result<Vec<SegmentId>, HttpError> {
    let mut out: Vec<SegmentId> = match selector {
        Selector::List(ids) => {
            let mut v = Vec::with_capacity(ids.len());
            for raw in ids {
                let id = SegmentId::new(raw)?;
                if !catalog.contains(&id) {
                    return Err(HttpError::new(
                        ErrorKind::NotFound,
                        codes::SEGMENT_NOT_FOUND,
                        format!("segment {id} not found"),
                    ));
                }
                v.push(id);
            }
            v
        }
        Selector::Pattern(p) if p == "*" => catalog.to_vec(),
        Selector::Pattern(p) => match p.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => catalog
                .iter()
                .filter(|id| id.as_str().starts_with(prefix))
                .cloned()
                .collect(),
            _ if !p.contains('*') => {
                let id = SegmentId::new(p)?;
                if !catalog.contains(&id) {
                    return Err(HttpError::new(
                        ErrorKind::NotFound,
                        codes::SEGMENT_NOT_FOUND,
                        format!("segment {id} not found"),
                    ));
                }
                vec![id]
            }
            _ => {
                return Err(invalid(
                    codes::INVALID_SELECTOR,
                    format!("{p:?}: {SELECTOR_FORMS}"),
                ))
            }
        },
        Selector::Regex { regex } => {
            if regex.len() > MAX_REGEX_BYTES {
                return Err(invalid(codes::INVALID_SELECTOR, "regex too long".into()));
            }
            let re = regex::Regex::new(&format!("^(?:{regex})$"))
                .map_err(|e| invalid(codes::INVALID_SELECTOR, format!("invalid regex: {e}")))?;
            catalog
                .iter()
                .filter(|id| re.is_match(id.as_str()))
                .cloned()
                .collect()
        }
    };
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<SegmentId> {
        v.iter().map(|s| SegmentId::new(s).unwrap()).collect()
    }

    fn names(v: Vec<SegmentId>) -> Vec<String> {
        v.into_iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn selectors() {
        let cat = ids(&["a1", "a2", "b1", "c"]);
        let sel = |j: &str| select(&cat, &serde_json::from_str(j).unwrap());
        assert_eq!(names(sel("\"*\"").unwrap()), ["a1", "a2", "b1", "c"]);
        assert_eq!(names(sel("\"a*\"").unwrap()), ["a1", "a2"]);
        assert_eq!(names(sel("\"c\"").unwrap()), ["c"]);
        assert_eq!(names(sel("[\"c\", \"a1\", \"c\"]").unwrap()), ["a1", "c"]);
        assert_eq!(names(sel("{\"regex\": \"[ab]1\"}").unwrap()), ["a1", "b1"]);
        // Strict: a key besides `regex` is not silently ignored.
        assert!(serde_json::from_str::<Selector>("{\"regex\": \".*\", \"flags\": \"i\"}").is_err());
        // Anchored: "1" alone matches nothing.
        assert!(sel("{\"regex\": \"1\"}").unwrap().is_empty());
        assert!(sel("\"zz*\"").unwrap().is_empty());
        assert_eq!(sel("[\"nope\"]").unwrap_err().status(), 404);
        assert_eq!(sel("[\"../x\"]").unwrap_err().status(), 400);
        assert_eq!(sel("\"a*b*\"").unwrap_err().status(), 400);
        assert_eq!(sel("{\"regex\": \"(\"}").unwrap_err().status(), 400);
    }
}
