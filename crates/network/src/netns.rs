//! Network namespaces pinned by a bind mount at a path of the caller's choice.
//!
//! Namespace changes are made only on short-lived threads that are discarded
//! afterwards, so these functions are safe to call from a multi-threaded tokio
//! process: `unshare`/`setns` affect only the calling thread.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Errors of network-namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The pin file or its directory could not be created or removed.
    #[error("netns {path}: {source}")]
    Io {
        /// The namespace path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A namespace system call failed.
    #[error("netns {path}: {op}: {source}")]
    Sys {
        /// The namespace path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The errno.
        source: nix::Error,
    },
    /// A helper thread panicked.
    #[error("netns {path}: helper thread panicked")]
    Thread {
        /// The namespace path.
        path: PathBuf,
    },
}

/// Creates a new network namespace and pins it by bind-mounting it at `path`
/// (the file is created, and its parent directories too). The namespace's `lo`
/// is brought up. Fails if `path` already holds a namespace.
pub fn create_netns(path: &Path) -> Result<(), NetnsError> {
    let io_err = |source| NetnsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err)?;
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetnsError> {
            let sys = |op| {
                move |source| NetnsError::Sys {
                    path: path.to_path_buf(),
                    op,
                    source,
                }
            };
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare"))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind mount"))?;
            set_loopback_up().map_err(|source| NetnsError::Io {
                path: path.to_path_buf(),
                source,
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Thread {
                path: path.to_path_buf(),
            })
        })
    });
    if result.is_err() {
        let _ = umount2(path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(path);
    }
    result
}

/// Unmounts and deletes the namespace pinned at `path`. The namespace itself
/// disappears once no process uses it. A missing `path` is not an error.
pub fn remove_netns(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(source) => {
            return Err(NetnsError::Sys {
                path: path.to_path_buf(),
                op: "unmount",
                source,
            })
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs `f` on a fresh thread that has joined the network namespace pinned at
/// `path`, and returns its result. The thread ends afterwards, so the caller's
/// threads never change namespace. Sockets created by `f` stay in that
/// namespace even when used from other threads.
pub fn in_netns<F, R>(path: &Path, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file = File::open(path).map_err(|source| NetnsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
                path: path.to_path_buf(),
                op: "setns",
                source,
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Thread {
                path: path.to_path_buf(),
            })
        })
    })
}

/// Sets `IFF_UP` on `lo` of the calling thread's network namespace.
pub(crate) fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed, correctly sized ifreq; the
    // socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}
