//! Pulling an image's manifest, config and layers into the content store.

use berth_content::{ContentStore, Digest};
use berth_image::manifest::{choose_platform, host_platform, Manifest};
use berth_image::{ImageConfig, Reference};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::auth::Credentials;
use crate::blob::BlobTee;
use crate::client::{FetchedManifest, RegistryClient};
use crate::error::RegistryError;

/// Per-layer progress of a pull, shaped after Docker's progress messages.
/// Layer ids are the 12-character short form of the blob digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The tag resolved to this manifest (or index) digest.
    Resolved {
        /// The reference as the user wrote it, familiar form.
        reference: String,
        /// The digest the tag points to.
        digest: Digest,
    },
    /// A layer that will be downloaded ("Pulling fs layer").
    PullingFsLayer(String),
    /// The layer blob is already in the store ("Already exists").
    AlreadyExists(String),
    /// Queued behind the concurrency limit ("Waiting").
    Waiting(String),
    /// Bytes received so far ("Downloading").
    Downloading {
        /// Short layer id.
        id: String,
        /// Bytes done.
        current: u64,
        /// Total bytes, if known.
        total: Option<u64>,
    },
    /// The download is being verified ("Verifying Checksum").
    Verifying(String),
    /// The layer is in the store ("Download complete").
    DownloadComplete(String),
}

/// One layer of a pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDesc {
    /// Blob digest (compressed).
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type.
    pub media_type: String,
    /// Uncompressed digest, from the config.
    pub diff_id: Digest,
}

/// What a pull stored: everything the engine needs to record the image.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// Digest the reference resolved to (an index's for multi-platform
    /// images): Docker's "repo digest".
    pub repo_digest: Digest,
    /// Digest of the platform-specific image manifest.
    pub manifest_digest: Digest,
    /// Its bytes.
    pub manifest_bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// The config blob digest (the image id).
    pub config_digest: Digest,
    /// The config bytes.
    pub config_bytes: Vec<u8>,
    /// Layers, base first.
    pub layers: Vec<LayerDesc>,
}

fn parse(r: &Reference, m: &FetchedManifest) -> Result<Manifest, RegistryError> {
    berth_image::parse_manifest(&m.bytes, Some(&m.media_type))
        .map(|(m, _)| m)
        .map_err(|source| RegistryError::Manifest {
            image: r.familiar(),
            source,
        })
}

fn store_err(
    r: &Reference,
    digest: &Digest,
) -> impl FnOnce(berth_content::ContentError) -> RegistryError {
    let image = r.familiar();
    let digest = digest.clone();
    move |source| RegistryError::Content {
        image,
        digest,
        source,
    }
}

/// Pulls `r` into `store`: [`resolve_image`], then [`fetch_layers`] without
/// tees. Progress goes to `events` (send errors are ignored).
pub async fn pull_to_store(
    client: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    creds: Option<&Credentials>,
    events: UnboundedSender<PullEvent>,
) -> Result<PulledManifest, RegistryError> {
    let pulled = resolve_image(client, store, r, creds, &events).await?;
    fetch_layers(client, store, r, creds, &pulled, &events, &|_| None).await?;
    Ok(pulled)
}

/// Resolves `r`'s manifest (an index resolves to this machine's platform),
/// stores manifest(s) and config in `store`, checks that the config lists
/// one diff_id per layer and describes the layers. No layer is downloaded.
pub async fn resolve_image(
    client: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    creds: Option<&Credentials>,
    events: &UnboundedSender<PullEvent>,
) -> Result<PulledManifest, RegistryError> {
    let top = client.get_manifest(r, creds).await?;
    let _ = events.send(PullEvent::Resolved {
        reference: r.familiar(),
        digest: top.digest.clone(),
    });
    store
        .write_blob(&top.bytes)
        .map_err(store_err(r, &top.digest))?;
    let (fetched, manifest) = match parse(r, &top)? {
        Manifest::Image(m) => (top.clone(), m),
        Manifest::Index(idx) => {
            let p = host_platform();
            let desc = choose_platform(&idx, &p.os, &p.architecture, p.variant.as_deref())
                .ok_or_else(|| {
                    let mut platform = format!("{}/{}", p.os, p.architecture);
                    if let Some(v) = &p.variant {
                        platform = format!("{platform}/{v}");
                    }
                    RegistryError::NoMatchingPlatform {
                        image: r.familiar(),
                        platform,
                    }
                })?;
            let child = client
                .get_manifest(&r.with_digest(desc.digest.clone()), creds)
                .await?;
            store
                .write_blob(&child.bytes)
                .map_err(store_err(r, &child.digest))?;
            match parse(r, &child)? {
                Manifest::Image(m) => (child, m),
                Manifest::Index(_) => {
                    return Err(RegistryError::BadResponse {
                        image: r.familiar(),
                        detail: "index points to another index for this platform".into(),
                    })
                }
            }
        }
    };
    let config_digest = manifest.config.digest.clone();
    client
        .fetch_blob(
            r,
            &config_digest,
            Some(manifest.config.size),
            store,
            creds,
            &|_, _| {},
        )
        .await?;
    let config_bytes = store
        .read(&config_digest)
        .map_err(store_err(r, &config_digest))?;
    let config = ImageConfig::from_slice(&config_bytes).map_err(|e| RegistryError::Config {
        image: r.familiar(),
        detail: e.to_string(),
    })?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Config {
            image: r.familiar(),
            detail: format!(
                "config lists {} diff_ids but the manifest has {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let layers: Vec<LayerDesc> = manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| LayerDesc {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            diff_id: d.clone(),
        })
        .collect();

    Ok(PulledManifest {
        repo_digest: top.digest,
        manifest_digest: fetched.digest,
        manifest_bytes: fetched.bytes,
        media_type: fetched.media_type,
        config_digest,
        config_bytes,
        layers,
    })
}

/// Downloads the layers of `pulled` into `store` concurrently (at most
/// `max_concurrent_downloads` at once), skipping blobs already present and
/// fetching a blob listed twice once. When a layer download starts,
/// `tee_for` may hand it a [`BlobTee`] to stream that blob's bytes into as
/// they arrive (see [`RegistryClient::fetch_blob_tee`]). Progress goes to
/// `events`; the first failure ends the pull with its error.
pub async fn fetch_layers(
    client: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    creds: Option<&Credentials>,
    pulled: &PulledManifest,
    events: &UnboundedSender<PullEvent>,
    tee_for: &(dyn Fn(&LayerDesc) -> Option<BlobTee> + Sync),
) -> Result<(), RegistryError> {
    let mut todo: Vec<LayerDesc> = Vec::new();
    for l in &pulled.layers {
        let id = l.digest.short().to_string();
        if store.has(&l.digest) {
            let _ = events.send(PullEvent::AlreadyExists(id));
        } else if !todo.iter().any(|t| t.digest == l.digest) {
            let _ = events.send(PullEvent::PullingFsLayer(id));
            todo.push(l.clone());
        }
    }
    let limit = client.config().max_concurrent_downloads.max(1);
    for l in todo.iter().skip(limit) {
        let _ = events.send(PullEvent::Waiting(l.digest.short().to_string()));
    }
    futures::stream::iter(todo.into_iter().map(|l| {
        let events = events.clone();
        async move {
            let id = l.digest.short().to_string();
            let progress = {
                let events = events.clone();
                let id = id.clone();
                move |current, total| {
                    let _ = events.send(PullEvent::Downloading {
                        id: id.clone(),
                        current,
                        total,
                    });
                }
            };
            let mut tee = tee_for(&l).unwrap_or_else(BlobTee::disabled);
            client
                .fetch_blob_tee(
                    r,
                    &l.digest,
                    Some(l.size),
                    store,
                    creds,
                    &progress,
                    &mut tee,
                )
                .await?;
            let _ = events.send(PullEvent::Verifying(id.clone()));
            let _ = events.send(PullEvent::DownloadComplete(id));
            Ok::<(), RegistryError>(())
        }
    }))
    .buffer_unordered(limit)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}
