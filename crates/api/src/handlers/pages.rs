//! Pagination of listings (`GET /segments`, `GET /health?segments=true`): `limit`, `cursor`,
//! `prefix`.
//!
//! Listings are ordered by segment id. A page holds at most `limit` items whose id starts with
//! `prefix` and sorts after `cursor` (the `next_cursor` of the previous page, which is the last
//! id it held); `next_cursor` is present only when more items follow. Not here: what a listing
//! contains (the handlers).

use std::collections::BTreeMap;
use trough_types::error::codes;

use crate::http::HttpError;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use trough_types::ErrorKind;

/// Items per page when the request does not say.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// The paging parameters of a listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageParams {
    /// At most this many items.
    pub limit: usize,
    /// Only ids after this one.
    pub cursor: Option<String>,
    /// Only ids starting with this.
    pub prefix: String,
    /// Any other query parameters, for the handler.
    pub rest: BTreeMap<String, String>,
}

fn bad(message: String) -> HttpError {
    HttpError::new(
        ErrorKind::InvalidInput,
        codes::INVALID_QUERY_PARAMETER,
        message,
    )
}

impl PageParams {
    /// Parses the query string of a listing request (400 `invalid_query_parameter` for a bad
    /// one).
    pub fn parse(
        query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    ) -> Result<Self, HttpError> {
        let Query(mut q) = query.map_err(|e| bad(format!("invalid query string: {e}")))?;
        let limit = match q.remove("limit") {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "limit must be an integer from 1 to {MAX_LIMIT}, not {s:?}"
                    )))
                }
            },
        };
        let cursor = q.remove("cursor").filter(|c| !c.is_empty());
        let prefix = q.remove("prefix").unwrap_or_default();
        Ok(Self {
            limit,
            cursor,
            prefix,
            rest: q,
        })
    }

    /// Whether `id` belongs in a page (matches the prefix, after the cursor).
    pub fn admits(&self, id: &str) -> bool {
        id.starts_with(&self.prefix) && self.cursor.as_deref().is_none_or(|c| id > c)
    }
}

/// One page of `items` (already sorted by id, `id_of` giving each one's id) and the cursor of
/// the next page, if any. Pure.
pub fn page<T>(
    items: impl IntoIterator<Item = T>,
    id_of: impl Fn(&T) -> &str,
    p: &PageParams,
) -> (Vec<T>, Option<String>) {
    let mut out = Vec::new();
    let mut more = false;
    for item in items {
        let id = id_of(&item);
        if !p.admits(id) {
            // Sorted: past the prefix range, nothing more can match.
            if id > p.prefix.as_str() && !id.starts_with(&p.prefix) {
                break;
            }
            continue;
        }
        if out.len() == p.limit {
            more = true;
            break;
        }
        out.push(item);
    }
    let next = more
        .then(|| out.last().map(|i| id_of(i).to_owned()))
        .flatten();
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: usize, cursor: Option<&str>, prefix: &str) -> PageParams {
        PageParams {
            limit,
            cursor: cursor.map(str::to_owned),
            prefix: prefix.to_owned(),
            rest: BTreeMap::new(),
        }
    }

    fn ids(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n)
            .flat_map(|i| [format!("a-{i:03}"), format!("b-{i:03}")])
            .collect();
        v.sort();
        v
    }

    #[test]
    fn following_the_cursor_lists_everything_once_in_order() {
        let all = ids(25);
        for limit in [1, 7, 50, 51] {
            let mut got = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let (items, next) = page(
                    all.iter(),
                    |s| s.as_str(),
                    &params(limit, cursor.as_deref(), ""),
                );
                assert!(items.len() <= limit);
                got.extend(items.into_iter().cloned());
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(got, all, "limit {limit}");
        }
    }

    #[test]
    fn prefix_selects_and_the_last_page_has_no_cursor() {
        let all = ids(10);
        let (items, next) = page(all.iter(), |s| s.as_str(), &params(10, None, "b-"));
        assert_eq!(items.len(), 10);
        assert!(items.iter().all(|s| s.starts_with("b-")));
        assert_eq!(next, None);
        let (items, next) = page(all.iter(), |s| s.as_str(), &params(4, None, "a-00"));
        assert_eq!(items, ["a-000", "a-001", "a-002", "a-003"]);
        assert_eq!(next.as_deref(), Some("a-003"));
        let (items, next) = page(
            all.iter(),
            |s| s.as_str(),
            &params(4, next.as_deref(), "a-00"),
        );
        assert_eq!(items.len(), 4);
        let (items, next) = page(
            all.iter(),
            |s| s.as_str(),
            &params(4, next.as_deref(), "a-00"),
        );
        assert_eq!((items.len(), next), (2, None));
        // Exactly `limit` items left: no cursor pointing at an empty page.
        let (items, next) = page(all.iter(), |s| s.as_str(), &params(20, None, ""));
        assert_eq!((items.len(), next.is_some()), (20, false));
    }
}
