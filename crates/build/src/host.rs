//! The interface through which the builder drives the engine. The engine implements
//! [`BuildHost`]; this crate never touches HTTP, the metadata database or snapshots directly.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

/// Errors a host reports back to the builder. The message should name the object involved
/// (image reference, layer id, cache key...).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The named image, layer or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was invalid (bad reference, bad platform...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Anything else (I/O, registry, runtime failures).
    #[error("{0}")]
    Failed(String),
}

/// A base image as the builder needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// `sha256:<hex>` id of the image (the digest of its config JSON).
    pub image_id: String,
    /// The full Docker/OCI image config JSON (`architecture`, `os`, `config`, `rootfs`
    /// with `diff_ids`, `history`).
    pub image: serde_json::Value,
    /// The host's id for the image's top layer (a snapshot/chain id) to pass to
    /// [`BuildHost::prepare_rootfs`]; `None` for an image without layers.
    pub top_layer: Option<String>,
}

/// A writable root filesystem prepared on top of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRoot {
    /// The host's key for this work root (opaque to the builder, unique per call).
    pub key: String,
    /// Where the root filesystem is mounted; the builder reads and writes it directly
    /// (COPY/ADD/WORKDIR) while it is held.
    pub rootfs: PathBuf,
}

/// What [`BuildHost::commit`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The host's id of the new top layer (pass it to later `prepare_rootfs` calls and to
    /// `create_image`). When `empty` it equals the parent's id (`""` if there was none).
    pub layer_id: String,
    /// `sha256:<hex>` of the uncompressed layer tar (goes into `rootfs.diff_ids`).
    pub diff_id: String,
    /// Size in bytes of the layer's changes.
    pub size: u64,
    /// True when the step changed nothing: no layer is added to the image.
    pub empty: bool,
}

/// Sharing mode of a cache mount, as written in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent builds use the directory at the same time.
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// Users wait for each other.
    Locked,
}

/// A mount for a RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// A persistent cache directory the host keeps per `id` across builds.
    Cache {
        /// Identity of the cache directory (default: the target path).
        id: String,
        /// Absolute mount point.
        target: String,
        /// Concurrency mode asked for.
        sharing: CacheSharing,
        /// Mount read-only.
        readonly: bool,
    },
    /// A host directory (a context subtree or another stage's rootfs path) bound at `target`.
    Bind {
        /// Host path to bind (a file or a directory).
        source: PathBuf,
        /// Absolute mount point.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute mount point.
        target: String,
    },
}

/// A RUN step to execute in a work root, with the isolation a normal container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// argv (already includes the shell for shell-form commands).
    pub args: Vec<String>,
    /// `KEY=value` environment (image Env plus build args); PATH is always present.
    pub env: Vec<String>,
    /// Absolute working directory inside the rootfs.
    pub cwd: String,
    /// `user[:group]` as in the image config; empty means root.
    pub user: String,
    /// Extra mounts.
    pub mounts: Vec<RunMount>,
    /// `default` (the daemon's default bridge), `none` or `host`; also the build's
    /// `networkmode` option when the step gives none.
    pub network: String,
}

/// A persisted cache entry: the image state after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedStep {
    /// Id of the state after the step (`sha256:<hex>`); the parent of the next step's key.
    pub state_id: String,
    /// The full image config JSON after the step.
    pub image: serde_json::Value,
    /// The top layer after the step.
    pub top_layer: Option<String>,
}

/// The engine's side of a build. Every method is called from a tokio task; implementations
/// must be safe to call concurrently from several builds.
#[async_trait]
pub trait BuildHost: Send + Sync {
    /// Finds (pulling if missing, or always when `pull`) the image `name` for `platform`
    /// (`os/arch[/variant]`, `None` = the daemon's). `scratch` is handled by the builder and
    /// never reaches the host.
    async fn resolve_base(
        &self,
        name: &str,
        platform: Option<&str>,
        pull: bool,
    ) -> Result<BaseImage, HostError>;

    /// Prepares a writable rootfs on top of `parent_layer` (`None`: empty). It stays mounted
    /// until passed to [`commit`](Self::commit) or [`discard`](Self::discard). The builder also
    /// uses it read-only to look at another stage's or image's files (then it discards it).
    async fn prepare_rootfs(&self, parent_layer: Option<&str>) -> Result<WorkRoot, HostError>;

    /// Runs a step in `work` as a container would run (same isolation as `docker run`,
    /// hostname, `/etc/hosts` and `/etc/resolv.conf` provided, not written into the layer),
    /// streaming stdout and stderr as they arrive through `output`. Returns the exit code.
    async fn run(
        &self,
        work: &WorkRoot,
        spec: RunSpec,
        output: UnboundedSender<String>,
    ) -> Result<i32, HostError>;

    /// Turns the changes made in `work` into a layer and releases `work`.
    async fn commit(&self, work: WorkRoot) -> Result<Layer, HostError>;

    /// Releases `work` without keeping its changes.
    async fn discard(&self, work: WorkRoot) -> Result<(), HostError>;

    /// Stores an image whose config JSON is `image` (its `rootfs.diff_ids` list every layer,
    /// bottom first, ending with the one whose id is `top_layer`) and returns its id
    /// (`sha256:` + hex digest of the stored config bytes).
    async fn create_image(
        &self,
        image: serde_json::Value,
        top_layer: Option<&str>,
    ) -> Result<String, HostError>;

    /// Points the reference `tag` (e.g. `app:1`, normalized by the host) at `image_id`.
    async fn tag(&self, image_id: &str, tag: &str) -> Result<(), HostError>;

    /// Returns the entry recorded under `key`, or `None` (also when a layer it refers to is
    /// gone). Entries survive daemon restarts.
    async fn cache_get(&self, key: &str) -> Result<Option<CachedStep>, HostError>;

    /// Records `step` under `key` (replacing any entry), keeping its layer alive.
    async fn cache_put(&self, key: &str, step: &CachedStep) -> Result<(), HostError>;
}
