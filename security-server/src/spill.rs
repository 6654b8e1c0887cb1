//! A body buffer that keeps small bodies in memory and moves large ones to a temporary file,
//! so memory stays bounded whatever the body size. It hashes what it receives in the same pass
//! (SHA-256 for the manifest, and optionally the REST request hash).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use ring::digest;
use trustbus_sdk::rest::RequestHasher;

/// Where the bytes are.
#[derive(Debug)]
enum Store {
    Memory(Vec<u8>),
    File(File),
}

/// A write-once, read-back body buffer.
pub struct SpillBuffer {
    store: Store,
    len: u64,
    threshold: usize,
    dir: Option<PathBuf>,
    sha256: digest::Context,
    request_hash: Option<RequestHasher>,
}

impl std::fmt::Debug for SpillBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillBuffer")
            .field("len", &self.len)
            .field("spilled", &self.is_spilled())
            .finish_non_exhaustive()
    }
}

impl SpillBuffer {
    /// A buffer that spills to a temporary file in `dir` (or the system's) beyond `threshold`.
    pub fn new(threshold: usize, dir: Option<PathBuf>) -> Self {
        Self {
            store: Store::Memory(Vec::new()),
            len: 0,
            threshold,
            dir,
            sha256: digest::Context::new(&digest::SHA256),
            request_hash: None,
        }
    }

    /// Also computes the REST request hash over `header_part` and the body.
    pub fn with_request_hash(mut self, header_part: &[u8]) -> Self {
        self.request_hash = Some(RequestHasher::new(header_part));
        self
    }

    /// Appends a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.sha256.update(chunk);
        if let Some(h) = self.request_hash.as_mut() {
            h.update(chunk);
        }
        self.len += chunk.len() as u64;
        match &mut self.store {
            Store::Memory(v) if v.len() + chunk.len() <= self.threshold => {
                v.extend_from_slice(chunk);
            }
            Store::Memory(v) => {
                let mut f = match &self.dir {
                    Some(d) => tempfile::tempfile_in(d)?,
                    None => tempfile::tempfile()?,
                };
                f.write_all(v)?;
                f.write_all(chunk)?;
                self.store = Store::File(f);
            }
            Store::File(f) => f.write_all(chunk)?,
        }
        Ok(())
    }

    /// Bytes written.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body went to disk.
    pub fn is_spilled(&self) -> bool {
        matches!(self.store, Store::File(_))
    }

    /// SHA-256 of everything written.
    pub fn sha256(&self) -> Vec<u8> {
        self.sha256.clone().finish().as_ref().to_vec()
    }

    /// The REST request hash, if enabled.
    pub fn request_hash(&self) -> Option<String> {
        self.request_hash.clone().map(RequestHasher::finish)
    }

    /// The whole body in memory (only for bodies known to be small, such as SOAP messages or
    /// message-log copies below the threshold); `None` if it spilled.
    pub fn as_memory(&self) -> Option<&[u8]> {
        match &self.store {
            Store::Memory(v) => Some(v),
            Store::File(_) => None,
        }
    }

    /// Reads the whole body into memory (bounded by the caller's limits).
    pub fn to_vec(&mut self) -> io::Result<Vec<u8>> {
        match &mut self.store {
            Store::Memory(v) => Ok(v.clone()),
            Store::File(f) => {
                f.seek(SeekFrom::Start(0))?;
                let mut v = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
                f.read_to_end(&mut v)?;
                Ok(v)
            }
        }
    }

    /// A reader over the body from the start, yielding chunks of at most `chunk` bytes.
    pub fn into_chunks(self, chunk: usize) -> io::Result<Chunks> {
        Ok(match self.store {
            Store::Memory(v) => Chunks::Memory(Some(Bytes::from(v))),
            Store::File(mut f) => {
                f.seek(SeekFrom::Start(0))?;
                Chunks::File(f, chunk.max(1))
            }
        })
    }
}

/// The body read back in chunks.
#[derive(Debug)]
pub enum Chunks {
    /// An in-memory body, given out at once.
    Memory(Option<Bytes>),
    /// A spilled body, read from its file.
    File(File, usize),
}

impl Chunks {
    /// The next chunk, `None` at the end. Blocking file I/O: call from `spawn_blocking` for
    /// spilled bodies.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            Chunks::Memory(b) => Ok(b.take().filter(|b| !b.is_empty())),
            Chunks::File(f, n) => {
                let mut buf = vec![0u8; *n];
                let got = f.read(&mut buf)?;
                if got == 0 {
                    return Ok(None);
                }
                buf.truncate(got);
                Ok(Some(Bytes::from(buf)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stays_in_memory_large_spills_and_reads_back() {
        let mut s = SpillBuffer::new(10, None);
        s.write(b"hello").unwrap();
        assert!(!s.is_spilled());
        s.write(b" world, this is long").unwrap();
        assert!(s.is_spilled());
        assert_eq!(s.len(), 25);
        assert_eq!(
            s.sha256(),
            digest::digest(&digest::SHA256, b"hello world, this is long")
                .as_ref()
                .to_vec()
        );
        let mut c = s.into_chunks(7).unwrap();
        let mut all = Vec::new();
        while let Some(x) = c.next_chunk().unwrap() {
            assert!(x.len() <= 7);
            all.extend_from_slice(&x);
        }
        assert_eq!(all, b"hello world, this is long");
    }

    #[test]
    fn request_hash_matches_the_sdk() {
        let mut s = SpillBuffer::new(4, None).with_request_hash(b"GET\r\n/r1/x\r\n");
        s.write(b"abc").unwrap();
        s.write(b"defgh").unwrap();
        assert_eq!(
            s.request_hash().unwrap(),
            trustbus_sdk::rest::request_hash(b"GET\r\n/r1/x\r\n", Some(b"abcdefgh"))
        );
    }
}
