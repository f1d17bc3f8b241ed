//! Pushing blobs and manifests.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_content::Digest;
use berth_image::Reference;
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};

use crate::auth::Credentials;
use crate::blob::Progress;
use crate::client::RegistryClient;
use crate::error::RegistryError;

impl RegistryClient {
    fn push_scope(r: &Reference) -> Vec<String> {
        vec![format!("repository:{}:pull,push", r.repository)]
    }

    /// Whether the repository of `r` already has blob `digest` (HEAD).
    pub async fn blob_exists(
        &self,
        r: &Reference,
        digest: &Digest,
        creds: Option<&Credentials>,
    ) -> Result<bool, RegistryError> {
        let url = self.repo_url(r, &format!("blobs/{digest}"));
        let resp = self
            .send(r, &Self::push_scope(r), creds, |c| c.head(&url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error_from(r, resp, Some(digest)).await),
        }
    }

    /// Asks the registry to mount `digest` from `from_repo` (same registry)
    /// into `to`'s repository. Returns false when it could not (the caller
    /// then uploads).
    pub async fn mount_blob(
        &self,
        from_repo: &str,
        to: &Reference,
        digest: &Digest,
        creds: Option<&Credentials>,
    ) -> Result<bool, RegistryError> {
        let url = self.repo_url(to, "blobs/uploads/");
        let scopes = vec![
            format!("repository:{}:pull,push", to.repository),
            format!("repository:{from_repo}:pull"),
        ];
        let q = [
            ("mount", digest.to_string()),
            ("from", from_repo.to_string()),
        ];
        let resp = self
            .send(to, &scopes, creds, |c| {
                c.post(&url).query(&q).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // An upload session was opened instead; close it.
                if let Ok(loc) = self.location(to, &resp) {
                    let _ = self
                        .send(to, &Self::push_scope(to), creds, |c| c.delete(&loc))
                        .await;
                }
                Ok(false)
            }
            _ => Err(self.error_from(to, resp, Some(digest)).await),
        }
    }

    fn location(&self, r: &Reference, resp: &Response) -> Result<String, RegistryError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::BadResponse {
                image: r.familiar(),
                detail: "upload started without a Location header".into(),
            })?;
        let base = url::Url::parse(&format!("{}/", self.base_url(r)))
            .and_then(|b| b.join(loc))
            .map_err(|e| RegistryError::BadResponse {
                image: r.familiar(),
                detail: format!("bad upload location {loc:?}: {e}"),
            })?;
        Ok(base.to_string())
    }

    /// Uploads the file at `path` (of `size` bytes) as blob `digest` into
    /// `r`'s repository, monolithically (POST, then one streaming PUT).
    /// Skips the upload if the blob is already there.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        path: &Path,
        size: u64,
        creds: Option<&Credentials>,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        if self.blob_exists(r, digest, creds).await? {
            progress(size, Some(size));
            return Ok(());
        }
        let start = self.repo_url(r, "blobs/uploads/");
        let resp = self
            .send(r, &Self::push_scope(r), creds, |c| {
                c.post(&start).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.error_from(r, resp, Some(digest)).await);
        }
        let mut put =
            url::Url::parse(&self.location(r, &resp)?).map_err(|e| RegistryError::BadResponse {
                image: r.familiar(),
                detail: e.to_string(),
            })?;
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| RegistryError::Io {
                op: "open blob for upload",
                image: r.familiar(),
                source,
            })?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let stream = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
            if let Ok(c) = chunk {
                counter.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        });
        // The POST above already answered any auth challenge, so the one-shot
        // body goes out on the first attempt.
        let mut body = Some(reqwest::Body::wrap_stream(stream));
        let resp = self
            .send(r, &Self::push_scope(r), creds, |c| {
                let req = c
                    .put(put.as_str())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size);
                match body.take() {
                    Some(b) => req.body(b),
                    None => req,
                }
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.error_from(r, resp, Some(digest)).await);
        }
        progress(sent.load(Ordering::Relaxed), Some(size));
        Ok(())
    }

    /// Uploads a manifest under `r`'s tag (or digest) and returns its digest
    /// (verified against what the registry reports, if it does).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
        creds: Option<&Credentials>,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(bytes);
        let target = match (&r.tag, &r.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        let url = self.repo_url(r, &format!("manifests/{target}"));
        let body = bytes.to_vec();
        let resp = self
            .send(r, &Self::push_scope(r), creds, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_from(r, resp, None).await);
        }
        if let Some(reported) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if let Ok(reported) = reported.parse::<Digest>() {
                if reported != digest {
                    return Err(RegistryError::DigestMismatch {
                        image: r.familiar(),
                        expected: digest,
                        actual: reported,
                    });
                }
            }
        }
        Ok(digest)
    }
}
