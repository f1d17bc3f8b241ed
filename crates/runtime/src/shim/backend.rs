//! The two OCI runtimes behind one interface: the built-in one (libcontainer, which runs
//! only in `berth-shim` processes: `serve` creates the container, short-lived
//! `berth-shim lc OP` and `exec-helper` processes do the rest) and an external `runc`.
//! Nothing here but [`Backend::create`] calls libcontainer, so the long-lived monitor,
//! which never creates, does not link it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::types::{RuntimeKind, ShimConfig};

/// Errors from the OCI runtime.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The built-in runtime (libcontainer) failed.
    #[error("{op} {id}: {message}")]
    Builtin {
        /// the operation
        op: &'static str,
        /// container id
        id: String,
        /// libcontainer's error
        message: String,
    },
    /// An external runtime command failed.
    #[error("{binary} {op} {id}: {message}")]
    External {
        /// the runtime binary
        binary: PathBuf,
        /// the operation
        op: &'static str,
        /// container id
        id: String,
        /// its output
        message: String,
    },
    /// A pid file was missing or malformed.
    #[error("pid file {path}: {message}")]
    PidFile {
        /// the file
        path: PathBuf,
        /// what went wrong
        message: String,
    },
}

/// The process's stdio, when it has no terminal.
pub struct ChildStdio {
    /// stdin (read end of a pipe, or /dev/null)
    pub stdin: OwnedFd,
    /// stdout (write end of a pipe)
    pub stdout: OwnedFd,
    /// stderr (write end of a pipe)
    pub stderr: OwnedFd,
}

/// A configured runtime for one container.
pub struct Backend {
    id: String,
    bundle: PathBuf,
    kind: Kind,
}

enum Kind {
    Builtin {
        root: PathBuf,
        /// the `berth-shim` binary that runs libcontainer operations
        helper: PathBuf,
    },
    Runc {
        binary: PathBuf,
        root: PathBuf,
        log: PathBuf,
    },
}

fn read_pid_file(path: &Path) -> Result<i32, BackendError> {
    let err = |message: String| BackendError::PidFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.trim()
        .parse()
        .map_err(|_| err(format!("not a pid: {text:?}")))
}

impl Backend {
    /// The runtime chosen in `cfg`; libcontainer keeps its state under `state_dir/lc`, and
    /// `helper` (the `berth-shim` binary) runs its operations after the create.
    pub fn new(cfg: &ShimConfig, helper: &Path) -> Self {
        let kind = match &cfg.runtime {
            RuntimeKind::Builtin => Kind::Builtin {
                root: cfg.state_dir.join("lc"),
                helper: helper.to_path_buf(),
            },
            RuntimeKind::Runc { binary, root } => Kind::Runc {
                binary: binary.clone(),
                root: root.clone(),
                log: cfg.state_dir.join("runc.log"),
            },
        };
        Backend {
            id: cfg.id.clone(),
            bundle: cfg.bundle.clone(),
            kind,
        }
    }

    fn builtin_err(&self, op: &'static str, e: impl std::fmt::Display) -> BackendError {
        BackendError::Builtin {
            op,
            id: self.id.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `helper lc OP ROOT ID` and turns its failure into an error.
    fn lc(&self, op: &'static str) -> Result<(), BackendError> {
        let Kind::Builtin { root, helper } = &self.kind else {
            return Ok(());
        };
        let out = Command::new(helper)
            .arg("lc")
            .arg(op)
            .arg(root)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| self.builtin_err(op, format!("{}: {e}", helper.display())))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(self.builtin_err(op, msg))
    }

    fn runc(
        &self,
        op: &'static str,
        args: &[&std::ffi::OsStr],
        stdio: Option<ChildStdio>,
    ) -> Result<(), BackendError> {
        let Kind::Runc { binary, root, log } = &self.kind else {
            return Ok(());
        };
        let mut cmd = Command::new(binary);
        cmd.arg("--root").arg(root).arg("--log").arg(log).args(args);
        match stdio {
            Some(s) => cmd.stdin(s.stdin).stdout(s.stdout).stderr(s.stderr),
            None => cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        };
        let ext = |message: String| BackendError::External {
            binary: binary.clone(),
            op,
            id: self.id.clone(),
            message,
        };
        let out = cmd.output().map_err(|e| ext(e.to_string()))?;
        if out.status.success() {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if message.is_empty() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            message = text.lines().last().unwrap_or("").to_string();
        }
        Err(ext(format!("{}: {message}", out.status)))
    }

    /// Creates the container (process waiting before exec); returns its init pid.
    pub fn create(
        &self,
        state_dir: &Path,
        stdio: Option<ChildStdio>,
        console: Option<&Path>,
    ) -> Result<i32, BackendError> {
        match &self.kind {
            Kind::Builtin { root, .. } => {
                super::builtin::create(root, &self.id, &self.bundle, stdio, console)
                    .map_err(|e| self.builtin_err("create", e))
            }
            Kind::Runc { .. } => {
                let pid_file = state_dir.join("init.pid");
                let mut args: Vec<&std::ffi::OsStr> = vec![
                    "create".as_ref(),
                    "--bundle".as_ref(),
                    self.bundle.as_os_str(),
                    "--pid-file".as_ref(),
                    pid_file.as_os_str(),
                ];
                if let Some(c) = console {
                    args.extend(["--console-socket".as_ref(), c.as_os_str()]);
                }
                args.push(self.id.as_ref());
                self.runc("create", &args, stdio)?;
                read_pid_file(&pid_file)
            }
        }
    }

    /// Lets the created container's process exec its program. The built-in runtime does
    /// this in-process through the init's notify socket (see [`super::lcstart`]) unless the
    /// container has hooks.
    pub fn start(&self) -> Result<(), BackendError> {
        match &self.kind {
            Kind::Builtin { root, .. } => match super::lcstart::start(&root.join(&self.id)) {
                Ok(super::lcstart::Started::Done) => Ok(()),
                Ok(super::lcstart::Started::NeedsLibcontainer) => self.lc("start"),
                Err(e) => Err(self.builtin_err("start", e)),
            },
            Kind::Runc { .. } => self.runc("start", &["start".as_ref(), self.id.as_ref()], None),
        }
    }

    /// Freezes the container.
    pub fn pause(&self) -> Result<(), BackendError> {
        match &self.kind {
            Kind::Builtin { .. } => self.lc("pause"),
            Kind::Runc { .. } => self.runc("pause", &["pause".as_ref(), self.id.as_ref()], None),
        }
    }

    /// Thaws the container.
    pub fn resume(&self) -> Result<(), BackendError> {
        match &self.kind {
            Kind::Builtin { .. } => self.lc("resume"),
            Kind::Runc { .. } => self.runc("resume", &["resume".as_ref(), self.id.as_ref()], None),
        }
    }

    /// Removes the runtime's state and cgroup (after the init was reaped).
    pub fn delete(&self) -> Result<(), BackendError> {
        match &self.kind {
            Kind::Builtin { .. } => self.lc("delete"),
            Kind::Runc { .. } => self.runc(
                "delete",
                &["delete".as_ref(), "--force".as_ref(), self.id.as_ref()],
                None,
            ),
        }
    }

    /// Cleanup once the init was reaped. runc keeps state outside the shim's directory and
    /// needs its `delete`. For the built-in runtime, removing libcontainer's state directory
    /// is enough: the container's cgroups are ones the engine removes in every hierarchy on
    /// teardown (or, if it is down, when it starts), so no `berth-shim lc delete` process
    /// sits on the path of every exit a client waits for.
    pub fn cleanup_after_exit(&self) -> Result<(), BackendError> {
        match &self.kind {
            Kind::Builtin { root, .. } => match std::fs::remove_dir_all(root.join(&self.id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(self.builtin_err("delete", e))
                }
                _ => Ok(()),
            },
            Kind::Runc { .. } => self.delete(),
        }
    }

    /// Starts `process.json` in the running container; returns the new process's pid,
    /// which ends up a child of this (subreaper) process.
    pub fn exec(
        &self,
        process: &Path,
        pid_file: &Path,
        stdio: Option<ChildStdio>,
        console: Option<&Path>,
    ) -> Result<i32, BackendError> {
        let _ = std::fs::remove_file(pid_file);
        match &self.kind {
            Kind::Builtin { root, helper } => {
                let mut cmd = Command::new(helper);
                cmd.arg("exec-helper")
                    .arg(root)
                    .arg(&self.id)
                    .arg(process)
                    .arg(pid_file);
                if let Some(c) = console {
                    cmd.arg(c);
                }
                match stdio {
                    Some(s) => cmd.stdin(s.stdin).stdout(s.stdout).stderr(s.stderr),
                    None => cmd
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                };
                let status = cmd.status().map_err(|e| self.builtin_err("exec", e))?;
                if !status.success() {
                    let mut err_path = pid_file.as_os_str().to_owned();
                    err_path.push(".err");
                    let msg = std::fs::read_to_string(&err_path).unwrap_or_default();
                    let _ = std::fs::remove_file(&err_path);
                    return Err(self.builtin_err("exec", format!("{status}: {}", msg.trim())));
                }
                read_pid_file(pid_file)
            }
            Kind::Runc { .. } => {
                let mut args: Vec<&std::ffi::OsStr> = vec![
                    "exec".as_ref(),
                    "--detach".as_ref(),
                    "--pid-file".as_ref(),
                    pid_file.as_os_str(),
                    "--process".as_ref(),
                    process.as_os_str(),
                ];
                if let Some(c) = console {
                    args.extend(["--tty".as_ref(), "--console-socket".as_ref(), c.as_os_str()]);
                }
                args.push(self.id.as_ref());
                self.runc("exec", &args, stdio)?;
                read_pid_file(pid_file)
            }
        }
    }
}
