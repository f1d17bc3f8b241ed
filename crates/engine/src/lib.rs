//! The daemon's services: images, containers, networks, volumes, events, over the metadata
//! DB, the content store, the snapshotter, the registry client and the shims.
//!
//! The api crate parses HTTP into calls on [`Engine`]; nothing here knows HTTP. Request and
//! response bodies use Docker's shapes ([`model`]) because Docker API compatibility is the
//! contract.

#![recursion_limit = "256"]

pub mod build_host;
pub mod containers;
pub mod db;
pub mod dns;
pub mod error;
pub mod events;
pub mod images;
pub mod model;
pub mod names;
pub mod networking;
pub mod networks;
pub mod prune;
pub mod system;
pub mod userns;
pub mod users;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_content::ContentStore;
use berth_registry::{ClientConfig, RegistryClient};
use berth_snapshot::Snapshotter;

pub use error::{EngineError, ErrorKind, Result};

/// How `berthd` was started.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Persistent state: DB, blobs, snapshots, container dirs, volumes.
    pub data_root: PathBuf,
    /// Runtime state: shim sockets, runtime state dirs, netns mounts.
    pub exec_root: PathBuf,
    /// Registries spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// The `berth-shim` binary.
    pub shim_binary: PathBuf,
    /// Runtime used when a container names none: "berth" (built-in) or "runc".
    pub default_runtime: String,
    /// Path of the `runc` binary for `--runtime runc`.
    pub runc_binary: PathBuf,
    /// Bridge device of the default network.
    pub bridge_name: String,
    /// Subnet of the default bridge network, CIDR.
    pub bridge_subnet: String,
    /// Name of this daemon's nftables table.
    pub nft_table: String,
    /// Parent cgroup of every container.
    pub cgroup_parent: String,
    /// `--userns-remap`: run containers in a user namespace with these ids (None = off).
    pub userns_remap: Option<userns::RemapConfig>,
}

impl EngineConfig {
    /// Defaults like dockerd's, under the given roots.
    pub fn with_roots(data_root: PathBuf, exec_root: PathBuf) -> Self {
        Self {
            data_root,
            exec_root,
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            shim_binary: PathBuf::from("berth-shim"),
            default_runtime: "berth".into(),
            runc_binary: PathBuf::from("/usr/sbin/runc"),
            bridge_name: "berth0".into(),
            bridge_subnet: "172.29.0.0/16".into(),
            nft_table: "berth".into(),
            cgroup_parent: "berth".into(),
            userns_remap: None,
        }
    }
}

/// The engine: one per daemon, shared behind an `Arc`.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) db: db::Db,
    pub(crate) content: ContentStore,
    pub(crate) snaps: Snapshotter,
    pub(crate) registry: RegistryClient,
    /// The event bus behind `/events`.
    pub events: events::EventBus,
    pub(crate) live: containers::LiveTable,
    pub(crate) execs: Mutex<HashMap<String, containers::exec::ExecRecord>>,
    pub(crate) net: berth_network::Networking,
    pub(crate) dns: tokio::sync::Mutex<HashMap<String, berth_network::dns::DnsServer>>,
    /// Image garbage collection against pulls in flight.
    pub(crate) gc: prune::GcState,
    /// The user namespace remapped containers' layers are idmapped with (`--userns-remap`).
    pub(crate) idmap: Option<berth_snapshot::IdmapUserns>,
}

impl Engine {
    /// Opens the data root (creating it), repairs what a crash left, and reconnects to the
    /// shims of containers that kept running while no daemon was up.
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Self>> {
        for dir in [
            cfg.data_root.clone(),
            cfg.data_root.join("containers"),
            cfg.exec_root.clone(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| EngineError::internal(format!("create {}: {e}", dir.display())))?;
        }
        let idmap = match &cfg.userns_remap {
            Some(r) => Some(open_idmap(r, &cfg.data_root)?),
            None => None,
        };
        let db = db::Db::open(&cfg.data_root.join("metadata.db"))?;
        let content = ContentStore::open(cfg.data_root.join("content"))
            .map_err(|e| EngineError::internal(format!("content store: {e}")))?;
        let snaps = Snapshotter::open(cfg.data_root.join("snapshots"))
            .map_err(|e| EngineError::internal(format!("snapshotter: {e}")))?;
        let registry = RegistryClient::new(ClientConfig {
            insecure_registries: cfg.insecure_registries.clone(),
            max_concurrent_downloads: cfg.max_concurrent_downloads,
            ..ClientConfig::default()
        })
        .map_err(|e| EngineError::internal(format!("registry client: {e}")))?;
        let net = berth_network::Networking::new(cfg.nft_table.clone())
            .map_err(|e| EngineError::internal(format!("networking: {e}")))?;
        let engine = Arc::new(Self {
            cfg,
            db,
            content,
            snaps,
            registry,
            events: events::EventBus::new(),
            live: containers::LiveTable::default(),
            execs: Mutex::new(HashMap::new()),
            net,
            dns: tokio::sync::Mutex::new(HashMap::new()),
            gc: prune::GcState::default(),
            idmap,
        });
        engine.ensure_builtin_networks()?;
        engine.restore().await?;
        Ok(engine)
    }

    /// The idmapping namespace when `container` runs remapped: remapping is on and the
    /// container did not ask for `--userns=host`.
    pub(crate) fn remap_of(
        &self,
        host_config: &model::HostConfig,
    ) -> Option<&berth_snapshot::IdmapUserns> {
        self.idmap
            .as_ref()
            .filter(|_| host_config.userns_mode != "host")
    }

    /// The configuration this engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
}

/// The namespace to idmap remapped containers' layers with; the data root's path is made
/// searchable by the remapped root.
fn open_idmap(
    r: &userns::RemapConfig,
    data_root: &std::path::Path,
) -> Result<berth_snapshot::IdmapUserns> {
    userns::make_searchable(data_root).map_err(|e| EngineError::internal(e.to_string()))?;
    berth_snapshot::IdmapUserns::new(r.uids, r.gids)
        .map_err(|e| EngineError::internal(format!("--userns-remap: {e}")))
}
