//! The per-container shim process (`berth-shim`).
//!
//! `berth-shim serve CONFIG` is started by [`crate::spawn_shim`]: it detaches (new
//! session, forks so the starter can exit), becomes a child subreaper, creates the
//! container through the chosen runtime with its own pipes or a pty, opens
//! `state_dir/shim.sock`, reports `ok <pid>` (or `error <message>`) on its stdout and then
//! serves the [`crate::protocol`] on a single-threaded poll loop until the container has
//! exited and no client remains.
//!
//! Once ready it hands over to the small `berth-monitor` binary (see [`monitor`]), which
//! keeps the pid and serves the same loop without libcontainer's memory.
//!
//! `berth-shim exec-helper ...` is the fresh single-threaded process in which
//! libcontainer joins a running container for an exec; `berth-shim lc OP ROOT ID` runs
//! one libcontainer operation (start, pause, resume, delete) for the monitor.

pub mod backend;
pub mod builtin;
pub mod handlers;
pub mod lcstart;
pub mod log;
pub mod monitor;
pub mod process;
pub mod server;
pub mod signals;
pub mod tty;
mod userns_exec;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::unistd::{fork, setsid, ForkResult};

use crate::cgroup::CgroupDirs;
use crate::types::{read_json, ShimConfig, PID_NAME, SOCKET_NAME};
use backend::Backend;
use process::Prepared;
use server::Shim;

/// Errors that stop the shim before it is ready.
#[derive(Debug, thiserror::Error)]
pub enum ShimSetupError {
    /// Bad command line.
    #[error(
        "usage: berth-shim serve CONFIG | exec-helper ROOT ID PROCESS PIDFILE [CONSOLE] | lc OP ROOT ID"
    )]
    Usage,
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] crate::types::StateError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// the operation
        what: String,
        /// the cause
        source: std::io::Error,
    },
    /// The container's stdio could not be set up.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// The console socket could not be set up.
    #[error(transparent)]
    Tty(#[from] tty::TtyError),
    /// The runtime failed.
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimSetupError {
    let what = what.into();
    move |source| ShimSetupError::Sys { what, source }
}

/// Entry point of the `berth-shim` binary; returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut it = args.into_iter().skip(1);
    match it.next().as_ref().and_then(|s| s.to_str()) {
        Some("serve") => match it.next() {
            Some(cfg) => serve_detached(Path::new(&cfg)),
            None => usage(),
        },
        Some("exec-helper") => {
            let rest: Vec<PathBuf> = it.map(PathBuf::from).collect();
            if rest.len() < 4 {
                return usage();
            }
            let id = rest[1].to_string_lossy().into_owned();
            let console = rest.get(4).map(|p| p.as_path());
            match builtin::exec_helper(&rest[0], &id, &rest[2], &rest[3], console) {
                Ok(()) => 0,
                Err(msg) => {
                    let mut err_path = rest[3].clone().into_os_string();
                    err_path.push(".err");
                    let _ = std::fs::write(err_path, &msg);
                    1
                }
            }
        }
        Some("lc") => {
            let rest: Vec<OsString> = it.collect();
            let [op, root, id] = rest.as_slice() else {
                return usage();
            };
            let (op, id) = (op.to_string_lossy(), id.to_string_lossy());
            match builtin::operation(&op, Path::new(root), &id) {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("{msg}");
                    1
                }
            }
        }
        _ => usage(),
    }
}

fn usage() -> i32 {
    eprintln!("{}", ShimSetupError::Usage);
    2
}

fn serve_detached(cfg_path: &Path) -> i32 {
    let report = |line: String| {
        let mut out = std::io::stdout();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    };
    let cfg: ShimConfig = match read_json(cfg_path) {
        Ok(c) => c,
        Err(e) => {
            report(format!("error {e}\n"));
            return 1;
        }
    };
    // A new session: no controlling terminal, immune to the engine's process group signals.
    let _ = setsid();
    // SAFETY: this process is single-threaded (freshly exec'd, no threads started).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(format!("error fork: {e}\n"));
            return 1;
        }
    }
    let helper = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            report(format!("error locating berth-shim: {e}\n"));
            return 1;
        }
    };
    match setup(cfg, &helper) {
        Ok((mut shim, listener, sig)) => {
            report(format!("ok {}\n", std::process::id()));
            detach_stdio();
            if let Some(monitor) = monitor::monitor_binary() {
                let e = monitor::exec_monitor(&monitor, cfg_path, &helper, &shim, &listener);
                eprintln!("berth-shim {}: {e}; serving in this process", shim.cfg.id);
            }
            serve_loop(&mut shim, &listener, &sig)
        }
        Err(e) => {
            report(format!("error {}\n", e.to_string().replace('\n', " ")));
            1
        }
    }
}

/// Serves `shim` until it is done and removes its socket; returns the exit code.
fn serve_loop(shim: &mut Shim, listener: &UnixListener, sig: &std::os::fd::OwnedFd) -> i32 {
    let res = shim.run(listener, sig);
    if !shim.socket_removed {
        let _ = std::fs::remove_file(shim.cfg.state_dir.join(SOCKET_NAME));
    }
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-shim {}: poll: {e}", shim.cfg.id);
            1
        }
    }
}

/// Points stdin/stdout at /dev/null (stderr stays on the shim log).
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

type Ready = (Shim, UnixListener, std::os::fd::OwnedFd);

fn setup(cfg: ShimConfig, helper: &Path) -> Result<Ready, ShimSetupError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| sys("set child subreaper")(e.into()))?;
    let sig = signals::install_sigchld().map_err(|e| sys("install SIGCHLD handler")(e.into()))?;
    let state_dir = cfg.state_dir.clone();
    std::fs::write(state_dir.join(PID_NAME), std::process::id().to_string()).map_err(sys(
        format!("writing {}", state_dir.join(PID_NAME).display()),
    ))?;
    let logger =
        log::JsonLogger::open(&cfg.log_path, &cfg.log).map_err(|e| ShimSetupError::Sys {
            what: "opening log".into(),
            source: std::io::Error::other(e.to_string()),
        })?;

    let backend = Backend::new(&cfg, helper);
    let mut prepared = if cfg.tty {
        Prepared::Tty(tty::ConsoleSocket::bind(&state_dir.join("console.sock"))?)
    } else {
        Prepared::pipes(cfg.open_stdin)?
    };
    let (stdio, console) = prepared.for_runtime();
    let pid = match backend.create(&state_dir, stdio, console.as_deref()) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = backend.delete();
            return Err(e.into());
        }
    };
    let init = match prepared.into_proc(pid) {
        Ok(p) => p,
        Err(e) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = backend.delete();
            return Err(e.into());
        }
    };
    let cgroups = CgroupDirs::for_pid(pid).unwrap_or_default();

    let sock_path = state_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&sock_path);
    let listener =
        UnixListener::bind(&sock_path).map_err(sys(format!("binding {}", sock_path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(sys("socket nonblocking"))?;
    let shim = Shim {
        cfg,
        backend,
        init,
        started: false,
        paused: false,
        cgroups,
        execs: HashMap::new(),
        conns: Vec::new(),
        logger,
        shutdown: false,
        socket_removed: false,
        exec_counter: 0,
        finished_execs: 0,
    };
    Ok((shim, listener, sig))
}
