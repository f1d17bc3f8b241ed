//! Containers under `--userns-remap`: the user namespace (made together with the network
//! namespace it owns, so that the runtime can join both), the spec's id mappings, and the
//! files outside the rootfs the container's root must be able to write (the hostname,
//! hosts and resolv.conf written for it, and the volumes it mounts) handed to the
//! remapped root. The rootfs itself is mounted idmapped by [`Engine::mount_rootfs`].

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_runtime::{IdMapping, MountSpec, UsernsMaps};

use crate::error::{EngineError, Result, ResultExt};
use crate::model::ContainerRecord;
use crate::Engine;

impl Engine {
    /// The mappings for the spec of `c`, or None when it runs in the host's user
    /// namespace. A privileged container must opt out with `--userns=host` (as Docker
    /// requires).
    pub(crate) fn userns_maps(&self, c: &ContainerRecord) -> Result<Option<UsernsMaps>> {
        let Some(ns) = self.remap_of(&c.host_config) else {
            return Ok(None);
        };
        if c.host_config.privileged {
            return Err(EngineError::invalid(
                "privileged mode is incompatible with user namespaces; you must run the \
                 container in the host namespace when running privileged mode (--userns=host)",
            ));
        }
        let map = |r: berth_snapshot::IdRange| IdMapping {
            host_id: r.outside,
            size: r.count,
        };
        // Join the user namespace that owns the network namespace the container joins:
        // its own pinned one, or that of the container whose network it shares; with
        // `--network none` the runtime makes both.
        let mode = &c.host_config.network_mode;
        let path = if let Some(other) = mode.strip_prefix("container:") {
            let o = self.find_container(other)?;
            Some(format!("/proc/{}/ns/user", o.state.pid).into())
        } else {
            Some(self.userns_path(&c.id)).filter(|p| p.exists())
        };
        Ok(Some(UsernsMaps {
            uid: map(ns.uids()),
            gid: map(ns.gids()),
            path,
        }))
    }

    /// Refuses network modes a remapped container cannot have: the host's network
    /// namespace (owned by the host's user namespace), and that of a container that is not
    /// remapped itself.
    pub(crate) fn check_remap_network(&self, c: &ContainerRecord) -> Result<()> {
        if self.remap_of(&c.host_config).is_none() {
            return Ok(());
        }
        let mode = &c.host_config.network_mode;
        if mode == "host" {
            return Err(EngineError::invalid(
                "cannot share the host's network namespace when user namespaces are enabled \
                 (use --userns=host)",
            ));
        }
        if let Some(other) = mode.strip_prefix("container:") {
            let o = self.find_container(other)?;
            if self.remap_of(&o.host_config).is_none() {
                return Err(EngineError::invalid(format!(
                    "cannot join the network namespace of {}: it runs with --userns=host",
                    o.name
                )));
            }
        }
        Ok(())
    }

    /// Maps an owner in a container's upper dir to the one its committed layer records:
    /// under remapping the subordinate ids go back to the container's own.
    pub(crate) fn layer_owners(
        &self,
        host_config: &crate::model::HostConfig,
    ) -> impl Fn(u32, u32) -> (u32, u32) {
        let ranges = self.remap_of(host_config).map(|ns| (ns.uids(), ns.gids()));
        move |uid, gid| match ranges {
            Some((u, g)) => (u.to_inside(uid), g.to_inside(gid)),
            None => (uid, gid),
        }
    }

    /// Creates the network namespace of `c` at `netns`: under remapping, owned by a new user
    /// namespace with the remapped ids, pinned beside it.
    pub(crate) fn create_netns_for(&self, c: &ContainerRecord, netns: &Path) -> Result<()> {
        let what = format!("create network namespace of {}", c.name);
        let Some(ns) = self.remap_of(&c.host_config) else {
            return berth_network::create_netns(netns).ctx(what);
        };
        let userns = self.userns_path(&c.id);
        berth_network::remove_netns(&userns).ok();
        berth_network::create_netns_in_userns(
            netns,
            &userns,
            &ns.uids().map_line(),
            &ns.gids().map_line(),
        )
        .ctx(what)
    }

    /// Hands the engine-written files among `mounts` and the container's volumes to the
    /// remapped root of `c` (no-op when it is not remapped). Only the files themselves and
    /// the volumes' top directories change owner, and a volume only while host root owns
    /// it (a volume already populated keeps its owners).
    pub(crate) fn chown_for_remap(&self, c: &ContainerRecord, mounts: &[MountSpec]) -> Result<()> {
        let Some(ns) = self.remap_of(&c.host_config) else {
            return Ok(());
        };
        let (uid, gid) = (ns.root_uid(), ns.root_gid());
        let dir = self.container_dir(&c.id);
        let chown = |p: &Path| {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).ctx(format!(
                "give {} to the remapped root {uid}:{gid}",
                p.display()
            ))
        };
        for m in mounts {
            let src = Path::new(&m.source);
            if m.kind == "bind" && src.parent() == Some(dir.as_path()) {
                chown(src)?;
            }
        }
        for p in c.mounts.iter().filter(|p| p.kind == "volume") {
            let src = Path::new(&p.source);
            if std::fs::metadata(src).is_ok_and(|md| md.uid() == 0) {
                chown(src)?;
            }
        }
        Ok(())
    }
}

/// Errors of the remapping-specific file work of containers and build steps.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemapStepError {
    /// A directory could not be created or handed to the remapped root.
    #[error("{what} {path}: {source}")]
    Dir {
        /// what was being done
        what: &'static str,
        /// the directory
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// Creates `dir` and its missing ancestors; each directory created here (never one that
/// existed) is given to `owner` when set, so that a remapped root can write in a working
/// directory the engine made for it (otherwise it would see it owned by the unmapped
/// host root).
pub(crate) fn create_dirs_owned(
    dir: &std::path::Path,
    owner: Option<(u32, u32)>,
) -> Result<(), RemapStepError> {
    let missing: Vec<&std::path::Path> = dir
        .ancestors()
        .take_while(|d| std::fs::symlink_metadata(d).is_err())
        .collect();
    std::fs::create_dir_all(dir).map_err(|source| RemapStepError::Dir {
        what: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    if let Some((uid, gid)) = owner {
        for d in missing {
            std::os::unix::fs::lchown(d, Some(uid), Some(gid)).map_err(|source| {
                RemapStepError::Dir {
                    what: "give to the remapped root",
                    path: d.to_path_buf(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}
