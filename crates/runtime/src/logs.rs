//! Reading the json-file logs the shim writes (for `docker logs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading logs.
#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    /// A log file could not be read.
    #[error("reading log {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// One logged chunk of output: normally a line including its `\n`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    /// the text
    pub log: String,
    /// "stdout" or "stderr"
    pub stream: String,
    /// RFC 3339 time with nanoseconds
    pub time: String,
}

/// The log's files, oldest first: `log.json.N`, ..., `log.json.1`, `log.json`.
pub fn log_files(log_path: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1.. {
        let mut s = log_path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        let p = PathBuf::from(s);
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    if log_path.exists() {
        rotated.push(log_path.to_path_buf());
    }
    rotated
}

/// Every entry of the log, oldest first; malformed lines (a torn last write) are skipped.
pub fn read_logs(log_path: &Path) -> Result<Vec<LogEntry>, LogReadError> {
    let mut out = Vec::new();
    for path in log_files(log_path) {
        let io = |source| LogReadError::Io {
            path: path.clone(),
            source,
        };
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            // rotated away between listing and opening
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io)?;
            if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::log::JsonLogger;
    use crate::types::{LogConfig, LogDriver};

    #[test]
    fn reads_rotated_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let cfg = LogConfig {
            driver: LogDriver::JsonFile,
            max_size: Some(300),
            max_files: 5,
        };
        let mut l = JsonLogger::open(&path, &cfg).unwrap().unwrap();
        for i in 0..12 {
            l.write(if i % 2 == 0 { 1 } else { 2 }, format!("n{i}\n").as_bytes())
                .unwrap();
        }
        l.flush().unwrap();
        assert!(log_files(&path).len() > 1);
        let entries = read_logs(&path).unwrap();
        let texts: Vec<&str> = entries.iter().map(|e| e.log.as_str()).collect();
        // The oldest entries may have rotated out; what remains is in order and ends last.
        assert_eq!(texts.last(), Some(&"n11\n"));
        let nums: Vec<u32> = texts
            .iter()
            .map(|t| t[1..t.len() - 1].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[0] + 1 == w[1]));
        assert_eq!(entries[entries.len() - 1].stream, "stderr");
    }
}
