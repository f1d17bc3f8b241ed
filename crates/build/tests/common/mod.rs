//! `TestHost`: a BuildHost without an engine. Layers are full directory snapshots, RUN
//! executes in a chroot (inside a private mount namespace for cache/bind mounts), and the
//! cache is persisted to a JSON file so a new TestHost on the same directory sees it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use berth_build::host::*;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

pub struct TestHost {
    pub root: PathBuf,
    counter: AtomicUsize,
    pub runs: AtomicUsize,
    layers: Mutex<HashMap<String, PathBuf>>,
    work_parent: Mutex<HashMap<String, Option<String>>>,
    pub bases: Mutex<HashMap<String, BaseImage>>,
    pub images: Mutex<HashMap<String, (serde_json::Value, Option<String>)>>,
    pub tags: Mutex<HashMap<String, String>>,
    pub run_specs: Mutex<Vec<RunSpec>>,
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Hash of a whole tree (paths, modes, owners, contents, link targets).
pub fn tree_hash(dir: &Path) -> String {
    fn walk(h: &mut Sha256, root: &Path, rel: &Path) {
        let p = root.join(rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        h.update(format!("{}|{:o}|{}|{}|", rel.display(), m.mode(), m.uid(), m.gid()).as_bytes());
        if m.file_type().is_symlink() {
            h.update(std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
        } else if m.is_file() {
            h.update(std::fs::read(&p).unwrap());
        } else if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(h, root, &rel.join(n));
            }
        }
    }
    let mut h = Sha256::new();
    walk(&mut h, dir, Path::new(""));
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl TestHost {
    /// A host whose state lives in `root` (reusing a persisted cache if present), with a
    /// `busybox` base image made from the static busybox.
    pub fn new(root: &Path) -> Self {
        for d in ["layers", "work", "cache-mounts"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let h = TestHost {
            root: root.to_path_buf(),
            counter: AtomicUsize::new(0),
            runs: AtomicUsize::new(0),
            layers: Mutex::new(HashMap::new()),
            work_parent: Mutex::new(HashMap::new()),
            bases: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            tags: Mutex::new(HashMap::new()),
            run_specs: Mutex::new(Vec::new()),
        };
        // Layers survive in layers/<id>.
        for e in std::fs::read_dir(root.join("layers")).unwrap() {
            let e = e.unwrap();
            h.layers
                .lock()
                .unwrap()
                .insert(e.file_name().to_string_lossy().into_owned(), e.path());
        }
        let base = root.join("layers/busybox-base");
        if !base.exists() {
            std::fs::create_dir_all(base.join("bin")).unwrap();
            std::fs::create_dir_all(base.join("etc")).unwrap();
            std::fs::create_dir_all(base.join("tmp")).unwrap();
            std::fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
            for app in [
                "sh", "echo", "cat", "ls", "mkdir", "touch", "id", "stat", "env", "pwd", "wc",
                "test", "sleep", "rm", "true", "false",
            ] {
                std::os::unix::fs::symlink("busybox", base.join("bin").join(app)).unwrap();
            }
            std::fs::write(
                base.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(
                base.join("etc/group"),
                "root:x:0:\napp:x:1000:\nstaff:x:50:\n",
            )
            .unwrap();
            h.layers
                .lock()
                .unwrap()
                .insert("busybox-base".into(), base.clone());
        }
        let image = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:busybox"]},
            "history": [{"created_by": "/bin/sh -c #(nop) ADD file:busybox in / "}]
        });
        h.add_base("busybox", image, Some("busybox-base".into()));
        h
    }

    pub fn add_base(&self, name: &str, image: serde_json::Value, top_layer: Option<String>) {
        let image_id = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(image.to_string().as_bytes()))
        );
        self.bases.lock().unwrap().insert(
            name.to_string(),
            BaseImage {
                image_id,
                image,
                top_layer,
            },
        );
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    fn cache_file(&self) -> PathBuf {
        self.root.join("cache.json")
    }

    fn load_cache(&self) -> HashMap<String, CachedStep> {
        std::fs::read(self.cache_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The rootfs of a layer (for assertions).
    pub fn layer_dir(&self, layer: &str) -> PathBuf {
        self.layers.lock().unwrap().get(layer).cloned().unwrap()
    }

    /// The rootfs and config of an image by tag.
    pub fn image_by_tag(&self, tag: &str) -> (serde_json::Value, Option<PathBuf>) {
        let id = self.tags.lock().unwrap().get(tag).cloned().unwrap();
        let (img, top) = self.images.lock().unwrap().get(&id).cloned().unwrap();
        (img, top.map(|t| self.layer_dir(&t)))
    }
}

#[async_trait]
impl BuildHost for TestHost {
    async fn resolve_base(
        &self,
        name: &str,
        _platform: Option<&str>,
        _pull: bool,
    ) -> Result<BaseImage, HostError> {
        if let Some(b) = self.bases.lock().unwrap().get(name) {
            return Ok(b.clone());
        }
        if let Some(id) = self.tags.lock().unwrap().get(name) {
            if let Some((image, top)) = self.images.lock().unwrap().get(id) {
                return Ok(BaseImage {
                    image_id: id.clone(),
                    image: image.clone(),
                    top_layer: top.clone(),
                });
            }
        }
        Err(HostError::NotFound(format!("image {name}")))
    }

    async fn prepare_rootfs(&self, parent: Option<&str>) -> Result<WorkRoot, HostError> {
        let key = format!("work{}-{}", std::process::id(), self.next());
        let dir = self.root.join("work").join(&key);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(p) = parent {
            let src = self
                .layers
                .lock()
                .unwrap()
                .get(p)
                .cloned()
                .ok_or_else(|| HostError::NotFound(format!("layer {p}")))?;
            cp_a(&src, &dir);
        }
        self.work_parent
            .lock()
            .unwrap()
            .insert(key.clone(), parent.map(str::to_string));
        Ok(WorkRoot { key, rootfs: dir })
    }

    async fn run(
        &self,
        work: &WorkRoot,
        spec: RunSpec,
        output: UnboundedSender<String>,
    ) -> Result<i32, HostError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.run_specs.lock().unwrap().push(spec.clone());
        let mut script = String::from("set -e\n");
        let r = work.rootfs.display().to_string();
        for m in &spec.mounts {
            match m {
                RunMount::Cache { id, target, .. } => {
                    let dir = self
                        .root
                        .join("cache-mounts")
                        .join(hex::encode(Sha256::digest(id.as_bytes())));
                    std::fs::create_dir_all(&dir).unwrap();
                    script += &format!(
                        "mkdir -p '{r}{target}'; mount --bind '{}' '{r}{target}'\n",
                        dir.display()
                    );
                }
                RunMount::Bind {
                    source,
                    target,
                    readonly,
                } => {
                    script += &format!(
                        "mkdir -p '{r}{target}'; mount --bind '{}' '{r}{target}'\n",
                        source.display()
                    );
                    if *readonly {
                        script += &format!("mount -o remount,bind,ro '{r}{target}'\n");
                    }
                }
                RunMount::Tmpfs { target } => {
                    script +=
                        &format!("mkdir -p '{r}{target}'; mount -t tmpfs tmpfs '{r}{target}'\n")
                }
            }
        }
        let userspec = if spec.user.is_empty() {
            String::new()
        } else {
            format!("--userspec={} ", spec.user)
        };
        script += &format!(
            "exec /usr/sbin/chroot {userspec}'{r}' /bin/sh -c 'cd \"$0\" && exec \"$@\"' \"$@\"\n"
        );
        let out = Command::new("/usr/bin/unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                &script,
                "sh",
                &spec.cwd,
            ])
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().filter_map(|e| e.split_once('=')))
            .output()
            .map_err(|e| HostError::Failed(format!("running {:?}: {e}", spec.args)))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !text.is_empty() {
            let _ = output.send(text);
        }
        Ok(out.status.code().unwrap_or(-1))
    }

    async fn commit(&self, work: WorkRoot) -> Result<Layer, HostError> {
        let parent = self.work_parent.lock().unwrap().remove(&work.key).flatten();
        let new_hash = tree_hash(&work.rootfs);
        let parent_hash = match &parent {
            Some(p) => tree_hash(&self.layer_dir(p)),
            None => tree_hash(tempfile::tempdir().unwrap().path()),
        };
        if new_hash == parent_hash {
            std::fs::remove_dir_all(&work.rootfs).unwrap();
            return Ok(Layer {
                layer_id: parent.unwrap_or_default(),
                diff_id: String::new(),
                size: 0,
                empty: true,
            });
        }
        let id = format!("layer-{}", &new_hash[7..19]);
        let dest = self.root.join("layers").join(&id);
        if dest.exists() {
            std::fs::remove_dir_all(&work.rootfs).unwrap();
        } else {
            std::fs::rename(&work.rootfs, &dest).unwrap();
        }
        self.layers.lock().unwrap().insert(id.clone(), dest);
        Ok(Layer {
            layer_id: id,
            diff_id: new_hash,
            size: 1,
            empty: false,
        })
    }

    async fn discard(&self, work: WorkRoot) -> Result<(), HostError> {
        self.work_parent.lock().unwrap().remove(&work.key);
        std::fs::remove_dir_all(&work.rootfs)
            .map_err(|e| HostError::Failed(format!("{}: {e}", work.rootfs.display())))
    }

    async fn create_image(
        &self,
        image: serde_json::Value,
        top_layer: Option<&str>,
    ) -> Result<String, HostError> {
        let id = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(image.to_string().as_bytes()))
        );
        self.images
            .lock()
            .unwrap()
            .insert(id.clone(), (image, top_layer.map(str::to_string)));
        Ok(id)
    }

    async fn tag(&self, image_id: &str, tag: &str) -> Result<(), HostError> {
        self.tags
            .lock()
            .unwrap()
            .insert(tag.to_string(), image_id.to_string());
        Ok(())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<CachedStep>, HostError> {
        let c = self.load_cache();
        Ok(c.get(key).cloned().filter(|s| {
            s.top_layer
                .as_ref()
                .is_none_or(|l| self.layers.lock().unwrap().contains_key(l))
        }))
    }

    async fn cache_put(&self, key: &str, step: &CachedStep) -> Result<(), HostError> {
        let mut c = self.load_cache();
        c.insert(key.to_string(), step.clone());
        std::fs::write(self.cache_file(), serde_json::to_vec(&c).unwrap()).unwrap();
        Ok(())
    }
}

// Helpers shared by the builder tests.

use berth_build::{BuildError, BuildEvent, BuildOptions, Builder};
use std::sync::Arc;

pub struct Env {
    _dir: tempfile::TempDir,
    pub host: Arc<TestHost>,
    pub ctx: std::path::PathBuf,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(TestHost::new(&dir.path().join("host")));
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    Env {
        _dir: dir,
        host,
        ctx,
    }
}

pub fn write(ctx: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let p = ctx.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

pub async fn build(
    e: &Env,
    opts: BuildOptions,
) -> (
    Result<berth_build::BuildResult, BuildError>,
    Vec<BuildEvent>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = Builder::new(e.host.clone()).build(&e.ctx, opts, tx).await;
    let mut evs = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        evs.push(ev);
    }
    (r, evs)
}

pub fn tagged(tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.into()],
        ..Default::default()
    }
}
