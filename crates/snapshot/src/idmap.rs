//! Idmapped mounts of snapshots, for containers in a user namespace (`--userns-remap`).
//!
//! The layers of an image stay owned by the host's ids 0..N. A container whose root is
//! host uid 100000 sees them through idmapped mounts (`open_tree` + `mount_setattr` with
//! `MOUNT_ATTR_IDMAP`): file owner 0 on disk appears as 100000, which that container maps
//! back to its root. Overlay takes those idmapped mounts as its lower layers; the upper
//! and work directories belong to the remapped root itself, so what the container writes
//! is owned by the subordinate ids on the host. No layer is copied or chowned (the
//! technique containerd 2 uses).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};

use crate::mount::{mount_all, Mount, MountError};

/// Errors from making the mapping namespace or an idmapped mount.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    /// A step of creating the user namespace that holds the mapping failed.
    #[error("create user namespace for {uids:?}/{gids:?}: {step}: {errno}")]
    Userns {
        /// the uid range asked for
        uids: IdRange,
        /// the gid range asked for
        gids: IdRange,
        /// what was being done
        step: &'static str,
        /// the error from the kernel
        errno: std::io::Error,
    },
    /// Cloning a directory's mount or setting its id mapping failed.
    #[error("idmapped mount of {path}: {step}: {errno}")]
    Idmap {
        /// the directory
        path: PathBuf,
        /// what was being done
        step: &'static str,
        /// the error from the kernel
        errno: std::io::Error,
    },
    /// Giving a writable directory to the remapped root failed.
    #[error("chown {path} to {uid}:{gid}: {errno}")]
    Chown {
        /// the directory
        path: PathBuf,
        /// host uid of the remapped root
        uid: u32,
        /// host gid of the remapped root
        gid: u32,
        /// the error from the kernel
        errno: std::io::Error,
    },
    /// The final mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// One contiguous range: ids `inside..inside + count` in the namespace are
/// `outside..outside + count` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    /// first id inside the namespace
    pub inside: u32,
    /// first id on the host
    pub outside: u32,
    /// how many ids
    pub count: u32,
}

impl IdRange {
    /// The id inside the namespace of host id `outside_id`; ids outside the range are
    /// returned unchanged.
    pub fn to_inside(&self, outside_id: u32) -> u32 {
        match outside_id.checked_sub(self.outside) {
            Some(off) if off < self.count => self.inside.saturating_add(off),
            _ => outside_id,
        }
    }

    /// The line of `/proc/PID/uid_map` for this range.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.inside, self.outside, self.count)
    }
}

/// A user namespace that holds a fixed uid and gid mapping and no process: only its
/// descriptor is kept, to idmap mounts with. Creating one forks a short-lived child.
#[derive(Debug)]
pub struct IdmapUserns {
    fd: OwnedFd,
    uids: IdRange,
    gids: IdRange,
}

impl IdmapUserns {
    /// Creates the namespace: a child is cloned into a new user namespace, its maps are
    /// written, the namespace is opened, and the child is killed and reaped. Needs
    /// CAP_SETUID/CAP_SETGID over the host's namespace (berthd runs as root).
    pub fn new(uids: IdRange, gids: IdRange) -> Result<Self, IdmapError> {
        let err = |step, errno| IdmapError::Userns {
            uids,
            gids,
            step,
            errno,
        };
        let pid = spawn_parked_child().map_err(|e| err("clone", e))?;
        let result: Result<OwnedFd, IdmapError> = (|| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            std::fs::write(proc.join("uid_map"), uids.map_line())
                .map_err(|e| err("write uid_map", e))?;
            std::fs::write(proc.join("gid_map"), gids.map_line())
                .map_err(|e| err("write gid_map", e))?;
            let f = std::fs::File::open(proc.join("ns/user")).map_err(|e| err("open ns", e))?;
            Ok(OwnedFd::from(f))
        })();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        Ok(IdmapUserns {
            fd: result?,
            uids,
            gids,
        })
    }

    /// The host uid of the namespace's root.
    pub fn root_uid(&self) -> u32 {
        self.uids.outside
    }

    /// The host gid of the namespace's root.
    pub fn root_gid(&self) -> u32 {
        self.gids.outside
    }

    /// The uid range.
    pub fn uids(&self) -> IdRange {
        self.uids
    }

    /// The gid range.
    pub fn gids(&self) -> IdRange {
        self.gids
    }

    /// A detached clone of the mount at `dir` whose ids are shifted by this mapping,
    /// read-only when `readonly`.
    fn idmapped_clone(&self, dir: &Path, readonly: bool) -> Result<OwnedFd, IdmapError> {
        let err = |step, errno: std::io::Error| IdmapError::Idmap {
            path: dir.to_path_buf(),
            step,
            errno,
        };
        let tree = open_tree(
            rustix::fs::CWD,
            dir,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| err("open_tree", e.into()))?;
        set_idmap(tree.as_fd(), self.fd.as_fd(), readonly).map_err(|e| err("mount_setattr", e))?;
        Ok(tree)
    }

    /// Gives the top of a writable directory to the remapped root (its contents are the
    /// container's own and keep their owners).
    fn chown_top(&self, dir: &Path) -> Result<(), IdmapError> {
        let (uid, gid) = (self.root_uid(), self.root_gid());
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|errno| IdmapError::Chown {
            path: dir.to_path_buf(),
            uid,
            gid,
            errno,
        })
    }
}

/// Clones a child into a new user namespace that waits to be killed; returns its pid.
fn spawn_parked_child() -> std::io::Result<nix::unistd::Pid> {
    let mut stack = vec![0u8; 64 * 1024];
    let park: nix::sched::CloneCb = Box::new(|| loop {
        nix::unistd::pause();
    });
    // SAFETY: the child shares no memory with the parent (no CLONE_VM); it only calls
    // pause(2), which is async-signal-safe, until the parent kills it.
    let pid = unsafe {
        nix::sched::clone(
            park,
            &mut stack,
            nix::sched::CloneFlags::CLONE_NEWUSER,
            Some(libc::SIGCHLD),
        )
    }?;
    Ok(pid)
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP [| RDONLY], userns})` (rustix
/// and nix have no wrapper for it).
fn set_idmap(
    tree: std::os::fd::BorrowedFd<'_>,
    userns: std::os::fd::BorrowedFd<'_>,
    readonly: bool,
) -> std::io::Result<()> {
    let ro = if readonly { libc::MOUNT_ATTR_RDONLY } else { 0 };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | ro,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the path is a valid NUL-terminated string, `attr` is a live mount_attr whose
    // size is passed with it, and both descriptors are open for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Like [`crate::mount_all`], for a container in `userns`: an overlay's lower dirs are
/// idmapped and its upper and work dirs handed to the remapped root; a read-only bind is
/// idmapped; a writable bind (a snapshot without parents) has its top handed to the
/// remapped root. The layers themselves are never changed.
pub fn mount_all_idmapped(
    mounts: &[Mount],
    target: &Path,
    userns: &IdmapUserns,
) -> Result<(), IdmapError> {
    for m in mounts {
        match m.kind.as_str() {
            "overlay" => mount_overlay_idmapped(m, target, userns)?,
            "bind" if m.options.iter().any(|o| o == "ro") => {
                let tree = userns.idmapped_clone(Path::new(&m.source), true)?;
                move_mount(
                    &tree,
                    "",
                    rustix::fs::CWD,
                    target,
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )
                .map_err(|e| IdmapError::Idmap {
                    path: PathBuf::from(&m.source),
                    step: "move_mount",
                    errno: e.into(),
                })?;
            }
            _ => {
                if m.kind == "bind" {
                    userns.chown_top(Path::new(&m.source))?;
                }
                mount_all(std::slice::from_ref(m), target)?;
            }
        }
    }
    Ok(())
}

/// Mounts one overlay with each lower dir replaced by an idmapped clone, named by its
/// descriptor (`/proc/self/fd/N`); overlay keeps its own reference to each layer's mount,
/// so the descriptors are closed once it is mounted.
fn mount_overlay_idmapped(
    m: &Mount,
    target: &Path,
    userns: &IdmapUserns,
) -> Result<(), IdmapError> {
    let mut held = Vec::new();
    let mut options = Vec::with_capacity(m.options.len());
    for o in &m.options {
        match o.split_once('=') {
            Some(("lowerdir", dirs)) => {
                let mut names = Vec::new();
                for d in dirs.split(':') {
                    let tree = userns.idmapped_clone(Path::new(d), false)?;
                    names.push(format!("/proc/self/fd/{}", tree.as_raw_fd()));
                    held.push(tree);
                }
                options.push(format!("lowerdir={}", names.join(":")));
            }
            Some(("upperdir" | "workdir", dir)) => {
                userns.chown_top(Path::new(dir))?;
                options.push(o.clone());
            }
            _ => options.push(o.clone()),
        }
    }
    let idmapped = Mount {
        options,
        ..m.clone()
    };
    mount_all(std::slice::from_ref(&idmapped), target)?;
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn range(outside: u32) -> IdRange {
        IdRange {
            inside: 0,
            outside,
            count: 65536,
        }
    }

    #[test]
    fn to_inside_shifts_only_ids_in_range() {
        let r = range(100000);
        assert_eq!(r.to_inside(100000), 0);
        assert_eq!(r.to_inside(101000), 1000);
        assert_eq!(r.to_inside(165535), 65535);
        assert_eq!(r.to_inside(165536), 165536);
        assert_eq!(r.to_inside(0), 0);
    }

    /// Image files owned by 0 appear owned by the remapped root; what the remapped root
    /// writes lands in the upper dir with its host ids; the layer is untouched.
    #[test]
    fn overlay_lowers_are_idmapped_and_upper_belongs_to_remapped_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = |s: &str| tmp.path().join(s);
        for d in ["lower/etc", "upper", "work", "merged"] {
            std::fs::create_dir_all(p(d)).unwrap();
        }
        std::fs::write(p("lower/etc/f"), "x").unwrap();
        let ns = IdmapUserns::new(range(231072), range(231072)).unwrap();
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", p("lower").display()),
                format!("upperdir={}", p("upper").display()),
                format!("workdir={}", p("work").display()),
            ],
        };
        mount_all_idmapped(&[m], &p("merged"), &ns).unwrap();
        let seen = std::fs::metadata(p("merged/etc/f")).unwrap();
        assert_eq!((seen.uid(), seen.gid()), (231072, 231072));
        std::fs::write(p("merged/etc/f"), "y").unwrap();
        crate::unmount(&p("merged")).unwrap();
        let up = std::fs::metadata(p("upper/etc/f")).unwrap();
        assert_eq!(up.uid(), 231072);
        assert_eq!(std::fs::metadata(p("lower/etc/f")).unwrap().uid(), 0);
        assert_eq!(std::fs::read_to_string(p("lower/etc/f")).unwrap(), "x");
    }

    /// A read-only view is an idmapped bind: owners shifted, writes refused.
    #[test]
    fn readonly_bind_is_idmapped() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let ns = IdmapUserns::new(range(300000), range(300000)).unwrap();
        let m = Mount {
            kind: "bind".into(),
            source: src.display().to_string(),
            target: String::new(),
            options: vec!["rbind".into(), "ro".into()],
        };
        mount_all_idmapped(&[m], &dst, &ns).unwrap();
        let seen = std::fs::metadata(dst.join("f")).unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(dst.to_str().unwrap()))
            .map(str::to_string);
        crate::unmount(&dst).unwrap();
        assert_eq!(seen.uid(), 300000);
        let line = line.expect("mounted");
        let opts = line.split(' ').nth(5).unwrap();
        assert!(opts.split(',').any(|o| o == "ro"), "{line}");
        assert!(opts.split(',').any(|o| o == "idmapped"), "{line}");
        assert_eq!(std::fs::metadata(src.join("f")).unwrap().uid(), 0);
    }
}
