//! The snapshot index, persisted as one JSON file replaced atomically.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What kind of snapshot an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, made by `prepare`.
    Active,
    /// Read-only, made by `view`.
    View,
    /// Read-only and usable as a parent, made by `commit`.
    Committed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    pub next_id: u64,
    pub snapshots: BTreeMap<String, Entry>,
}

impl Index {
    pub fn load(path: &Path) -> io::Result<Index> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index {
                next_id: 1,
                ..Index::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes to a temporary file, fsyncs, renames over `path`, fsyncs the dir.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
