//! Unpacking an image's layers from the content store into snapshots.

use berth_content::{ContentError, ContentStore, Digest};
use std::io::Read;

use berth_snapshot::{SnapshotError, Snapshotter, SCRATCH_PREFIX};
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
/// shared by images are unpacked once. Each other layer is extracted with
/// [`extract_layer_from_store`] and committed on its parent with
/// [`commit_extracted`]; on any failure the half-done snapshot is removed,
/// so no half-unpacked layer is ever committed.
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
    let x = extract_layer_from_store(store, snaps, blob, diff_id)?;
    commit_extracted(snaps, x, name, parent)
}

/// A layer applied into its own scratch snapshot (key starting with
/// [`SCRATCH_PREFIX`], no parent) and checked against its diff_id, waiting
/// to be placed on its parent by [`commit_extracted`] or dropped by
/// [`discard_extracted`]. A daemon that dies first leaves a scratch snapshot
/// that [`Snapshotter::open`] removes.
#[derive(Debug)]
#[must_use = "an extracted layer must be committed or discarded"]
pub struct Extracted {
    /// The scratch snapshot key.
    pub key: String,
    /// The layer blob it came from.
    pub blob: Digest,
    /// Its verified diff_id.
    pub diff_id: Digest,
}

/// Applies the layer stream `reader` (gzip, zstd or plain tar) of blob
/// `blob` into a fresh parentless scratch snapshot and checks that the
/// uncompressed stream hashes to `diff_id`. A layer needs no parent contents
/// to be applied (whiteouts are recorded, not performed), so layers of one
/// image can be extracted in parallel, in any order. On any failure (read
/// error, truncated or hostile tar, diff_id mismatch) the scratch snapshot
/// is removed before returning.
pub fn extract_layer(
    snaps: &Snapshotter,
    blob: &Digest,
    diff_id: &Digest,
    reader: impl Read,
) -> Result<Extracted, UnpackError> {
    let snap_err = |source| UnpackError::Snapshot {
        blob: blob.clone(),
        source,
    };
    let key = format!("{SCRATCH_PREFIX}{:016x}", rand::thread_rng().gen::<u64>());
    snaps.prepare(&key, None).map_err(snap_err)?;
    let result = (|| {
        let upper = snaps.upper_dir(&key).map_err(snap_err)?;
        let applied = apply_layer(reader, &upper).map_err(|source| UnpackError::Apply {
            blob: blob.clone(),
            source,
        })?;
        if &applied.diff_id != diff_id {
            return Err(UnpackError::DiffIdMismatch {
                blob: blob.clone(),
                expected: diff_id.clone(),
                actual: applied.diff_id,
            });
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Extracted {
            key,
            blob: blob.clone(),
            diff_id: diff_id.clone(),
        }),
        Err(e) => {
            remove_scratch(snaps, &key);
            Err(e)
        }
    }
}

/// [`extract_layer`] reading the blob from the content store.
pub fn extract_layer_from_store(
    store: &ContentStore,
    snaps: &Snapshotter,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<Extracted, UnpackError> {
    let file = store
        .open_blob(blob)
        .map_err(|source| UnpackError::Content {
            blob: blob.clone(),
            source,
        })?;
    extract_layer(
        snaps,
        blob,
        diff_id,
        std::io::BufReader::with_capacity(256 * 1024, file),
    )
}

/// Commits the extracted layer `x` as the snapshot `name` (its ChainID) on
/// the committed `parent`. If `name` already exists (another pull of the
/// same layer committed first) the scratch snapshot is dropped and this
/// succeeds; on any other failure it is removed too, so it never lingers.
pub fn commit_extracted(
    snaps: &Snapshotter,
    x: Extracted,
    name: &str,
    parent: Option<&str>,
) -> Result<(), UnpackError> {
    match snaps.commit_on(name, &x.key, parent) {
        Ok(()) => Ok(()),
        Err(SnapshotError::AlreadyExists(_)) if snaps.exists(name) => {
            remove_scratch(snaps, &x.key);
            Ok(())
        }
        Err(source) => {
            remove_scratch(snaps, &x.key);
            Err(UnpackError::Snapshot {
                blob: x.blob,
                source,
            })
        }
    }
}

/// Drops an extracted layer that will not be committed.
pub fn discard_extracted(snaps: &Snapshotter, x: Extracted) {
    remove_scratch(snaps, &x.key);
}

fn remove_scratch(snaps: &Snapshotter, key: &str) {
    if let Err(e) = snaps.remove(key) {
        tracing::warn!(key = %key, error = %e, "could not remove scratch extraction snapshot");
    }
}
