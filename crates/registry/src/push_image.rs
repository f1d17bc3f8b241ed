//! Pushing a whole image from the content store.

use berth_content::{ContentStore, Digest};
use berth_image::manifest::{parse_manifest, Descriptor, Manifest};
use berth_image::Reference;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc::UnboundedSender;

use crate::auth::Credentials;
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// Per-layer progress of a push, shaped after Docker's messages. Ids are
/// the 12-character short blob digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A layer is about to be considered ("Preparing").
    Preparing(String),
    /// Queued behind the concurrency limit ("Waiting").
    Waiting(String),
    /// The registry already has it ("Layer already exists").
    LayerAlreadyExists(String),
    /// Upload progress ("Pushing").
    Pushing {
        /// Short layer id.
        id: String,
        /// Bytes sent.
        current: u64,
        /// Total bytes.
        total: Option<u64>,
    },
    /// The layer is in the registry ("Pushed").
    Pushed(String),
    /// The manifest was stored under the tag: Docker's final
    /// "<tag>: digest: <digest> size: <n>" line.
    ManifestPushed {
        /// The tag (or digest) pushed.
        tag: String,
        /// The manifest digest.
        digest: Digest,
        /// The manifest size.
        size: u64,
    },
}

/// Pushes the image whose manifest `manifest_digest` (with its config and
/// layers) is in `store` to `r`: layers concurrently (at most
/// `max_concurrent_uploads`), skipping blobs the repository has, then the
/// config, then the manifest under `r`'s tag. Returns the manifest digest.
pub async fn push_from_store(
    client: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    manifest_digest: &Digest,
    creds: Option<&Credentials>,
    events: UnboundedSender<PushEvent>,
) -> Result<Digest, RegistryError> {
    let image = r.familiar();
    let store_err = |d: &Digest| {
        let (image, digest) = (image.clone(), d.clone());
        move |source| RegistryError::Content {
            image,
            digest,
            source,
        }
    };
    let bytes = store
        .read(manifest_digest)
        .map_err(store_err(manifest_digest))?;
    let (manifest, media_type) =
        parse_manifest(&bytes, None).map_err(|source| RegistryError::Manifest {
            image: image.clone(),
            source,
        })?;
    let Manifest::Image(m) = manifest else {
        return Err(RegistryError::BadResponse {
            image,
            detail: "pushing a multi-platform index is not supported".into(),
        });
    };
    for l in &m.layers {
        let _ = events.send(PushEvent::Preparing(l.digest.short().to_string()));
    }
    let limit = client.config().max_concurrent_uploads.max(1);
    for l in m.layers.iter().skip(limit) {
        let _ = events.send(PushEvent::Waiting(l.digest.short().to_string()));
    }
    futures::stream::iter(
        m.layers
            .iter()
            .map(|l| push_one(client, store, r, l, creds, &events, true)),
    )
    .buffer_unordered(limit)
    .try_collect::<Vec<()>>()
    .await?;
    push_one(client, store, r, &m.config, creds, &events, false).await?;
    let digest = client.put_manifest(r, &bytes, &media_type, creds).await?;
    let tag = r.tag.clone().unwrap_or_else(|| digest.to_string());
    let _ = events.send(PushEvent::ManifestPushed {
        tag,
        digest: digest.clone(),
        size: bytes.len() as u64,
    });
    Ok(digest)
}

async fn push_one(
    client: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    d: &Descriptor,
    creds: Option<&Credentials>,
    events: &UnboundedSender<PushEvent>,
    report: bool,
) -> Result<(), RegistryError> {
    let id = d.digest.short().to_string();
    if client.blob_exists(r, &d.digest, creds).await? {
        if report {
            let _ = events.send(PushEvent::LayerAlreadyExists(id));
        }
        return Ok(());
    }
    if !store.has(&d.digest) {
        return Err(RegistryError::Content {
            image: r.familiar(),
            digest: d.digest.clone(),
            source: berth_content::ContentError::NotFound(d.digest.clone()),
        });
    }
    let progress = |current, total| {
        if report {
            let _ = events.send(PushEvent::Pushing {
                id: id.clone(),
                current,
                total,
            });
        }
    };
    client
        .push_blob(
            r,
            &d.digest,
            &store.path(&d.digest),
            d.size,
            creds,
            &progress,
        )
        .await?;
    if report {
        let _ = events.send(PushEvent::Pushed(id));
    }
    Ok(())
}
