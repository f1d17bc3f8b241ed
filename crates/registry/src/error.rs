//! Registry errors: each names the image and the cause.

use berth_content::{ContentError, Digest};

/// Errors from talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (connection refused, DNS, TLS).
    #[error("registry {registry} unreachable while fetching {image}: {source}")]
    Unreachable {
        /// host[:port].
        registry: String,
        /// The image being accessed.
        image: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Another transport error (reset connection, timeout, bad body).
    #[error("request for {image} failed: {}", chain(source))]
    Http {
        /// The image being accessed.
        image: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Credentials were refused or missing.
    #[error("unauthorized to access {image}: {detail}")]
    Unauthorized {
        /// The image being accessed.
        image: String,
        /// The registry's message.
        detail: String,
    },
    /// The repository does not exist (or pull access is denied).
    #[error("repository {image} not found: does not exist or no pull access")]
    NameUnknown {
        /// The repository name.
        image: String,
    },
    /// The tag or digest does not exist in the repository.
    #[error("manifest for {image} not found: manifest unknown")]
    ManifestUnknown {
        /// The image reference.
        image: String,
    },
    /// A blob does not exist in the repository.
    #[error("blob {digest} of {image} not found in the registry")]
    BlobUnknown {
        /// The image being pulled.
        image: String,
        /// The missing blob.
        digest: Digest,
    },
    /// Content does not match its digest.
    #[error("digest mismatch for {image}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The image being pulled.
        image: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// Any other unexpected HTTP status.
    #[error("unexpected status {status} from registry for {image}: {message}")]
    Status {
        /// The image being accessed.
        image: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message, if any.
        message: String,
    },
    /// The manifest could not be used.
    #[error("invalid manifest for {image}: {source}")]
    Manifest {
        /// The image.
        image: String,
        /// What was wrong.
        #[source]
        source: berth_image::manifest::ManifestError,
    },
    /// The manifest is over the size limit (refused before it is all read).
    #[error("manifest for {image} is too large: over the {limit}-byte limit{}", size.map(|s| format!(" ({s} bytes announced)")).unwrap_or_default())]
    ManifestTooLarge {
        /// The image.
        image: String,
        /// The limit in bytes.
        limit: usize,
        /// The size the registry announced, if it did.
        size: Option<u64>,
    },
    /// A layer's media type is not one of the OCI or Docker layer types.
    #[error("unsupported layer media type {media_type:?} for layer {digest} of {image}")]
    UnsupportedLayer {
        /// The image.
        image: String,
        /// The layer blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// The image config could not be used.
    #[error("invalid image config for {image}: {detail}")]
    Config {
        /// The image.
        image: String,
        /// What was wrong.
        detail: String,
    },
    /// No manifest in the index matches this machine.
    #[error("no matching manifest for {platform} in the manifest list entries of {image}")]
    NoMatchingPlatform {
        /// The image.
        image: String,
        /// os/arch[/variant].
        platform: String,
    },
    /// The content store failed.
    #[error("storing {digest} of {image}: {source}")]
    Content {
        /// The image.
        image: String,
        /// The blob.
        digest: Digest,
        /// The store error.
        #[source]
        source: ContentError,
    },
    /// A local file operation failed.
    #[error("{op} for {image}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The image.
        image: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The registry's reply could not be understood.
    #[error("bad registry response for {image}: {detail}")]
    BadResponse {
        /// The image.
        image: String,
        /// What was wrong.
        detail: String,
    },
}

/// An error and its causes, `outer: inner: ...` (reqwest's own message alone, such as
/// "error decoding response body", does not say what went wrong).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

impl RegistryError {
    /// Whether retrying the same request may succeed (5xx, broken connections).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
