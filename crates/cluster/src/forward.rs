//! Forwarding a request to another node, with retries that never return a broken answer.
//!
//! A read can be answered by any replica, so a failure that happens before the client saw a byte
//! is retried on the next one. That covers a refused or reset connection, a 5xx status (other than
//! a 504, which is the query's own timeout), or a body cut off while still being buffered.
//! Answers up to [`BUFFER_LIMIT_BYTES`] are buffered whole, so a replica killed mid-answer costs
//! a retry rather than a failed client query. Larger answers stream through, and an upstream
//! failure then breaks the client's stream visibly (decision 0003). Writes have one possible
//! target and are retried only if the request provably never reached it.
//!
//! Forwarded requests carry [`FORWARDED_HEADER`]; a node never forwards such a request again, so
//! two nodes with stale views cannot bounce a request between them.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::Target;

/// Marks a request sent by another trough node.
pub const FORWARDED_HEADER: &str = "x-trough-forwarded";
/// Answers up to this size are buffered, so that a failure while reading them can be retried.
pub const BUFFER_LIMIT_BYTES: usize = 1 << 20;
/// Time to establish a connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one forwarding attempt.
pub enum Attempt {
    /// An answer to pass to the client (success or a definitive error).
    Done(Response),
    /// The target could not answer; try another (the reason is for logs and the final error).
    Retry(String),
}

/// Whether a failed request may be sent to another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads: any failure before the client saw a byte.
    Idempotent,
    /// Writes: only when the request never reached the target (connection refused).
    NotSent,
}

/// Sends requests to other nodes.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    /// A forwarder with its own connection pool.
    pub fn new() -> Self {
        Self::with_tls(None, None).expect("static HTTP client configuration")
    }

    /// A forwarder that also trusts the CA in `ca_pem` (nodes serving TLS with certificates of
    /// a private CA) and, with `identity_pem` (certificate chain and key, PEM), presents a client
    /// certificate (nodes that require one).
    pub fn with_tls(ca_pem: Option<&[u8]>, identity_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Below the default `limits.http.header_read_timeout_ms` (10 s), after which a node
            // closes an idle connection: reusing one the peer is closing would fail the request.
            .pool_idle_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = identity_pem {
            builder =
                builder.identity(reqwest::Identity::from_pem(pem).map_err(|e| e.to_string())?);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// The underlying HTTP client (for callers that consume answers themselves).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `method path` with `body` to `target`, copying the content type, accept and
    /// authorization headers.
    pub async fn send(
        &self,
        target: &Target,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
        retry: Retry,
    ) -> Attempt {
        let url = format!("{}{}", target.address.trim_end_matches('/'), path_and_query);
        let mut req = self
            .client
            .request(method, &url)
            .header(FORWARDED_HEADER, "1")
            .body(body);
        // The caller's credential travels with its request: the receiving node checks it again,
        // so forwarding never widens what the caller may do.
        for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let never_sent = e.is_connect();
                return if retry == Retry::Idempotent || never_sent {
                    Attempt::Retry(format!("{}: {e}", target.name))
                } else {
                    Attempt::Done(gateway_error(target.name.as_str(), &e.to_string()))
                };
            }
        };
        let status = resp.status();
        let retryable_status = status.is_server_error() && status != StatusCode::GATEWAY_TIMEOUT;
        if retry == Retry::Idempotent && retryable_status {
            let text = resp.text().await.unwrap_or_default();
            return Attempt::Retry(format!("{}: {status} {text}", target.name));
        }
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let target_name = target.name.to_string();
        let mut stream = resp.bytes_stream();
        let mut buffered = BytesMut::new();
        let complete = loop {
            match stream.next().await {
                None => break true,
                Some(Ok(chunk)) => {
                    buffered.extend_from_slice(&chunk);
                    if buffered.len() > BUFFER_LIMIT_BYTES {
                        break false;
                    }
                }
                Some(Err(e)) => {
                    return if retry == Retry::Idempotent {
                        Attempt::Retry(format!("{}: answer cut off: {e}", target.name))
                    } else {
                        Attempt::Done(gateway_error(target.name.as_str(), &e.to_string()))
                    };
                }
            }
        };
        let body = if complete {
            Body::from(buffered.freeze())
        } else {
            let head =
                futures::stream::once(
                    async move { Ok::<Bytes, reqwest::Error>(buffered.freeze()) },
                );
            // If the node's answer breaks off, the client gets a final error line and a body that
            // ends normally (decision 0003), never a silent truncation.
            let tail = stream.scan(false, move |failed, item| {
                std::future::ready(match (*failed, item) {
                    (true, _) => None,
                    (false, Ok(b)) => Some(Ok(b)),
                    (false, Err(e)) => {
                        *failed = true;
                        Some(Ok(Bytes::from(format!(
                            "\n{}\n",
                            trough_types::wire::error_line(
                                trough_types::ErrorKind::Unavailable,
                                "answer_cut_off",
                                &format!("the answer from node {target_name} broke off: {e}"),
                            )
                        ))))
                    }
                })
            });
            Body::from_stream(head.chain(tail))
        };
        let mut out = Response::new(body);
        *out.status_mut() = status;
        if let Some(ct) = content_type {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        Attempt::Done(out)
    }
}

fn gateway_error(node: &str, detail: &str) -> Response {
    let body = serde_json::json!({"error": {
        "code": "node_unavailable",
        "message": format!("node {node} failed while handling the request: {detail}"),
    }});
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
