//! The load generator: closed loop at a fixed concurrency, over HTTP/1.1 keep-alive connections
//! (one per worker, hyper's low-level client) or in-process (one OS thread and one SQLite
//! connection per worker). Latencies go into a vector of microseconds that is sorted at the
//! end (exact percentiles, no bucketing).
//!
//! Every worker starts at once; requests that complete inside the measuring window
//! (`warmup`..`warmup + duration`) count, so throughput = completions in the window / duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::stats::{percentile_ms, Rng};

/// How long and how hard to drive one system.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// Requests in flight at any time (closed loop: each worker sends its next request when the
    /// previous one has answered).
    pub concurrency: usize,
    /// Time before measuring starts.
    pub warmup: Duration,
    /// Measuring window.
    pub duration: Duration,
}

/// One measurement.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Successful requests completed inside the window.
    pub ok: u64,
    /// Failed requests (non-2xx or transport errors) inside the window.
    pub errors: u64,
    /// `ok` per second of window.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The first error seen, to show.
    pub first_error: Option<String>,
}

impl LoadResult {
    fn from_parts(parts: Vec<WorkerOut>, duration: Duration) -> Self {
        let mut lat = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for p in parts {
            lat.extend(p.latencies_us);
            errors += p.errors;
            if first_error.is_none() {
                first_error = p.first_error;
            }
        }
        lat.sort_unstable();
        LoadResult {
            ok: lat.len() as u64,
            errors,
            throughput: lat.len() as f64 / duration.as_secs_f64(),
            p50_ms: percentile_ms(&lat, 50.0),
            p99_ms: percentile_ms(&lat, 99.0),
            first_error,
        }
    }
}

#[derive(Default)]
struct WorkerOut {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Builds the next request from the worker's random numbers. The URI is a path (`/x?y`); the
/// generator adds `Host`.
pub type MakeRequest = Arc<dyn Fn(&mut Rng) -> Request<Full<Bytes>> + Send + Sync>;

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Drives `addr` with `spec.concurrency` keep-alive connections for `warmup + duration`.
pub async fn http_closed_loop(
    addr: SocketAddr,
    spec: LoadSpec,
    make: MakeRequest,
) -> Result<LoadResult> {
    let start = Instant::now();
    let from = start + spec.warmup;
    let end = from + spec.duration;
    let host = addr.to_string();
    let mut tasks = Vec::with_capacity(spec.concurrency);
    for w in 0..spec.concurrency {
        let make = make.clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            http_worker(addr, &host, w as u64 + 1, make, from, end).await
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for t in tasks {
        parts.push(t.await.context("load worker panicked")??);
    }
    Ok(LoadResult::from_parts(parts, spec.duration))
}

async fn http_worker(
    addr: SocketAddr,
    host: &str,
    seed: u64,
    make: MakeRequest,
    from: Instant,
    end: Instant,
) -> Result<WorkerOut> {
    let mut out = WorkerOut::default();
    let mut rng = Rng::new(seed);
    let mut sender = connect(addr).await?;
    loop {
        if Instant::now() >= end {
            break;
        }
        if sender.ready().await.is_err() {
            sender = connect(addr).await?;
        }
        let mut req = make(&mut rng);
        req.headers_mut()
            .insert(hyper::header::HOST, host.parse().expect("host header"));
        let t0 = Instant::now();
        let result: Result<(hyper::StatusCode, Bytes)> = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok((status, body))
        }
        .await;
        let t1 = Instant::now();
        let counted = t1 >= from && t1 <= end;
        match result {
            Ok((status, _)) if status.is_success() => {
                if counted {
                    out.latencies_us.push(micros(t1 - t0));
                }
            }
            Ok((status, body)) => {
                if counted {
                    out.errors += 1;
                }
                out.first_error.get_or_insert_with(|| {
                    format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
            }
            Err(e) => {
                if counted {
                    out.errors += 1;
                }
                out.first_error.get_or_insert_with(|| e.to_string());
                // The connection may be gone: the next loop reconnects if it is not ready.
                tokio::time::sleep(Duration::from_millis(1)).await;
                if sender.ready().await.is_err() {
                    sender = connect(addr).await?;
                }
            }
        }
    }
    Ok(out)
}

/// The same closed loop in-process: `spec.concurrency` OS threads, each with its own state from
/// `open` (a SQLite connection) running `op` back to back.
pub fn inproc_closed_loop<S>(
    spec: LoadSpec,
    open: impl Fn() -> Result<S> + Sync,
    op: impl Fn(&mut S, &mut Rng) -> Result<()> + Sync,
) -> Result<LoadResult> {
    let start = Instant::now();
    let from = start + spec.warmup;
    let end = from + spec.duration;
    let parts: Vec<Result<WorkerOut>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.concurrency)
            .map(|w| {
                let (open, op) = (&open, &op);
                s.spawn(move || -> Result<WorkerOut> {
                    let mut state = open()?;
                    let mut rng = Rng::new(w as u64 + 1);
                    let mut out = WorkerOut::default();
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        op(&mut state, &mut rng)?;
                        let t1 = Instant::now();
                        if t1 >= from && t1 <= end {
                            out.latencies_us.push(micros(t1 - t0));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("in-process worker panicked"))
            .collect()
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(LoadResult::from_parts(parts, spec.duration))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A request with a body.
pub fn post(path: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("valid request")
}

/// A GET request.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}
