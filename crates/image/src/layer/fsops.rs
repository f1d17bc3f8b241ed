//! Directory-fd based file operations that never follow symlinks in parent
//! components and never leave the root.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{openat2, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Which entry a failure belongs to, and why it happened.
pub(crate) enum OpError {
    /// The path is hostile (symlink in a parent, not a directory, ...).
    Unsafe(String),
    /// An I/O error, with the operation's name.
    Io(&'static str, io::Error),
}

pub(crate) type OpResult<T> = Result<T, OpError>;

pub(crate) fn io(op: &'static str) -> impl FnOnce(Errno) -> OpError {
    move |e| OpError::Io(op, io::Error::from(e))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Opens the directory `comps` under `root`, creating missing components
/// (mode 0755) when `create` is set. Fails as unsafe if any component is a
/// symlink or not a directory.
pub(crate) fn open_dir(root: &OwnedFd, comps: &[&[u8]], create: bool) -> OpResult<OwnedFd> {
    let mut fd =
        openat2(root, ".", DIR_FLAGS, Mode::empty(), resolve()).map_err(io("open root"))?;
    for comp in comps {
        let name = os(comp);
        fd = match openat2(&fd, name, DIR_FLAGS, Mode::empty(), resolve()) {
            Ok(next) => next,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io("create parent directory")(e)),
                }
                openat2(&fd, name, DIR_FLAGS, Mode::empty(), resolve()).map_err(classify)?
            }
            Err(e) => return Err(classify(e)),
        };
    }
    Ok(fd)
}

fn classify(e: Errno) -> OpError {
    match e {
        Errno::LOOP => OpError::Unsafe("a parent path component is a symlink".into()),
        Errno::NOTDIR => OpError::Unsafe("a parent path component is not a directory".into()),
        Errno::XDEV => OpError::Unsafe("path escapes the destination".into()),
        other => io("open parent directory")(other),
    }
}

pub(crate) fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}

/// What was at a name before an entry replaced it.
#[derive(PartialEq, Eq)]
pub(crate) enum Existing {
    Nothing,
    Dir,
    Other,
}

pub(crate) fn existing(parent: &OwnedFd, name: &[u8]) -> OpResult<Existing> {
    match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            Ok(Existing::Dir)
        }
        Ok(_) => Ok(Existing::Other),
        Err(Errno::NOENT) => Ok(Existing::Nothing),
        Err(e) => Err(io("stat existing")(e)),
    }
}

/// Removes whatever is at `parent/name` (directories recursively, without
/// following symlinks). Missing is fine.
pub(crate) fn remove(parent: &OwnedFd, name: &[u8]) -> OpResult<()> {
    match existing(parent, name)? {
        Existing::Nothing => Ok(()),
        Existing::Other => {
            rustix::fs::unlinkat(parent, os(name), AtFlags::empty()).map_err(io("remove existing"))
        }
        Existing::Dir => {
            let path = proc_path(parent, name);
            std::fs::remove_dir_all(&path).map_err(|e| OpError::Io("remove existing directory", e))
        }
    }
}

/// A path naming `parent/name` through this process's fd table; resolving
/// it cannot leave `parent`, since `name` is a single component.
pub(crate) fn proc_path(parent: &OwnedFd, name: &[u8]) -> std::path::PathBuf {
    let mut p = std::path::PathBuf::from(format!("/proc/self/fd/{}", parent.as_fd().as_raw_fd()));
    p.push(os(name));
    p
}
