//! Reading `docker save` archives and OCI layouts (as tars).

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::PathBuf;

use berth_content::{ContentStore, Digest};
use serde::Deserialize;
use serde_json::json;

use super::{content_err, ArchiveError, ANNOTATION_IMAGE_NAME, MAX_JSON};
use crate::config::ImageConfig;
use crate::layer::{decompress, Compression};
use crate::manifest::{
    choose_platform, host_platform, parse_manifest, Manifest, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::reference::Reference;

/// An image found in an archive; all its blobs are in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image manifest's digest (synthesized as an OCI manifest for
    /// Docker-format entries).
    pub manifest_digest: Digest,
    /// Its media type.
    pub manifest_media_type: String,
    /// The config digest (the image id).
    pub config_digest: Digest,
    /// Names recorded in the archive.
    pub repo_tags: Vec<Reference>,
    /// (blob, diff_id) per layer, base first: ready for `unpack_layers`.
    pub layers: Vec<(Digest, Digest)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// What the archive held: blobs by path, JSON files in memory.
struct Contents {
    files: HashMap<String, Digest>,
    links: HashMap<String, String>,
    json: HashMap<String, Vec<u8>>,
}

impl Contents {
    fn lookup(&self, path: &str) -> Result<Digest, ArchiveError> {
        let mut p = clean(path.as_bytes());
        for _ in 0..16 {
            if let Some(d) = self.files.get(&p) {
                return Ok(d.clone());
            }
            match self.links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(ArchiveError::Missing(PathBuf::from(path)))
    }
}

fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn read_err(source: std::io::Error) -> ArchiveError {
    ArchiveError::Stream { op: "read", source }
}

/// Loads an archive (plain, gzip or zstd tar) into `store` and returns its
/// images. Docker's `manifest.json` is used when present, else the OCI
/// `index.json` (an index entry resolves to this machine's platform).
/// Blobs named `blobs/sha256/<hex>` must match their names.
pub fn load_archive(
    store: &ContentStore,
    reader: impl Read,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let stream = decompress(reader).map_err(|e| ArchiveError::Stream {
        op: "read",
        source: std::io::Error::other(e),
    })?;
    let mut contents = Contents {
        files: HashMap::new(),
        links: HashMap::new(),
        json: HashMap::new(),
    };
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let path = clean(&entry.path_bytes());
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        clean(format!("{dir}/{}", String::from_utf8_lossy(&target)).as_bytes())
                    } else {
                        clean(&target)
                    };
                    contents.links.insert(path, target);
                }
                continue;
            }
            _ => continue,
        }
        if matches!(
            path.as_str(),
            "manifest.json" | "index.json" | "repositories" | "oci-layout"
        ) {
            let mut buf = Vec::new();
            entry
                .by_ref()
                .take(MAX_JSON)
                .read_to_end(&mut buf)
                .map_err(read_err)?;
            contents.json.insert(path, buf);
            continue;
        }
        let (digest, _) = store
            .write_stream(&mut entry)
            .map_err(|source| ArchiveError::Store {
                path: path.clone(),
                source,
            })?;
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            if hex != digest.hex() {
                return Err(ArchiveError::DigestMismatch {
                    path,
                    actual: digest,
                });
            }
        }
        contents.files.insert(path, digest);
    }
    if let Some(m) = contents.json.get("manifest.json") {
        let entries: Vec<DockerEntry> =
            serde_json::from_slice(m).map_err(|e| ArchiveError::Invalid {
                file: "manifest.json".into(),
                detail: e.to_string(),
            })?;
        entries
            .iter()
            .map(|e| load_docker_entry(store, &contents, e))
            .collect()
    } else if let Some(i) = contents.json.get("index.json") {
        load_oci_index(store, i)
    } else {
        Err(ArchiveError::Missing(PathBuf::from("manifest.json")))
    }
}

fn read_config(store: &ContentStore, d: &Digest, file: &str) -> Result<ImageConfig, ArchiveError> {
    let bytes = store.read(d).map_err(content_err(d))?;
    ImageConfig::from_slice(&bytes).map_err(|e| ArchiveError::Invalid {
        file: file.into(),
        detail: e.to_string(),
    })
}

fn parse_tags(tags: &[String]) -> Result<Vec<Reference>, ArchiveError> {
    tags.iter()
        .map(|t| {
            t.parse().map_err(|e| ArchiveError::Invalid {
                file: "manifest.json".into(),
                detail: format!("{t}: {e}"),
            })
        })
        .collect()
}

fn load_docker_entry(
    store: &ContentStore,
    c: &Contents,
    e: &DockerEntry,
) -> Result<LoadedImage, ArchiveError> {
    let config_digest = c.lookup(&e.config)?;
    let config = read_config(store, &config_digest, &e.config)?;
    if config.rootfs.diff_ids.len() != e.layers.len() {
        return Err(ArchiveError::Invalid {
            file: "manifest.json".into(),
            detail: format!(
                "{} lists {} layers but its config has {} diff_ids",
                e.config,
                e.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    let mut descs = Vec::new();
    for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
        let blob = c.lookup(path)?;
        let mut head = [0u8; 4];
        let mut f = store.open_blob(&blob).map_err(content_err(&blob))?;
        let n = f.read(&mut head).map_err(read_err)?;
        f.rewind().map_err(read_err)?;
        let mt = match Compression::detect(&head[..n]) {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        };
        let size = store.size(&blob).map_err(content_err(&blob))?;
        descs.push(json!({"mediaType": mt, "digest": blob, "size": size}));
        layers.push((blob, diff_id.clone()));
    }
    let config_size = store
        .size(&config_digest)
        .map_err(content_err(&config_digest))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": descs,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ArchiveError::Invalid {
        file: "manifest".into(),
        detail: e.to_string(),
    })?;
    let manifest_digest = store
        .write_blob(&bytes)
        .map_err(content_err(&config_digest))?;
    Ok(LoadedImage {
        manifest_digest,
        manifest_media_type: OCI_MANIFEST.into(),
        config_digest,
        repo_tags: parse_tags(e.repo_tags.as_deref().unwrap_or_default())?,
        layers,
    })
}

fn load_oci_index(store: &ContentStore, bytes: &[u8]) -> Result<Vec<LoadedImage>, ArchiveError> {
    let invalid = |detail: String| ArchiveError::Invalid {
        file: "index.json".into(),
        detail,
    };
    let Manifest::Index(index) = parse_manifest(bytes, None)
        .map_err(|e| invalid(e.to_string()))?
        .0
    else {
        return Err(invalid("not an image index".into()));
    };
    let mut by_manifest: Vec<LoadedImage> = Vec::new();
    for desc in &index.manifests {
        let mbytes = store
            .read(&desc.digest)
            .map_err(content_err(&desc.digest))?;
        let (mut m, mut mt) =
            parse_manifest(&mbytes, Some(&desc.media_type)).map_err(|e| invalid(e.to_string()))?;
        let mut digest = desc.digest.clone();
        if let Manifest::Index(inner) = &m {
            let p = host_platform();
            let chosen = choose_platform(inner, &p.os, &p.architecture, p.variant.as_deref())
                .ok_or_else(|| {
                    invalid(format!(
                        "no manifest for {}/{} in {}",
                        p.os, p.architecture, desc.digest
                    ))
                })?;
            digest = chosen.digest.clone();
            let b = store.read(&digest).map_err(content_err(&digest))?;
            (m, mt) =
                parse_manifest(&b, Some(&chosen.media_type)).map_err(|e| invalid(e.to_string()))?;
        }
        let Manifest::Image(m) = m else {
            return Err(invalid(format!("{digest} is a nested index")));
        };
        let config = read_config(store, &m.config.digest, &m.config.digest.to_string())?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(invalid(format!(
                "{digest}: layer count does not match its config"
            )));
        }
        for l in &m.layers {
            if !store.has(&l.digest) {
                return Err(ArchiveError::Missing(PathBuf::from(super::blob_path(
                    &l.digest,
                ))));
            }
        }
        let tag = desc
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_IMAGE_NAME))
            .and_then(|n| n.parse::<Reference>().ok());
        if let Some(existing) = by_manifest.iter_mut().find(|i| i.manifest_digest == digest) {
            existing.repo_tags.extend(tag);
            continue;
        }
        by_manifest.push(LoadedImage {
            manifest_digest: digest,
            manifest_media_type: mt,
            config_digest: m.config.digest.clone(),
            repo_tags: tag.into_iter().collect(),
            layers: m
                .layers
                .iter()
                .map(|l| l.digest.clone())
                .zip(config.rootfs.diff_ids.iter().cloned())
                .collect(),
        });
    }
    Ok(by_manifest)
}
