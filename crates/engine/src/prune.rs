//! Disk accounting and reclaiming: `system df`, `container prune`, `image prune`,
//! `builder prune`. Garbage collection follows the references in the metadata DB.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::db::LayerRow;
use crate::error::{EngineError, Result};
use crate::images::ImageRecord;
use crate::model::ContainerRecord;
use crate::volumes::dir_size;
use crate::Engine;

/// Image garbage collection against pulls in flight, one per [`Engine`]. Pulls hold the
/// lock shared; collection holds it exclusively. A pull reuses blobs and snapshots that no
/// DB record protects until it records its image, so nothing may delete those under it:
/// `image prune` refuses while a pull runs, and `rmi` deletes the image's records at once
/// but leaves its snapshots and blobs to [`Engine::collect_deferred`], run when the last
/// pull lease drops.
#[derive(Default)]
pub struct GcState {
    lock: Arc<RwLock<()>>,
    /// Layers and blobs of deleted images whose collection waits for the pulls in flight.
    pending: Mutex<Deferred>,
}

#[derive(Default)]
struct Deferred {
    layers: Vec<LayerRow>,
    blobs: Vec<String>,
}

/// Held by a pull for its whole duration; see [`Engine::pull_lease`]. Dropping the last
/// one runs the collection that `rmi` deferred meanwhile.
pub struct PullLease {
    guard: Option<OwnedRwLockReadGuard<()>>,
    engine: Arc<Engine>,
}

impl Drop for PullLease {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Err(e) = self.engine.collect_deferred() {
            tracing::warn!("gc after pull: {e}");
        }
    }
}

impl Engine {
    /// A lease that keeps image garbage collection (`image prune`, `system prune`, the
    /// snapshot and blob removal of `rmi`) from touching anything while it is held: take
    /// it before a pull starts (API pulls and a build's `FROM`) and drop it once the image
    /// is recorded (or the pull failed). Waits while a collection is running.
    pub async fn pull_lease(self: &Arc<Self>) -> PullLease {
        let guard = Arc::clone(&self.gc.lock).read_owned().await;
        PullLease {
            guard: Some(guard),
            engine: Arc::clone(self),
        }
    }

    /// Removes the snapshots and blobs of a deleted image that nothing references any more
    /// (`layers` of the image, then the `blobs` config and manifest digests), or, while a
    /// pull is in flight (or a collection runs), records them for [`Self::collect_deferred`].
    pub(crate) fn collect_or_defer(&self, layers: Vec<LayerRow>, blobs: Vec<String>) -> Result<()> {
        {
            let mut p = self.gc.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.layers.extend(layers);
            p.blobs.extend(blobs);
        }
        self.collect_deferred()
    }

    /// Collects what [`Self::collect_or_defer`] recorded, unless a pull or another
    /// collection holds the GC lock (the last of them runs it again when it ends).
    pub fn collect_deferred(&self) -> Result<()> {
        let Ok(_gc) = Arc::clone(&self.gc.lock).try_write_owned() else {
            return Ok(());
        };
        let Deferred { layers, blobs } = {
            let mut p = self.gc.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *p)
        };
        self.collect_layers(&layers)?;
        for b in blobs {
            if !self.db.blob_in_use(&b)? {
                if let Ok(d) = b.parse() {
                    let _ = self.content.delete(&d);
                }
            }
        }
        Ok(())
    }

    /// Removes build cache records and the snapshots only they kept alive. Returns the
    /// short ids of the records removed (12 hex of their key) and the bytes reclaimed.
    pub fn prune_build_cache(&self) -> Result<(Vec<String>, u64)> {
        let keys: Vec<String> = {
            let conn = self.db.lock();
            let mut stmt = conn.prepare("SELECT key FROM build_cache")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let mut space = 0;
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(chain) = key.strip_prefix("layer:") {
                if !self.db.chain_in_use(chain)? && self.snaps.exists(chain) {
                    space += self.snaps.usage(chain).unwrap_or(0);
                    let _ = self.snaps.remove(chain);
                }
            }
            self.db.delete("build_cache", "key", &key)?;
            let hex = key.rsplit(':').next().unwrap_or(&key);
            ids.push(hex[..12.min(hex.len())].to_string());
        }
        Ok((ids, space))
    }

    /// `POST /containers/prune`: removes every stopped container.
    pub async fn prune_containers(self: &Arc<Self>) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for c in self.db.all::<ContainerRecord>("containers")? {
            if c.state.running || c.state.restarting {
                continue;
            }
            space += self
                .snaps
                .upper_dir(&c.id)
                .map(|p| dir_size(&p))
                .unwrap_or(0);
            self.remove_container(&c.id, false, false).await?;
            removed.push(c.id);
        }
        Ok((removed, space))
    }

    /// `POST /images/prune`: dangling images, or every unused one with `all`.
    /// Refused with a conflict while a pull holds a [`PullLease`] (the pull may be reusing
    /// layers that only the pruned images reference so far), as Docker refuses a second
    /// prune running at once.
    pub fn prune_images(&self, all: bool) -> Result<(Vec<Value>, u64)> {
        let gc = Arc::clone(&self.gc.lock).try_write_owned().map_err(|_| {
            EngineError::conflict(
                "a pull is in progress: image prune would race with it, try again once it is done",
            )
        })?;
        let tagged: HashSet<String> = self
            .db
            .all_refs("tags")?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let used: HashSet<String> = self
            .db
            .all::<ContainerRecord>("containers")?
            .into_iter()
            .map(|c| c.image_id)
            .collect();
        let mut out = Vec::new();
        let mut space = 0;
        for img in self.db.all::<ImageRecord>("images")? {
            if used.contains(&img.id) || (!all && tagged.contains(&img.id)) {
                continue;
            }
            for (name, id) in self.db.all_refs("tags")? {
                if id == img.id {
                    self.db.delete_ref("tags", &name)?;
                    out.push(json!({"Untagged": name}));
                }
            }
            space += img.size.max(0) as u64;
            self.delete_image_data(&img)?;
            out.push(json!({"Deleted": img.id}));
        }
        drop(gc);
        self.collect_deferred()?;
        Ok((out, space))
    }

    /// `GET /system/df`.
    pub fn disk_usage(&self) -> Result<Value> {
        let containers: Vec<ContainerRecord> = self.db.all("containers")?;
        let images = self.list_images(None, None)?;
        let mut layers_size = 0i64;
        let mut seen = HashSet::new();
        for img in self.db.all::<ImageRecord>("images")? {
            for l in self.db.image_layers(&img.id)? {
                if seen.insert(l.chain_id.clone()) {
                    layers_size += self.snaps.usage(&l.chain_id).unwrap_or(0) as i64;
                }
            }
        }
        let cs: Vec<Value> = containers
            .iter()
            .map(|c| {
                let rw = self.snaps.upper_dir(&c.id).map(|p| dir_size(&p)).unwrap_or(0);
                json!({
                    "Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.config.image, "ImageID": c.image_id,
                    "Command": "", "Created": chrono::DateTime::parse_from_rfc3339(&c.created).map(|t| t.timestamp()).unwrap_or(0),
                    "State": crate::containers::inspect::state_word(c), "Status": crate::containers::inspect::status_text(c),
                    "SizeRw": rw, "SizeRootFs": rw, "Mounts": c.mounts, "Labels": c.config.labels,
                })
            })
            .collect();
        let used = self.volumes_in_use()?;
        let vols: Vec<Value> = self
            .list_volumes(None)?
            .into_iter()
            .map(|v| {
                let size = dir_size(std::path::Path::new(&v.mountpoint));
                let refs = used.get(&v.name).map(|u| u.len()).unwrap_or(0);
                let mut j = json!(v);
                j["UsageData"] = json!({"Size": size, "RefCount": refs});
                j
            })
            .collect();
        let mut cache = Vec::new();
        let keys: Vec<(String, String)> = {
            let conn = self.db.lock();
            let mut stmt =
                conn.prepare("SELECT key, data FROM build_cache WHERE key LIKE 'layer:%'")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for (key, _) in keys {
            let chain = key.trim_start_matches("layer:");
            let in_use = self.db.chain_in_use(chain)?;
            cache.push(json!({
                "ID": &chain[7..19.min(chain.len())], "Type": "regular", "Description": "build step layer",
                "InUse": in_use, "Shared": in_use, "Size": self.snaps.usage(chain).unwrap_or(0), "UsageCount": 1,
                "CreatedAt": crate::containers::now_rfc3339(), "LastUsedAt": null,
            }));
        }
        Ok(json!({
            "LayersSize": layers_size,
            "Images": images,
            "Containers": cs,
            "Volumes": vols,
            "BuildCache": cache,
        }))
    }
}
