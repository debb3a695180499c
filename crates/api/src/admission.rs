//! Admission control: at most `limits.inflight.{reads,writes,fanout}` requests of each class in
//! flight; past a bound a request is refused at once with 503 `overloaded` and `Retry-After`
//! instead of joining a growing queue (decision 0015). The classes are separate so that a storm
//! of writes does not take the capacity reads need, and vice versa. A request holds its slot until
//! its answer's body has been sent (streamed answers included).
//!
//! [`class_of`] decides the class of a request (a pure function); `/health` and `/metrics` have
//! none and are never refused, so a loaded node still reports itself.
//!
//! Not here: connection-level bounds (`listener`), bounds on SQLite work (the reader's pools).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use trough_config::InflightLimits;
use trough_types::error::codes;

use crate::http_guard::error_response;

/// The class of a request, each with its own bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Queries of one segment, catalog and schema reads.
    Read,
    /// Anything that changes state.
    Write,
    /// Cluster-wide queries (`POST /query`).
    FanOut,
}

impl Class {
    /// The class's name in metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::FanOut => "fanout",
        }
    }
}

/// The class of `method path`, or `None` for requests that are never refused (health, metrics).
pub fn class_of(method: &Method, path: &str) -> Option<Class> {
    let path = path.trim_end_matches('/');
    if path == "/health" || path == "/metrics" {
        return None;
    }
    if *method == Method::GET || *method == Method::HEAD {
        return Some(Class::Read);
    }
    if path == "/query" {
        return Some(Class::FanOut);
    }
    // `POST /` (the legacy wire format) may write; it counts as a write.
    if *method == Method::POST && path.starts_with("/segments/") && path.ends_with("/query") {
        return Some(Class::Read);
    }
    Some(Class::Write)
}

/// The bounds of one node (built from `limits.inflight`).
pub struct Admission {
    reads: Option<Arc<Semaphore>>,
    writes: Option<Arc<Semaphore>>,
    fanout: Option<Arc<Semaphore>>,
    retry_after: HeaderValue,
}

impl Admission {
    /// Bounds from the configuration (`0`: unbounded).
    pub fn new(limits: &InflightLimits) -> Self {
        let sem = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Self {
            reads: sem(limits.reads),
            writes: sem(limits.writes),
            fanout: sem(limits.fanout),
            retry_after: HeaderValue::from(limits.retry_after_secs.max(1)),
        }
    }

    fn bound(&self, class: Class) -> Option<&Arc<Semaphore>> {
        match class {
            Class::Read => self.reads.as_ref(),
            Class::Write => self.writes.as_ref(),
            Class::FanOut => self.fanout.as_ref(),
        }
    }
}

/// The middleware; `State` is the node's [`Admission`].
pub async fn admit(State(adm): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    let Some(class) = class_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(sem) = adm.bound(class) else {
        return next.run(req).await;
    };
    let Ok(permit) = sem.clone().try_acquire_owned() else {
        metrics::counter!("trough_overloaded_total", "class" => class.name()).increment(1);
        let mut r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::OVERLOADED,
            format!(
                "this node is at its bound of {} requests in flight (limits.inflight): retry later",
                class.name()
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, adm.retry_after.clone());
        return r;
    };
    let (parts, body) = next.run(req).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            inner: body,
            _permit: permit,
        }),
    )
}

/// A response body that keeps its request's slot until it has been sent or dropped.
struct Held {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classed_by_what_they_cost() {
        let c = |m: Method, p: &str| class_of(&m, p);
        assert_eq!(c(Method::GET, "/health"), None);
        assert_eq!(c(Method::GET, "/metrics"), None);
        assert_eq!(c(Method::POST, "/segments/a/query"), Some(Class::Read));
        assert_eq!(c(Method::GET, "/segments/a/schema"), Some(Class::Read));
        assert_eq!(c(Method::GET, "/segments"), Some(Class::Read));
        assert_eq!(c(Method::POST, "/query"), Some(Class::FanOut));
        assert_eq!(c(Method::POST, "/segments/a/execute"), Some(Class::Write));
        assert_eq!(c(Method::PUT, "/segments/a"), Some(Class::Write));
        assert_eq!(c(Method::DELETE, "/segments/a"), Some(Class::Write));
        assert_eq!(c(Method::POST, "/"), Some(Class::Write));
    }

    #[test]
    fn a_full_class_refuses_and_frees_its_slot_when_done() {
        let adm = Admission::new(&InflightLimits {
            reads: 1,
            writes: 0,
            fanout: 1,
            retry_after_secs: 2,
        });
        let reads = adm.bound(Class::Read).expect("bounded").clone();
        let held = reads.clone().try_acquire_owned().expect("first slot");
        assert!(
            reads.clone().try_acquire_owned().is_err(),
            "the bound holds"
        );
        assert!(adm.bound(Class::Write).is_none(), "0 is unbounded");
        assert!(
            adm.bound(Class::FanOut)
                .expect("bounded")
                .clone()
                .try_acquire_owned()
                .is_ok(),
            "classes are separate"
        );
        drop(held);
        assert!(reads.try_acquire_owned().is_ok(), "free again");
    }
}
