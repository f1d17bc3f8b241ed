//! The container service: create, start, stop, kill, wait, remove, logs, attach, exec,
//! inspect and list, plus the monitor that learns each exit from the container's shim.
//!
//! State lives in the DB ([`ContainerRecord`]); what only matters while the daemon runs
//! (who waits for a state change, attach streams waiting for a start, per-container
//! operation locks) lives in the [`LiveTable`].

pub mod archive;
pub mod attach;
pub mod cgroups;
pub mod changes;
pub mod commit;
pub mod create;
pub mod exec;
pub mod health;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod mounts;
pub mod pause;
pub mod start;
pub mod stats;
pub mod top;
pub mod update;
pub mod userns;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};

use crate::error::{EngineError, Result};
use crate::model::ContainerRecord;
use crate::Engine;

/// An attach request that waits for the container's next start.
pub(crate) struct PendingAttach {
    pub stdin: bool,
    pub tx: oneshot::Sender<UnixStream>,
}

/// Per-container state that only lives while the daemon runs.
pub(crate) struct Live {
    /// Bumped on every state change; waiters watch it.
    pub changed: watch::Sender<Changed>,
    /// Attach streams to open right before the next start.
    pub pending: Vec<PendingAttach>,
    /// Serialises start/stop/remove of one container.
    pub op: Arc<tokio::sync::Mutex<()>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            changed: watch::channel(Changed::default()).0,
            pending: Vec::new(),
            op: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// What waiters watch of a container: a generation bumped on every change, and the exit
/// code as of that change. The exit code outlives the record: a `--rm` container may be
/// recorded as exited and removed before a waiter wakes, and the waiter must still answer
/// with its exit code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// Bumped on every change.
    pub generation: u64,
    /// The record's exit code when it last changed.
    pub exit_code: i64,
}

impl Changed {
    /// Marks a change of a record whose exit code is now `exit_code`.
    pub(crate) fn bump(&mut self, exit_code: i64) {
        self.generation += 1;
        self.exit_code = exit_code;
    }
}

/// The live table, keyed by container id.
#[derive(Default)]
pub struct LiveTable {
    inner: Mutex<HashMap<String, Live>>,
}

impl LiveTable {
    pub(crate) fn with<R>(&self, id: &str, f: impl FnOnce(&mut Live) -> R) -> R {
        let mut map = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        f(map.entry(id.to_string()).or_default())
    }

    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(id);
        }
    }
}

impl Engine {
    /// Finds a container by full id, unique id prefix, or name (with or without `/`).
    pub fn find_container(&self, name: &str) -> Result<ContainerRecord> {
        let missing = || EngineError::not_found(format!("No such container: {name}"));
        if name.is_empty() {
            return Err(missing());
        }
        let name = name.trim_start_matches('/');
        if let Some(c) = self.db.get::<ContainerRecord>("containers", "id", name)? {
            return Ok(c);
        }
        if let Some(c) = self.db.get::<ContainerRecord>("containers", "name", name)? {
            return Ok(c);
        }
        let all: Vec<ContainerRecord> = self.db.all("containers")?;
        let mut matches = all.into_iter().filter(|c| c.id.starts_with(name));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(EngineError::invalid(format!(
                "multiple containers found with provided prefix: {name}"
            ))),
            _ => Err(missing()),
        }
    }

    /// Stores a container record and wakes everyone waiting on its state.
    pub(crate) fn save_container(&self, c: &ContainerRecord) -> Result<()> {
        self.db.put_named("containers", &c.id, &c.name, c)?;
        self.live.with(&c.id, |l| {
            l.changed.send_modify(|v| v.bump(c.state.exit_code))
        });
        Ok(())
    }

    /// Ids of the containers created from image `image_id`.
    pub fn containers_using(&self, image_id: &str) -> Result<Vec<String>> {
        let all: Vec<ContainerRecord> = self.db.all("containers")?;
        Ok(all
            .into_iter()
            .filter(|c| c.image_id == image_id)
            .map(|c| c.id)
            .collect())
    }

    /// The container's persistent directory (bundle, rootfs mount point, logs, etc files).
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    /// The shim's state directory; kept short for the unix socket path limit.
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("c").join(&id[..16.min(id.len())])
    }

    /// The network namespace mount of a container.
    /// Where the user namespace of a remapped container is pinned (beside its netns).
    pub(crate) fn userns_path(&self, id: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("userns")
            .join(&id[..16.min(id.len())])
    }

    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg
            .exec_root
            .join("netns")
            .join(&id[..16.min(id.len())])
    }
}

/// Now, as Docker writes timestamps (RFC 3339 with nanoseconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Docker's zero time, used for "never".
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
