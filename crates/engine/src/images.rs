//! The image service: lookup by id, name or digest; list, inspect, tag, remove, pull.

use std::collections::BTreeMap;

use berth_image::reference::Reference;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::db::LayerRow;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::ContainerConfig;
use crate::Engine;

mod pull;
mod push;
pub use pull::Progress;
pub mod archive;
pub mod import;
pub use import::ImportOptions;

/// Image id -> the names (tags or repo digests) pointing at it.
type RefMap = BTreeMap<String, Vec<String>>;

/// What the engine stores for each image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest, "sha256:...".
    pub id: String,
    /// The image config JSON exactly as pulled or built.
    pub config: Value,
    /// Digest of the manifest it came from, if pulled.
    pub manifest_digest: Option<String>,
    /// Bytes of its layers unpacked.
    pub size: i64,
    /// The image it was built from (local builds only).
    #[serde(default)]
    pub parent: String,
    /// When a tag last pointed at it.
    #[serde(default)]
    pub last_tag_time: String,
}

impl ImageRecord {
    /// The `config` section of the image config, in Docker's container-config shape.
    pub fn container_config(&self) -> ContainerConfig {
        self.config
            .get("config")
            .cloned()
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default()
    }

    /// The image's creation time as written in its config.
    pub fn created(&self) -> String {
        self.config
            .get("created")
            .and_then(Value::as_str)
            .unwrap_or("1970-01-01T00:00:00Z")
            .to_string()
    }
}

/// Parses a user-supplied image reference with a clear error.
pub fn parse_reference(name: &str) -> Result<Reference> {
    name.parse::<Reference>().kind_ctx(
        ErrorKind::InvalidArgument,
        format!("invalid reference format \"{name}\""),
    )
}

/// The key under which a tagged reference is stored: its familiar name plus tag.
pub fn tag_key(r: &Reference) -> String {
    format!("{}:{}", r.name(), r.tag_or_latest())
}

/// The key under which a digested reference is stored.
pub fn digest_key(r: &Reference, digest: &str) -> String {
    format!("{}@{digest}", r.name())
}

impl Engine {
    /// Finds an image by full or short id, `sha256:` id, name[:tag] or name@digest.
    pub fn find_image(&self, name: &str) -> Result<ImageRecord> {
        let missing = || EngineError::not_found(format!("No such image: {name}"));
        let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = hexpart.len() >= 4
            && hexpart
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        if looks_like_id {
            if hexpart.len() == 64 {
                if let Some(img) =
                    self.db
                        .get::<ImageRecord>("images", "id", &format!("sha256:{hexpart}"))?
                {
                    return Ok(img);
                }
            } else {
                let matches: Vec<ImageRecord> = self
                    .db
                    .all::<ImageRecord>("images")?
                    .into_iter()
                    .filter(|i| i.id["sha256:".len()..].starts_with(hexpart))
                    .collect();
                if matches.len() == 1 {
                    return matches.into_iter().next().ok_or_else(missing);
                }
            }
        }
        let Ok(r) = name.parse::<Reference>() else {
            return Err(missing());
        };
        let id = match &r.digest {
            Some(d) => self
                .db
                .get_ref("repo_digests", &digest_key(&r, &d.to_string()))?,
            None => self.db.get_ref("tags", &tag_key(&r))?,
        };
        match id {
            Some(id) => self.db.get("images", "id", &id)?.ok_or_else(missing),
            None => Err(missing()),
        }
    }

    /// The tags and repo digests pointing at each image id.
    fn refs_by_image(&self) -> Result<(RefMap, RefMap)> {
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, id) in self.db.all_refs("tags")? {
            tags.entry(id).or_default().push(name);
        }
        let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, id) in self.db.all_refs("repo_digests")? {
            digests.entry(id).or_default().push(name);
        }
        Ok((tags, digests))
    }

    /// `GET /images/json`: every image in Docker's summary shape. Without `all`,
    /// intermediate build images (untagged images that are parents) are left out.
    pub fn list_images(
        &self,
        dangling: Option<bool>,
        reference: Option<&str>,
    ) -> Result<Vec<Value>> {
        let (tags, digests) = self.refs_by_image()?;
        let images: Vec<ImageRecord> = self.db.all("images")?;
        let mut out = Vec::new();
        for img in images {
            let t = tags.get(&img.id).cloned().unwrap_or_default();
            if let Some(d) = dangling {
                if d != t.is_empty() {
                    continue;
                }
            }
            if let Some(pattern) = reference {
                if !t.iter().any(|tag| reference_matches(pattern, tag)) {
                    continue;
                }
            }
            let created = chrono::DateTime::parse_from_rfc3339(&img.created())
                .map(|d| d.timestamp())
                .unwrap_or(0);
            let labels = img.container_config().labels.unwrap_or_default();
            out.push(json!({
                "Id": img.id,
                "ParentId": img.parent,
                "RepoTags": t,
                "RepoDigests": digests.get(&img.id).cloned().unwrap_or_default(),
                "Created": created,
                "Size": img.size,
                "SharedSize": -1,
                "VirtualSize": img.size,
                "Labels": labels,
                "Containers": self.containers_using(&img.id)?.len() as i64,
            }));
        }
        out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_i64().unwrap_or(0)));
        Ok(out)
    }

    /// `GET /images/{name}/json` in Docker's shape.
    pub fn inspect_image(&self, name: &str) -> Result<Value> {
        let img = self.find_image(name)?;
        let (tags, digests) = self.refs_by_image()?;
        let layers = self.db.image_layers(&img.id)?;
        let cfg = &img.config;
        Ok(json!({
            "Id": img.id,
            "RepoTags": tags.get(&img.id).cloned().unwrap_or_default(),
            "RepoDigests": digests.get(&img.id).cloned().unwrap_or_default(),
            "Parent": img.parent,
            "Comment": cfg.get("comment").cloned().unwrap_or(json!("")),
            "Created": img.created(),
            "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(json!("")),
            "Author": cfg.get("author").cloned().unwrap_or(json!("")),
            "Config": img.container_config(),
            "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("amd64")),
            "Variant": cfg.get("variant"),
            "Os": cfg.get("os").cloned().unwrap_or(json!("linux")),
            "Size": img.size,
            "VirtualSize": img.size,
            "GraphDriver": {"Name": "overlay2", "Data": null},
            "RootFS": {
                "Type": "layers",
                "Layers": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "Metadata": {"LastTagTime": if img.last_tag_time.is_empty() { "0001-01-01T00:00:00Z".to_string() } else { img.last_tag_time.clone() }},
        }))
    }

    /// `GET /images/{name}/history`: the config's history, newest first.
    pub fn image_history(&self, name: &str) -> Result<Vec<Value>> {
        let img = self.find_image(name)?;
        let layers = self.db.image_layers(&img.id)?;
        let (tags, _) = self.refs_by_image()?;
        let history = img
            .config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut layer_idx = 0usize;
        for (i, h) in history.iter().enumerate() {
            let empty = h
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = layers
                    .get(layer_idx)
                    .map(|l| self.snaps.usage(&l.chain_id).unwrap_or(0) as i64)
                    .unwrap_or(0);
                layer_idx += 1;
                s
            };
            let created = h
                .get("created")
                .and_then(Value::as_str)
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map(|d| d.timestamp())
                .unwrap_or(0);
            let last = i + 1 == history.len();
            out.push(json!({
                "Id": if last { img.id.clone() } else { "<missing>".to_string() },
                "Created": created,
                "CreatedBy": h.get("created_by").cloned().unwrap_or(json!("")),
                "Tags": if last { json!(tags.get(&img.id).cloned().unwrap_or_default()) } else { json!(null) },
                "Size": size,
                "Comment": h.get("comment").cloned().unwrap_or(json!("")),
            }));
        }
        out.reverse();
        Ok(out)
    }

    /// `POST /images/{name}/tag`: points `repo:tag` at the image `source`.
    pub fn tag_image(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let img = self.find_image(source)?;
        let target = match tag {
            Some(t) if !t.is_empty() => format!("{repo}:{t}"),
            _ => repo.to_string(),
        };
        let r = parse_reference(&target)?;
        if r.digest.is_some() {
            return Err(EngineError::invalid(
                "refusing to create a tag with a digest reference",
            ));
        }
        self.db.set_ref("tags", &tag_key(&r), &img.id)?;
        let mut img2 = img.clone();
        img2.last_tag_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        self.db
            .put_image(&img.id, &img2, &self.db.image_layers(&img.id)?)?;
        self.events.publish(
            "image",
            "tag",
            &img.id,
            BTreeMap::from([("name".into(), tag_key(&r))]),
        );
        Ok(())
    }

    /// `DELETE /images/{name}`: untags `name`; deletes the image once no tag is left (or
    /// at once by id with `force`). Refused while a container uses it, unless `force`.
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<Value>> {
        let img = self.find_image(name)?;
        let mut out = Vec::new();
        let (tags, digests) = self.refs_by_image()?;
        let my_tags = tags.get(&img.id).cloned().unwrap_or_default();
        let my_digests = digests.get(&img.id).cloned().unwrap_or_default();
        let by_name = !name.starts_with("sha256:")
            && name.parse::<Reference>().ok().map(|r| {
                let key = match &r.digest {
                    Some(d) => digest_key(&r, &d.to_string()),
                    None => tag_key(&r),
                };
                my_tags.contains(&key) || my_digests.contains(&key)
            }) == Some(true);
        if by_name && (my_tags.len() + my_digests.len() > 1) && !my_tags.is_empty() {
            // Only untag this one name.
            let r = parse_reference(name)?;
            let key = match &r.digest {
                Some(d) => digest_key(&r, &d.to_string()),
                None => tag_key(&r),
            };
            if my_tags.len() > 1 || r.digest.is_some() {
                let table = if r.digest.is_some() {
                    "repo_digests"
                } else {
                    "tags"
                };
                self.db.delete_ref(table, &key)?;
                self.events.publish(
                    "image",
                    "untag",
                    &img.id,
                    BTreeMap::from([("name".into(), key.clone())]),
                );
                out.push(json!({ "Untagged": key }));
                return Ok(out);
            }
        }
        if !by_name && my_tags.len() > 1 && !force {
            return Err(EngineError::conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short_id(&img.id)
            )));
        }
        let users = self.containers_using(&img.id)?;
        if let Some(c) = users.first() {
            if !force {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                    short_id(c),
                    short_id(&img.id)
                )));
            }
        }
        for t in &my_tags {
            self.db.delete_ref("tags", t)?;
            self.events.publish(
                "image",
                "untag",
                &img.id,
                BTreeMap::from([("name".into(), t.clone())]),
            );
            out.push(json!({ "Untagged": t }));
        }
        for d in &my_digests {
            self.db.delete_ref("repo_digests", d)?;
            out.push(json!({ "Untagged": d }));
        }
        if users.is_empty() {
            self.delete_image_data(&img)?;
            self.events
                .publish("image", "delete", &img.id, BTreeMap::new());
            out.push(json!({ "Deleted": img.id }));
        }
        Ok(out)
    }

    /// Deletes an image row and then the snapshots and blobs nothing references any more
    /// (once no pull is in flight).
    pub(crate) fn delete_image_data(&self, img: &ImageRecord) -> Result<()> {
        let layers = self.db.image_layers(&img.id)?;
        self.db.delete_image(&img.id)?;
        // A pull in flight may be reusing these: collection waits for it (prune.rs).
        let blobs = std::iter::once(img.id.clone()).chain(img.manifest_digest.clone());
        self.collect_or_defer(layers, blobs.collect())
    }

    /// Removes the snapshots (top first) and blobs of `layers` that no image uses any more.
    pub(crate) fn collect_layers(&self, layers: &[LayerRow]) -> Result<()> {
        for l in layers.iter().rev() {
            if !self.db.chain_in_use(&l.chain_id)? && self.snaps.exists(&l.chain_id) {
                if let Err(e) = self.snaps.remove(&l.chain_id) {
                    tracing::warn!("gc: keeping snapshot {}: {e}", l.chain_id);
                }
            }
            if let Some(b) = &l.blob {
                if !self.db.blob_in_use(b)? {
                    if let Ok(d) = b.parse() {
                        let _ = self.content.delete(&d);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The first 12 hex characters of an id.
pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Docker's `reference=` filter: a glob over the familiar name with or without the tag.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let name = tag.rsplit_once(':').map(|(n, _)| n).unwrap_or(tag);
    glob(pattern, tag) || glob(pattern, name)
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, rest)) => {
            if !s.starts_with(pre) {
                return false;
            }
            let s = &s[pre.len()..];
            (0..=s.len()).any(|i| s.is_char_boundary(i) && glob(rest, &s[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::reference_matches("busy*", "busybox:1"));
        assert!(super::reference_matches("busybox:1", "busybox:1"));
        assert!(super::reference_matches("busybox", "busybox:1"));
        assert!(!super::reference_matches("alpine", "busybox:1"));
    }
}
