//! Writing `docker save` archives.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};

use berth_content::{ContentStore, Digest};
use serde_json::json;
use tar::{EntryType, Header};

use super::{blob_path, content_err, ArchiveError, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::manifest::{parse_manifest, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;

/// One image to save: its manifest (in the store, with its config and
/// layers) and the names to record for it ("busybox:1", ...).
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The image manifest's digest.
    pub manifest_digest: Digest,
    /// Tags to record; may be empty.
    pub repo_tags: Vec<Reference>,
}

fn stream_err(source: io::Error) -> ArchiveError {
    ArchiveError::Stream {
        op: "write",
        source,
    }
}

/// Writes `images` as one archive that both `docker load` (via
/// `manifest.json`) and OCI tools (via `index.json`) read. Layer blobs are
/// written as stored (compressed or not); shared blobs are written once.
pub fn save_images(
    store: &ContentStore,
    images: &[SaveImage],
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut b = tar::Builder::new(out);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut docker_manifest = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    append_dir(&mut b, "blobs/")?;
    append_dir(&mut b, "blobs/sha256/")?;
    for img in images {
        let d = &img.manifest_digest;
        let bytes = store.read(d).map_err(content_err(d))?;
        let (manifest, media_type) =
            parse_manifest(&bytes, None).map_err(|e| ArchiveError::Invalid {
                file: blob_path(d),
                detail: e.to_string(),
            })?;
        let Manifest::Image(m) = manifest else {
            return Err(ArchiveError::Invalid {
                file: blob_path(d),
                detail: "expected an image manifest, not an index".into(),
            });
        };
        let mut blobs = vec![d.clone(), m.config.digest.clone()];
        blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
        for blob in &blobs {
            if written.insert(blob.clone()) {
                append_blob(&mut b, store, blob)?;
            }
        }
        let tags: Vec<String> = img.repo_tags.iter().map(Reference::familiar).collect();
        docker_manifest.push(json!({
            "Config": blob_path(&m.config.digest),
            "RepoTags": tags,
            "Layers": m.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
        let top = m
            .layers
            .last()
            .map(|l| l.digest.hex().to_string())
            .unwrap_or_default();
        let mt = if media_type.is_empty() {
            OCI_MANIFEST.to_string()
        } else {
            media_type
        };
        let desc = |annotations: Option<serde_json::Value>| {
            let mut v = json!({"mediaType": mt, "digest": d, "size": bytes.len()});
            if let Some(a) = annotations {
                v["annotations"] = a;
            }
            v
        };
        if img.repo_tags.is_empty() {
            index.push(desc(None));
        }
        for r in &img.repo_tags {
            index.push(desc(Some(json!({ANNOTATION_IMAGE_NAME: r.to_string(), ANNOTATION_REF_NAME: r.tag_or_latest()}))));
            repositories
                .entry(r.name())
                .or_default()
                .insert(r.tag_or_latest().to_string(), top.clone());
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
    append_json(&mut b, "index.json", &index)?;
    append_json(
        &mut b,
        "manifest.json",
        &serde_json::Value::Array(docker_manifest),
    )?;
    append_json(
        &mut b,
        "oci-layout",
        &json!({"imageLayoutVersion": "1.0.0"}),
    )?;
    if !repositories.is_empty() {
        append_json(
            &mut b,
            "repositories",
            &serde_json::to_value(&repositories).unwrap_or_default(),
        )?;
    }
    b.into_inner()
        .map_err(stream_err)?
        .flush()
        .map_err(stream_err)
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    b.append_data(
        &mut header(EntryType::Directory, 0o755, 0),
        path,
        io::empty(),
    )
    .map_err(stream_err)
}

fn append_blob<W: Write>(
    b: &mut tar::Builder<W>,
    store: &ContentStore,
    d: &Digest,
) -> Result<(), ArchiveError> {
    let size = store.size(d).map_err(content_err(d))?;
    let f = store.open_blob(d).map_err(content_err(d))?;
    b.append_data(
        &mut header(EntryType::Regular, 0o444, size),
        blob_path(d),
        f,
    )
    .map_err(stream_err)
}

fn append_json<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    v: &serde_json::Value,
) -> Result<(), ArchiveError> {
    let bytes = serde_json::to_vec(v).map_err(|e| ArchiveError::Invalid {
        file: path.into(),
        detail: e.to_string(),
    })?;
    b.append_data(
        &mut header(EntryType::Regular, 0o444, bytes.len() as u64),
        path,
        &bytes[..],
    )
    .map_err(stream_err)
}
