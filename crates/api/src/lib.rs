//! # trough-api: the front door
//!
//! The public HTTP contract (docs/api.md): parses requests, validates names before anything
//! touches a path or key, sends each request to the part that can answer it, and renders every
//! failure the same way ([`http`]). In `trough serve` all parts live in one process, so
//! "sending" is a method call on the local [`Node`]; in a cluster the same routes forward to the
//! nodes that hold a segment (`trough_cluster::forward`).
//!
//! - [`app`]: the route table.
//! - [`handlers`]: one module per resource (segments, SQL, schemas, operations, Trough's API).
//! - [`body`]: request-body parsing (SQL text or JSON, size limits, UTF-8).
//! - [`fanout`]: the I/O of cluster-wide queries (which segments, where, concurrently), around
//!   the pure planner and merger of `trough-scatter`.
//! - [`listener`], [`http_guard`]: connection- and request-level HTTP limits; [`admission`]:
//!   bounded requests in flight per class (503 `overloaded`).
//! - [`auth`]: who is asking and what each route needs, checked in one middleware.
//! - [`http`]: the one error-to-response conversion; [`metrics`]: the Prometheus recorder.
//!
//! Not here: SQL execution (`trough-reader`, `trough-writer`), sync (`trough-sync`), storage
//! (`trough-store`), starting a node (`trough-node`).

pub mod admission;
pub mod auth;
pub mod body;
pub mod fanout;
pub mod handlers;
pub mod http;
pub mod http_guard;
pub mod listener;
pub mod metrics;
mod observe;
mod replicas;
pub mod routing;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{delete, get, post};
use trough_cluster::{forward, ClusterView};
use trough_config::Limits;
use trough_coord::Coordinator;
use trough_reader::Reader;
use trough_store::publish::Publisher;
use trough_sync::local::LocalSync;
use trough_types::NodeName;
use trough_writer::Writer;

/// Every part of a node, shared by the handlers. A part is `None` when this process does not run
/// that role; requests it cannot answer locally are forwarded to a node that can.
pub struct Node {
    /// This node's name.
    pub name: NodeName,
    /// Coordination (catalog, schemas, assignment, locks).
    pub coordinator: Arc<dyn Coordinator>,
    /// Publishes new stored versions.
    pub publisher: Publisher,
    /// Serves read queries from local copies (the `reader` role).
    pub reader: Option<Arc<Reader>>,
    /// Holds writable segments (the `writer` role).
    pub writer: Option<Arc<Writer>>,
    /// Keeps local copies in line with the assignment (runs with the reader).
    pub sync: Option<Arc<LocalSync>>,
    /// What this node knows of the others.
    pub cluster: Arc<ClusterView>,
    /// Sends requests to the others.
    pub forwarder: forward::Forwarder,
    /// Request limits.
    pub limits: Limits,
    /// Scratch directory for uploads.
    pub tmp_dir: PathBuf,
    /// Authentication (tokens, anonymous access, the token cache).
    pub auth: Arc<auth::Gate>,
}

/// The route table of the public HTTP contract.
pub fn app(node: Arc<Node>) -> axum::Router {
    use handlers::{legacy, manage, ops, schemas, segments, sql, tokens};
    let http_limits = node.limits.http.clone();
    let auth_node = node.clone();
    let admission = Arc::new(admission::Admission::new(&node.limits.inflight));
    axum::Router::new()
        .route("/", post(legacy::root))
        .route("/query", post(handlers::scatter::query))
        .route("/segments", get(segments::list))
        .route(
            "/segments/{id}",
            get(segments::show)
                .put(segments::publish)
                .patch(manage::patch)
                .delete(manage::delete),
        )
        .route("/segments/{id}/schema", get(manage::describe))
        .route("/segments/{id}/restore", post(manage::restore))
        .route("/segments/{id}/query", post(sql::query))
        .route("/segments/{id}/execute", post(sql::execute))
        .route("/segments/{id}/provision", post(segments::provision))
        .route("/segments/{id}/promote", post(segments::promote))
        .route("/schemas", get(schemas::list))
        .route("/schemas/{name}", get(schemas::show).put(schemas::put))
        // Trough's segment-manager API, for existing Trough clients (handlers::legacy).
        .route("/provision", post(legacy::provision_json))
        .route("/promote", post(legacy::promote))
        .route("/schema", get(legacy::schema_list))
        .route("/segment/{id}", delete(manage::delete))
        .route(
            "/schema/{name}",
            get(legacy::schema_show).put(legacy::schema_put_json),
        )
        .route(
            "/schema/{name}/sql",
            get(legacy::schema_sql_show).put(legacy::schema_put_sql),
        )
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/tokens/{accessor}",
            get(tokens::show).delete(tokens::revoke),
        )
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Every request: who is asking, may they, and one audit line (auth::enforce).
        .layer(axum::middleware::from_fn_with_state(
            auth_node,
            auth::enforce::enforce,
        ))
        // Bounded requests in flight per class: 503 `overloaded` beyond (admission).
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
        .layer(axum::middleware::from_fn(observe::record))
        .layer(axum::middleware::from_fn_with_state(
            http_limits,
            http_guard::guard,
        ))
        .with_state(node)
}
