//! Gives hyper's own refusals the JSON error document.
//!
//! hyper answers a request it cannot parse (a malformed request line or header, a bad or doubled
//! `Content-Length`, a raw NUL or non-UTF-8 byte in the target, more than 100 headers, a head
//! beyond the read buffer) by itself, before any request reaches axum: a bare status line with
//! `content-length: 0`, then it closes the connection. [`JsonErrors`] sits between hyper and the
//! socket and rewrites exactly that answer, on its way out, into the document every other error
//! has (`{"error": {"code", "message"}}`, `application/json`).
//!
//! How such an answer is recognised: a write that is one whole response head (status 400, 414 or
//! 431, ending in the blank line) with `content-length: 0` and no `content-type`. trough's own
//! error responses always carry a JSON body and its content type, and response bodies never
//! begin with a status line, so nothing else matches.
//!
//! Not here: the limits themselves ([`super`], [`crate::http_guard`]).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use trough_types::error::codes;
use trough_types::wire::{ErrorBody, ErrorDetail};

/// An IO object that rewrites hyper's bare parse-error answers (see the module docs).
pub struct JsonErrors<T> {
    inner: T,
    /// A rewritten answer still to be written to `inner`, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrors<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }

    /// The wrapped IO object.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = rewrite(buf) {
            self.pending = answer;
            // The caller's bytes are taken; the replacement goes out now or on the next flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            if let Some(answer) = rewrite(only) {
                self.pending = answer;
                let _ = self.poll_pending(cx)?;
                return Poll::Ready(Ok(only.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSON answer replacing `head`, when `head` is one of hyper's bare parse-error answers.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    // Every write of every response passes here: decide on a few bytes before looking further.
    // hyper's bare answer is a status line, `connection`, `content-length` and `date`: far below
    // this bound, while response bodies can be megabytes.
    const MAX_BARE_HEAD: usize = 512;
    let candidate = head.len() <= MAX_BARE_HEAD
        && [b"400", b"414", b"431"]
            .iter()
            .any(|s| head.get(9..12) == Some(&s[..]) && head.starts_with(b"HTTP/1."));
    if !candidate {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    let status: u16 = rest.get(2..5)?.parse().ok()?;
    let (code, message) = match status {
        400 => (
            codes::MALFORMED_REQUEST,
            "the request could not be parsed as HTTP/1.1: a malformed request line or header, a \
             Content-Length that is not one number, or a NUL or non-UTF-8 byte in the target",
        ),
        414 => (codes::URI_TOO_LONG, "the request target is too long"),
        431 => (
            codes::HEADERS_TOO_LARGE,
            "the request head has more than 100 header fields or is larger than the read buffer",
        ),
        _ => return None,
    };
    let body_at = text.find("\r\n\r\n")? + 4;
    if body_at != text.len() {
        return None;
    }
    let lines: Vec<&str> = text[..body_at - 4].split("\r\n").collect();
    let header = |name: &str| {
        lines[1..].iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("content-length") != Some("0") || header("content-type").is_some() {
        return None;
    }
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    })
    .ok()?;
    let mut out = String::with_capacity(body_at + body.len() + 64);
    out.push_str(lines[0]);
    out.push_str("\r\n");
    for l in &lines[1..] {
        let name = l.split_once(':').map_or("", |(k, _)| k.trim());
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\nconnection: close\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_only_bare_error_heads() {
        let bare = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("content-type: application/json\r\n"), "{out}");
        assert!(out.contains("date: x\r\n"), "{out}");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "malformed_request");

        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(rewrite(big).unwrap())
            .unwrap()
            .contains("headers_too_large"));

        // trough's own answers and bodies pass through untouched.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"rows\": []}",
            b"HTTP/1.1 400",
        ] {
            assert!(rewrite(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
