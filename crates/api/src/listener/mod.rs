//! The HTTP listener: accepts TCP connections and serves each with hyper, within bounds.
//!
//! What it bounds (`limits.http`, docs/operations.md "HTTP limits"):
//! - **connections**: at most `max_connections` are served at once; a connection beyond that gets
//!   an immediate 503 `too_many_connections` and is closed (it does not wait in a queue).
//! - **slow heads**: hyper's `header_read_timeout` closes a connection whose request head does not
//!   arrive in time (including an idle keep-alive connection).
//! - **memory per connection**: hyper's read buffer is at most `4 × max_header_bytes` (≥ 8 KiB);
//!   bodies are bounded by the handlers' body limits and their idle timeout ([`crate::http_guard`]).
//! - **closing**: when hyper is done with a connection, the server half-closes it and reads and
//!   discards what the client still sends (bounded in time and bytes) before closing: a client
//!   that writes a whole oversized body before reading then sees its 413 rather than a reset.
//!
//! - **TLS** (optional, [`tls`]): the handshake runs in the connection's task within
//!   `header_read_timeout_ms`; a connection beyond the limit is closed without an answer (a
//!   plain-text 503 would mean nothing to a TLS client).
//!
//! - **hyper's own refusals** (a request it cannot parse) get the JSON error document like every
//!   other error ([`json_errors`]).
//!
//! Not here: request-level checks (URI and header sizes, JSON errors, body timeouts), which are
//! middleware in [`crate::http_guard`].

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use trough_types::error::codes;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use trough_config::HttpLimits;
use trough_types::wire::ErrorBody;

pub mod json_errors;
pub mod tls;
use json_errors::JsonErrors;

/// How long open connections may take to finish after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Lingering after a refused connection (503) is shorter than after a served one.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets open connections finish
/// their current request (for at most 10 s).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Refusals are cheap but not free: bound them too, and simply drop connections beyond.
    let refusals = Arc::new(Semaphore::new(limits.max_connections / 4 + 16));
    let builder = Arc::new(builder(&limits));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Small answers must not wait for Nagle's algorithm and the client's delayed ACK (up to
        // 40 ms per request; measured in BENCHMARKS.md).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = (
                    app.clone(),
                    builder.clone(),
                    limits.clone(),
                    shutdown.clone(),
                );
                match &acceptor {
                    None => tracker.spawn(serve_connection(tcp, conn, permit)),
                    Some(a) => tracker.spawn(serve_tls(a.clone(), tcp, conn, permit)),
                };
            }
            Err(_) => {
                metrics::counter!("trough_http_connections_refused_total").increment(1);
                if acceptor.is_some() {
                    continue;
                }
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tracker.spawn(refuse(tcp, permit));
                }
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// hyper's HTTP/1 settings from the limits.
fn builder(limits: &HttpLimits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms.max(1)))
        .max_buf_size(read_buffer_bytes(limits));
    b
}

/// The per-connection read buffer: room for the largest head the middleware answers with a JSON
/// 431/414, with a margin.
pub fn read_buffer_bytes(limits: &HttpLimits) -> usize {
    limits.max_header_bytes.saturating_mul(4).max(8192)
}

/// What serving one connection needs.
type Conn = (
    axum::Router,
    Arc<http1::Builder>,
    Arc<HttpLimits>,
    CancellationToken,
);

/// The TLS handshake (within the head timeout), then the connection.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    conn: Conn,
    permit: OwnedSemaphorePermit,
) {
    let timeout = Duration::from_millis(conn.2.header_read_timeout_ms.max(1));
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_connection(stream, conn, permit).await,
        Ok(Err(e)) => {
            metrics::counter!("trough_tls_handshake_failures_total").increment(1);
            tracing::debug!(error = %e, "TLS handshake failed");
        }
        Err(_) => {
            metrics::counter!("trough_tls_handshake_failures_total").increment(1);
            tracing::debug!("TLS handshake timed out");
        }
    }
}

async fn serve_connection<S>(io: S, conn: Conn, _permit: OwnedSemaphorePermit)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (app, builder, limits, shutdown) = conn;
    let tcp = io;
    let mut conn = builder.serve_connection(
        TokioIo::new(JsonErrors::new(tcp)),
        TowerToHyperService::new(app),
    );
    let mut draining = false;
    let result = loop {
        let done = tokio::select! {
            r = poll_fn(|cx| conn.poll_without_shutdown(cx)) => Some(r),
            _ = shutdown.cancelled(), if !draining => None,
        };
        match done {
            Some(r) => break r,
            None => {
                draining = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    let tcp = conn.into_parts().io.into_inner().into_inner();
    // Shutting down: no lingering (the process is about to close every socket anyway).
    tokio::select! {
        _ = linger(tcp, Duration::from_millis(limits.linger_ms), limits.linger_bytes) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Answers a connection beyond the limit with a 503 and closes it.
async fn refuse(mut tcp: TcpStream, _permit: OwnedSemaphorePermit) {
    let body = serde_json::to_string(&ErrorBody {
        error: trough_types::wire::ErrorDetail {
            code: codes::TOO_MANY_CONNECTIONS.into(),
            message: "the server is at its connection limit; retry shortly".into(),
        },
    })
    .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if tokio::time::timeout(REJECT_LINGER, tcp.write_all(answer.as_bytes()))
        .await
        .is_ok()
    {
        linger(tcp, REJECT_LINGER, 64 << 10).await;
    }
}

/// Half-closes `tcp`, then reads and discards until the client closes, `max_bytes` were read, or
/// `max_time` passed. Closing a socket with unread data makes the kernel send a reset, which
/// destroys the answer still in flight to a client that is busy writing.
async fn linger<S>(mut tcp: S, max_time: Duration, max_bytes: u64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if tcp.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + max_time;
    let mut buf = vec![0u8; 16 << 10];
    let mut total = 0u64;
    while total <= max_bytes {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n as u64,
            _ => return,
        }
    }
}
