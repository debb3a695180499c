//! A tiny DNS client over UDP, for asking Consul's DNS interface in tests.
//!
//! Sends one question (A or SRV, class IN, recursion desired) and parses the answer section,
//! following name compression. Enough for `<tag>.<service>.service.consul` lookups; not a
//! resolver (no TCP fallback, no retries across servers, no caching).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight among equal priorities.
    pub weight: u16,
    /// The service's port.
    pub port: u16,
    /// The target host name (without the trailing dot).
    pub target: String,
}

/// What a query returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The response code (0 = no error, 3 = NXDOMAIN).
    pub rcode: u8,
    /// A records in the answer section.
    pub a: Vec<Ipv4Addr>,
    /// SRV records in the answer section.
    pub srv: Vec<Srv>,
}

/// Asks `server` for the A records of `name`.
pub fn query_a(server: SocketAddr, name: &str) -> io::Result<Answer> {
    query(server, name, TYPE_A)
}

/// Asks `server` for the SRV records of `name`.
pub fn query_srv(server: SocketAddr, name: &str) -> io::Result<Answer> {
    query(server, name, TYPE_SRV)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Encodes a query for `name` (dot-separated) of type `qtype`.
fn encode_query(id: u16, name: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad DNS label in {name:?}"),
            ));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn u16_at(buf: &[u8], pos: usize) -> io::Result<u16> {
    buf.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| bad("truncated message"))
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(buf: &[u8], mut pos: usize) -> io::Result<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *buf.get(pos).ok_or_else(|| bad("truncated name"))? as usize;
        if len & 0xC0 == 0xC0 {
            let ptr = (u16_at(buf, pos)? & 0x3FFF) as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
        } else if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        } else {
            let label = buf
                .get(pos + 1..pos + 1 + len)
                .ok_or_else(|| bad("truncated label"))?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            pos += 1 + len;
        }
    }
    Err(bad("name compression loop"))
}

/// Parses a response to query `id`.
fn decode_answer(buf: &[u8], id: u16) -> io::Result<Answer> {
    if u16_at(buf, 0)? != id {
        return Err(bad("response id does not match"));
    }
    let flags = u16_at(buf, 2)?;
    let (qd, an) = (u16_at(buf, 4)?, u16_at(buf, 6)?);
    let mut out = Answer {
        rcode: (flags & 0x000F) as u8,
        ..Answer::default()
    };
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(buf, pos)?.1 + 4;
    }
    for _ in 0..an {
        pos = read_name(buf, pos)?.1;
        let rtype = u16_at(buf, pos)?;
        let rdlen = u16_at(buf, pos + 8)? as usize;
        let rdata = pos + 10;
        let data = buf
            .get(rdata..rdata + rdlen)
            .ok_or_else(|| bad("truncated record"))?;
        match rtype {
            TYPE_A if rdlen == 4 => out
                .a
                .push(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            TYPE_SRV if rdlen >= 7 => out.srv.push(Srv {
                priority: u16_at(buf, rdata)?,
                weight: u16_at(buf, rdata + 2)?,
                port: u16_at(buf, rdata + 4)?,
                target: read_name(buf, rdata + 6)?.0,
            }),
            _ => {}
        }
        pos = rdata + rdlen;
    }
    Ok(out)
}

/// Sends one question of type `qtype` and parses the answer (three tries, 2 s each).
pub fn query(server: SocketAddr, name: &str, qtype: u16) -> io::Result<Answer> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(8) ^ qtype;
    let q = encode_query(id, name, qtype)?;
    let mut buf = [0u8; 4096];
    let mut last = io::Error::new(io::ErrorKind::TimedOut, "no DNS answer");
    for _ in 0..3 {
        sock.send(&q)?;
        match sock.recv(&mut buf) {
            Ok(n) => match decode_answer(&buf[..n], id) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_a_compressed_answer() {
        let q = encode_query(7, "a.trough-read.service.consul", TYPE_A).unwrap();
        // A response: the question, then one A record named by a pointer to offset 12.
        let mut r = q.clone();
        r[2] = 0x84; // QR, AA
        r[3] = 0x00;
        r[7] = 1; // ANCOUNT = 1
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
        let a = decode_answer(&r, 7).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(a.a, vec![Ipv4Addr::LOCALHOST]);
        assert!(decode_answer(&r, 8).is_err());
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
    }
}
