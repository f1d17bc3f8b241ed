//! The blob store itself: layout, reads, writes and deletion.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::ingest::Ingest;

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "rename", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found in content store")]
    NotFound(Digest),
    /// The data committed does not hash to the expected digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The digest of the data actually received.
        actual: Digest,
    },
    /// The data committed does not have the expected size.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob being committed.
        digest: Digest,
        /// The size the caller announced.
        expected: u64,
        /// The bytes actually received.
        actual: u64,
    },
    /// Another writer holds the ingest lock for this blob (from `try_ingest`).
    #[error("blob {0} is being written by another ingest")]
    Locked(Digest),
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ContentError + 'a {
    move |source| ContentError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed store rooted at a directory.
///
/// Layout: `blobs/sha256/<hex>` for verified blobs, `ingest/<hex>` for
/// partial data and `ingest/<hex>.lock` for the writer lock.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<ContentStore, ContentError> {
        let root = root.as_ref().to_path_buf();
        let store = ContentStore { root };
        for dir in [store.blob_dir(), store.ingest_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    /// Whether the verified blob `digest` is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size in bytes of the blob `digest`.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    /// Reads the whole blob `digest` into memory.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        match fs::read(&path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Opens the blob `digest` for streaming reads.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let path = self.path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    /// Stores `data` and returns its digest. Writing a blob already present
    /// is a no-op.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest, ContentError> {
        let digest = Digest::sha256_of(data);
        if self.has(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest(&digest)?;
        if self.has(&digest) {
            return Ok(digest);
        }
        ingest.reset()?;
        ingest.write_all(data)?;
        ingest.commit(Some(data.len() as u64))
    }

    /// Stores everything `reader` yields under the digest it hashes to
    /// (for content whose digest is not known in advance, e.g. archive
    /// entries). Data goes to a private temporary file under `ingest/` and is
    /// renamed into place, durably, only when complete.
    pub fn write_stream(
        &self,
        mut reader: impl std::io::Read,
    ) -> Result<(Digest, u64), ContentError> {
        use sha2::Digest as _;
        use std::io::Write;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .ingest_dir()
            .join(format!("tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
            let mut hasher = sha2::Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let k = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("read input", &tmp)(e)),
                };
                hasher.update(&buf[..k]);
                file.write_all(&buf[..k]).map_err(io_err("write", &tmp))?;
                size += k as u64;
            }
            let digest = Digest::from_sha256_bytes(&hasher.finalize());
            if !self.has(&digest) {
                file.sync_all().map_err(io_err("fsync", &tmp))?;
                let dest = self.path(&digest);
                fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))?;
                let dir = self.blob_dir();
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("fsync", &dir))?;
            }
            Ok((digest, size))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Deletes the blob `digest`; errors with `NotFound` if it is absent.
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Lists every verified blob, sorted. Stray files with invalid names are
    /// ignored.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.blob_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(d) = Digest::from_hex(name) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Partial downloads present under `ingest/`: digest and bytes so far.
    pub fn list_ingests(&self) -> Result<Vec<(Digest, u64)>, ContentError> {
        let dir = self.ingest_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(io_err("stat", &entry.path()))?
                .len();
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }

    /// Discards the partial download of `digest`, waiting for a writer that
    /// holds it. Absent partials are fine.
    pub fn abort_ingest(&self, digest: &Digest) -> Result<(), ContentError> {
        self.ingest(digest)?.abort()
    }

    /// Starts or resumes writing the blob `digest`, waiting while another
    /// writer holds it. Data already received is kept: see [`Ingest::offset`].
    pub fn ingest(&self, digest: &Digest) -> Result<Ingest, ContentError> {
        Ingest::open(self, digest, true)
    }

    /// Like [`ContentStore::ingest`] but errors with `Locked` instead of
    /// waiting when another writer holds the blob.
    pub fn try_ingest(&self, digest: &Digest) -> Result<Ingest, ContentError> {
        Ingest::open(self, digest, false)
    }
}
