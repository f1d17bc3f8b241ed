//! Plain data shared by the engine-side client and the shim: configuration, exit records,
//! exec requests and cgroup statistics.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::UserSpec;

/// Errors reading or writing the shim's state files.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error on a state file.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A state file holds malformed JSON.
    #[error("{path}: malformed json: {source}")]
    Json {
        /// the file
        path: PathBuf,
        /// the cause
        source: serde_json::Error,
    },
}

/// Where container output is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogDriver {
    /// Docker's json-file format.
    #[default]
    JsonFile,
    /// No log.
    None,
}

/// Log settings (`--log-driver`, `--log-opt max-size`, `--log-opt max-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// the driver
    pub driver: LogDriver,
    /// rotate when the current file would exceed this many bytes
    pub max_size: Option<u64>,
    /// files kept in total, the current one included (0 or 1: truncate instead of rotating)
    pub max_files: u32,
}

/// Which OCI runtime creates the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeKind {
    /// youki's libcontainer, inside the shim.
    #[default]
    Builtin,
    /// An external runc-compatible binary with its state root.
    Runc {
        /// e.g. /usr/sbin/runc
        binary: PathBuf,
        /// its `--root`
        root: PathBuf,
    },
}

/// Everything a shim needs to run one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// container id (valid as a runtime id: `[A-Za-z0-9_+.-]+`)
    pub id: String,
    /// bundle directory holding config.json (the rootfs is already mounted)
    pub bundle: PathBuf,
    /// short per-container directory: shim.sock, shim.pid, exit.json, runtime state
    pub state_dir: PathBuf,
    /// the json log file (log.json); rotated files get `.1`, `.2`, ...
    pub log_path: PathBuf,
    /// log settings
    pub log: LogConfig,
    /// which runtime to use
    pub runtime: RuntimeKind,
    /// the container has a pseudo terminal (must match the spec)
    pub tty: bool,
    /// keep stdin open for attach clients (`-i`)
    pub open_stdin: bool,
}

/// How a process ended; the durable record is `state_dir/exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// exit code, or 128+signal when killed by a signal
    pub code: i32,
    /// the signal that killed it
    pub signal: Option<i32>,
    /// the memory cgroup recorded an OOM kill
    pub oom_killed: bool,
    /// RFC 3339 time of the exit
    pub finished_at: String,
}

impl ExitStatus {
    /// Builds a record for `code`/`signal` stamped with the current time.
    pub fn now(code: i32, signal: Option<i32>, oom_killed: bool) -> Self {
        ExitStatus {
            code,
            signal,
            oom_killed,
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }
}

/// A process to run inside a running container (`docker exec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecConfig {
    /// exec id, unique per container
    pub id: String,
    /// argv
    pub args: Vec<String>,
    /// extra "KEY=value" entries, added to the container's env
    pub env: Vec<String>,
    /// working directory (the container's when empty)
    pub cwd: String,
    /// user (the container's when None)
    pub user: Option<UserSpec>,
    /// allocate a pseudo terminal
    pub tty: bool,
    /// forward the client's bytes to the process's stdin
    pub stdin: bool,
}

/// Resource usage read from the container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// memory in use, bytes
    pub memory_usage: u64,
    /// memory limit, bytes (the host's memory when unlimited)
    pub memory_limit: u64,
    /// CPU time consumed, nanoseconds
    pub cpu_total_ns: u64,
    /// number of tasks
    pub pids: u64,
    /// inactive file cache, bytes (Docker shows usage minus this)
    #[serde(default)]
    pub memory_inactive_file: u64,
    /// CPU time in user mode, nanoseconds
    #[serde(default)]
    pub cpu_user_ns: u64,
    /// CPU time in kernel mode, nanoseconds
    #[serde(default)]
    pub cpu_system_ns: u64,
    /// pids limit (0 when unlimited)
    #[serde(default)]
    pub pids_limit: u64,
}

/// File names inside the state directory.
pub(crate) const SOCKET_NAME: &str = "shim.sock";
pub(crate) const PID_NAME: &str = "shim.pid";
pub(crate) const EXIT_NAME: &str = "exit.json";
pub(crate) const CONFIG_NAME: &str = "shim.json";

/// Reads `state_dir/exit.json`; `None` when the container has not exited (or never ran).
pub fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    let text = std::fs::read(state_dir.join(EXIT_NAME)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let data = serde_json::to_vec(value).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&data).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StateError> {
    let data = std::fs::read(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })
}
