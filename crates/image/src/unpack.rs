//! Unpacking an image's layers from the content store into snapshots.

use berth_content::{ContentError, ContentStore, Digest};
use berth_snapshot::{SnapshotError, Snapshotter};
use rand::Rng;

use crate::layer::{apply_layer, chain_ids, LayerError};

/// Errors from unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A layer blob could not be read from the store.
    #[error("layer {blob}: {source}")]
    Content {
        /// The layer blob.
        blob: Digest,
        /// The store error.
        #[source]
        source: ContentError,
    },
    /// A snapshot operation failed.
    #[error("layer {blob}: snapshot: {source}")]
    Snapshot {
        /// The layer blob.
        blob: Digest,
        /// The snapshotter error.
        #[source]
        source: SnapshotError,
    },
    /// Applying the layer failed.
    #[error("layer {blob}: {source}")]
    Apply {
        /// The layer blob.
        blob: Digest,
        /// The apply error.
        #[source]
        source: LayerError,
    },
    /// The unpacked content does not match the config's diff_id.
    #[error("layer {blob}: diff_id mismatch: config says {expected}, content is {actual}")]
    DiffIdMismatch {
        /// The layer blob.
        blob: Digest,
        /// The diff_id from the image config.
        expected: Digest,
        /// The digest of the uncompressed tar actually applied.
        actual: Digest,
    },
}

/// Unpacks `layers` (pairs of blob digest and config diff_id, base first)
/// into committed snapshots named by their ChainIDs, which it returns.
///
/// A layer whose ChainID snapshot already exists is skipped, so layers
/// shared by images are unpacked once. Each other layer is prepared as
/// `extract-<random>` on its parent, applied, checked against its diff_id
/// and committed; on any failure the half-done snapshot is removed, so no
/// half-unpacked layer is ever committed.
pub fn unpack_layers(
    store: &ContentStore,
    snaps: &Snapshotter,
    layers: &[(Digest, Digest)],
) -> Result<Vec<Digest>, UnpackError> {
    let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
    let chains = chain_ids(&diff_ids);
    let mut parent: Option<String> = None;
    for ((blob, diff_id), chain) in layers.iter().zip(&chains) {
        let name = chain.to_string();
        if !snaps.exists(&name) {
            unpack_one(store, snaps, blob, diff_id, &name, parent.as_deref())?;
        }
        parent = Some(name);
    }
    Ok(chains)
}

fn unpack_one(
    store: &ContentStore,
    snaps: &Snapshotter,
    blob: &Digest,
    diff_id: &Digest,
    name: &str,
    parent: Option<&str>,
) -> Result<(), UnpackError> {
    let snap_err = |source| UnpackError::Snapshot {
        blob: blob.clone(),
        source,
    };
    let key = format!("extract-{:016x}", rand::thread_rng().gen::<u64>());
    snaps.prepare(&key, parent).map_err(snap_err)?;
    let result = (|| {
        let upper = snaps.upper_dir(&key).map_err(snap_err)?;
        let file = store
            .open_blob(blob)
            .map_err(|source| UnpackError::Content {
                blob: blob.clone(),
                source,
            })?;
        let applied = apply_layer(std::io::BufReader::new(file), &upper).map_err(|source| {
            UnpackError::Apply {
                blob: blob.clone(),
                source,
            }
        })?;
        if &applied.diff_id != diff_id {
            return Err(UnpackError::DiffIdMismatch {
                blob: blob.clone(),
                expected: diff_id.clone(),
                actual: applied.diff_id,
            });
        }
        snaps.commit(name, &key).map_err(snap_err)
    })();
    if result.is_err() {
        // Never leave the half-done extraction behind. (If the commit failed
        // because a concurrent unpack of the same layer committed first,
        // the caller's next `exists` check sees that snapshot.)
        if let Err(rm) = snaps.remove(&key) {
            tracing::warn!(key = %key, error = %rm, "could not remove failed extraction snapshot");
        }
    }
    match result {
        Err(UnpackError::Snapshot {
            source: SnapshotError::AlreadyExists(_),
            ..
        }) if snaps.exists(name) => Ok(()),
        other => other,
    }
}
