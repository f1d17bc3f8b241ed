//! The long-lived half of the shim. `berth-shim serve` creates the container (libcontainer
//! runs in that process) and then replaces itself, keeping its pid and therefore its
//! children, with `berth-monitor`: a small binary that holds only the poll loop. The
//! descriptors it needs (the shim socket, the init's stdio or pty master) cross the
//! exec without `FD_CLOEXEC`; everything else is passed as a JSON [`Handoff`] argument.
//! A running container's shim thus keeps none of libcontainer's code or relocated data
//! resident. Without a `berth-monitor` binary next to `berth-shim`, the shim runs the
//! loop itself, as before.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::process::{Output, Proc};
use super::server::Shim;
use crate::cgroup::CgroupDirs;
use crate::types::{read_json, ShimConfig};

/// File name of the monitor binary, looked up next to `berth-shim`.
pub const MONITOR_NAME: &str = "berth-monitor";

/// Errors handing over to, or starting, the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Bad command line.
    #[error("usage: berth-monitor HANDOFF_JSON (started by berth-shim only)")]
    Usage,
    /// The handoff document could not be encoded or decoded.
    #[error("handoff: {0}")]
    Handoff(#[from] serde_json::Error),
    /// A descriptor named in the handoff is not open, or its flags could not be changed.
    #[error("descriptor {fd}: {source}")]
    Fd {
        /// the descriptor
        fd: RawFd,
        /// the cause
        source: nix::Error,
    },
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] crate::types::StateError),
    /// exec(2) of the monitor failed.
    #[error("exec {path}: {source}")]
    Exec {
        /// the monitor binary
        path: PathBuf,
        /// the cause
        source: nix::Error,
    },
    /// A path contained a NUL byte.
    #[error("{0}: contains a NUL byte")]
    Nul(PathBuf),
}

/// What `berth-shim serve` passes to `berth-monitor` across exec(2).
#[derive(Debug, Serialize, Deserialize)]
///
/// `helper` comes first on purpose: the monitor's command line then reads
/// `berth-monitor {"helper":".../berth-shim","config":"EXEC_ROOT/..."...}`, so tools that
/// look for `berth-shim.*EXEC_ROOT` (cleanup, benchmarks) still find it.
pub struct Handoff {
    /// the `berth-shim` binary, for libcontainer operations after the create
    pub helper: PathBuf,
    /// the shim's config file
    pub config: PathBuf,
    /// the listening shim socket
    pub listener: RawFd,
    /// the container's init
    pub pid: i32,
    /// the init has a terminal
    pub tty: bool,
    /// where client bytes for the init's stdin go
    pub stdin: Option<RawFd>,
    /// output descriptors and their stream numbers (1 stdout, 2 stderr)
    pub outputs: Vec<(RawFd, u8)>,
    /// the pty master, for resize
    pub pty: Option<RawFd>,
}

fn set_cloexec(fd: RawFd, on: bool) -> Result<(), MonitorError> {
    let err = |source| MonitorError::Fd { fd, source };
    let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).map_err(err)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(err)?;
    Ok(())
}

/// `berth-monitor` next to the running executable, if there is one.
pub fn monitor_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join(MONITOR_NAME);
    p.is_file().then_some(p)
}

/// Replaces this process with `monitor`, handing it `shim`'s state. Returns only when
/// that failed; the descriptors are then close-on-exec again and the caller keeps serving.
pub fn exec_monitor(
    monitor: &Path,
    cfg_path: &Path,
    helper: &Path,
    shim: &Shim,
    listener: &UnixListener,
) -> MonitorError {
    let init = &shim.init;
    let h = Handoff {
        config: cfg_path.to_path_buf(),
        helper: helper.to_path_buf(),
        listener: listener.as_raw_fd(),
        pid: init.pid,
        tty: init.tty,
        stdin: init.stdin.as_ref().map(|f| f.as_raw_fd()),
        outputs: init
            .outputs
            .iter()
            .map(|o| (o.fd.as_raw_fd(), o.stream))
            .collect(),
        pty: init.pty.as_ref().map(|f| f.as_raw_fd()),
    };
    let fds: Vec<RawFd> = std::iter::once(h.listener)
        .chain(h.stdin)
        .chain(h.outputs.iter().map(|(fd, _)| *fd))
        .chain(h.pty)
        .collect();
    let err = match exec_with(monitor, &h, &fds) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    for fd in fds {
        let _ = set_cloexec(fd, true);
    }
    err
}

fn exec_with(
    monitor: &Path,
    h: &Handoff,
    fds: &[RawFd],
) -> Result<std::convert::Infallible, MonitorError> {
    let json = serde_json::to_string(h)?;
    let path = CString::new(monitor.as_os_str().as_bytes())
        .map_err(|_| MonitorError::Nul(monitor.to_path_buf()))?;
    let arg = CString::new(json).map_err(|_| MonitorError::Nul(h.config.clone()))?;
    for fd in fds {
        set_cloexec(*fd, false)?;
    }
    nix::unistd::execv(&path, &[path.as_c_str(), arg.as_c_str()]).map_err(|source| {
        MonitorError::Exec {
            path: monitor.to_path_buf(),
            source,
        }
    })
}

/// Takes ownership of inherited descriptor `fd`, marking it close-on-exec again so it does
/// not leak into runtime helpers.
fn adopt(fd: RawFd) -> Result<OwnedFd, MonitorError> {
    set_cloexec(fd, true)?;
    // SAFETY: `fd` is open (F_GETFD succeeded) and was handed to this process alone by the
    // shim; nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Rebuilds the shim's state from a handoff.
fn restore(h: Handoff) -> Result<(Shim, UnixListener), MonitorError> {
    let cfg: ShimConfig = read_json(&h.config)?;
    let listener = UnixListener::from(adopt(h.listener)?);
    let mut outputs = Vec::new();
    for (fd, stream) in &h.outputs {
        outputs.push(Output {
            fd: adopt(*fd)?,
            stream: *stream,
            open: true,
        });
    }
    let init = Proc {
        pid: h.pid,
        tty: h.tty,
        stdin: h.stdin.map(adopt).transpose()?,
        stdin_buf: Vec::new(),
        close_stdin: false,
        outputs,
        pty: h.pty.map(adopt).transpose()?,
        reaped: None,
        exit: None,
        finished_order: 0,
    };
    let logger = match super::log::JsonLogger::open(&cfg.log_path, &cfg.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth-monitor {}: {e}", cfg.id);
            None
        }
    };
    let shim = Shim {
        backend: Backend::new(&cfg, &h.helper),
        cgroups: CgroupDirs::for_pid(h.pid).unwrap_or_default(),
        cfg,
        init,
        started: false,
        paused: false,
        execs: HashMap::new(),
        conns: Vec::new(),
        logger,
        shutdown: false,
        socket_removed: false,
        exec_counter: 0,
        finished_execs: 0,
    };
    Ok((shim, listener))
}

/// Entry point of the `berth-monitor` binary; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let Some(arg) = args.get(1) else {
        eprintln!("{}", MonitorError::Usage);
        return 2;
    };
    let restored = serde_json::from_slice::<Handoff>(arg.as_bytes())
        .map_err(MonitorError::from)
        .and_then(restore);
    let (mut shim, listener) = match restored {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-monitor: {e}");
            return 1;
        }
    };
    let sig = match super::signals::install_sigchld() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "berth-monitor {}: install SIGCHLD handler: {e}",
                shim.cfg.id
            );
            return 1;
        }
    };
    // The init may have exited while no handler was installed.
    shim.reap();
    super::serve_loop(&mut shim, &listener, &sig)
}
