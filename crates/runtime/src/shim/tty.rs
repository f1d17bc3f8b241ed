//! Pseudo terminals: receiving the pty master over a console socket, and resizing it.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Errors handling a console socket or terminal.
#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    /// The console socket could not be created or accepted.
    #[error("console socket {path}: {source}")]
    Socket {
        /// the socket path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The runtime sent no file descriptor.
    #[error("console socket {path}: no pty master received")]
    NoMaster {
        /// the socket path
        path: PathBuf,
    },
    /// The terminal size could not be set.
    #[error("setting window size: {0}")]
    Resize(nix::Error),
}

/// A listening console socket; the runtime connects and sends the pty master.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds a fresh socket at `path` (an old file there is removed).
    pub fn bind(path: &Path) -> Result<Self, TtyError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|source| TtyError::Socket {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// The socket's path, to hand to the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and returns the received pty master.
    /// Call only after the runtime reported success (it has connected by then).
    pub fn receive_master(self) -> Result<OwnedFd, TtyError> {
        let sock_err = |source| TtyError::Socket {
            path: self.path.clone(),
            source,
        };
        let (stream, _) = self.listener.accept().map_err(sock_err)?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| sock_err(e.into()))?;
        let mut master = None;
        for c in msg.cmsgs().map_err(|e| sock_err(e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us; we own it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(owned);
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
        master.ok_or(TtyError::NoMaster {
            path: self.path.clone(),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Sets the window size of the terminal behind `master`.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), TtyError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer, which is valid here.
    unsafe { set_winsize(master.as_raw_fd(), &ws) }
        .map(|_| ())
        .map_err(TtyError::Resize)
}
