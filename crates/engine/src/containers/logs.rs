//! `GET /containers/{id}/logs`: reads the json-file log the shim writes (and its rotated
//! files), filters and frames it, and follows it while the container runs.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::Engine;

/// What `logs` returns.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    /// Unix seconds (fractional allowed); entries before are skipped.
    pub since: Option<f64>,
    /// Unix seconds; entries after are skipped.
    pub until: Option<f64>,
    /// Only the last N entries (None = all).
    pub tail: Option<usize>,
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// Docker's multiplexed stream frame: stream type, three zero bytes, big-endian length.
pub fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if p.exists() {
            files.push(p);
        }
    }
    files.push(path.to_path_buf());
    files
}

impl Engine {
    /// Streams a container's log as frames (raw bytes for a tty container).
    pub fn container_logs(
        self: &Arc<Self>,
        name: &str,
        opts: LogsOptions,
    ) -> Result<mpsc::Receiver<Bytes>> {
        let c = self.find_container(name)?;
        if c.host_config
            .log_config
            .as_ref()
            .is_some_and(|l| l.kind == "none")
        {
            return Err(EngineError::invalid(
                "configured logging driver does not support reading",
            ));
        }
        let (tx, rx) = mpsc::channel(64);
        let engine = Arc::clone(self);
        let path = PathBuf::from(&c.log_path);
        let tty = c.config.tty;
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || {
            let emit = |line: &str| -> Option<Option<Bytes>> {
                let e: Entry = serde_json::from_str(line).ok()?;
                let want =
                    (e.stream == "stdout" && opts.stdout) || (e.stream == "stderr" && opts.stderr);
                let t = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?;
                let ts = t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9;
                if !want || opts.since.is_some_and(|s| ts < s) || opts.until.is_some_and(|u| ts > u)
                {
                    return Some(None);
                }
                let mut payload = String::new();
                if opts.timestamps {
                    payload.push_str(&e.time);
                    payload.push(' ');
                }
                payload.push_str(&e.log);
                let stream = if e.stream == "stderr" { 2 } else { 1 };
                Some(Some(if tty {
                    Bytes::from(payload)
                } else {
                    frame(stream, payload.as_bytes())
                }))
            };
            let mut lines: Vec<String> = Vec::new();
            for f in rotated_files(&path) {
                if let Ok(file) = std::fs::File::open(&f) {
                    lines.extend(BufReader::new(file).lines().map_while(|l| l.ok()));
                }
            }
            let mut out: Vec<Bytes> = lines.iter().filter_map(|l| emit(l).flatten()).collect();
            if let Some(n) = opts.tail {
                let skip = out.len().saturating_sub(n);
                out.drain(..skip);
            }
            for b in out {
                if tx.blocking_send(b).is_err() {
                    return;
                }
            }
            if !opts.follow {
                return;
            }
            let mut file = std::fs::File::open(&path).ok();
            let mut pos = file
                .as_mut()
                .and_then(|f| f.seek(SeekFrom::End(0)).ok())
                .unwrap_or(0);
            let mut partial = String::new();
            loop {
                let running = engine
                    .find_container(&id)
                    .map(|c| c.state.running || c.state.restarting)
                    .unwrap_or(false);
                // Reopen after rotation (the file got shorter or was replaced).
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if len < pos {
                    file = std::fs::File::open(&path).ok();
                    pos = 0;
                }
                if file.is_none() {
                    file = std::fs::File::open(&path).ok();
                }
                if let Some(f) = file.as_mut() {
                    let _ = f.seek(SeekFrom::Start(pos));
                    let mut reader = BufReader::new(&mut *f);
                    let mut buf = String::new();
                    while let Ok(n) = reader.read_line(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        pos += n as u64;
                        if !buf.ends_with('\n') {
                            partial.push_str(&buf);
                            buf.clear();
                            continue;
                        }
                        let line = std::mem::take(&mut partial) + &buf;
                        buf.clear();
                        if let Some(Some(b)) = emit(line.trim_end()) {
                            if tx.blocking_send(b).is_err() {
                                return;
                            }
                        }
                    }
                }
                if !running {
                    return;
                }
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_have_docker_headers() {
        let f = super::frame(2, b"hi");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
