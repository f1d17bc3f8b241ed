//! Docker's json-file log: one `{"log","stream","time"}` object per line, rotated by size.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::types::{LogConfig, LogDriver};

/// Longest partial line kept before it is written out without a newline (as Docker does).
const MAX_PARTIAL: usize = 16 * 1024;

/// Errors writing the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error on a log file.
    #[error("log {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

/// Writes container output as json-file entries.
pub struct JsonLogger {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    /// partial lines of stdout (0) and stderr (1)
    partial: [Vec<u8>; 2],
}

impl JsonLogger {
    /// Opens (appends to) `path`; `None` when the driver is `None`.
    pub fn open(path: &Path, cfg: &LogConfig) -> Result<Option<Self>, LogError> {
        if cfg.driver == LogDriver::None {
            return Ok(None);
        }
        let mut l = JsonLogger {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max_size: cfg.max_size.filter(|s| *s > 0),
            max_files: cfg.max_files.max(1),
            partial: [Vec::new(), Vec::new()],
        };
        l.reopen()?;
        Ok(Some(l))
    }

    fn io(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(f);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        self.file = None;
        if self.max_files <= 1 {
            File::create(&self.path).map_err(|e| self.io(e))?;
        } else {
            for n in (1..self.max_files - 1).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1)).map_err(|e| self.io(e))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1)).map_err(|e| self.io(e))?;
        }
        self.reopen()
    }

    fn emit(&mut self, stream: u8, line: &[u8]) -> Result<(), LogError> {
        let entry = Entry {
            log: &String::from_utf8_lossy(line),
            stream: if stream == 2 { "stderr" } else { "stdout" },
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut buf = serde_json::to_vec(&entry).map_err(|e| self.io(e.into()))?;
        buf.push(b'\n');
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + buf.len() as u64 > max {
                self.rotate()?;
            }
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&buf).map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Logs `data` from stream 1 (stdout) or 2 (stderr), one entry per complete line.
    pub fn write(&mut self, stream: u8, data: &[u8]) -> Result<(), LogError> {
        let idx = usize::from(stream == 2);
        let mut pending = std::mem::take(&mut self.partial[idx]);
        pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos + 1;
            self.emit(stream, &pending[start..end])?;
            start = end;
        }
        let rest = pending.split_off(start);
        if rest.len() >= MAX_PARTIAL {
            self.emit(stream, &rest)?;
        } else {
            self.partial[idx] = rest;
        }
        Ok(())
    }

    /// Writes out any partial lines (at end of output).
    pub fn flush(&mut self) -> Result<(), LogError> {
        for (idx, stream) in [(0usize, 1u8), (1, 2)] {
            let rest = std::mem::take(&mut self.partial[idx]);
            if !rest.is_empty() {
                self.emit(stream, &rest)?;
            }
        }
        if let Some(f) = self.file.as_mut() {
            f.flush().map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let cfg = LogConfig {
            driver: LogDriver::JsonFile,
            max_size: Some(250),
            max_files: 3,
        };
        let mut l = JsonLogger::open(&path, &cfg).unwrap().unwrap();
        l.write(1, b"hel").unwrap();
        l.write(1, b"lo\nwor").unwrap();
        l.write(2, b"err\n").unwrap();
        l.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["log"], "hello\n");
        assert_eq!(lines[0]["stream"], "stdout");
        assert_eq!(lines[1]["log"], "err\n");
        assert_eq!(lines[1]["stream"], "stderr");
        assert_eq!(lines[2]["log"], "wor");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        for i in 0..20 {
            l.write(1, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(path.exists());
        assert!(dir.path().join("log.json.1").exists());
        assert!(dir.path().join("log.json.2").exists());
        assert!(!dir.path().join("log.json.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 250);
    }
}
