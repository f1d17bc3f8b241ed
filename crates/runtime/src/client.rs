//! Engine side: start a shim ([`spawn_shim`]) and talk to it ([`ShimClient`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::protocol::{Reply, Request};
use crate::types::{
    read_exit, write_json_atomic, CgroupStats, ExecConfig, ExitStatus, ShimConfig, StateError,
    CONFIG_NAME, EXIT_NAME, PID_NAME, SOCKET_NAME,
};

/// Errors from starting or talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No shim serves this state directory (socket missing or refusing).
    #[error("shim for {state_dir} is not running")]
    NotRunning {
        /// the container's state directory
        state_dir: PathBuf,
    },
    /// The shim binary could not be started.
    #[error("starting shim {binary}: {source}")]
    Spawn {
        /// the shim binary
        binary: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The shim started but could not create the container.
    #[error("shim for {id} failed: {message}")]
    Failed {
        /// container id
        id: String,
        /// what the shim reported
        message: String,
    },
    /// A state file could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The shim answered a request with an error.
    #[error("shim {op}: {message}")]
    Request {
        /// the request
        op: &'static str,
        /// the shim's message
        message: String,
    },
    /// The connection broke or carried garbage.
    #[error("shim connection {state_dir}: {message}")]
    Protocol {
        /// the container's state directory
        state_dir: PathBuf,
        /// what went wrong
        message: String,
    },
}

/// Lifecycle state of a shim's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// created, user process not started
    Created,
    /// user process running
    Running,
    /// frozen
    Paused,
    /// init has exited
    Stopped,
}

/// What [`ShimClient::state`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimState {
    /// host pid of the container's init
    pub pid: u32,
    /// lifecycle state
    pub status: ContainerStatus,
    /// the exit record once the container exited and its output was drained
    pub exit: Option<ExitStatus>,
}

/// A started shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShimProcess {
    /// pid of the detached shim process
    pub shim_pid: u32,
}

/// Starts a detached shim for `cfg` and returns once the container is created (not
/// started) and the shim's socket accepts connections. Blocking; safe to call from a
/// multi-threaded process (it only fork/execs the shim binary).
pub fn spawn_shim(shim_binary: &Path, cfg: &ShimConfig) -> Result<ShimProcess, ShimError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    std::fs::create_dir_all(&cfg.state_dir).map_err(io(&cfg.state_dir))?;
    // Only root may reach the shim's socket (it controls the container).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&cfg.state_dir))?;
    }
    let sock = cfg.state_dir.join(SOCKET_NAME);
    if let Ok(old) = std::os::unix::net::UnixStream::connect(&sock) {
        // A previous run's shim may still linger after its container exited: retire it.
        // A lingering shim that was leaving anyway may close the connection unanswered;
        // what matters is that nothing serves the socket afterwards.
        if !retire_exited_shim(old) && std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Err(ShimError::Failed {
                id: cfg.id.clone(),
                message: format!("a shim already serves {}", cfg.state_dir.display()),
            });
        }
    }
    // A previous run's records must not describe this one.
    for stale in [
        sock,
        cfg.state_dir.join(EXIT_NAME),
        cfg.state_dir.join(PID_NAME),
    ] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&stale)(e).into()),
            _ => {}
        }
    }
    let cfg_path = cfg.state_dir.join(CONFIG_NAME);
    write_json_atomic(&cfg_path, cfg)?;
    let log_path = cfg.state_dir.join("shim.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let spawn_err = |source| ShimError::Spawn {
        binary: shim_binary.to_path_buf(),
        source,
    };
    let mut child = Command::new(shim_binary)
        .arg("serve")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(spawn_err)?;
    let stdout = child.stdout.take();
    // The first process forks the real shim and exits at once.
    child.wait().map_err(spawn_err)?;
    let failed = |message: String| ShimError::Failed {
        id: cfg.id.clone(),
        message,
    };
    let mut line = String::new();
    if let Some(out) = stdout {
        if !readable_within(&out, READY_TIMEOUT_MS) {
            // A shim stuck while creating: stop it rather than hang the engine.
            if let Some(pid) = std::fs::read_to_string(cfg.state_dir.join(PID_NAME))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(failed(format!(
                "shim did not report within {} s",
                READY_TIMEOUT_MS / 1000
            )));
        }
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(spawn_err)?;
    }
    if let Some(pid) = line.trim().strip_prefix("ok ") {
        let shim_pid = pid
            .parse()
            .map_err(|_| failed(format!("bad ready line {line:?}")))?;
        return Ok(ShimProcess { shim_pid });
    }
    if let Some(msg) = line.trim().strip_prefix("error ") {
        return Err(failed(msg.to_string()));
    }
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    Err(failed(format!(
        "shim exited without reporting: {}",
        tail.trim()
    )))
}

/// How long `spawn_shim` waits for the shim to create the container.
const READY_TIMEOUT_MS: i32 = 120_000;

/// Waits until `fd` is readable (or at EOF); false on timeout.
fn readable_within(fd: &impl std::os::fd::AsFd, timeout_ms: i32) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut remaining = timeout_ms;
    while remaining > 0 {
        let step = remaining.min(60_000);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(step).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => remaining -= step,
            Ok(_) => return true,
            Err(nix::Error::EINTR) => {}
            Err(_) => return true, // let the read report it
        }
    }
    false
}

/// Locates the `berth-shim` binary: `$BERTH_SHIM`, then next to the running executable (or
/// one directory up, as for cargo's test binaries in `target/*/deps`), then `$PATH`.
pub fn find_shim_binary() -> Option<PathBuf> {
    const NAME: &str = "berth-shim";
    if let Some(p) = std::env::var_os("BERTH_SHIM").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join(NAME);
            if candidate.is_file() {
                return Some(candidate);
            }
            dir = d.parent();
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(NAME))
        .find(|p| p.is_file())
}

/// Asks a running shim to shut down; true when its container had already exited (the
/// shim then released its socket path).
fn retire_exited_shim(mut conn: std::os::unix::net::UnixStream) -> bool {
    use std::io::Write;
    let Ok(mut line) = serde_json::to_vec(&Request::Shutdown) else {
        return false;
    };
    line.push(b'\n');
    if conn.write_all(&line).is_err() {
        return false;
    }
    let mut reply = String::new();
    if BufReader::new(conn).read_line(&mut reply).is_err() {
        return false;
    }
    serde_json::from_str::<Reply>(&reply).is_ok_and(|r| r.exit.is_some())
}

/// A client for one container's shim. Each call opens its own connection.
#[derive(Debug, Clone)]
pub struct ShimClient {
    state_dir: PathBuf,
}

impl ShimClient {
    /// Checks that a shim serves `state_dir`; [`ShimError::NotRunning`] otherwise.
    pub async fn connect(state_dir: impl Into<PathBuf>) -> Result<Self, ShimError> {
        let client = ShimClient {
            state_dir: state_dir.into(),
        };
        client.open().await?;
        Ok(client)
    }

    /// The state directory this client talks to.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    async fn open(&self) -> Result<UnixStream, ShimError> {
        UnixStream::connect(self.state_dir.join(SOCKET_NAME))
            .await
            .map_err(|_| ShimError::NotRunning {
                state_dir: self.state_dir.clone(),
            })
    }

    fn proto(&self, message: impl Into<String>) -> ShimError {
        ShimError::Protocol {
            state_dir: self.state_dir.clone(),
            message: message.into(),
        }
    }

    /// Sends `req` and reads the reply line without reading past it.
    async fn call(
        &self,
        op: &'static str,
        req: &Request,
    ) -> Result<(Reply, UnixStream), ShimError> {
        let mut stream = self.open().await?;
        let mut line = serde_json::to_vec(req).map_err(|e| self.proto(e.to_string()))?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|e| self.proto(e.to_string()))?;
        let mut buf = Vec::new();
        loop {
            let b = stream
                .read_u8()
                .await
                .map_err(|e| self.proto(format!("{op}: reading reply: {e}")))?;
            if b == b'\n' {
                break;
            }
            buf.push(b);
        }
        let reply: Reply = serde_json::from_slice(&buf).map_err(|e| self.proto(e.to_string()))?;
        if let Some(message) = reply.error {
            return Err(ShimError::Request { op, message });
        }
        Ok((reply, stream))
    }

    fn missing(&self, op: &str, field: &str) -> ShimError {
        self.proto(format!("{op}: reply lacks {field}"))
    }

    /// Starts the container's process; returns its host pid.
    pub async fn start(&self) -> Result<u32, ShimError> {
        let (r, _) = self.call("start", &Request::Start).await?;
        r.pid.ok_or_else(|| self.missing("start", "pid"))
    }

    /// Sends `signal` to the container's init.
    pub async fn kill(&self, signal: i32) -> Result<(), ShimError> {
        self.call("kill", &Request::Kill { signal })
            .await
            .map(|_| ())
    }

    /// Resizes the container's terminal.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.call("resize", &Request::Resize { rows, cols })
            .await
            .map(|_| ())
    }

    /// Host pids of the container's processes.
    pub async fn pids(&self) -> Result<Vec<u32>, ShimError> {
        let (r, _) = self.call("pids", &Request::Pids).await?;
        Ok(r.pids.unwrap_or_default())
    }

    /// Freezes the container.
    pub async fn pause(&self) -> Result<(), ShimError> {
        self.call("pause", &Request::Pause).await.map(|_| ())
    }

    /// Thaws the container.
    pub async fn resume(&self) -> Result<(), ShimError> {
        self.call("resume", &Request::Resume).await.map(|_| ())
    }

    /// Cgroup statistics of the container.
    pub async fn stats(&self) -> Result<CgroupStats, ShimError> {
        let (r, _) = self.call("stats", &Request::Stats).await?;
        r.stats.ok_or_else(|| self.missing("stats", "stats"))
    }

    /// Attaches to the container's stdio; see [`crate::protocol`] for the stream format.
    pub async fn attach(&self, stdin: bool) -> Result<UnixStream, ShimError> {
        let (_, s) = self.call("attach", &Request::Attach { stdin }).await?;
        Ok(s)
    }

    /// Waits until the container exits (returns at once when it already has). When the
    /// shim is gone or goes away, the durable `exit.json` answers instead.
    pub async fn wait(&self) -> Result<ExitStatus, ShimError> {
        match self.call("wait", &Request::Wait).await {
            Ok((r, _)) => r.exit.ok_or_else(|| self.missing("wait", "exit")),
            Err(e @ (ShimError::NotRunning { .. } | ShimError::Protocol { .. })) => {
                read_exit(&self.state_dir).ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs a process in the container; the returned stream carries its stdio.
    pub async fn exec(&self, config: ExecConfig) -> Result<UnixStream, ShimError> {
        let (_, s) = self.call("exec", &Request::Exec { config }).await?;
        Ok(s)
    }

    /// Waits until exec `id` exits.
    pub async fn exec_wait(&self, id: &str) -> Result<ExitStatus, ShimError> {
        let req = Request::ExecWait { id: id.into() };
        let (r, _) = self.call("exec_wait", &req).await?;
        r.exit.ok_or_else(|| self.missing("exec_wait", "exit"))
    }

    /// Resizes exec `id`'s terminal.
    pub async fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ShimError> {
        let req = Request::ExecResize {
            id: id.into(),
            rows,
            cols,
        };
        self.call("exec_resize", &req).await.map(|_| ())
    }

    /// Host pid of exec `id`.
    pub async fn exec_pid(&self, id: &str) -> Result<u32, ShimError> {
        let (r, _) = self
            .call("exec_pid", &Request::ExecPid { id: id.into() })
            .await?;
        r.pid.ok_or_else(|| self.missing("exec_pid", "pid"))
    }

    /// The container's state as the shim sees it (for reconnecting after an engine restart).
    pub async fn state(&self) -> Result<ShimState, ShimError> {
        let (r, _) = self.call("state", &Request::State).await?;
        let status = match r.status.as_deref() {
            Some("created") => ContainerStatus::Created,
            Some("running") => ContainerStatus::Running,
            Some("paused") => ContainerStatus::Paused,
            Some("stopped") => ContainerStatus::Stopped,
            other => return Err(self.proto(format!("state: unknown status {other:?}"))),
        };
        Ok(ShimState {
            pid: r.pid.ok_or_else(|| self.missing("state", "pid"))?,
            status,
            exit: r.exit,
        })
    }

    /// Lets the shim exit as soon as the container has exited and clients are gone.
    pub async fn shutdown(&self) -> Result<(), ShimError> {
        self.call("shutdown", &Request::Shutdown).await.map(|_| ())
    }
}
