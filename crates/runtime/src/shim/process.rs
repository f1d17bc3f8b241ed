//! One supervised process (the container's init or an exec): its stdio and exit.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::pipe2;
use serde_json::{json, Value};

use super::backend::ChildStdio;
use super::tty::ConsoleSocket;
use crate::types::{ExecConfig, ExitStatus};

/// Errors setting up a process's stdio or spec.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A pipe or descriptor operation failed.
    #[error("{what}: {source}")]
    Fd {
        /// the operation
        what: &'static str,
        /// the cause
        source: nix::Error,
    },
    /// The pty master could not be received.
    #[error(transparent)]
    Tty(#[from] super::tty::TtyError),
    /// The bundle's config.json could not be used for an exec.
    #[error("exec spec from {path}: {message}")]
    Spec {
        /// config.json
        path: std::path::PathBuf,
        /// what went wrong
        message: String,
    },
}

/// Who owns a stream: the container's init or an exec process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// the container's init
    Init,
    /// an exec, by id
    Exec(String),
}

/// An output descriptor (pipe read end or pty master).
pub struct Output {
    pub fd: OwnedFd,
    pub stream: u8,
    pub open: bool,
}

/// A supervised process.
pub struct Proc {
    pub pid: i32,
    pub tty: bool,
    /// where client bytes go (pipe write end, or the pty master)
    pub stdin: Option<OwnedFd>,
    pub stdin_buf: Vec<u8>,
    /// close `stdin` once `stdin_buf` is written
    pub close_stdin: bool,
    pub outputs: Vec<Output>,
    /// pty master (for resize)
    pub pty: Option<OwnedFd>,
    /// set when reaped
    pub reaped: Option<ExitStatus>,
    /// set once reaped and all output delivered
    pub exit: Option<ExitStatus>,
    /// position among finished execs (0 while running)
    pub finished_order: u64,
}

impl Proc {
    /// Closes every descriptor once the process is finished.
    pub fn release_fds(&mut self) {
        self.stdin = None;
        self.stdin_buf.clear();
        self.outputs.clear();
        self.pty = None;
    }
}

fn fd_err(what: &'static str) -> impl Fn(nix::Error) -> ProcessError {
    move |source| ProcessError::Fd { what, source }
}

/// Marks `fd` non-blocking.
pub fn set_nonblocking(fd: &impl AsFd) -> Result<(), ProcessError> {
    let raw = fd.as_fd().as_raw_fd();
    let flags = fcntl(raw, FcntlArg::F_GETFL).map_err(fd_err("F_GETFL"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(raw, FcntlArg::F_SETFL(flags)).map_err(fd_err("F_SETFL"))?;
    Ok(())
}

/// The shim's ends of a process's stdio, before the process exists.
pub enum Prepared {
    /// pipes: our ends plus the child's ends
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
        child: Option<ChildStdio>,
    },
    /// a console socket that will receive the pty master
    Tty(ConsoleSocket),
}

impl Prepared {
    /// Pipes for stdout/stderr, and for stdin when `with_stdin` (else /dev/null).
    pub fn pipes(with_stdin: bool) -> Result<Self, ProcessError> {
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(fd_err("pipe"))?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(fd_err("pipe"))?;
        let (stdin, child_in) = if with_stdin {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(fd_err("pipe"))?;
            set_nonblocking(&w)?;
            (Some(w), r)
        } else {
            let null = std::fs::File::open("/dev/null").map_err(|e| ProcessError::Fd {
                what: "open /dev/null",
                source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            (None, OwnedFd::from(null))
        };
        set_nonblocking(&out_r)?;
        set_nonblocking(&err_r)?;
        Ok(Prepared::Pipes {
            stdin,
            stdout: out_r,
            stderr: err_r,
            child: Some(ChildStdio {
                stdin: child_in,
                stdout: out_w,
                stderr: err_w,
            }),
        })
    }

    /// What the runtime needs: the child's stdio ends (moved out; the shim must not keep
    /// them) and the console socket path.
    pub fn for_runtime(&mut self) -> (Option<ChildStdio>, Option<std::path::PathBuf>) {
        match self {
            Prepared::Pipes { child, .. } => (child.take(), None),
            Prepared::Tty(sock) => (None, Some(sock.path().to_path_buf())),
        }
    }

    /// Completes setup once the runtime created the process.
    pub fn into_proc(self, pid: i32) -> Result<Proc, ProcessError> {
        let mut p = Proc {
            pid,
            tty: false,
            stdin: None,
            stdin_buf: Vec::new(),
            close_stdin: false,
            outputs: Vec::new(),
            pty: None,
            reaped: None,
            exit: None,
            finished_order: 0,
        };
        match self {
            Prepared::Pipes {
                stdin,
                stdout,
                stderr,
                ..
            } => {
                p.stdin = stdin;
                p.outputs.push(Output {
                    fd: stdout,
                    stream: 1,
                    open: true,
                });
                p.outputs.push(Output {
                    fd: stderr,
                    stream: 2,
                    open: true,
                });
            }
            Prepared::Tty(sock) => {
                let master = sock.receive_master()?;
                set_nonblocking(&master)?;
                let read = master.try_clone().map_err(|e| ProcessError::Fd {
                    what: "dup pty master",
                    source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?;
                let write = master.try_clone().map_err(|e| ProcessError::Fd {
                    what: "dup pty master",
                    source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?;
                p.tty = true;
                p.stdin = Some(write);
                p.outputs.push(Output {
                    fd: read,
                    stream: 1,
                    open: true,
                });
                p.pty = Some(master);
            }
        }
        Ok(p)
    }
}

/// Writes the OCI process document for exec `cfg`, based on the container's own process.
pub fn write_exec_process(bundle: &Path, cfg: &ExecConfig, out: &Path) -> Result<(), ProcessError> {
    let path = bundle.join("config.json");
    let err = |message: String| ProcessError::Spec {
        path: path.clone(),
        message,
    };
    let text = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    let spec: Value = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| err("no process section".into()))?;
    let mut env: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for e in &cfg.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    process["args"] = json!(cfg.args);
    process["env"] = json!(env);
    process["terminal"] = json!(cfg.tty);
    if !cfg.cwd.is_empty() {
        process["cwd"] = json!(cfg.cwd);
    }
    if let Some(u) = &cfg.user {
        let mut user = json!({"uid": u.uid, "gid": u.gid});
        if !u.additional_gids.is_empty() {
            user["additionalGids"] = json!(u.additional_gids);
        }
        process["user"] = user;
    }
    if let Some(obj) = process.as_object_mut() {
        obj.remove("consoleSize");
    }
    let data = serde_json::to_vec(&process).map_err(|e| err(e.to_string()))?;
    std::fs::write(out, data).map_err(|e| err(format!("{}: {e}", out.display())))
}
