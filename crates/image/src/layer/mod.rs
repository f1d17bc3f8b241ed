//! Applying layer tars into an overlay upper directory, safely.

mod apply;
mod fsops;

use std::io::{self, Read};
use std::path::PathBuf;

use berth_content::Digest;
use sha2::{Digest as _, Sha256};

pub use apply::apply_layer;

/// What applying (or writing) a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLayer {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Size in bytes of the uncompressed tar stream.
    pub size: u64,
}

/// Errors from applying or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or decompressing the layer stream failed.
    #[error("read layer stream: {0}")]
    Read(#[source] io::Error),
    /// An entry would write outside the destination or is otherwise hostile.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's path as found in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A filesystem operation for one entry failed.
    #[error("layer entry {entry:?}: {op}: {source}")]
    Entry {
        /// The entry's path as found in the tar.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The destination (or source) directory could not be used.
    #[error("{op} {path}: {source}")]
    Dir {
        /// What was being done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The compression of a layer stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed tar.
    None,
    /// gzip (1f 8b).
    Gzip,
    /// zstd (28 b5 2f fd).
    Zstd,
}

impl Compression {
    /// Detects compression from the stream's first bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Returns a reader of the uncompressed stream of `reader`, whatever its
/// compression.
pub fn decompress<'a>(mut reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, LayerError> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Read(e)),
        }
    }
    let head = head[..n].to_vec();
    let compression = Compression::detect(&head);
    let joined = io::Cursor::new(head).chain(reader);
    Ok(match compression {
        Compression::None => Box::new(joined),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(joined).map_err(LayerError::Read)?)
        }
    })
}

/// A reader (or writer) that hashes and counts what passes through it.
pub(crate) struct Hashing<T> {
    pub inner: T,
    hasher: Sha256,
    count: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> AppliedLayer {
        AppliedLayer {
            diff_id: Digest::from_sha256_bytes(&self.hasher.finalize()),
            size: self.count,
        }
    }
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<T: io::Write> io::Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The OCI ChainID of a stack of layers given by their diff_ids, base first:
/// `chain(L0) = diff(L0)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
/// Returns `None` for an empty stack.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.clone();
    for d in iter {
        chain = Digest::sha256_of(format!("{chain} {d}").as_bytes());
    }
    Some(chain)
}

/// All ChainIDs of a stack: element `i` is the ChainID of layers `0..=i`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}
