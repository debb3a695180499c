//! Raw HTTP/1.1 over TCP, for the framing tests: bytes no HTTP client library would send, slow
//! senders, and clients that write a whole body before reading.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What came back on a raw connection.
#[derive(Debug, Default)]
pub struct RawAnswer {
    /// The status code, if a status line arrived.
    pub status: Option<u16>,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when the answer was chunked).
    pub body: Vec<u8>,
    /// Whether the server closed the connection (EOF or reset) before the read deadline.
    pub closed: bool,
    /// Whether writing the request failed (broken pipe, reset).
    pub write_failed: bool,
    /// How long until the answer (or the close) arrived.
    pub elapsed: Duration,
}

impl RawAnswer {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `error.code` of a JSON error body.
    pub fn code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_owned)
    }

    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `host:port` of a base URL like `http://127.0.0.1:1234`.
pub fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Connects with a short timeout.
pub fn connect(url: &str) -> TcpStream {
    let s = TcpStream::connect(addr_of(url)).expect("connect");
    s.set_nodelay(true).ok();
    s
}

/// Sends `request` (all of it, if the server lets us), half-closes nothing, and reads the
/// answer until the server closes or a complete response has arrived, or `timeout` passes.
pub fn exchange(url: &str, request: &[u8], timeout: Duration) -> RawAnswer {
    let mut s = connect(url);
    let start = Instant::now();
    s.set_write_timeout(Some(timeout)).ok();
    let mut write_failed = false;
    for chunk in request.chunks(64 << 10) {
        if s.write_all(chunk).is_err() {
            write_failed = true;
            break;
        }
    }
    let mut answer = read_answer(&mut s, start, timeout);
    answer.write_failed = write_failed;
    answer
}

/// Reads one response (or until close / timeout) from `s`.
pub fn read_answer(s: &mut TcpStream, start: Instant, timeout: Duration) -> RawAnswer {
    let mut buf = Vec::new();
    let mut closed = false;
    let deadline = start + timeout;
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(done) = complete_len(&buf) {
            buf.truncate(done);
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok();
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let mut answer = parse(&buf);
    answer.closed = closed;
    answer.elapsed = start.elapsed();
    answer
}

/// Whether the connection is closed by the server within `timeout` (reads and discards).
pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Half-closes the write side.
pub fn finish_writing(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Length of a complete response at the start of `buf`, if one is there.
fn complete_len(buf: &[u8]) -> Option<usize> {
    let end = head_end(buf)?;
    let a = parse_head(&buf[..end]);
    if let Some(len) = a
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return (buf.len() >= end + len).then_some(end + len);
    }
    if a.header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        return dechunk(&buf[end..]).1.map(|n| end + n);
    }
    None
}

fn parse_head(head: &[u8]) -> RawAnswer {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawAnswer {
        status,
        headers,
        ..RawAnswer::default()
    }
}

/// De-chunks `body`; returns the data and, if the terminating chunk arrived, the bytes consumed.
fn dechunk(body: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = body[pos..].windows(2).position(|w| w == b"\r\n") else {
            return (out, None);
        };
        let size_text = String::from_utf8_lossy(&body[pos..pos + eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (out, None);
        };
        pos += eol + 2;
        if size == 0 {
            return (out, (body.len() >= pos + 2).then_some(pos + 2));
        }
        if body.len() < pos + size + 2 {
            out.extend_from_slice(&body[pos..body.len().min(pos + size)]);
            return (out, None);
        }
        out.extend_from_slice(&body[pos..pos + size]);
        pos += size + 2;
    }
}

fn parse(buf: &[u8]) -> RawAnswer {
    let Some(end) = head_end(buf) else {
        return RawAnswer::default();
    };
    let mut a = parse_head(&buf[..end]);
    let rest = &buf[end..];
    a.body = if a
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(rest).0
    } else {
        rest.to_vec()
    };
    a
}
