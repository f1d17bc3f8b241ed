//! `docker push` and `docker login`.

use std::sync::Arc;

use berth_content::Digest;
use berth_image::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use berth_registry::{Credentials, PushEvent, RegistryError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{parse_reference, ImageRecord, Progress};
use crate::error::{EngineError, ErrorKind, Result};
use crate::Engine;

impl Engine {
    /// Pushes the local image `reference` (a tag defaults to `latest`) to the registry its
    /// name designates. Layers the repository already has are not sent again. Progress goes
    /// out as Docker's JSON messages, ending with "TAG: digest: sha256:... size: N" and an
    /// `aux` message; returns the manifest digest.
    pub async fn push_image(
        self: &Arc<Self>,
        reference: &str,
        creds: Option<Credentials>,
        progress: Progress,
    ) -> Result<String> {
        let mut r = parse_reference(reference)?;
        if r.digest.is_some() {
            return Err(EngineError::invalid(format!(
                "cannot push a digest reference: {reference}"
            )));
        }
        if r.tag.is_none() {
            r.tag = Some("latest".to_string());
        }
        let img = self.find_image(&super::tag_key(&r))?;
        let manifest = self.ensure_manifest(&img)?;
        let _ = progress.send(json!({
            "status": format!("The push refers to repository [{}]", r.name())
        }));
        let (tx, mut rx) = mpsc::unbounded_channel::<PushEvent>();
        let fwd = progress.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                for v in push_event_json(&ev) {
                    let _ = fwd.send(v);
                }
            }
        });
        // push_from_store's future is not `Send` (closures borrowed across awaits), so it
        // runs on a blocking thread driven by the current runtime.
        let (this, target, handle) = (
            Arc::clone(self),
            r.clone(),
            tokio::runtime::Handle::current(),
        );
        let pushed = tokio::task::spawn_blocking(move || {
            handle.block_on(berth_registry::push_from_store(
                &this.registry,
                &this.content,
                &target,
                &manifest,
                creds.as_ref(),
                tx,
            ))
        })
        .await
        .map_err(|e| EngineError::internal(format!("push task: {e}")))?
        .map_err(|e| registry_error("push", &r.familiar(), e));
        let _ = forwarder.await;
        let digest = pushed?.to_string();
        self.db
            .set_ref("repo_digests", &super::digest_key(&r, &digest), &img.id)?;
        self.events.publish(
            "image",
            "push",
            &r.familiar(),
            std::collections::BTreeMap::from([("name".to_string(), r.familiar())]),
        );
        Ok(digest)
    }

    /// The local tags of repository `name` (which must carry no tag or digest), sorted; a
    /// not-found error when there is none.
    pub fn repository_tags(&self, name: &str) -> Result<Vec<String>> {
        // The parser fills in `latest`, so look at what was written.
        let tagged = name.contains('@') || name.rsplit('/').next().is_some_and(|l| l.contains(':'));
        if tagged {
            return Err(EngineError::invalid(format!(
                "tag can't be used with --all-tags/-a: {name}"
            )));
        }
        let r = parse_reference(name)?;
        let prefix = format!("{}:", r.name());
        let mut tags: Vec<String> = self
            .db
            .all_refs("tags")?
            .into_iter()
            .filter_map(|(key, _)| key.strip_prefix(&prefix).map(str::to_string))
            .filter(|t| !t.contains('/'))
            .collect();
        tags.sort();
        if tags.is_empty() {
            return Err(EngineError::new(
                ErrorKind::NotFound,
                format!("An image does not exist locally with the tag: {}", r.name()),
            ));
        }
        Ok(tags)
    }

    /// Pushes every local tag of repository `name` (`docker push --all-tags`, and the API's
    /// push without a tag), one after another in tag order, each with its own progress and
    /// closing digest line. A name with no local tag is a not-found error; the first failed
    /// push stops the rest. Returns the pushed `tag => digest` pairs.
    pub async fn push_all_tags(
        self: &Arc<Self>,
        name: &str,
        creds: Option<Credentials>,
        progress: Progress,
    ) -> Result<Vec<(String, String)>> {
        let tags = self.repository_tags(name)?;
        let mut pushed = Vec::new();
        for tag in tags {
            let digest = self
                .push_image(&format!("{name}:{tag}"), creds.clone(), progress.clone())
                .await?;
            pushed.push((tag, digest));
        }
        Ok(pushed)
    }

    /// The digest of a stored manifest for `img`: the pulled or loaded one, or (for built
    /// and imported images) an OCI manifest made from its config and layer blobs, stored
    /// and remembered on the record.
    pub(crate) fn ensure_manifest(&self, img: &ImageRecord) -> Result<Digest> {
        if let Some(d) = img
            .manifest_digest
            .as_deref()
            .and_then(|m| m.parse::<Digest>().ok())
        {
            if self.content.has(&d) {
                return Ok(d);
            }
        }
        let config_digest: Digest = img
            .id
            .parse()
            .map_err(|e| EngineError::internal(format!("image id {}: {e}", img.id)))?;
        let config_size = self.content.size(&config_digest).map_err(|e| {
            EngineError::new(
                ErrorKind::Internal,
                format!("config of image {} is not stored: {e}", img.id),
            )
        })?;
        let mut layers = Vec::new();
        for l in self.db.image_layers(&img.id)? {
            let blob = l
                .blob
                .as_deref()
                .and_then(|b| b.parse::<Digest>().ok())
                .filter(|b| self.content.has(b))
                .ok_or_else(|| {
                    EngineError::internal(format!(
                        "layer {} of image {} has no stored blob",
                        l.diff_id, img.id
                    ))
                })?;
            let size = match l.blob_size {
                Some(s) if s >= 0 => s as u64,
                _ => self
                    .content
                    .size(&blob)
                    .map_err(|e| EngineError::internal(format!("layer blob {blob}: {e}")))?,
            };
            layers.push(json!({
                "mediaType": l.media_type.clone().unwrap_or_else(|| OCI_LAYER_GZIP.to_string()),
                "digest": blob.to_string(),
                "size": size,
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": img.id, "size": config_size},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| EngineError::internal(format!("manifest of {}: {e}", img.id)))?;
        let digest = self
            .content
            .write_blob(&bytes)
            .map_err(|e| EngineError::internal(format!("storing manifest of {}: {e}", img.id)))?;
        let mut rec = img.clone();
        rec.manifest_digest = Some(digest.to_string());
        self.db
            .put_image(&img.id, &rec, &self.db.image_layers(&img.id)?)?;
        Ok(digest)
    }

    /// Checks credentials against a registry (`docker login`): an empty server means
    /// Docker Hub. Refused credentials are an `Unauthorized` error naming the server.
    pub async fn login(&self, server: &str, username: &str, password: &str) -> Result<()> {
        let host = login_host(server);
        // A repository in the user's own namespace: token servers grant push there, so a
        // HEAD on it answers 404 rather than 401 once the credentials are good.
        let ns: String = username
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let ns = if ns.is_empty() { "library".into() } else { ns };
        let probe = format!("{host}/{ns}/berth-login-probe:latest");
        let r = parse_reference(&probe)?;
        let creds = Credentials::new(username, password);
        let digest = Digest::sha256_of(b"");
        match self.registry.blob_exists(&r, &digest, Some(&creds)).await {
            Ok(_) => Ok(()),
            Err(RegistryError::Unauthorized { detail, .. }) => Err(EngineError::new(
                ErrorKind::Unauthorized,
                format!(
                    "login attempt to {host} failed for user {username:?}: unauthorized: {detail}"
                ),
            )),
            Err(e) => Err(EngineError::new(
                ErrorKind::Unavailable,
                format!("login attempt to {host} failed: {e}"),
            )),
        }
    }
}

/// The registry host of a `docker login` server address (`https://host/v1/` forms too).
fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    if host.is_empty() || host == "index.docker.io" || host == "registry-1.docker.io" {
        "docker.io".to_string()
    } else {
        host.to_string()
    }
}

/// Maps a registry error onto an engine error naming the operation and image.
pub(crate) fn registry_error(op: &str, image: &str, e: RegistryError) -> EngineError {
    let kind = match &e {
        RegistryError::Unauthorized { .. } => ErrorKind::Unauthorized,
        RegistryError::NameUnknown { .. }
        | RegistryError::ManifestUnknown { .. }
        | RegistryError::BlobUnknown { .. } => ErrorKind::NotFound,
        _ => ErrorKind::Unavailable,
    };
    EngineError::new(kind, format!("{op} {image}: {e}"))
}

/// One push event as Docker's JSON progress messages.
fn push_event_json(ev: &PushEvent) -> Vec<Value> {
    let simple = |status: &str, id: &str| json!({"status": status, "progressDetail": {}, "id": id});
    match ev {
        PushEvent::Preparing(id) => vec![simple("Preparing", id)],
        PushEvent::Waiting(id) => vec![simple("Waiting", id)],
        PushEvent::LayerAlreadyExists(id) => vec![simple("Layer already exists", id)],
        PushEvent::Pushed(id) => vec![simple("Pushed", id)],
        PushEvent::Pushing { id, current, total } => vec![json!({
            "status": "Pushing",
            "progressDetail": {"current": current, "total": total},
            "id": id,
        })],
        PushEvent::ManifestPushed { tag, digest, size } => vec![
            json!({"status": format!("{tag}: digest: {digest} size: {size}"), "progressDetail": {}}),
            json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}),
        ],
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn login_hosts() {
        assert_eq!(super::login_host(""), "docker.io");
        assert_eq!(
            super::login_host("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(super::login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            super::login_host("http://localhost:5000/"),
            "localhost:5000"
        );
    }
}
