//! `docker commit`: the container's writable layer becomes a gzip layer blob and a
//! committed snapshot; the new image config is the image's, with the container's Config
//! and the `--change` instructions applied, and one more history entry.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use berth_build::parser::{parse_line, CommandLine, Instruction};
use berth_content::Digest;
use serde_json::{json, Value};

use super::now_rfc3339;
use crate::db::LayerRow;
use crate::error::{EngineError, Result, ResultExt};
use crate::images::ImageRecord;
use crate::model::{ContainerConfig, ContainerRecord};
use crate::Engine;

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What `POST /commit` asks for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Repository to tag the image with (empty: untagged).
    pub repo: String,
    /// Tag (empty: `latest` when `repo` is given).
    pub tag: String,
    /// History comment.
    pub comment: String,
    /// Author.
    pub author: String,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// Pause the container while its layer is read.
    pub pause: bool,
    /// Config fields from the request body, over the container's.
    pub config: Option<ContainerConfig>,
}

/// Applies `--change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR,
/// VOLUME, STOPSIGNAL) to `cfg`; anything else is a 400.
pub fn apply_changes(cfg: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    let shell = |cl: CommandLine, shell: &Option<Vec<String>>| -> Vec<String> {
        match cl {
            CommandLine::Exec(v) => v,
            CommandLine::Shell(s) => {
                let mut v = shell
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                v.push(s);
                v
            }
        }
    };
    for change in changes.iter().flat_map(|c| c.lines()) {
        if change.trim().is_empty() {
            continue;
        }
        let instr = parse_line(change, '\\')
            .map_err(|e| EngineError::invalid(format!("invalid change {change:?}: {e}")))?;
        match instr {
            Instruction::Cmd(cl) => cfg.cmd = Some(shell(cl, &cfg.shell)),
            Instruction::Entrypoint(cl) => {
                cfg.entrypoint = Some(shell(cl, &cfg.shell));
                cfg.cmd = None;
            }
            Instruction::Env(pairs) => {
                let mut env = cfg.env.clone().unwrap_or_default();
                for (k, v) in pairs {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                cfg.env = Some(env);
            }
            Instruction::Expose(ports) => {
                let mut map = cfg.exposed_ports.clone().unwrap_or_default();
                for p in ports {
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    map.insert(p, json!({}));
                }
                cfg.exposed_ports = Some(map);
            }
            Instruction::Label(pairs) => {
                let mut labels = cfg.labels.clone().unwrap_or_default();
                labels.extend(pairs);
                cfg.labels = Some(labels);
            }
            Instruction::User(u) => cfg.user = u,
            Instruction::Workdir(w) => cfg.working_dir = w,
            Instruction::Volume(paths) => {
                let mut map = cfg.volumes.clone().unwrap_or_default();
                for p in paths {
                    map.insert(p, json!({}));
                }
                cfg.volumes = Some(map);
            }
            Instruction::StopSignal(s) => cfg.stop_signal = Some(s),
            _ => {
                return Err(EngineError::invalid(format!(
                    "{} is not a valid change command",
                    change.split_whitespace().next().unwrap_or_default()
                )))
            }
        }
    }
    Ok(())
}

/// The image's config with the container's config, changes and one more layer recorded.
fn new_image_config(
    base: &Value,
    c: &ContainerRecord,
    cfg: &ContainerConfig,
    diff_id: &Digest,
    opts: &CommitOptions,
) -> Result<Value> {
    let mut img = base.clone();
    if !img.is_object() {
        img = json!({});
    }
    let created = now_rfc3339();
    let mut cfg_json = serde_json::to_value(cfg)?;
    if let Some(o) = cfg_json.as_object_mut() {
        o.insert("Image".into(), json!(c.image_id));
    }
    img["config"] = cfg_json;
    img["created"] = json!(created);
    img["container"] = json!(c.id);
    if !opts.author.is_empty() {
        img["author"] = json!(opts.author);
    }
    img["comment"] = json!(opts.comment);
    if img.get("architecture").is_none() {
        img["architecture"] = json!(std::env::consts::ARCH.replace("x86_64", "amd64"));
    }
    if img.get("os").is_none() {
        img["os"] = json!("linux");
    }
    let mut diff_ids = img
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(diff_id.to_string()));
    img["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let mut history = img
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut by = c.config.entrypoint.clone().unwrap_or_default();
    by.extend(c.config.cmd.clone().unwrap_or_default());
    let mut h = json!({"created": created, "created_by": by.join(" ")});
    if !opts.comment.is_empty() {
        h["comment"] = json!(opts.comment);
    }
    if !opts.author.is_empty() {
        h["author"] = json!(opts.author);
    }
    history.push(h);
    img["history"] = Value::Array(history);
    Ok(img)
}

impl Engine {
    /// Commits a container's changes as a new image; returns the image id. With a `repo`
    /// the image is tagged `repo:tag`. A running container is paused meanwhile when asked.
    pub async fn commit_container(
        self: &Arc<Self>,
        name: &str,
        opts: CommitOptions,
    ) -> Result<String> {
        let c = self.find_container(name)?;
        let image = self.find_image(&c.image_id)?;
        let mut cfg = c.config.clone();
        if let Some(req) = &opts.config {
            cfg = super::create::merge_config(req, &cfg);
        }
        apply_changes(&mut cfg, &opts.changes)?;
        let paused_here = opts.pause && c.state.running && !c.state.paused;
        if paused_here {
            self.pause_container(&c.id).await?;
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let host_config = c.host_config.clone();
        let layer =
            tokio::task::spawn_blocking(move || engine.commit_layer(&id, &host_config)).await;
        if paused_here {
            if let Err(e) = self.unpause_container(&c.id).await {
                tracing::warn!("unpause {} after commit: {e}", c.id);
            }
        }
        let row = layer.map_err(|e| EngineError::internal(format!("commit task: {e}")))??;
        let diff_id: Digest = row
            .diff_id
            .parse()
            .map_err(|e| EngineError::internal(format!("diff id {}: {e}", row.diff_id)))?;
        let config = new_image_config(&image.config, &c, &cfg, &diff_id, &opts)?;
        let bytes = serde_json::to_vec(&config)?;
        let digest = self.content.write_blob(&bytes).ctx("store image config")?;
        let mut rows = self.db.image_layers(&image.id)?;
        rows.push(row);
        let size = rows
            .iter()
            .map(|r| self.snaps.usage(&r.chain_id).unwrap_or(0) as i64)
            .sum();
        let new_id = digest.to_string();
        let rec = ImageRecord {
            id: new_id.clone(),
            config,
            manifest_digest: None,
            size,
            parent: image.id.clone(),
            last_tag_time: String::new(),
        };
        self.db.put_image(&new_id, &rec, &rows)?;
        if !opts.repo.is_empty() {
            let tag = (!opts.tag.is_empty()).then_some(opts.tag.as_str());
            self.tag_image(&new_id, &opts.repo, tag)?;
        }
        self.container_event_with(
            &c,
            "commit",
            BTreeMap::from([("comment".to_string(), opts.comment.clone())]),
        );
        Ok(new_id)
    }

    /// Diffs the container's upper dir into a gzip blob and a committed snapshot; returns
    /// the new layer's row. A remapped container's owners are recorded as it saw them.
    fn commit_layer(&self, id: &str, host_config: &crate::model::HostConfig) -> Result<LayerRow> {
        let owners = self.layer_owners(host_config);
        let upper = self
            .snaps
            .upper_dir(id)
            .map_err(|e| EngineError::internal(format!("writable layer of {id}: {e}")))?;
        let parent = self
            .snaps
            .parent(id)
            .map_err(|e| EngineError::internal(format!("parent layer of {id}: {e}")))?
            .filter(|p| !p.is_empty());
        let tmp_dir = self.cfg.data_root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).ctx(format!("create {}", tmp_dir.display()))?;
        let tmp = tmp_dir.join(format!("commit-{}.tar.gz", crate::names::new_id()));
        let result = (|| {
            let file = std::fs::File::create(&tmp).ctx(format!("create {}", tmp.display()))?;
            let mut gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::fast(),
            );
            let written = berth_image::diff::write_layer_owned(&upper, &mut gz, &owners)
                .ctx(format!("layer of {}", upper.display()))?;
            let mut inner = gz.finish().ctx(format!("write {}", tmp.display()))?;
            inner.flush().ctx(format!("write {}", tmp.display()))?;
            drop(inner);
            let blob = crate::build_host::import_file(&self.content, &tmp)?;
            let blob_size = std::fs::metadata(&tmp).map(|m| m.len() as i64).unwrap_or(0);
            let chain = match &parent {
                Some(p) => Digest::sha256_of(format!("{p} {}", written.diff_id).as_bytes()),
                None => written.diff_id.clone(),
            };
            let chain_s = chain.to_string();
            if !self.snaps.exists(&chain_s) {
                let key = format!("commit-{}", crate::names::new_id());
                self.snaps
                    .prepare(&key, parent.as_deref())
                    .map_err(|e| EngineError::internal(format!("prepare {key}: {e}")))?;
                let applied = (|| {
                    let dest = self
                        .snaps
                        .upper_dir(&key)
                        .map_err(|e| EngineError::internal(format!("snapshot {key}: {e}")))?;
                    let f = std::fs::File::open(&tmp).ctx(format!("open {}", tmp.display()))?;
                    berth_image::layer::apply_layer(std::io::BufReader::new(f), &dest)
                        .map_err(|e| EngineError::internal(format!("apply commit layer: {e}")))?;
                    self.snaps.commit(&chain_s, &key).map_err(|e| {
                        EngineError::internal(format!("commit snapshot {chain_s}: {e}"))
                    })
                })();
                if let Err(e) = applied {
                    let _ = self.snaps.remove(&key);
                    return Err(e);
                }
            }
            Ok(LayerRow {
                chain_id: chain_s,
                diff_id: written.diff_id.to_string(),
                blob: Some(blob.to_string()),
                blob_size: Some(blob_size),
                media_type: Some(GZIP_LAYER.to_string()),
            })
        })();
        let _ = std::fs::remove_file(&tmp);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply() {
        let mut cfg = ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["A=1".into()]),
            ..Default::default()
        };
        apply_changes(
            &mut cfg,
            &[
                "CMD [\"echo\", \"hi\"]".into(),
                "ENV A=2 B=3".into(),
                "EXPOSE 80".into(),
                "LABEL x=y".into(),
                "WORKDIR /srv".into(),
                "USER nobody".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(cfg.env, Some(vec!["A=2".to_string(), "B=3".to_string()]));
        assert!(cfg.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(cfg.labels.unwrap()["x"], "y");
        assert_eq!(cfg.working_dir, "/srv");
        assert_eq!(cfg.user, "nobody");
        assert!(apply_changes(&mut ContainerConfig::default(), &["RUN true".into()]).is_err());
    }
}
