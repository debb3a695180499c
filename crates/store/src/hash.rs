//! SHA-256 of files and streams, as lower-case hex.
//!
//! Used to checksum a segment when it is published and to verify every copy before it is served.
//! Blocking file reads are done with a large buffer; call from `spawn_blocking` in async code.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Read buffer for hashing, in bytes.
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// Incremental SHA-256 that yields lower-case hex.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Sha256::new())
    }
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The hex digest.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// SHA-256 (hex) and size of a file. Blocking.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Hasher::new();
    // No bigger than the file (plus one byte to see the end in one read): zeroing a 1 MiB buffer
    // for an 8 KB segment was a tenth of a publish's CPU (issue 12's profile).
    let len = file.metadata()?.len();
    let cap = usize::try_from(len.saturating_add(1))
        .unwrap_or(HASH_BUFFER_BYTES)
        .clamp(4096, HASH_BUFFER_BYTES);
    let mut buf = vec![0u8; cap];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finish_hex(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let (h, n) = sha256_file(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
