//! `docker pull`: resolve, download into the content store, unpack into snapshots, record.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_registry::{Credentials, PullEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{digest_key, parse_reference, short_id, tag_key, ImageRecord};
use crate::db::LayerRow;
use crate::error::{EngineError, ErrorKind, Result};
use crate::Engine;

/// Where pull and push progress goes: Docker's JSON progress messages, one per item.
pub type Progress = mpsc::UnboundedSender<Value>;

impl Engine {
    /// Pulls `reference` (a tag defaults to `latest`) and records the image; returns its id.
    /// Progress is sent as Docker's JSON messages. On failure nothing is recorded and no
    /// partial image is listed; downloaded blobs stay in the content store for a resume.
    pub async fn pull_image(
        self: &Arc<Self>,
        reference: &str,
        creds: Option<Credentials>,
        progress: Progress,
    ) -> Result<String> {
        let r = parse_reference(reference)?;
        let shown_tag = match &r.digest {
            Some(d) => d.to_string(),
            None => r.tag_or_latest().to_string(),
        };
        let _ = progress
            .send(json!({"status": format!("Pulling from {}", r.repository), "id": shown_tag}));
        let (tx, mut rx) = mpsc::unbounded_channel::<PullEvent>();
        let fwd = progress.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Some(v) = event_json(&ev) {
                    let _ = fwd.send(v);
                }
            }
        });
        let pulled =
            berth_registry::pull_to_store(&self.registry, &self.content, &r, creds.as_ref(), tx)
                .await
                .map_err(|e| registry_error(&r.familiar(), e));
        let _ = forwarder.await;
        let pulled = pulled?;
        let layers: Vec<(berth_content::Digest, berth_content::Digest)> = pulled
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.diff_id.clone()))
            .collect();
        let this = Arc::clone(self);
        let chain_ids = tokio::task::spawn_blocking(move || {
            berth_image::unpack::unpack_layers(&this.content, &this.snaps, &layers)
        })
        .await
        .map_err(|e| EngineError::internal(format!("unpack task: {e}")))?
        .map_err(|e| EngineError::internal(format!("unpacking {}: {e}", r.familiar())))?;
        for l in &pulled.layers {
            let _ = progress.send(json!({"status": "Pull complete", "progressDetail": {}, "id": short_id(&l.digest.to_string())}));
        }
        let mut size = 0i64;
        let mut rows = Vec::new();
        for (l, chain) in pulled.layers.iter().zip(&chain_ids) {
            size += self.snaps.usage(&chain.to_string()).unwrap_or(0) as i64;
            rows.push(LayerRow {
                chain_id: chain.to_string(),
                diff_id: l.diff_id.to_string(),
                blob: Some(l.digest.to_string()),
                blob_size: Some(l.size as i64),
                media_type: Some(l.media_type.clone()),
            });
        }
        let config: Value = serde_json::from_slice(&pulled.config_bytes).map_err(|e| {
            EngineError::invalid(format!("image config of {} is not JSON: {e}", r.familiar()))
        })?;
        let id = pulled.config_digest.to_string();
        let existed = self.db.get::<ImageRecord>("images", "id", &id)?;
        let previous_tag = match &r.digest {
            None => self.db.get_ref("tags", &tag_key(&r))?,
            Some(_) => None,
        };
        let record = ImageRecord {
            id: id.clone(),
            config,
            manifest_digest: Some(pulled.manifest_digest.to_string()),
            size,
            parent: String::new(),
            last_tag_time: existed.map(|e| e.last_tag_time).unwrap_or_default(),
        };
        self.db.put_image(&id, &record, &rows)?;
        let mdigest = pulled.manifest_digest.to_string();
        self.db
            .set_ref("repo_digests", &digest_key(&r, &mdigest), &id)?;
        if r.digest.is_none() {
            self.db.set_ref("tags", &tag_key(&r), &id)?;
        }
        let _ = progress.send(json!({"status": format!("Digest: {mdigest}")}));
        let up_to_date = previous_tag.as_deref() == Some(id.as_str());
        let status = if up_to_date {
            format!("Status: Image is up to date for {}", r.familiar())
        } else {
            format!("Status: Downloaded newer image for {}", r.familiar())
        };
        let _ = progress.send(json!({ "status": status }));
        self.events.publish(
            "image",
            "pull",
            &r.familiar(),
            BTreeMap::from([("name".to_string(), r.familiar())]),
        );
        Ok(id)
    }
}

/// Maps a registry error onto an engine error naming the image.
fn registry_error(image: &str, e: berth_registry::RegistryError) -> EngineError {
    let msg = e.to_string();
    let kind = if msg.contains("not found") || msg.contains("unknown") {
        ErrorKind::NotFound
    } else if msg.contains("unauthorized") || msg.contains("authentication") {
        ErrorKind::Unauthorized
    } else {
        ErrorKind::Unavailable
    };
    EngineError::new(kind, format!("pull {image}: {msg}"))
}

/// One registry progress event as Docker's JSON progress message.
fn event_json(ev: &PullEvent) -> Option<Value> {
    let bar = |cur: u64, total: Option<u64>| -> String {
        match total {
            Some(t) if t > 0 => {
                let width = 50u64;
                let done = (cur.min(t) * width / t) as usize;
                let arrow = if done < width as usize { ">" } else { "" };
                format!(
                    "[{}{}{}] {}/{}",
                    "=".repeat(done.saturating_sub(usize::from(!arrow.is_empty()))),
                    arrow,
                    " ".repeat(width as usize - done),
                    human(cur),
                    human(t)
                )
            }
            _ => human(cur),
        }
    };
    Some(match ev {
        PullEvent::Resolved { .. } => return None,
        PullEvent::PullingFsLayer(id) => {
            json!({"status": "Pulling fs layer", "progressDetail": {}, "id": id})
        }
        PullEvent::Verifying(id) => {
            json!({"status": "Verifying Checksum", "progressDetail": {}, "id": id})
        }
        PullEvent::AlreadyExists(id) => {
            json!({"status": "Already exists", "progressDetail": {}, "id": id})
        }
        PullEvent::Waiting(id) => json!({"status": "Waiting", "progressDetail": {}, "id": id}),
        PullEvent::Downloading { id, current, total } => json!({
            "status": "Downloading",
            "progressDetail": {"current": current, "total": total},
            "progress": bar(*current, *total),
            "id": id,
        }),
        PullEvent::DownloadComplete(id) => {
            json!({"status": "Download complete", "progressDetail": {}, "id": id})
        }
    })
}

fn human(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.3}GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}kB", n / 1e3)
    } else {
        format!("{n}B")
    }
}
