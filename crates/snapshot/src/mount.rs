//! Mount descriptions and helpers to apply them.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Errors from mounting or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount(2) call failed.
    #[error("mount {kind} {source_path} on {target}: {errno}")]
    Mount {
        /// The mount type.
        kind: String,
        /// The mount source.
        source_path: String,
        /// Where it was being mounted.
        target: PathBuf,
        /// The error from the kernel.
        errno: nix::Error,
    },
    /// The umount(2) call failed.
    #[error("unmount {target}: {errno}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The error from the kernel.
        errno: nix::Error,
    },
    /// The mount kind is not one this crate knows.
    #[error("unsupported mount type {0:?}")]
    Unsupported(String),
}

/// A mount description, as the snapshotter hands it out.
///
/// `kind` is `"overlay"` (options carry `lowerdir=`, `upperdir=`, `workdir=`)
/// or `"bind"` (options may contain `rbind`, `ro`, `rw`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Filesystem type: "overlay" or "bind".
    pub kind: String,
    /// Mount source (a directory for bind, "overlay" for overlay).
    pub source: String,
    /// Suggested target inside the container; empty means the rootfs itself.
    pub target: String,
    /// Mount options.
    pub options: Vec<String>,
}

/// Mounts every entry of `mounts` on `target`, in order (later mounts stack
/// on earlier ones). Each `Mount::target` is ignored: all go to `target`.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    for m in mounts {
        mount_one(m, target)?;
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), MountError> {
    let err = |errno| MountError::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.to_path_buf(),
        errno,
    };
    match m.kind.as_str() {
        "bind" => {
            let mut flags = MsFlags::MS_BIND;
            if m.options.iter().any(|o| o == "rbind") {
                flags |= MsFlags::MS_REC;
            }
            mount(
                Some(m.source.as_str()),
                target,
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(err)?;
            if m.options.iter().any(|o| o == "ro") {
                let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                if let Err(e) = mount(None::<&str>, target, None::<&str>, ro, None::<&str>) {
                    let _ = umount2(target, MntFlags::MNT_DETACH);
                    return Err(err(e));
                }
            }
            Ok(())
        }
        "overlay" => {
            let mut flags = MsFlags::empty();
            let mut data = Vec::new();
            for o in &m.options {
                match o.as_str() {
                    "ro" => flags |= MsFlags::MS_RDONLY,
                    "rw" => {}
                    other => data.push(other),
                }
            }
            let data = data.join(",");
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                flags,
                Some(data.as_str()),
            )
            .map_err(err)
        }
        other => Err(MountError::Unsupported(other.to_string())),
    }
}

/// Unmounts `target`; if it is busy, detaches it lazily instead.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|errno| MountError::Unmount {
                target: target.to_path_buf(),
                errno,
            })
        }
        Err(errno) => Err(MountError::Unmount {
            target: target.to_path_buf(),
            errno,
        }),
    }
}
