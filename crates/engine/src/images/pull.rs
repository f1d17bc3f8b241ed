//! `docker pull`: resolve, download into the content store while unpacking into
//! snapshots, record.
//!
//! Each layer is extracted while it downloads: the blob's bytes go both to the content
//! store and, through a bounded tee, to a blocking extractor that applies them into a
//! parentless scratch snapshot (layers are diffs, so they extract in parallel, in any
//! order) and hashes the uncompressed stream. Once the whole pull is in, layers are
//! committed base first, each on its parent, under their ChainIDs: only when the blob
//! digest verified (the download succeeded) and the diff_id matched. A layer whose
//! streamed extraction failed for any reason (the tee was abandoned because the
//! download restarted from zero, the blob was already stored by another pull, a bad
//! tar) is unpacked again from the verified blob in the store, which gives the
//! authoritative result. A resumed download replays the partial bytes on disk to its
//! extractor first, then continues from the network. Blobs already in the store are
//! extracted from it, in parallel with the downloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use berth_content::Digest;
use berth_image::{
    chain_ids, commit_extracted, discard_extracted, extract_layer, extract_layer_from_store,
    Extracted, UnpackError,
};
use berth_registry::{blob_tee, BlobTee, Credentials, LayerDesc, PullEvent, PulledManifest};
use berth_registry::{RegistryError, TeeReader};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

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
        let (pulled, chain_ids) = self
            .pull_and_unpack(&r, creds.as_ref(), tx, forwarder, &progress)
            .await?;
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

type Extraction = std::result::Result<Extracted, UnpackError>;

/// Layers of one pull extracted into scratch snapshots and not yet committed. Dropping it
/// (a failed or cancelled pull) removes those scratch snapshots.
struct Extractions {
    engine: Arc<Engine>,
    done: HashMap<usize, Extraction>,
}

impl Drop for Extractions {
    fn drop(&mut self) {
        for (_, x) in self.done.drain() {
            if let Ok(x) = x {
                discard_extracted(&self.engine.snaps, x);
            }
        }
    }
}

/// Where an extractor reads its layer from.
enum Source {
    Tee(TeeReader),
    Store,
}

/// Extracts layer `l` on a blocking thread; the result arrives on the receiver. If
/// nobody waits for it any more, the extractor discards what it made.
fn spawn_extract(
    engine: &Arc<Engine>,
    l: &LayerDesc,
    source: Source,
) -> oneshot::Receiver<Extraction> {
    let (tx, rx) = oneshot::channel();
    let e = Arc::clone(engine);
    let (blob, diff_id) = (l.digest.clone(), l.diff_id.clone());
    tokio::task::spawn_blocking(move || {
        let res = match source {
            Source::Tee(reader) => extract_layer(&e.snaps, &blob, &diff_id, reader),
            Source::Store => extract_layer_from_store(&e.content, &e.snaps, &blob, &diff_id),
        };
        if let Err(Ok(x)) = tx.send(res) {
            discard_extracted(&e.snaps, x);
        }
    });
    rx
}

impl Engine {
    /// Resolves `r`, downloads its layers while extracting them (see the module docs) and
    /// commits their snapshots; returns what was pulled and the layers' ChainIDs.
    async fn pull_and_unpack(
        self: &Arc<Self>,
        r: &berth_image::Reference,
        creds: Option<&Credentials>,
        events: mpsc::UnboundedSender<PullEvent>,
        forwarder: tokio::task::JoinHandle<()>,
        progress: &Progress,
    ) -> Result<(PulledManifest, Vec<Digest>)> {
        let familiar = r.familiar();
        let reg_err = |e: RegistryError| registry_error(&familiar, e);
        let pulled =
            berth_registry::resolve_image(&self.registry, &self.content, r, creds, &events)
                .await
                .map_err(reg_err)?;
        let diff_ids: Vec<Digest> = pulled.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        // Plan: blobs in the store extract now; the first layer needing each missing blob
        // extracts from its download's tee; any other needed layer unpacks from the store
        // at commit time.
        let jobs: Mutex<Vec<(usize, oneshot::Receiver<Extraction>)>> = Mutex::new(Vec::new());
        let mut tee_targets: HashMap<Digest, usize> = HashMap::new();
        for (i, (l, chain)) in pulled.layers.iter().zip(&chains).enumerate() {
            if self.snaps.exists(&chain.to_string()) {
                continue;
            }
            if self.content.has(&l.digest) {
                let rx = spawn_extract(self, l, Source::Store);
                jobs.lock().unwrap_or_else(|p| p.into_inner()).push((i, rx));
            } else {
                tee_targets.entry(l.digest.clone()).or_insert(i);
            }
        }
        let tee_for = |l: &LayerDesc| -> Option<BlobTee> {
            let i = *tee_targets.get(&l.digest)?;
            let (tee, reader) = blob_tee();
            let rx = spawn_extract(self, &pulled.layers[i], Source::Tee(reader));
            jobs.lock().unwrap_or_else(|p| p.into_inner()).push((i, rx));
            Some(tee)
        };
        let fetched = berth_registry::fetch_layers(
            &self.registry,
            &self.content,
            r,
            creds,
            &pulled,
            &events,
            &tee_for,
        )
        .await;
        drop(events);
        // Download progress is all out before "Pull complete" lines.
        let _ = forwarder.await;
        let jobs = jobs.into_inner().unwrap_or_else(|p| p.into_inner());
        // Wait for every extractor even when the download failed (their tees are abandoned,
        // so they end soon): a failed pull returns only once its scratch snapshots are gone.
        // (A cancelled pull drops the receivers; extractors then discard their own.)
        let mut ex = Extractions {
            engine: Arc::clone(self),
            done: HashMap::new(),
        };
        for (i, rx) in jobs {
            if let Ok(res) = rx.await {
                ex.done.insert(i, res);
            }
        }
        if let Err(e) = fetched {
            let _ = tokio::task::spawn_blocking(move || drop(ex)).await;
            return Err(reg_err(e));
        }
        let this = Arc::clone(self);
        let layers = pulled.layers.clone();
        let chain_list = chains.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), UnpackError> {
            // Every layer extracted and verified before any is committed, so a bad layer
            // leaves no snapshot behind, not even of the good layers below it.
            for (i, (l, chain)) in layers.iter().zip(&chain_list).enumerate() {
                if this.snaps.exists(&chain.to_string()) || matches!(ex.done.get(&i), Some(Ok(_))) {
                    continue;
                }
                if let Some(Err(e)) = ex.done.get(&i) {
                    tracing::debug!(blob = %l.digest, error = %e, "streamed extraction failed, unpacking the stored blob");
                }
                let x = extract_layer_from_store(&this.content, &this.snaps, &l.digest, &l.diff_id)?;
                ex.done.insert(i, Ok(x));
            }
            let mut parent: Option<String> = None;
            for (i, (l, chain)) in layers.iter().zip(&chain_list).enumerate() {
                let name = chain.to_string();
                match ex.done.remove(&i) {
                    Some(Ok(x)) => commit_extracted(&this.snaps, x, &name, parent.as_deref())?,
                    // Only a layer that was committed already (checked above) has no extraction.
                    _ if this.snaps.exists(&name) => {}
                    _ => {
                        let x = extract_layer_from_store(&this.content, &this.snaps, &l.digest, &l.diff_id)?;
                        commit_extracted(&this.snaps, x, &name, parent.as_deref())?;
                    }
                }
                let _ = progress.send(json!({"status": "Pull complete", "progressDetail": {}, "id": short_id(&l.digest.to_string())}));
                parent = Some(name);
            }
            Ok(())
        })
        .await
        .map_err(|e| EngineError::internal(format!("unpack task: {e}")))?
        .map_err(|e| EngineError::internal(format!("unpacking {}: {e}", r.familiar())))?;
        Ok((pulled, chains))
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
