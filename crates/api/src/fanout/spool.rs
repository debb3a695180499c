//! One segment's answer, kept until the merge reads it: in memory while small, else in a
//! temporary file. Rows are NDJSON objects, read back as values in column order (duplicate
//! column names kept).

use std::fmt;
use std::io::{BufRead, BufReader, Cursor, Seek, Write};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use trough_types::Error;

/// A spooled NDJSON answer.
pub enum Spool {
    /// Small answers.
    Memory(Vec<u8>),
    /// Large answers, in an anonymous temporary file (deleted when dropped).
    File(std::fs::File),
}

/// Builds a [`Spool`] from chunks pushed on a blocking thread ([`trough_reader::Collector`]):
/// in memory up to its limit, then in a temporary file.
pub struct SpoolWriter {
    mem: Vec<u8>,
    file: Option<std::fs::File>,
    memory_limit: usize,
}

impl SpoolWriter {
    /// An empty spool that moves to a temporary file past `memory_limit` bytes.
    pub fn new(memory_limit: usize) -> Self {
        Self {
            mem: Vec::new(),
            file: None,
            memory_limit,
        }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        match &mut self.file {
            Some(f) => f.write_all(chunk).map_err(spool_io),
            None => {
                self.mem.extend_from_slice(chunk);
                if self.mem.len() > self.memory_limit {
                    // Under the data dir, never $TMPDIR.
                    let mut f = tempfile::tempfile_in(trough_sqlite::limits::temp_dir())
                        .map_err(spool_io)?;
                    f.write_all(&self.mem).map_err(spool_io)?;
                    self.mem = Vec::new();
                    self.file = Some(f);
                }
                Ok(())
            }
        }
    }

    /// The last non-empty line written so far (for an error line at the end of a stream).
    fn last_line(&mut self) -> Option<String> {
        match &mut self.file {
            Some(f) => last_line_of_file(f),
            None => last_line(&self.mem).map(str::to_owned),
        }
    }

    fn done(self) -> Result<Spool, Error> {
        match self.file {
            Some(mut f) => {
                f.rewind().map_err(spool_io)?;
                Ok(Spool::File(f))
            }
            None => Ok(Spool::Memory(self.mem)),
        }
    }
}

impl trough_reader::Collector for SpoolWriter {
    type Output = Spool;
    fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.write(&chunk)
    }
    fn finish(self) -> Result<Spool, Error> {
        self.done()
    }
}

fn spool_io(e: std::io::Error) -> Error {
    Error::internal(format!("cannot spool a segment answer: {e}"))
}

impl Spool {
    /// Collects a byte stream, moving to a temporary file past `memory_limit` bytes. The
    /// stream's own error is returned as it is (its kind kept); a failing temporary file is an
    /// internal error.
    pub async fn collect<S>(mut stream: S, memory_limit: usize) -> Result<Spool, Error>
    where
        S: Stream<Item = Result<Bytes, Error>> + Unpin,
    {
        let mut w = SpoolWriter::new(memory_limit);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => w.write(&c)?,
                // A sender that failed after output started wrote its error as the last line
                // (decision 0003): that error, with its kind, is the answer's.
                Err(e) => {
                    return Err(w
                        .last_line()
                        .and_then(|l| trough_types::wire::parse_error_line(&l))
                        .unwrap_or(e));
                }
            }
        }
        w.done()
    }

    /// The rows, as (column names of the first row, iterator of value rows).
    pub fn rows(self) -> SpoolRows {
        let reader: Box<dyn BufRead + Send> = match self {
            Spool::Memory(v) => Box::new(Cursor::new(v)),
            Spool::File(f) => Box::new(BufReader::with_capacity(64 << 10, f)),
        };
        SpoolRows {
            reader,
            line: String::new(),
        }
    }
}

/// The last non-empty line of `bytes`, if it is UTF-8.
fn last_line(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()?
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
}

/// The last non-empty line of a spool file (its last 64 KiB).
fn last_line_of_file(f: &mut std::fs::File) -> Option<String> {
    use std::io::{Read, SeekFrom};
    let len = f.seek(SeekFrom::End(0)).ok()?;
    f.seek(SeekFrom::Start(len.saturating_sub(64 << 10))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned)
}

/// Reads the rows of a [`Spool`].
pub struct SpoolRows {
    reader: Box<dyn BufRead + Send>,
    line: String,
}

impl SpoolRows {
    /// The next row as (column name, value) pairs in column order.
    pub fn next_pairs(&mut self) -> Option<Result<Vec<(String, Value)>, String>> {
        loop {
            self.line.clear();
            match self.reader.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e.to_string())),
            }
            let t = self.line.trim();
            if t.is_empty() {
                continue;
            }
            return Some(parse_pairs(t));
        }
    }
}

/// Parses one JSON object into its (key, value) pairs, in order, duplicates kept.
pub fn parse_pairs(line: &str) -> Result<Vec<(String, Value)>, String> {
    struct Pairs(Vec<(String, Value)>);
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Pairs;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object (one row)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
            let mut v = Vec::new();
            while let Some((k, val)) = map.next_entry::<String, Value>()? {
                v.push((k, val));
            }
            Ok(Pairs(v))
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let pairs = (&mut de)
        .deserialize_map(V)
        .map_err(|e| format!("unreadable row from segment: {e}"))?;
    Ok(pairs.0)
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spool::Memory(v) => write!(f, "Spool::Memory({} bytes)", v.len()),
            Spool::File(_) => f.write_str("Spool::File"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spills_and_reads_back() {
        let lines: Vec<Result<Bytes, Error>> = (0..1000)
            .map(|i| Ok(Bytes::from(format!("{{\"a\":{i},\"a\":\"x{i}\"}}\n"))))
            .collect();
        let spool = Spool::collect(futures::stream::iter(lines), 1024)
            .await
            .unwrap();
        assert!(matches!(spool, Spool::File(_)));
        let mut rows = spool.rows();
        let first = rows.next_pairs().unwrap().unwrap();
        assert_eq!(
            first,
            vec![
                ("a".into(), Value::from(0)),
                ("a".into(), Value::from("x0"))
            ]
        );
        let mut n = 1;
        while let Some(r) = rows.next_pairs() {
            r.unwrap();
            n += 1;
        }
        assert_eq!(n, 1000);
    }

    #[tokio::test]
    async fn an_error_line_before_the_break_is_the_error() {
        let line = trough_types::wire::error_line(
            trough_types::ErrorKind::InvalidInput,
            "sql_error",
            "integer overflow",
        );
        let items: Vec<Result<Bytes, Error>> = vec![
            Ok(Bytes::from("{\"a\":1}\n")),
            Ok(Bytes::from(format!("{line}\n"))),
            Err(Error::unavailable("segment_unavailable", "answer cut off")),
        ];
        let e = Spool::collect(futures::stream::iter(items), 1024)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), trough_types::ErrorKind::InvalidInput);
        assert_eq!(e.message(), "integer overflow");
    }

    #[tokio::test]
    async fn stream_error_is_an_error() {
        let items: Vec<Result<Bytes, Error>> = vec![
            Ok(Bytes::from("{\"a\":1}\n")),
            Err(Error::invalid("sql_error", "integer overflow")),
        ];
        let e = Spool::collect(futures::stream::iter(items), 1024)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), trough_types::ErrorKind::InvalidInput);
    }
}
