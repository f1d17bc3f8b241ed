//! Docker `save`/`load` archives: Docker's `manifest.json` + `repositories`
//! format, which current Docker writes inside an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/...`). Saving writes both;
//! loading reads either (legacy `<id>/layer.tar` archives included).

mod load;
mod save;

use std::path::PathBuf;

use berth_content::{ContentError, Digest};

pub use load::{load_archive, LoadedImage};
pub use save::{save_images, SaveImage};

/// The OCI annotation with a full image name (containerd's convention).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation with the tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The largest JSON file read from an archive.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Errors from saving or loading archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing the archive stream failed.
    #[error("{op} archive: {source}")]
    Stream {
        /// "read" or "write".
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The content store failed.
    #[error("archive blob {digest}: {source}")]
    Content {
        /// The blob.
        digest: Digest,
        /// The store error.
        #[source]
        source: ContentError,
    },
    /// Storing an archive entry failed.
    #[error("store archive entry {path}: {source}")]
    Store {
        /// The entry path.
        path: String,
        /// The store error.
        #[source]
        source: ContentError,
    },
    /// A file the archive refers to is not in it.
    #[error("archive is missing {0}")]
    Missing(PathBuf),
    /// A JSON file is malformed.
    #[error("invalid {file} in archive: {detail}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A blob's content does not match the digest in its name.
    #[error("archive entry {path} does not match its digest (content is {actual})")]
    DigestMismatch {
        /// The entry path.
        path: String,
        /// Its real digest.
        actual: Digest,
    },
}

fn content_err(digest: &Digest) -> impl FnOnce(ContentError) -> ArchiveError + '_ {
    move |source| ArchiveError::Content {
        digest: digest.clone(),
        source,
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}
