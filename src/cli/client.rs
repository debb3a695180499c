//! The HTTP client side of the CLI: talks to a running trough router and prints JSON.

use std::path::Path;

use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// A request body.
pub enum Payload {
    Json(serde_json::Value),
}

/// The token secret every request sends (`--token` / `TROUGH_TOKEN`), set once at start.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the token secret to send.
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token.filter(|t| !t.is_empty()));
}

/// The default headers of every request: `Authorization: Bearer <secret>` when a token is set.
pub fn auth_headers() -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(Some(t)) = TOKEN.get() {
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                anyhow::anyhow!("the token contains characters not allowed in a header")
            })?;
        v.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(h)
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(auth_headers()?)
        .build()?)
}

pub async fn delete(base: &str, path: &str) -> anyhow::Result<()> {
    let resp = client()?
        .delete(url(base, path))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    finish(resp).await
}

fn url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Prints a successful body, or turns an error body into an error.
async fn finish(resp: reqwest::Response) -> anyhow::Result<()> {
    let status = resp.status();
    let text = resp.text().await.context("reading the response")?;
    if !status.is_success() {
        let msg = serde_json::from_str::<trough_types::wire::ErrorBody>(&text)
            .map(|b| format!("{} ({})", b.error.message, b.error.code))
            .unwrap_or(text);
        bail!("{status}: {msg}");
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
        Err(_) => println!("{text}"),
    }
    Ok(())
}

pub async fn get_json(base: &str, path: &str) -> anyhow::Result<()> {
    let resp = client()?
        .get(url(base, path))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    finish(resp).await
}

/// Follows the pages of a listing (`GET path?limit=…&cursor=…&prefix=…`, see docs/api.md) and
/// prints the items of every page under `key`, as one document.
pub async fn get_all_pages(
    base: &str,
    path: &str,
    key: &str,
    prefix: Option<&str>,
    page_size: usize,
) -> anyhow::Result<()> {
    let http = client()?;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", page_size.to_string())];
        if let Some(p) = prefix {
            query.push(("prefix", p.to_owned()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let mut u =
            reqwest::Url::parse(&url(base, path)).with_context(|| format!("invalid URL {base}"))?;
        u.query_pairs_mut().extend_pairs(&query);
        let resp = http
            .get(u)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the response")?;
        if !status.is_success() {
            let msg = serde_json::from_str::<trough_types::wire::ErrorBody>(&text)
                .map(|b| format!("{} ({})", b.error.message, b.error.code))
                .unwrap_or(text);
            bail!("{status}: {msg}");
        }
        let mut page: serde_json::Value =
            serde_json::from_str(&text).context("the listing is not JSON")?;
        if let Some(a) = page.get_mut(key).and_then(|v| v.as_array_mut()) {
            items.append(a);
        }
        match page.get("next_cursor").and_then(|c| c.as_str()) {
            Some(c) if cursor.as_deref() != Some(c) => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    let doc = serde_json::json!({ key: items });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

pub async fn post(base: &str, path: &str, payload: Option<Payload>) -> anyhow::Result<()> {
    let mut req = client()?.post(url(base, path));
    if let Some(Payload::Json(v)) = payload {
        req = req.json(&v);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    finish(resp).await
}

pub async fn patch_json(base: &str, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let resp = client()?
        .patch(url(base, path))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    finish(resp).await
}

pub async fn put_text(base: &str, path: &str, body: String) -> anyhow::Result<()> {
    let resp = client()?
        .put(url(base, path))
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    finish(resp).await
}

pub async fn query(base: &str, id: &str, sql: &str, ndjson: bool) -> anyhow::Result<()> {
    let req = client()?
        .post(url(base, &format!("/segments/{id}/query")))
        .header("content-type", "text/plain")
        .body(sql.to_owned());
    send_rows(base, req, ndjson).await
}

/// Sends a query; prints NDJSON as it streams, anything else through [`finish`].
async fn send_rows(
    base: &str,
    mut req: reqwest::RequestBuilder,
    ndjson: bool,
) -> anyhow::Result<()> {
    if ndjson {
        req = req.header("accept", "application/x-ndjson");
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if ndjson && resp.status().is_success() {
        return copy_to_stdout(resp).await;
    }
    finish(resp).await
}

/// Copies a streamed body to stdout as it arrives; a cut-off stream is an error.
async fn copy_to_stdout(resp: reqwest::Response) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.context("the response was cut off")?)?;
    }
    Ok(())
}

/// `POST /query`: a cluster-wide query.
pub async fn query_many(base: &str, body: serde_json::Value, ndjson: bool) -> anyhow::Result<()> {
    let req = client()?.post(url(base, "/query")).json(&body);
    send_rows(base, req, ndjson).await
}

/// Streams a file to `PUT /segments/{id}` with a progress bar.
pub async fn upload(base: &str, id: &str, file: &Path) -> anyhow::Result<()> {
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata().await?.len();
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} uploading {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(id.to_owned());
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            progress.inc(c.len() as u64);
        }
        chunk
    });
    let resp = client()?
        .put(url(base, &format!("/segments/{id}")))
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    bar.finish_and_clear();
    finish(resp).await
}
