//! Manifests, indexes, media types and platform choice.

use std::collections::BTreeMap;

use berth_content::Digest;
use serde::{Deserialize, Serialize};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifests (not supported).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifests (not supported).
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker zstd layer.
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable uncompressed layer.
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer.
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable zstd layer.
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// The four manifest media types a registry client accepts, for `Accept`.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST_V2,
];

/// The largest manifest accepted (4 MiB, like containerd).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Errors from parsing manifests.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_SIZE`].
    #[error("manifest is {0} bytes, over the 4 MiB limit")]
    TooLarge(usize),
    /// Not valid JSON or not the expected shape.
    #[error("invalid manifest ({media_type}): {source}")]
    Json {
        /// The media type it was parsed as.
        media_type: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type this crate does not handle.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// Schema 1 manifests are obsolete.
    #[error("schema 1 manifests are not supported; push the image again with a current client")]
    SchemaV1,
}

/// A platform, in OCI/Go naming (`amd64`, `arm64`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's naming.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant ("v7", "v8").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Fields this crate does not know, kept for lossless round trips.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image manifest (Docker v2 schema 2 or OCI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The media type, when the manifest states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The media type, when the index states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The per-platform manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A parsed manifest of either kind.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // parsed once per pull; boxing buys nothing
pub enum Manifest {
    /// A single-platform image manifest.
    Image(ImageManifest),
    /// A multi-platform index.
    Index(ImageIndex),
}

/// Whether `media_type` names an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` names a non-distributable (foreign) layer.
pub fn is_foreign_layer(media_type: &str) -> bool {
    media_type == DOCKER_LAYER_FOREIGN
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

/// Parses a manifest or index. `media_type` is the type the registry or
/// store gave (e.g. the `Content-Type`); when it is absent or generic JSON,
/// the document's `mediaType` field decides, then its shape. Returns the
/// manifest and the media type used.
pub fn parse_manifest(
    bytes: &[u8],
    media_type: Option<&str>,
) -> Result<(Manifest, String), ManifestError> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let json_err = |mt: &str| {
        let mt = mt.to_string();
        move |source| ManifestError::Json {
            media_type: mt,
            source,
        }
    };
    let given = media_type
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| {
            !m.is_empty()
                && m != "application/json"
                && m != "text/plain"
                && m != "application/octet-stream"
        });
    let mt = match given {
        Some(m) => m,
        None => {
            let v: serde_json::Value =
                serde_json::from_slice(bytes).map_err(json_err("unknown"))?;
            match v.get("mediaType").and_then(|m| m.as_str()) {
                Some(m) => m.to_string(),
                None if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) => {
                    return Err(ManifestError::SchemaV1)
                }
                None if v.get("manifests").is_some() => OCI_INDEX.to_string(),
                None if v.get("config").is_some() => OCI_MANIFEST.to_string(),
                None => return Err(ManifestError::UnsupportedMediaType(String::new())),
            }
        }
    };
    match mt.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let idx: ImageIndex = serde_json::from_slice(bytes).map_err(json_err(&mt))?;
            Ok((Manifest::Index(idx), mt))
        }
        OCI_MANIFEST | DOCKER_MANIFEST_V2 => {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(json_err(&mt))?;
            Ok((Manifest::Image(m), mt))
        }
        DOCKER_MANIFEST_V1 | DOCKER_MANIFEST_V1_SIGNED => Err(ManifestError::SchemaV1),
        _ => Err(ManifestError::UnsupportedMediaType(mt)),
    }
}

/// This machine's platform: `linux` plus the Go name of the CPU
/// architecture (and variant for ARM).
pub fn host_platform() -> Platform {
    let (arch, variant) = go_arch(std::env::consts::ARCH);
    Platform {
        architecture: arch.to_string(),
        os: std::env::consts::OS.to_string(),
        variant: variant.map(str::to_string),
        ..Platform::default()
    }
}

/// Maps a Rust `target_arch` to Go's GOARCH and default variant.
pub fn go_arch(rust_arch: &str) -> (&str, Option<&str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        other => (other, None),
    }
}

/// Picks the manifest for `os`/`arch`/`variant` from an index. A variant of
/// `None` accepts any; arm64's missing variant counts as "v8". Entries
/// without a platform, or for another one, are skipped.
pub fn choose_platform<'a>(
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Option<&'a Descriptor> {
    let norm = |v: Option<&str>| -> Option<String> {
        match (arch, v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        }
    };
    let want = norm(variant);
    let candidates = index.manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    });
    let mut fallback = None;
    for d in candidates {
        let have = d.platform.as_ref().and_then(|p| norm(p.variant.as_deref()));
        match (&want, &have) {
            (None, _) => return Some(d),
            (Some(w), Some(h)) if w == h => return Some(d),
            (Some(_), None) => fallback = fallback.or(Some(d)),
            _ => {}
        }
    }
    fallback
}

#[cfg(test)]
mod tests;
