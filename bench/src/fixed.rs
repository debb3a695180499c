//! The HTTP limit: a bare hyper server that reads the request body and answers a fixed JSON body
//! chosen by path (`/NAME` answers the file `NAME.json` of the bodies directory). Same runtime
//! shape as trough (tokio multi-thread, one worker per core, HTTP/1.1 keep-alive), no routing
//! framework, no SQL.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Serves forever on 127.0.0.1 (a free port), printing `listening on http://ADDR` once bound.
pub fn run(bodies_dir: &Path) -> Result<()> {
    let mut bodies = HashMap::new();
    for e in std::fs::read_dir(bodies_dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            bodies.insert(format!("/{name}"), Bytes::from(std::fs::read(&p)?));
        }
    }
    let bodies = Arc::new(bodies);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("listening on http://{}", listener.local_addr()?);
            loop {
                let (tcp, _) = listener.accept().await?;
                tcp.set_nodelay(true)?;
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let bodies = bodies.clone();
                        async move { Ok::<_, Infallible>(answer(&bodies, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        })
}

async fn answer(bodies: &HashMap<String, Bytes>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = bodies.get(req.uri().path()).cloned();
    // Read the request body, as a real server must.
    let _ = req.into_body().collect().await;
    match body {
        Some(b) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(b)),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"{}"))),
    }
    .expect("valid response")
}
