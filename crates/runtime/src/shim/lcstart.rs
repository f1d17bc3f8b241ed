//! Starting a created libcontainer container without libcontainer, so the long-lived monitor
//! does not spawn a `berth-shim lc start` helper (about 3 ms of exec and dynamic loading)
//! on every `docker start`.
//!
//! What libcontainer 0.7's `Container::start` does, and this module repeats on the same
//! files: check that `state.json` says `created` and the init is alive, write
//! `start container` to the init's `notify.sock` (the init waits on it before exec'ing the
//! user's program), then record `running` in `state.json`. Poststart hooks are libcontainer's
//! job: a container whose `youki_config.json` declares any hooks is reported as
//! [`Started::NeedsLibcontainer`] and the caller runs the helper instead.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

const STATE_FILE: &str = "state.json";
const CONFIG_FILE: &str = "youki_config.json";
const NOTIFY_FILE: &str = "notify.sock";

/// Errors starting a container through its notify socket.
#[derive(Debug, thiserror::Error)]
pub enum LcStartError {
    /// A state file could not be read or written, or the socket reached.
    #[error("{path}: {source}")]
    Io {
        /// the file or socket
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A state file is not the JSON libcontainer writes.
    #[error("{path}: {source}")]
    Json {
        /// the file
        path: PathBuf,
        /// the cause
        source: serde_json::Error,
    },
    /// The container is not in the `created` state (or its init is gone).
    #[error("cannot start container in state {0}")]
    Status(String),
}

/// What [`start`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// The init was told to exec its program and the state says `running`.
    Done,
    /// The container has hooks; nothing was done: start it with libcontainer.
    NeedsLibcontainer,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LcStartError + '_ {
    move |source| LcStartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json(path: &Path) -> Result<Value, LcStartError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| LcStartError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// True when process `pid` exists and is neither a zombie nor dead.
fn alive(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may contain spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X') | Some('x'))
}

/// Starts the created libcontainer container whose state directory is `dir`
/// (`ROOT/ID`): see the module documentation.
pub fn start(dir: &Path) -> Result<Started, LcStartError> {
    let config_path = dir.join(CONFIG_FILE);
    let config = read_json(&config_path)?;
    if !config.get("hooks").is_none_or(Value::is_null) {
        return Ok(Started::NeedsLibcontainer);
    }
    let state_path = dir.join(STATE_FILE);
    let mut state = read_json(&state_path)?;
    let status = state.get("status").and_then(Value::as_str).unwrap_or("");
    let pid = state.get("pid").and_then(Value::as_i64);
    if status != "created" || !pid.is_some_and(alive) {
        let shown = if status == "created" {
            "stopped"
        } else {
            status
        };
        return Err(LcStartError::Status(shown.to_string()));
    }
    notify(dir)?;
    state["status"] = Value::from("running");
    let json = serde_json::to_vec(&state).map_err(|source| LcStartError::Json {
        path: state_path.clone(),
        source,
    })?;
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, json).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &state_path).map_err(io_err(&state_path))?;
    Ok(Started::Done)
}

/// Writes `start container` to `dir/notify.sock`. The socket's full path is usually longer
/// than a unix socket address allows, so it is reached through a descriptor of `dir`
/// (`/proc/self/fd/N/notify.sock`), which needs no chdir and so is safe with threads.
fn notify(dir: &Path) -> Result<(), LcStartError> {
    let d = std::fs::File::open(dir).map_err(io_err(dir))?;
    let short = format!("/proc/self/fd/{}/{NOTIFY_FILE}", d.as_raw_fd());
    let sock = dir.join(NOTIFY_FILE);
    let mut stream = UnixStream::connect(&short).map_err(io_err(&sock))?;
    stream
        .write_all(b"start container")
        .map_err(io_err(&sock))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_container_that_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"hooks":null}"#).unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            format!(r#"{{"status":"running","pid":{}}}"#, std::process::id()),
        )
        .unwrap();
        let e = start(dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "cannot start container in state running");
    }

    #[test]
    fn hooks_need_libcontainer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            r#"{"hooks":{"poststart":[{"path":"/bin/true"}]}}"#,
        )
        .unwrap();
        assert_eq!(start(dir.path()).unwrap(), Started::NeedsLibcontainer);
    }

    #[test]
    fn notifies_and_records_running() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"hooks":null}"#).unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            format!(
                r#"{{"status":"created","pid":{},"id":"x"}}"#,
                std::process::id()
            ),
        )
        .unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join(NOTIFY_FILE)).unwrap();
        assert_eq!(start(dir.path()).unwrap(), Started::Done);
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
        assert_eq!(got, "start container");
        let state = read_json(&dir.path().join(STATE_FILE)).unwrap();
        assert_eq!(state["status"], "running");
        assert_eq!(state["id"], "x");
    }
}
