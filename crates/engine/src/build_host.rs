//! The engine's side of `docker build`: [`berth_build::BuildHost`] over the snapshotter,
//! the content store, the shim and the metadata DB.
//!
//! RUN steps run through the same shim and runtime as `docker run`, with the same spec
//! defaults (capabilities, seccomp, masked paths); their network is the host's unless the
//! step asks for `none` (noted in docs/build.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use berth_build::host::{
    BaseImage, BuildHost, CachedStep, HostError, Layer, RunMount, RunSpec, WorkRoot,
};
use berth_content::Digest;
use berth_runtime::{MountSpec, NetnsMode, SpecOptions, UserSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::containers::userns::{create_dirs_owned, RemapStepError};
use crate::db::LayerRow;
use crate::error::{EngineError, ErrorKind};
use crate::images::ImageRecord;
use crate::Engine;

mod session;
mod step;
use step::read_stubs;
mod stubs;

pub use session::ChannelReader;

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer made by a build step: where its blob is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BuiltLayer {
    diff_id: String,
    blob: String,
    blob_size: i64,
}

/// The engine as a build host.
pub struct EngineBuildHost {
    engine: Arc<Engine>,
}

impl EngineBuildHost {
    /// Wraps the engine.
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(Self { engine })
    }
}

fn failed(e: impl std::fmt::Display) -> HostError {
    HostError::Failed(e.to_string())
}

fn host_err(e: EngineError) -> HostError {
    match e.kind() {
        ErrorKind::NotFound => HostError::NotFound(e.to_string()),
        ErrorKind::InvalidArgument => HostError::Invalid(e.to_string()),
        _ => HostError::Failed(e.to_string()),
    }
}

impl Engine {
    fn build_dir(&self, key: &str) -> PathBuf {
        self.cfg.data_root.join("build").join(key)
    }

    /// The layer rows (bottom first) of the chain ending at `top`, from the images and
    /// build layers that know them.
    fn rows_for_chain(&self, diff_ids: &[Digest]) -> Result<Vec<LayerRow>, EngineError> {
        let chains = berth_image::layer::chain_ids(diff_ids);
        let mut rows = Vec::new();
        for (diff, chain) in diff_ids.iter().zip(&chains) {
            let chain_s = chain.to_string();
            let built: Option<BuiltLayer> =
                self.db
                    .get("build_cache", "key", &format!("layer:{chain_s}"))?;
            let (blob, blob_size, media_type) = match built {
                Some(b) => (
                    Some(b.blob),
                    Some(b.blob_size),
                    Some(GZIP_LAYER.to_string()),
                ),
                None => {
                    let conn = self.db.lock();
                    let r: Option<(Option<String>, Option<i64>, Option<String>)> = rusqlite::OptionalExtension::optional(conn.query_row(
                        "SELECT blob, blob_size, media_type FROM image_layers WHERE chain_id = ?1 LIMIT 1",
                        [&chain_s],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    ))?;
                    r.unwrap_or((None, None, None))
                }
            };
            rows.push(LayerRow {
                chain_id: chain_s,
                diff_id: diff.to_string(),
                blob,
                blob_size,
                media_type,
            });
        }
        Ok(rows)
    }
}

#[async_trait]
impl BuildHost for EngineBuildHost {
    async fn resolve_base(
        &self,
        name: &str,
        _platform: Option<&str>,
        pull: bool,
    ) -> Result<BaseImage, HostError> {
        let e = &self.engine;
        let img = match (pull, e.find_image(name)) {
            (false, Ok(img)) => img,
            _ => {
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                // Image GC must not collect what this pull reuses until it is recorded.
                let _lease = e.pull_lease().await;
                let id = e.pull_image(name, None, tx).await.map_err(host_err)?;
                e.find_image(&id).map_err(host_err)?
            }
        };
        let layers = e.db.image_layers(&img.id).map_err(host_err)?;
        Ok(BaseImage {
            image_id: img.id.clone(),
            image: img.config.clone(),
            top_layer: layers.last().map(|l| l.chain_id.clone()),
        })
    }

    async fn prepare_rootfs(&self, parent_layer: Option<&str>) -> Result<WorkRoot, HostError> {
        let e = &self.engine;
        let key = format!("build-{}", crate::names::new_id());
        let mounts = e
            .snaps
            .prepare(&key, parent_layer.filter(|p| !p.is_empty()))
            .map_err(failed)?;
        let rootfs = e.build_dir(&key).join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(failed)?;
        let mounted = match &e.idmap {
            Some(ns) => berth_snapshot::mount_all_idmapped(&mounts, &rootfs, ns).map_err(failed),
            None => berth_snapshot::mount_all(&mounts, &rootfs).map_err(failed),
        };
        if let Err(err) = mounted {
            let _ = berth_snapshot::unmount(&rootfs);
            let _ = e.snaps.remove(&key);
            return Err(err);
        }
        Ok(WorkRoot { key, rootfs })
    }

    async fn run(
        &self,
        work: &WorkRoot,
        spec: RunSpec,
        output: UnboundedSender<String>,
    ) -> Result<i32, HostError> {
        let e = &self.engine;
        let user = crate::users::resolve_user(&work.rootfs, &spec.user, &[]).map_err(host_err)?;
        let mut o = SpecOptions::new(work.key.clone(), work.rootfs.clone(), spec.args.clone());
        o.env = spec.env.clone();
        if !o.env.iter().any(|v| v.starts_with("HOME=")) {
            o.env.push(format!(
                "HOME={}",
                if user.home.is_empty() {
                    "/"
                } else {
                    &user.home
                }
            ));
        }
        o.cwd = if spec.cwd.is_empty() {
            "/".into()
        } else {
            spec.cwd.clone()
        };
        if let Ok(p) = crate::containers::start::berth_image_safe_join(&work.rootfs, &o.cwd) {
            let owner = e.idmap.as_ref().map(|ns| (ns.root_uid(), ns.root_gid()));
            // As before remapping: a cwd that cannot be made fails in the runtime instead.
            if let Err(err) = create_dirs_owned(&p, owner) {
                tracing::warn!("build step {}: working directory: {err}", work.key);
            }
        }
        o.user = UserSpec {
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
        };
        o.hostname = work.key[6..18].to_string();
        o.userns = e.build_userns_maps();
        o.netns = if spec.network == "none" {
            NetnsMode::None
        } else {
            NetnsMode::Host
        };
        if spec.network != "none" {
            o.mounts.push(MountSpec {
                destination: "/etc/resolv.conf".into(),
                source: "/etc/resolv.conf".into(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "ro".into()],
            });
        }
        let dir = e.build_dir(&work.key);
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            o.hostname
        );
        for (name, content) in [("hosts", hosts), ("hostname", format!("{}\n", o.hostname))] {
            let file = dir.join(name);
            std::fs::write(&file, content).map_err(failed)?;
            o.mounts.push(MountSpec {
                destination: format!("/etc/{name}"),
                source: file.display().to_string(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "ro".into()],
            });
        }
        for m in &spec.mounts {
            match m {
                RunMount::Cache {
                    id,
                    target,
                    readonly,
                    ..
                } => {
                    let safe: String = id
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    let dir = e.cache_mount_dir(&safe).map_err(failed)?;
                    o.mounts.push(MountSpec {
                        destination: target.clone(),
                        source: dir.display().to_string(),
                        kind: "bind".into(),
                        options: vec![
                            "rbind".into(),
                            if *readonly { "ro".into() } else { "rw".into() },
                        ],
                    });
                }
                RunMount::Bind {
                    source,
                    target,
                    readonly,
                } => {
                    o.mounts.push(MountSpec {
                        destination: target.clone(),
                        source: source.display().to_string(),
                        kind: "bind".into(),
                        options: vec![
                            "rbind".into(),
                            if *readonly { "ro".into() } else { "rw".into() },
                        ],
                    });
                }
                RunMount::Tmpfs { target } => {
                    o.mounts.push(MountSpec {
                        destination: target.clone(),
                        source: "tmpfs".into(),
                        kind: "tmpfs".into(),
                        options: vec!["nosuid".into(), "nodev".into()],
                    });
                }
            }
        }
        e.run_in_rootfs(&work.key, o, output)
            .await
            .map_err(host_err)
    }

    async fn commit(&self, work: WorkRoot) -> Result<Layer, HostError> {
        let e = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || commit_blocking(&e, &work))
            .await
            .map_err(failed)?
    }

    async fn discard(&self, work: WorkRoot) -> Result<(), HostError> {
        let e = &self.engine;
        let _ = berth_snapshot::unmount(&work.rootfs);
        let _ = std::fs::remove_dir_all(e.build_dir(&work.key));
        e.snaps.remove(&work.key).map_err(failed)?;
        Ok(())
    }

    async fn create_image(
        &self,
        image: Value,
        _top_layer: Option<&str>,
    ) -> Result<String, HostError> {
        let e = &self.engine;
        let bytes = serde_json::to_vec(&image).map_err(failed)?;
        let digest = e.content.write_blob(&bytes).map_err(failed)?;
        let diff_ids: Vec<Digest> = image
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str())
                    .filter_map(|d| d.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let rows = e.rows_for_chain(&diff_ids).map_err(host_err)?;
        let mut size = 0i64;
        for r in &rows {
            size += e.snaps.usage(&r.chain_id).unwrap_or(0) as i64;
        }
        let id = digest.to_string();
        let rec = ImageRecord {
            id: id.clone(),
            config: image,
            manifest_digest: None,
            size,
            parent: String::new(),
            last_tag_time: String::new(),
        };
        e.db.put_image(&id, &rec, &rows).map_err(host_err)?;
        Ok(id)
    }

    async fn tag(&self, image_id: &str, tag: &str) -> Result<(), HostError> {
        let e = &self.engine;
        let r = crate::images::parse_reference(tag).map_err(host_err)?;
        e.db.set_ref("tags", &crate::images::tag_key(&r), image_id)
            .map_err(host_err)?;
        e.events.publish(
            "image",
            "tag",
            image_id,
            BTreeMap::from([("name".into(), crate::images::tag_key(&r))]),
        );
        Ok(())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<CachedStep>, HostError> {
        let e = &self.engine;
        let step: Option<CachedStep> =
            e.db.get("build_cache", "key", &format!("step:{key}"))
                .map_err(host_err)?;
        Ok(step.filter(|s| {
            s.top_layer
                .as_deref()
                .is_none_or(|t| t.is_empty() || e.snaps.exists(t))
        }))
    }

    async fn cache_put(&self, key: &str, step: &CachedStep) -> Result<(), HostError> {
        self.engine
            .db
            .put_keyed("build_cache", "key", &format!("step:{key}"), step)
            .map_err(host_err)
    }
}

impl Engine {
    /// The user namespace a build step runs in under `--userns-remap` (None without it):
    /// the daemon's mapping, made by the runtime together with the step's other
    /// namespaces. A step keeps the host's network unless it asks for `none`; the spec then
    /// binds the host's /sys (see `berth_runtime::build_spec`).
    fn build_userns_maps(&self) -> Option<berth_runtime::UsernsMaps> {
        let ns = self.idmap.as_ref()?;
        let map = |r: berth_snapshot::IdRange| berth_runtime::IdMapping {
            host_id: r.outside,
            size: r.count,
        };
        Some(berth_runtime::UsernsMaps {
            uid: map(ns.uids()),
            gid: map(ns.gids()),
            path: None,
        })
    }

    /// The host directory of the cache mount `id` (already made safe as a file name),
    /// created when missing. Under `--userns-remap` caches live apart, per mapping, with
    /// their top owned by the remapped root, so that it can write them and a cache filled
    /// by unremapped steps (owned by the host's ids) is never shared with remapped ones.
    fn cache_mount_dir(&self, id: &str) -> Result<PathBuf, RemapStepError> {
        let base = match &self.idmap {
            Some(ns) => self.cfg.data_root.join(format!(
                "build-cache-mounts.{}.{}",
                ns.root_uid(),
                ns.root_gid()
            )),
            None => self.cfg.data_root.join("build-cache-mounts"),
        };
        let dir = base.join(id);
        let owner = self.idmap.as_ref().map(|ns| (ns.root_uid(), ns.root_gid()));
        if std::fs::symlink_metadata(&dir).is_err() {
            create_dirs_owned(&dir, None)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|source| {
                    RemapStepError::Dir {
                        what: "give to the remapped root",
                        path: dir.clone(),
                        source,
                    }
                })?;
            }
        }
        Ok(dir)
    }
}

/// Diffs the work root's upper dir into a gzip layer blob and commits the snapshot under
/// its chain id.
fn commit_blocking(e: &Engine, work: &WorkRoot) -> Result<Layer, HostError> {
    let _ = berth_snapshot::unmount(&work.rootfs);
    let parent = e.snaps.parent(&work.key).map_err(failed)?;
    let upper = e.snaps.upper_dir(&work.key).map_err(failed)?;
    stubs::clean_upper(&upper, &read_stubs(&e.build_dir(&work.key)));
    let empty = std::fs::read_dir(&upper)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    let parent_id = parent.clone().unwrap_or_default();
    if empty {
        let _ = e.snaps.remove(&work.key);
        let _ = std::fs::remove_dir_all(e.build_dir(&work.key));
        return Ok(Layer {
            layer_id: parent_id,
            diff_id: String::new(),
            size: 0,
            empty: true,
        });
    }
    let tmp = e.build_dir(&work.key).join("layer.tar.gz");
    let file = std::fs::File::create(&tmp).map_err(failed)?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let ranges = e.idmap.as_ref().map(|ns| (ns.uids(), ns.gids()));
    let owners = move |uid: u32, gid: u32| match ranges {
        Some((u, g)) => (u.to_inside(uid), g.to_inside(gid)),
        None => (uid, gid),
    };
    let applied = berth_image::diff::write_layer_owned(&upper, &mut gz, &owners).map_err(failed)?;
    let mut inner = gz.finish().map_err(failed)?;
    inner.flush().map_err(failed)?;
    drop(inner);
    let blob = import_file(&e.content, &tmp).map_err(failed)?;
    let blob_size = std::fs::metadata(e.content.path(&blob))
        .map(|m| m.len() as i64)
        .unwrap_or(0);
    let chain = match &parent {
        Some(p) if !p.is_empty() => {
            Digest::sha256_of(format!("{p} {}", applied.diff_id).as_bytes())
        }
        _ => applied.diff_id.clone(),
    };
    let chain_s = chain.to_string();
    if e.snaps.exists(&chain_s) {
        let _ = e.snaps.remove(&work.key);
    } else if e.idmap.is_some() {
        // The upper dir holds the subordinate ids the step wrote; the committed snapshot,
        // idmapped again as a lower, must hold the ids the step saw, as the layer does.
        commit_from_layer(e, &tmp, parent.as_deref(), &chain_s)?;
        let _ = e.snaps.remove(&work.key);
    } else {
        e.snaps.commit(&chain_s, &work.key).map_err(failed)?;
    }
    let _ = std::fs::remove_dir_all(e.build_dir(&work.key));
    let rec = BuiltLayer {
        diff_id: applied.diff_id.to_string(),
        blob: blob.to_string(),
        blob_size,
    };
    e.db.put_keyed("build_cache", "key", &format!("layer:{chain_s}"), &rec)
        .map_err(host_err)?;
    Ok(Layer {
        layer_id: chain_s,
        diff_id: applied.diff_id.to_string(),
        size: applied.size,
        empty: false,
    })
}

/// Commits the snapshot `chain` over `parent` by applying the gzip layer at `layer` to a
/// fresh snapshot (so its files have the owners the layer records); the fresh snapshot is
/// removed when anything fails.
fn commit_from_layer(
    e: &Engine,
    layer: &std::path::Path,
    parent: Option<&str>,
    chain: &str,
) -> Result<(), HostError> {
    let key = format!("build-commit-{}", crate::names::new_id());
    e.snaps
        .prepare(&key, parent.filter(|p| !p.is_empty()))
        .map_err(failed)?;
    let result = (|| {
        let dest = e.snaps.upper_dir(&key).map_err(failed)?;
        let f = std::fs::File::open(layer)
            .map_err(|err| failed(format!("open {}: {err}", layer.display())))?;
        berth_image::layer::apply_layer(std::io::BufReader::new(f), &dest)
            .map_err(|err| failed(format!("apply build layer: {err}")))?;
        e.snaps
            .commit(chain, &key)
            .map_err(|err| failed(format!("commit snapshot {chain}: {err}")))
    })();
    if result.is_err() {
        let _ = e.snaps.remove(&key);
    }
    result
}

/// Adds a file to the content store under its sha256 digest (streamed, not read whole).
pub(crate) fn import_file(
    store: &berth_content::ContentStore,
    path: &std::path::Path,
) -> Result<Digest, EngineError> {
    let file = std::fs::File::open(path)?;
    let (digest, _) = store
        .write_stream(std::io::BufReader::new(file))
        .map_err(|e| EngineError::internal(format!("store {}: {e}", path.display())))?;
    Ok(digest)
}
