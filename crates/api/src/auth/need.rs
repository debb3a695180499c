//! What each route needs: one pure table from (method, route, segment named in the path or
//! query) to the right a caller must hold. The middleware ([`super::enforce`]) applies it to
//! every request, so no handler decides who may call it.

use axum::http::Method;
use trough_auth::{ClusterRight, Level};

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// A known caller (a valid token, or anonymous access when configured); the handler narrows
    /// what it answers to the caller's segments (`POST /query`, `GET /segments`, schemas read).
    Caller,
    /// At least `level` on the segment named in the path.
    Segment {
        /// The segment id as the handler will see it (decoded).
        id: String,
        /// The right.
        level: Level,
    },
    /// `POST /?segment=`: read on the segment; a statement that turns out to write also needs
    /// write (checked when it does, see `handlers::sql::trough_wire`).
    ReadOrWrite(String),
    /// Trough's `POST /provision`, `POST /promote` and `POST /` without `?segment=`: write on
    /// the segment named in the body.
    WriteFromBody(BodySegment),
    /// A cluster right.
    Cluster(ClusterRight),
    /// `admin` on every segment (`*`): changing schemas.
    AdminEverywhere,
    /// `/tokens`: the `tokens` cluster right or `admin` somewhere; the handler checks the token
    /// concerned against the caller's scope.
    ManageTokens,
}

/// Where a legacy request names its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySegment {
    /// `{"segment": "<id>", …}`.
    JsonField,
    /// The whole body is the id (`POST /` without `?segment=`).
    Text,
}

/// The audit name of an operation: `read`, `write`, `admin`, `status`, …
pub fn operation(need: &Need) -> &'static str {
    match need {
        Need::Caller => "list",
        Need::Segment { level, .. } => match level {
            Level::Read | Level::None => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        },
        Need::ReadOrWrite(_) => "sql",
        Need::WriteFromBody(_) => "write",
        Need::Cluster(ClusterRight::Status) => "status",
        Need::Cluster(ClusterRight::Metrics) => "metrics",
        Need::Cluster(ClusterRight::Tokens) | Need::ManageTokens => "tokens",
        Need::AdminEverywhere => "schema",
    }
}

/// What `method route` needs. `route` is the matched route template (`/segments/{id}/query`),
/// `None` when no route matched; `id` the decoded `{id}` of the path; `segment` the decoded
/// `?segment=` of the query string.
pub fn need(method: &Method, route: Option<&str>, id: Option<&str>, segment: Option<&str>) -> Need {
    let seg = |level: Level| Need::Segment {
        id: id.unwrap_or_default().to_owned(),
        level,
    };
    let get = method == Method::GET || method == Method::HEAD;
    match route {
        Some("/") => match segment {
            Some(s) => Need::ReadOrWrite(s.to_owned()),
            None => Need::WriteFromBody(BodySegment::Text),
        },
        Some("/segments/{id}") if get => seg(Level::Read),
        Some("/segments/{id}" | "/segment/{id}") if method == Method::DELETE => seg(Level::Admin),
        Some("/segments/{id}") => seg(Level::Write),
        Some("/segments/{id}/query" | "/segments/{id}/schema") => seg(Level::Read),
        Some("/segments/{id}/restore") => seg(Level::Admin),
        Some("/segments/{id}/execute" | "/segments/{id}/provision" | "/segments/{id}/promote") => {
            seg(Level::Write)
        }
        Some("/provision" | "/promote") => Need::WriteFromBody(BodySegment::JsonField),
        Some("/schemas/{name}" | "/schema/{name}" | "/schema/{name}/sql") if !get => {
            Need::AdminEverywhere
        }
        Some("/health") => Need::Cluster(ClusterRight::Status),
        Some("/metrics") => Need::Cluster(ClusterRight::Metrics),
        Some("/tokens" | "/tokens/{accessor}") => Need::ManageTokens,
        // `/query`, `/segments`, schema reads, and anything unmatched (404/405 after the
        // credential was checked, so unauthenticated callers cannot map the routes).
        _ => Need::Caller,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_what_it_names() {
        let s = |id: &str, level| Need::Segment {
            id: id.into(),
            level,
        };
        let (g, p, u, d) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        type Row<'a> = (Method, &'a str, Option<&'a str>, Option<&'a str>, Need);
        let table: Vec<Row> = vec![
            (p.clone(), "/query", None, None, Need::Caller),
            (g.clone(), "/segments", None, None, Need::Caller),
            (
                g.clone(),
                "/segments/{id}",
                Some("a"),
                None,
                s("a", Level::Read),
            ),
            (
                u.clone(),
                "/segments/{id}",
                Some("a"),
                None,
                s("a", Level::Write),
            ),
            (
                p.clone(),
                "/segments/{id}/query",
                Some("a"),
                None,
                s("a", Level::Read),
            ),
            (
                d.clone(),
                "/segments/{id}",
                Some("a"),
                None,
                s("a", Level::Admin),
            ),
            (
                d.clone(),
                "/segment/{id}",
                Some("a"),
                None,
                s("a", Level::Admin),
            ),
            (
                Method::PATCH,
                "/segments/{id}",
                Some("a"),
                None,
                s("a", Level::Write),
            ),
            (
                g.clone(),
                "/segments/{id}/schema",
                Some("a"),
                None,
                s("a", Level::Read),
            ),
            (
                p.clone(),
                "/segments/{id}/restore",
                Some("a"),
                None,
                s("a", Level::Admin),
            ),
            (
                p.clone(),
                "/segments/{id}/execute",
                Some("a"),
                None,
                s("a", Level::Write),
            ),
            (
                p.clone(),
                "/segments/{id}/provision",
                Some("a"),
                None,
                s("a", Level::Write),
            ),
            (
                p.clone(),
                "/segments/{id}/promote",
                Some("a"),
                None,
                s("a", Level::Write),
            ),
            (
                p.clone(),
                "/",
                None,
                Some("a"),
                Need::ReadOrWrite("a".into()),
            ),
            (
                p.clone(),
                "/",
                None,
                None,
                Need::WriteFromBody(BodySegment::Text),
            ),
            (
                p.clone(),
                "/provision",
                None,
                None,
                Need::WriteFromBody(BodySegment::JsonField),
            ),
            (
                p.clone(),
                "/promote",
                None,
                None,
                Need::WriteFromBody(BodySegment::JsonField),
            ),
            (g.clone(), "/schemas", None, None, Need::Caller),
            (g.clone(), "/schemas/{name}", None, None, Need::Caller),
            (
                u.clone(),
                "/schemas/{name}",
                None,
                None,
                Need::AdminEverywhere,
            ),
            (g.clone(), "/schema/{name}/sql", None, None, Need::Caller),
            (
                u.clone(),
                "/schema/{name}/sql",
                None,
                None,
                Need::AdminEverywhere,
            ),
            (
                u.clone(),
                "/schema/{name}",
                None,
                None,
                Need::AdminEverywhere,
            ),
            (
                g.clone(),
                "/health",
                None,
                None,
                Need::Cluster(ClusterRight::Status),
            ),
            (
                g.clone(),
                "/metrics",
                None,
                None,
                Need::Cluster(ClusterRight::Metrics),
            ),
            (p.clone(), "/tokens", None, None, Need::ManageTokens),
            (
                d.clone(),
                "/tokens/{accessor}",
                None,
                None,
                Need::ManageTokens,
            ),
        ];
        for (m, route, id, segment, want) in table {
            assert_eq!(need(&m, Some(route), id, segment), want, "{m} {route}");
        }
        assert_eq!(need(&Method::GET, None, None, None), Need::Caller);
        // A segment query parameter on another route changes nothing.
        assert_eq!(
            need(&Method::POST, Some("/query"), None, Some("a")),
            Need::Caller
        );
    }
}
