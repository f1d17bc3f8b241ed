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
/// Overlays with more lower dirs than fit in mount(2)'s one-page option
/// string are mounted with the new mount API instead.
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
            if data.len() < MAX_MOUNT_DATA {
                mount(
                    Some("overlay"),
                    target,
                    Some("overlay"),
                    flags,
                    Some(data.as_str()),
                )
                .map_err(err)
            } else {
                mount_overlay_long(&m.options, target)
                    .map_err(|e| err(nix::Error::from_raw(e.raw_os_error())))
            }
        }
        other => Err(MountError::Unsupported(other.to_string())),
    }
}

/// mount(2) passes options in one page; leave room for the terminator.
const MAX_MOUNT_DATA: usize = 4000;

/// Mounts an overlay whose options do not fit in one page, through the
/// new mount API: each lower dir is added on its own (`lowerdir+`, Linux
/// 6.8 and later).
fn mount_overlay_long(options: &[String], target: &Path) -> rustix::io::Result<()> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags,
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let mut attrs = MountAttrFlags::empty();
    for o in options {
        match o.split_once('=') {
            Some(("lowerdir", dirs)) => {
                for d in dirs.split(':') {
                    fsconfig_set_string(&fs, "lowerdir+", d)?;
                }
            }
            Some((k, v)) => fsconfig_set_string(&fs, k, v)?,
            None if o == "ro" => attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY,
            None if o == "rw" => {}
            None => fsconfig_set_flag(&fs, o.as_str())?,
        }
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
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
