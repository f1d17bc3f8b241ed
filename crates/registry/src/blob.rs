//! Resumable, verified blob downloads into the content store.

use std::time::Duration;

use berth_content::{ContentError, ContentStore, Digest, Ingest};
use berth_image::Reference;
use futures::StreamExt;
use reqwest::header::RANGE;
use reqwest::StatusCode;

use crate::auth::Credentials;
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// Progress callback: bytes done so far and the total if known.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Send + Sync);

const TRIES: u32 = 3;

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
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .fetch_blob_once(r, digest, size, store, creds, progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < TRIES => {
                    tracing::warn!(image = %r.familiar(), %digest, attempt, error = %e, "blob download failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_blob_once(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        store: &ContentStore,
        creds: Option<&Credentials>,
        progress: Progress<'_>,
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
                break;
            }
            progress(ingest.offset(), size);
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
