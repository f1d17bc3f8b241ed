//! `docker import`: a root filesystem tar becomes a one-layer image.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use berth_build::parser::{parse_line, CommandLine, Instruction};
use berth_content::Digest;
use berth_image::layer::{decompress, Compression};
use berth_image::manifest::{host_platform, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use super::{parse_reference, tag_key, ImageRecord};
use crate::db::LayerRow;
use crate::error::{EngineError, Result};
use crate::Engine;

/// What `POST /images/create?fromSrc=-` asks for besides the tar itself.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo` (may carry a tag: "name:tag").
    pub repo: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
    /// `changes`: Dockerfile lines (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER,
    /// VOLUME, WORKDIR) applied to the new image's config.
    pub changes: Vec<String>,
    /// `message`: the history comment.
    pub message: String,
}

impl Engine {
    /// Imports the tar (plain, gzip or zstd) at `tar` as a single-layer image with the
    /// config `opts.changes` describe, tags it as `repo[:tag]` if given, and returns its id.
    /// A tar that escapes its root or a bad change line fails with nothing recorded.
    pub async fn import_image(self: &Arc<Self>, tar: &Path, opts: ImportOptions) -> Result<String> {
        let target = match (&opts.repo, &opts.tag) {
            (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
            (Some(r), _) if !r.is_empty() => Some(r.clone()),
            _ => None,
        };
        let target = target.map(|t| parse_reference(&t)).transpose()?;
        let run_config = apply_changes(&opts.changes)?;
        let this = Arc::clone(self);
        let path = tar.to_path_buf();
        let id = tokio::task::spawn_blocking(move || {
            this.import_blocking(&path, run_config, &opts.message)
        })
        .await
        .map_err(|e| EngineError::internal(format!("import task: {e}")))??;
        if let Some(r) = target {
            self.db.set_ref("tags", &tag_key(&r), &id)?;
            self.events.publish(
                "image",
                "tag",
                &id,
                BTreeMap::from([("name".into(), tag_key(&r))]),
            );
        }
        self.events.publish("image", "import", &id, BTreeMap::new());
        Ok(id)
    }

    fn import_blocking(
        &self,
        tar: &Path,
        run_config: Map<String, Value>,
        message: &str,
    ) -> Result<String> {
        let open = || {
            std::fs::File::open(tar)
                .map_err(|e| EngineError::internal(format!("import tar {}: {e}", tar.display())))
        };
        let mut head = [0u8; 4];
        let n = open()?.read(&mut head).unwrap_or(0);
        let media_type = match Compression::detect(&head[..n]) {
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
            _ => OCI_LAYER_TAR,
        };
        let (blob, blob_size) = self
            .content
            .write_stream(open()?)
            .map_err(|e| EngineError::internal(format!("storing imported layer: {e}")))?;
        let diff_id = if media_type == OCI_LAYER_TAR {
            blob.clone()
        } else {
            let mut reader = decompress(open()?).map_err(|e| {
                EngineError::invalid(format!("import: reading compressed tar: {e}"))
            })?;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut reader, &mut hasher)
                .map_err(|e| EngineError::invalid(format!("import: decompressing tar: {e}")))?;
            Digest::from_sha256_bytes(&hasher.finalize())
        };
        let chains = berth_image::unpack::unpack_layers(
            &self.content,
            &self.snaps,
            &[(blob.clone(), diff_id.clone())],
        )
        .map_err(|e| EngineError::invalid(format!("import: {e}")))?;
        let chain = chains
            .first()
            .ok_or_else(|| EngineError::internal("import: no layer unpacked"))?
            .to_string();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let platform = host_platform();
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "created": now,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created": now, "created_by": "", "comment": if message.is_empty() { "Imported from -" } else { message }}],
        });
        if !message.is_empty() {
            config["comment"] = json!(message);
        }
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| EngineError::internal(format!("import config: {e}")))?;
        let id = self
            .content
            .write_blob(&bytes)
            .map_err(|e| EngineError::internal(format!("storing import config: {e}")))?
            .to_string();
        let row = LayerRow {
            chain_id: chain.clone(),
            diff_id: diff_id.to_string(),
            blob: Some(blob.to_string()),
            blob_size: Some(blob_size as i64),
            media_type: Some(media_type.to_string()),
        };
        let record = ImageRecord {
            id: id.clone(),
            config,
            manifest_digest: None,
            size: self.snaps.usage(&chain).unwrap_or(0) as i64,
            parent: String::new(),
            last_tag_time: String::new(),
        };
        self.db.put_image(&id, &record, &[row])?;
        Ok(id)
    }
}

/// Turns `changes` lines into the `config` section of an image config (Docker's shape).
pub fn apply_changes(changes: &[String]) -> Result<Map<String, Value>> {
    let mut c = Map::new();
    let bad =
        |line: &str, why: &str| EngineError::invalid(format!("invalid change {line:?}: {why}"));
    for line in changes.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let ins = parse_line(line, '\\').map_err(|e| bad(line, &e.to_string()))?;
        let cmd = |cl: CommandLine| match cl {
            CommandLine::Exec(v) => json!(v),
            CommandLine::Shell(s) => json!(["/bin/sh", "-c", s]),
        };
        match ins {
            Instruction::Cmd(cl) => {
                c.insert("Cmd".into(), cmd(cl));
            }
            Instruction::Entrypoint(cl) => {
                c.insert("Entrypoint".into(), cmd(cl));
            }
            Instruction::Env(pairs) => {
                let env = c.entry("Env").or_insert_with(|| json!([]));
                if let Some(list) = env.as_array_mut() {
                    for (k, v) in pairs {
                        list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|p| p.0) != Some(k.as_str()));
                        list.push(json!(format!("{k}={}", unquote(&v))));
                    }
                }
            }
            Instruction::Label(pairs) => {
                let labels = c.entry("Labels").or_insert_with(|| json!({}));
                for (k, v) in pairs {
                    labels[unquote(&k)] = json!(unquote(&v));
                }
            }
            Instruction::Expose(ports) => {
                let exposed = c.entry("ExposedPorts").or_insert_with(|| json!({}));
                for p in ports {
                    let key = if p.contains('/') { p } else { format!("{p}/tcp") };
                    exposed[key] = json!({});
                }
            }
            Instruction::Volume(paths) => {
                let vols = c.entry("Volumes").or_insert_with(|| json!({}));
                for p in paths {
                    vols[p] = json!({});
                }
            }
            Instruction::User(u) => {
                c.insert("User".into(), json!(u));
            }
            Instruction::Workdir(w) => {
                c.insert("WorkingDir".into(), json!(w));
            }
            Instruction::OnBuild(text, _) => {
                let list = c.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.push(json!(text));
                }
            }
            Instruction::StopSignal(s) => {
                c.insert("StopSignal".into(), json!(s));
            }
            _ => return Err(bad(line, "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR are allowed")),
        }
    }
    Ok(c)
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn changes_become_config() {
        let c = super::apply_changes(&[
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
            "ENV A=1 B=\"two words\"".into(),
            "EXPOSE 80".into(),
            "WORKDIR /tmp".into(),
            "LABEL x=y".into(),
        ])
        .unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(c["Env"], json!(["A=1", "B=two words"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(c["WorkingDir"], json!("/tmp"));
        assert_eq!(c["Labels"], json!({"x": "y"}));
        assert!(super::apply_changes(&["RUN true".into()]).is_err());
    }
}
