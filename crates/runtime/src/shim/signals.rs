//! SIGCHLD delivery through a self-pipe, and poll(2).

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the SIGCHLD self-pipe (-1 until installed).
static SIGCHLD_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid one-byte array.
        unsafe {
            libc::write(fd, [0u8].as_ptr().cast(), 1);
        }
    }
}

/// Installs the SIGCHLD handler and returns the self-pipe's read end.
pub fn install_sigchld() -> nix::Result<OwnedFd> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    SIGCHLD_FD.store(w.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(w); // lives as long as the process
    let act = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2).
    unsafe { sigaction(Signal::SIGCHLD, &act) }?;
    Ok(r)
}

/// Waits for events; returns the number of ready descriptors (0 on timeout).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> std::io::Result<i32> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
        return Ok(-1);
    }
    Ok(n)
}

/// A pollfd for `fd` with `events`.
pub fn pfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
