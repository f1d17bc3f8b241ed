//! The wire protocol between [`crate::ShimClient`] and the shim, over `state_dir/shim.sock`.
//!
//! One request per connection. The client writes one JSON [`Request`] followed by `\n`;
//! the shim answers with one JSON [`Reply`] line. For `wait`/`exec_wait` the reply comes
//! when the process has exited. For `attach` and `exec` the connection then turns into a
//! raw stream: the shim sends output in Docker's multiplexed framing (8-byte header:
//! stream type 1 = stdout, 2 = stderr, three zero bytes, big-endian u32 payload length,
//! then the payload; with a tty all output is stream 1), and every byte the client sends
//! is written to the process's stdin (when stdin was requested). The client shutting down
//! its write half closes the process's stdin. The shim closes the stream once the process
//! has exited and all of its output was delivered.

use serde::{Deserialize, Serialize};

use crate::types::{CgroupStats, ExecConfig, ExitStatus};

/// A request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the created container's user process; replies with `pid`.
    Start,
    /// Send a signal to the container's init.
    Kill {
        /// signal number
        signal: i32,
    },
    /// Resize the container's terminal.
    Resize {
        /// rows
        rows: u16,
        /// columns
        cols: u16,
    },
    /// List the container's processes; replies with `pids`.
    Pids,
    /// Freeze the container.
    Pause,
    /// Thaw the container.
    Resume,
    /// Read cgroup statistics; replies with `stats`.
    Stats,
    /// Turn the connection into an output (and optionally input) stream.
    Attach {
        /// forward client bytes to the container's stdin
        stdin: bool,
    },
    /// Reply with `exit` once the container has exited.
    Wait,
    /// Run a process in the container; the connection becomes its stream. Replies with `pid`.
    Exec {
        /// what to run
        config: ExecConfig,
    },
    /// Reply with `exit` once the exec process has exited.
    ExecWait {
        /// exec id
        id: String,
    },
    /// Resize the exec process's terminal.
    ExecResize {
        /// exec id
        id: String,
        /// rows
        rows: u16,
        /// columns
        cols: u16,
    },
    /// Reply with the exec process's `pid`.
    ExecPid {
        /// exec id
        id: String,
    },
    /// Report the container's state: `pid`, `status`, and `exit` once exited.
    State,
    /// Ask the shim to exit once the container has exited (kills nothing). Replies with
    /// `exit` when it already has; the socket path is then released at once.
    Shutdown,
}

/// A reply line; `error` is set on failure, otherwise the fields the request asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// failure message
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// a process id
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// process ids
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<u32>>,
    /// an exit record
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    /// cgroup statistics
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<CgroupStats>,
    /// "created", "running", "paused" or "stopped"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Reply {
    /// A failure reply.
    pub fn err(message: impl Into<String>) -> Self {
        Reply {
            error: Some(message.into()),
            ..Reply::default()
        }
    }
}

/// Stream type of stdout in the multiplexed framing.
pub const STDOUT: u8 = 1;
/// Stream type of stderr in the multiplexed framing.
pub const STDERR: u8 = 2;

/// Appends one frame (header + payload) to `out`; payloads over u32::MAX are split.
pub fn encode_frame(stream: u8, payload: &[u8], out: &mut Vec<u8>) {
    for chunk in payload.chunks(u32::MAX as usize) {
        out.push(stream);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let mut out = Vec::new();
        encode_frame(STDERR, b"hi", &mut out);
        assert_eq!(out, [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn request_roundtrip() {
        let line = serde_json::to_string(&Request::Kill { signal: 9 }).unwrap();
        assert_eq!(line, r#"{"op":"kill","signal":9}"#);
        let r: Request = serde_json::from_str(r#"{"op":"attach","stdin":true}"#).unwrap();
        assert!(matches!(r, Request::Attach { stdin: true }));
    }
}
