//! HTTP framing over raw TCP (bad chunk sizes, bad `Content-Length`, smuggling attempts, huge
//! heads, NUL and non-UTF-8 bytes, pipelining garbage, not-HTTP) and slow clients.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use super::{Case, Expect, Input};
use crate::common::{raw, TestServer};
use Expect::*;

/// A request head for `POST /segments/s/query` with `extra` header lines and then `body`.
fn post(extra: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST /segments/s/query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nConnection: close\r\n{extra}\r\n"
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn chunked(chunks: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", chunks.as_bytes())
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

fn stall(name: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: format!("slow: {name}"),
        input: Input::Stall {
            bytes,
            within: Duration::from_secs(5),
        },
        expect,
    }
}

pub fn cases() -> Vec<Case> {
    let mut v = vec![
        // Chunked bodies.
        Case::raw(
            "chunk size not hex",
            chunked("zz\r\nSELECT 1\r\n0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk size negative",
            chunked("-1\r\nSELECT 1\r\n0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk size overflow",
            chunked("1ffffffffffffffff\r\nSELECT 1\r\n0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk size 2^64-1",
            chunked("ffffffffffffffff\r\nSELECT 1\r\n0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk larger than body limit",
            chunked("200000\r\nSELECT 1\r\n0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk extension flood",
            chunked(&format!(
                "8;{}\r\nSELECT 1\r\n0\r\n\r\n",
                "e=1;".repeat(8000)
            )),
            Client,
        ),
        Case::raw(
            "chunk without terminator",
            chunked("8\r\nSELECT 1XX0\r\n\r\n"),
            Client,
        ),
        Case::raw(
            "chunk trailer flood",
            chunked(&format!(
                "8\r\nSELECT 1\r\n0\r\n{}\r\n",
                "X-T: 1\r\n".repeat(3000)
            )),
            Client,
        ),
        // RFC 9112 6.3: Transfer-Encoding overrides Content-Length (hyper then closes).
        Case::raw(
            "chunked then content-length",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"8\r\nSELECT 1\r\n0\r\n\r\n",
            ),
            Ok,
        ),
        Case::raw(
            "transfer-encoding gzip",
            post("Transfer-Encoding: gzip\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "transfer-encoding chunked twice",
            post(
                "Transfer-Encoding: chunked, chunked\r\n",
                b"8\r\nSELECT 1\r\n0\r\n\r\n",
            ),
            Ok,
        ),
        // Content-Length.
        Case::raw(
            "content-length not a number",
            post("Content-Length: abc\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "content-length negative",
            post("Content-Length: -8\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "content-length twice differing",
            post("Content-Length: 8\r\nContent-Length: 9\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "content-length 2^64",
            post("Content-Length: 18446744073709551616\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "content-length 2^64-1",
            post("Content-Length: 18446744073709551615\r\n", b"SELECT 1"),
            Closed,
        ),
        Case::raw(
            "content-length over limit",
            post("Content-Length: 2000000\r\n", b"SELECT 1"),
            Status(413),
        ),
        Case::raw(
            "content-length shorter than body",
            post("Content-Length: 6\r\n", b"SELECT 1; DROP TABLE t"),
            Client,
        ),
        Case::raw(
            "content-length with plus",
            post("Content-Length: +8\r\n", b"SELECT 1"),
            Closed,
        ),
        // Request line and target.
        Case::raw("raw NUL in target", get("/segments/s\0x", ""), Closed),
        Case::raw(
            "raw non-UTF-8 in target",
            get("/segments/\u{ff}", ""),
            Client,
        ),
        Case::raw(
            "raw 0xff byte in target",
            [
                b"GET /segments/".as_ref(),
                &[0xff, 0xfe],
                b" HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .concat(),
            Closed,
        ),
        Case::raw(
            "space in target",
            b"GET /segments/a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Closed,
        ),
        Case::raw(
            "absolute-form target",
            get("http://evil.example/segments/s", ""),
            Status(200),
        ),
        Case::raw(
            "asterisk target",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            Client,
        ),
        Case::raw(
            "connect method",
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Client,
        ),
        Case::raw(
            "trace method",
            b"TRACE /segments/s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            Status(405),
        ),
        Case::raw(
            "lower-case method",
            b"get /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            Client,
        ),
        Case::raw(
            "long method",
            format!("{} /health HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(5000)).into_bytes(),
            Client,
        ),
        Case::raw("HTTP/0.9", b"GET /health\r\n\r\n".to_vec(), Closed),
        Case::raw(
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Closed,
        ),
        Case::raw(
            "HTTP/3.0 version",
            b"GET /health HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
            Closed,
        ),
        Case::raw(
            "TLS client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
            Closed,
        ),
        Case::raw(
            "target of 20 KiB",
            get(&format!("/segments/{}", "a".repeat(20 << 10)), ""),
            Status(414),
        ),
        Case::raw(
            "query string of 20 KiB",
            get(&format!("/health?{}", "q=1&".repeat(5000)), ""),
            Status(414),
        ),
        Case::raw(
            "target of 100 KiB",
            get(&format!("/segments/{}", "a".repeat(100 << 10)), ""),
            Closed,
        ),
        // Headers.
        Case::raw(
            "header of 30 KiB",
            get("/health", &format!("X-Big: {}\r\n", "b".repeat(30 << 10))),
            Status(431),
        ),
        Case::raw(
            "head of 200 KiB",
            get("/health", &format!("X-Big: {}\r\n", "b".repeat(200 << 10))),
            Closed,
        ),
        Case::raw(
            "300 headers",
            get("/health", &"X-H: 1\r\n".repeat(300)),
            Closed,
        ),
        Case::raw(
            "header without colon",
            get("/health", "NoColonHere\r\n"),
            Closed,
        ),
        Case::raw(
            "header name with space",
            get("/health", "Bad Name: 1\r\n"),
            Closed,
        ),
        Case::raw(
            "NUL in header value",
            get("/health", "X-N: a\0b\r\n"),
            Closed,
        ),
        Case::raw(
            "obs-fold header",
            get("/health", "X-F: a\r\n  folded\r\n"),
            Closed,
        ),
        Case::raw(
            "non-UTF-8 header value",
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-U: \xff\xfe\r\n\r\n"
                .to_vec(),
            Status(200),
        ),
        Case::raw(
            "no host header",
            b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            Status(200),
        ),
        Case::raw(
            "content-type garbage",
            post(
                "Content-Type: application/json; charset=\u{1}\r\nContent-Length: 8\r\n",
                b"SELECT 1",
            ),
            Closed,
        ),
        Case::raw(
            "expect 100-continue over limit",
            post("Expect: 100-continue\r\nContent-Length: 5000000\r\n", b""),
            Status(413),
        ),
        Case::raw(
            "expect unknown",
            post("Expect: 200-ok\r\nContent-Length: 8\r\n", b"SELECT 1"),
            Status(200),
        ),
        // Pipelining.
        Case::raw(
            "pipelined garbage after a request",
            [
                get("/health", "").as_slice(),
                b"\x00\x01\x02garbage\r\n\r\n",
            ]
            .concat(),
            Status(200),
        ),
        Case::raw("garbage only", b"\r\n\r\n\r\n\x00\x00\x00".to_vec(), Closed),
        Case::raw(
            "smuggled second request in body",
            post(
                "Content-Length: 45\r\n",
                b"SELECT 1\r\n\r\nPOST /segments/w/execute HTTP/1.1\r\n\r\n",
            ),
            Client,
        ),
    ];
    // Slow clients: each must be answered or closed within 5 s (the suite's server uses 1 s
    // head and body timeouts).
    v.extend([
        stall("half a request line", b"POST /segments/s/qu".to_vec(), Closed),
        stall("head without its end", b"POST /segments/s/query HTTP/1.1\r\nHost: x\r\n".to_vec(), Closed),
        stall("body stops half-way", post("Content-Length: 100\r\n", b"SELECT"), Status(408)),
        stall("chunked body stops", chunked("8\r\nSELECT 1\r\n"), Status(408)),
        stall("chunk of 2^64-1 then silence", chunked("ffffffffffffffff\r\nSELECT 1"), Status(408)),
        stall("upload stops half-way", b"PUT /segments/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nSQLite format 3\0".to_vec(), Status(408)),
        stall("nothing at all", Vec::new(), Closed),
    ]);
    v
}

/// Opens `n` connections, half of them with half a request, and keeps them open.
pub fn idle_sockets(s: &TestServer, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = raw::connect(s.url());
            if i % 2 == 0 {
                let _ = c
                    .write_all(b"POST /segments/s/query HTTP/1.1\r\nContent-Length: 50\r\n\r\nSEL");
            }
            c
        })
        .collect()
}
