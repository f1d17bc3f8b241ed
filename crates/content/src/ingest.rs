//! Resumable, verified writes of one blob.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::store::{io_err, ContentError, ContentStore};

/// An in-progress write of one blob, holding its exclusive writer lock.
///
/// Data goes to `ingest/<hex>`; [`Ingest::commit`] verifies size and digest
/// and only then moves it into `blobs/`. Dropping an `Ingest` without
/// committing keeps the partial data for a later resume.
#[derive(Debug)]
pub struct Ingest {
    expected: Digest,
    data_path: PathBuf,
    lock_path: PathBuf,
    blob_path: PathBuf,
    blob_dir: PathBuf,
    file: File,
    hasher: Sha256,
    offset: u64,
    _lock: File,
}

impl Ingest {
    pub(crate) fn open(
        store: &ContentStore,
        digest: &Digest,
        wait: bool,
    ) -> Result<Ingest, ContentError> {
        let dir = store.ingest_dir();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let lock_path = dir.join(format!("{}.lock", digest.hex()));
        let lock = acquire_lock(&lock_path, digest, wait)?;
        let data_path = dir.join(digest.hex());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(io_err("open", &data_path))?;
        // Rebuild the hasher from what is already on disk.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut offset = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &data_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        file.seek(SeekFrom::End(0))
            .map_err(io_err("seek", &data_path))?;
        Ok(Ingest {
            expected: digest.clone(),
            data_path,
            lock_path,
            blob_path: store.path(digest),
            blob_dir: store.blob_dir(),
            file,
            hasher,
            offset,
            _lock: lock,
        })
    }

    /// The digest this ingest must produce.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Bytes already received (resume from here, e.g. with an HTTP Range).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads partial data already received, from `offset` (below
    /// [`Ingest::offset`]) into `buf`; returns how many bytes were read (0 at
    /// the end of what is there). Lets a resumed download replay the bytes it
    /// already has to a second consumer before the network continues.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, ContentError> {
        let want = usize::try_from(self.offset.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        std::os::unix::fs::FileExt::read_at(&self.file, &mut buf[..want], offset)
            .map_err(io_err("read", &self.data_path))
    }

    /// Whether the data received so far hashes to the expected digest (what
    /// [`Ingest::commit`] will check), without committing.
    pub fn digest_matches(&self) -> bool {
        Digest::from_sha256_bytes(&self.hasher.clone().finalize()) == self.expected
    }

    /// Appends `data` to the partial blob.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ContentError> {
        self.file
            .write_all(data)
            .map_err(io_err("write", &self.data_path))?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Discards the partial data and starts over from offset 0.
    pub fn reset(&mut self) -> Result<(), ContentError> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate", &self.data_path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.data_path))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Discards the partial data and releases the lock.
    pub fn abort(self) -> Result<(), ContentError> {
        remove_if_exists(&self.data_path)
    }

    /// Verifies the data (size if `expected_size` is given, then digest) and
    /// atomically moves it into the store, durably. A short write keeps the
    /// partial data for resuming; an oversized or wrongly hashed one deletes it.
    pub fn commit(self, expected_size: Option<u64>) -> Result<Digest, ContentError> {
        if let Some(size) = expected_size {
            if self.offset != size {
                if self.offset > size {
                    remove_if_exists(&self.data_path)?;
                }
                return Err(ContentError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: self.offset,
                });
            }
        }
        let actual = Digest::from_sha256_bytes(&self.hasher.clone().finalize());
        if actual != self.expected {
            remove_if_exists(&self.data_path)?;
            return Err(ContentError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(io_err("fsync", &self.data_path))?;
        fs::rename(&self.data_path, &self.blob_path).map_err(io_err("rename", &self.blob_path))?;
        let dir = File::open(&self.blob_dir).map_err(io_err("open", &self.blob_dir))?;
        dir.sync_all().map_err(io_err("fsync", &self.blob_dir))?;
        Ok(actual)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Unlink while still holding the lock; waiters re-check the inode.
        let _ = fs::remove_file(&self.lock_path);
    }
}

fn remove_if_exists(path: &PathBuf) -> Result<(), ContentError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Takes the exclusive lock at `path`, making sure the locked file is still
/// the one linked at `path` (a holder unlinks it when done).
fn acquire_lock(path: &PathBuf, digest: &Digest, wait: bool) -> Result<File, ContentError> {
    loop {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open lock", path))?;
        if wait {
            file.lock().map_err(io_err("lock", path))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(ContentError::Locked(digest.clone())),
                Err(TryLockError::Error(e)) => return Err(io_err("lock", path)(e)),
            }
        }
        let held = file.metadata().map_err(io_err("stat", path))?;
        match fs::metadata(path) {
            Ok(linked) if linked.ino() == held.ino() && linked.dev() == held.dev() => {
                return Ok(file)
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", path)(e)),
        }
    }
}
