//! Resumable, verified blob downloads into the content store.

use std::io::{self, Read};
use std::time::Duration;

use berth_content::{ContentError, ContentStore, Digest, Ingest};
use berth_image::Reference;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::RANGE;
use reqwest::StatusCode;
use tokio::sync::mpsc;

use crate::auth::Credentials;
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// Progress callback: bytes done so far and the total if known.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Send + Sync);

const TRIES: u32 = 3;

/// Chunks a tee may hold before the download waits for its reader. Network
/// chunks are tens of KiB at most, so a slow reader holds the download back
/// instead of making memory grow.
const TEE_CHUNKS: usize = 64;

/// Size of the reads that replay partial data already on disk to a tee.
const REPLAY_CHUNK: usize = 256 * 1024;

enum TeeMsg {
    Data(Bytes),
    End,
}

/// The download's end of a tee made by [`blob_tee`]: every byte of the blob,
/// in order from offset 0, goes to the content store and to the tee's
/// [`TeeReader`]. A download that resumes from partial data on disk replays
/// that data to the tee first, then continues from the network. If the
/// bytes the reader has seen can no longer continue the blob (the partial
/// data was discarded and the download restarted from zero), the tee is
/// abandoned: the reader gets an error and the download carries on alone.
#[derive(Debug)]
pub struct BlobTee {
    tx: Option<mpsc::Sender<TeeMsg>>,
    fed: u64,
}

impl std::fmt::Debug for TeeMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TeeMsg::Data(b) => write!(f, "Data({} bytes)", b.len()),
            TeeMsg::End => write!(f, "End"),
        }
    }
}

/// The reading end of a tee: a blocking [`Read`] of the blob's bytes as
/// they arrive, for a consumer on a blocking thread (never read it on an
/// async worker). It ends (`Ok(0)`) once the whole blob has been received;
/// if the download stops before that or abandons the tee, reading fails
/// with [`io::ErrorKind::UnexpectedEof`]. Dropping it early is fine: the
/// download goes on without it.
#[derive(Debug)]
pub struct TeeReader {
    rx: mpsc::Receiver<TeeMsg>,
    cur: Bytes,
    ended: bool,
}

/// Makes a tee for one blob download ([`RegistryClient::fetch_blob_tee`]):
/// the download writes into the [`BlobTee`], a consumer reads the
/// [`TeeReader`]. At most a bounded number of chunks is buffered between
/// them.
pub fn blob_tee() -> (BlobTee, TeeReader) {
    let (tx, rx) = mpsc::channel(TEE_CHUNKS);
    (
        BlobTee {
            tx: Some(tx),
            fed: 0,
        },
        TeeReader {
            rx,
            cur: Bytes::new(),
            ended: false,
        },
    )
}

impl BlobTee {
    /// A tee with no reader: the download goes to the store only.
    pub fn disabled() -> BlobTee {
        BlobTee { tx: None, fed: 0 }
    }

    /// Whether the reader still gets the blob's bytes.
    pub fn is_live(&self) -> bool {
        self.tx.is_some()
    }

    async fn send(&mut self, msg: TeeMsg) {
        if let Some(tx) = &self.tx {
            if tx.send(msg).await.is_err() {
                // The reader went away (its consumer failed): carry on alone.
                self.tx = None;
            }
        }
    }

    async fn feed(&mut self, chunk: Bytes) {
        self.fed += chunk.len() as u64;
        self.send(TeeMsg::Data(chunk)).await;
    }

    fn abandon(&mut self) {
        self.tx = None;
    }

    /// Brings the reader up to the ingest's offset by replaying partial data
    /// from disk, or abandons it if it has seen more than the ingest holds.
    async fn catch_up(&mut self, ingest: &Ingest) -> Result<(), ContentError> {
        if self.fed > ingest.offset() {
            self.abandon();
        }
        while self.is_live() && self.fed < ingest.offset() {
            let mut buf = vec![0u8; REPLAY_CHUNK];
            let n = ingest.read_at(self.fed, &mut buf)?;
            if n == 0 {
                self.abandon();
                break;
            }
            buf.truncate(n);
            self.feed(Bytes::from(buf)).await;
        }
        Ok(())
    }

    /// Ends the reader's stream if the whole blob is there and hashes to its
    /// digest; otherwise abandons the reader (the download will restart).
    async fn finish_if_verified(&mut self, ingest: &Ingest) {
        if self.fed == ingest.offset() && ingest.digest_matches() {
            self.send(TeeMsg::End).await;
        }
        self.tx = None;
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.cur.is_empty() {
                let n = buf.len().min(self.cur.len());
                buf[..n].copy_from_slice(&self.cur.split_to(n));
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(TeeMsg::Data(b)) => self.cur = b,
                Some(TeeMsg::End) => self.ended = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob download stopped before the end of the blob",
                    ))
                }
            }
        }
    }
}

impl RegistryClient {
    /// Downloads blob `digest` of `r`'s repository into `store` unless it is
    /// there already. Resumes a partial download with an HTTP Range request
    /// from [`Ingest::offset`], retries 5xx answers and broken connections
    /// (3 tries, with backoff), verifies size and digest and commits.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        store: &ContentStore,
        creds: Option<&Credentials>,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let mut no_tee = BlobTee::disabled();
        self.fetch_blob_tee(r, digest, size, store, creds, progress, &mut no_tee)
            .await
    }

    /// [`RegistryClient::fetch_blob`] that also streams the blob's bytes, as
    /// they arrive, into `tee` (see [`blob_tee`]), across retries and range
    /// resumes. The tee's reader sees the end of its stream only once all
    /// bytes arrived and hash to `digest` (the store commit, with its fsync,
    /// may still be running: wait for this call's result before relying on
    /// the stored blob). If the blob is already in the store, or the download
    /// had to restart from zero, the reader gets an error instead: read the
    /// stored blob then.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_blob_tee(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        store: &ContentStore,
        creds: Option<&Credentials>,
        progress: Progress<'_>,
        tee: &mut BlobTee,
    ) -> Result<(), RegistryError> {
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self
                .fetch_blob_once(r, digest, size, store, creds, progress, tee)
                .await
            {
                Ok(()) => break Ok(()),
                Err(e) if e.is_transient() && attempt < TRIES => {
                    tracing::warn!(image = %r.familiar(), %digest, attempt, error = %e, "blob download failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                Err(e) => break Err(e),
            }
        };
        // Whatever happened, the reader must not wait for more.
        tee.abandon();
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob_once(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        store: &ContentStore,
        creds: Option<&Credentials>,
        progress: Progress<'_>,
        tee: &mut BlobTee,
    ) -> Result<(), RegistryError> {
        let image = r.familiar();
        let content_err = |source| RegistryError::Content {
            image: image.clone(),
            digest: digest.clone(),
            source,
        };
        if store.has(digest) {
            return Ok(());
        }
        // Taking the ingest lock may wait for another pull of the same blob.
        let (s, d) = (store.clone(), digest.clone());
        let mut ingest: Ingest = tokio::task::spawn_blocking(move || s.ingest(&d))
            .await
            .map_err(|e| RegistryError::Io {
                op: "wait for ingest",
                image: image.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(content_err)?;
        if store.has(digest) {
            return Ok(());
        }
        if size.is_some_and(|s| ingest.offset() > s) {
            ingest.reset().map_err(content_err)?;
        }
        if size.is_some_and(|s| s > 0 && ingest.offset() == s) {
            tee.catch_up(&ingest).await.map_err(content_err)?;
            tee.finish_if_verified(&ingest).await;
            return self.commit(ingest, digest, size, &image).await;
        }
        let resumed_from = ingest.offset();
        let url = self.repo_url(r, &format!("blobs/{digest}"));
        let resp = self
            .send(r, &Self::pull_scope(r), creds, |c| {
                let req = c.get(&url);
                if resumed_from > 0 {
                    req.header(RANGE, format!("bytes={resumed_from}-"))
                } else {
                    req
                }
            })
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                if ingest.offset() > 0 {
                    ingest.reset().map_err(content_err)?;
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                ingest.reset().map_err(content_err)?;
                return Err(RegistryError::Status {
                    image,
                    status: 416,
                    message: "range not satisfiable, restarting".into(),
                });
            }
            _ => return Err(self.error_from(r, resp, Some(digest)).await),
        }
        tee.catch_up(&ingest).await.map_err(content_err)?;
        progress(ingest.offset(), size);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            // A broken stream keeps what was written for the next try.
            let chunk = chunk.map_err(|e| RegistryError::Http {
                image: image.clone(),
                source: e,
            })?;
            ingest.write_all(&chunk).map_err(content_err)?;
            if size.is_some_and(|s| ingest.offset() > s) {
                tee.abandon();
                break;
            }
            tee.feed(chunk).await;
            progress(ingest.offset(), size);
        }
        if size.is_none_or(|s| ingest.offset() == s) {
            tee.finish_if_verified(&ingest).await;
        }
        match self.commit(ingest, digest, size, &image).await {
            // A resumed download that does not verify is retried from zero
            // (the commit deleted the partial).
            Err(RegistryError::DigestMismatch { .. }) if resumed_from > 0 => {
                Err(RegistryError::Status {
                    image,
                    status: 500,
                    message: "resumed download did not verify, restarting".into(),
                })
            }
            other => other,
        }
    }

    async fn commit(
        &self,
        ingest: Ingest,
        digest: &Digest,
        size: Option<u64>,
        image: &str,
    ) -> Result<(), RegistryError> {
        let result = tokio::task::spawn_blocking(move || ingest.commit(size))
            .await
            .map_err(|e| RegistryError::Io {
                op: "commit blob",
                image: image.to_string(),
                source: std::io::Error::other(e),
            })?;
        match result {
            Ok(_) => Ok(()),
            Err(ContentError::DigestMismatch { expected, actual }) => {
                Err(RegistryError::DigestMismatch {
                    image: image.to_string(),
                    expected,
                    actual,
                })
            }
            Err(ContentError::SizeMismatch { actual, .. }) if size.is_some_and(|s| actual < s) => {
                Err(RegistryError::Status {
                    image: image.to_string(),
                    status: 500,
                    message: format!("download of {digest} ended early at {actual} bytes"),
                })
            }
            Err(source) => Err(RegistryError::Content {
                image: image.to_string(),
                digest: digest.clone(),
                source,
            }),
        }
    }
}
