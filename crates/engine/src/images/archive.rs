//! `docker save` and `docker load`: images to and from Docker/OCI archives.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use berth_content::Digest;
use berth_image::archive::{load_archive, save_images, LoadedImage, SaveImage};
use berth_image::manifest::{parse_manifest, Manifest};
use berth_image::reference::Reference;
use serde_json::Value;

use super::{short_id, tag_key, ImageRecord};
use crate::db::LayerRow;
use crate::error::{EngineError, ErrorKind, Result};
use crate::Engine;

impl Engine {
    /// `GET /images/get`: writes the images `names` (ids, names or name:tag) as one
    /// archive that `docker load` and OCI tools read. A name given by tag records that tag
    /// in the archive; an id records none. Blocking: call from a blocking thread.
    pub fn save_images(&self, names: &[String], out: impl Write) -> Result<()> {
        if names.is_empty() {
            return Err(EngineError::invalid("no image names given to save"));
        }
        let mut images: Vec<SaveImage> = Vec::new();
        for name in names {
            let img = self.find_image(name)?;
            let manifest_digest = self.ensure_manifest(&img)?;
            let tag = self.tag_named_by(name, &img.id)?;
            match images
                .iter_mut()
                .find(|i| i.manifest_digest == manifest_digest)
            {
                Some(existing) => existing.repo_tags.extend(tag),
                None => images.push(SaveImage {
                    manifest_digest,
                    repo_tags: tag.into_iter().collect(),
                }),
            }
        }
        save_images(&self.content, &images, out)
            .map_err(|e| EngineError::internal(format!("saving {}: {e}", names.join(", "))))?;
        for name in names {
            self.events.publish("image", "save", name, BTreeMap::new());
        }
        Ok(())
    }

    /// The tag reference `name` denotes when it is a tag of image `id` (not an id).
    fn tag_named_by(&self, name: &str, id: &str) -> Result<Option<Reference>> {
        let Ok(r) = name.parse::<Reference>() else {
            return Ok(None);
        };
        if r.digest.is_some() {
            return Ok(None);
        }
        let mut r = r;
        if self.db.get_ref("tags", &tag_key(&r))?.as_deref() != Some(id) {
            return Ok(None);
        }
        if r.tag.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(Some(r))
    }

    /// `POST /images/load`: reads an archive (`docker save` output or an OCI layout tar,
    /// plain or compressed), unpacks and records its images and tags, and returns Docker's
    /// lines ("Loaded image: NAME:TAG", or "Loaded image ID: sha256:..." for untagged
    /// images). Bad archives fail with nothing recorded. Blocking: call from a blocking
    /// thread.
    pub fn load_images(self: &Arc<Self>, reader: impl Read) -> Result<Vec<String>> {
        let loaded = load_archive(&self.content, reader).map_err(|e| {
            EngineError::new(ErrorKind::InvalidArgument, format!("loading archive: {e}"))
        })?;
        let mut lines = Vec::new();
        for img in loaded {
            let id = self.record_loaded(&img)?;
            if img.repo_tags.is_empty() {
                lines.push(format!("Loaded image ID: {id}"));
            }
            for t in &img.repo_tags {
                let key = tag_key(t);
                if let Some(old) = self.db.get_ref("tags", &key)? {
                    if old != id {
                        lines.push(format!(
                            "The image {key} already exists, renaming the old one with ID {old} to empty string"
                        ));
                    }
                }
                self.db.set_ref("tags", &key, &id)?;
                self.events.publish(
                    "image",
                    "tag",
                    &id,
                    BTreeMap::from([("name".into(), key.clone())]),
                );
                lines.push(format!("Loaded image: {key}"));
            }
            self.events.publish("image", "load", &id, BTreeMap::new());
        }
        Ok(lines)
    }

    /// Unpacks one loaded image's layers and records it; returns its id.
    fn record_loaded(&self, img: &LoadedImage) -> Result<String> {
        let id = img.config_digest.to_string();
        let chains = berth_image::unpack::unpack_layers(&self.content, &self.snaps, &img.layers)
            .map_err(|e| {
                EngineError::invalid(format!("unpacking loaded image {}: {e}", short_id(&id)))
            })?;
        let media_types = self.layer_media_types(&img.manifest_digest);
        let mut rows = Vec::new();
        let mut size = 0i64;
        for (i, ((blob, diff_id), chain)) in img.layers.iter().zip(&chains).enumerate() {
            size += self.snaps.usage(&chain.to_string()).unwrap_or(0) as i64;
            rows.push(LayerRow {
                chain_id: chain.to_string(),
                diff_id: diff_id.to_string(),
                blob: Some(blob.to_string()),
                blob_size: self.content.size(blob).ok().map(|s| s as i64),
                media_type: media_types.get(i).cloned(),
            });
        }
        let bytes = self
            .content
            .read(&img.config_digest)
            .map_err(|e| EngineError::internal(format!("config {id}: {e}")))?;
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::invalid(format!("image config {id} is not JSON: {e}")))?;
        let existing = self.db.get::<ImageRecord>("images", "id", &id)?;
        let record = ImageRecord {
            id: id.clone(),
            config,
            manifest_digest: Some(img.manifest_digest.to_string()),
            size,
            parent: existing
                .as_ref()
                .map(|e| e.parent.clone())
                .unwrap_or_default(),
            last_tag_time: existing.map(|e| e.last_tag_time).unwrap_or_default(),
        };
        self.db.put_image(&id, &record, &rows)?;
        Ok(id)
    }

    /// The layer media types of a stored image manifest (empty if unreadable).
    fn layer_media_types(&self, manifest: &Digest) -> Vec<String> {
        let Ok(bytes) = self.content.read(manifest) else {
            return Vec::new();
        };
        match parse_manifest(&bytes, None) {
            Ok((Manifest::Image(m), _)) => m.layers.into_iter().map(|l| l.media_type).collect(),
            _ => Vec::new(),
        }
    }
}
