//! The overlayfs snapshotter.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use crate::index::Kind;
use crate::index::{Entry, Index};
use crate::mount::Mount;

/// Errors from the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key or name.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// The key or name is already used.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// Removal refused because other snapshots are built on this one.
    #[error("snapshot {name:?} has children {children:?}: remove them first")]
    HasChildren {
        /// The snapshot asked to be removed.
        name: String,
        /// Its children.
        children: Vec<String>,
    },
    /// The operation needs an active snapshot.
    #[error("snapshot {0:?} is not active")]
    NotActive(String),
    /// A parent must be a committed snapshot.
    #[error("parent {0:?} is not a committed snapshot")]
    NotCommitted(String),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Public description of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Key (active, view) or name (committed).
    pub name: String,
    /// What kind of snapshot it is.
    pub kind: Kind,
    /// The committed parent, if any.
    pub parent: Option<String>,
    /// The short numeric id naming its directory.
    pub id: u64,
}

/// Key prefix of scratch snapshots: an active snapshot whose key starts with
/// this holds a layer extraction in progress. Nothing else may use it:
/// [`Snapshotter::open`] removes every such snapshot, since the process that
/// made it (a daemon killed mid-pull) can no longer commit it.
pub const SCRATCH_PREFIX: &str = "extract-";

/// A snapshotter rooted at a directory: `<root>/snapshots/<id>/{fs,work}`
/// plus `<root>/metadata.json`. Safe to share between threads.
///
/// Every change is recorded in the index before directories are removed and
/// after they are created, so directories never referenced (left by a crash)
/// are cleaned up by [`Snapshotter::open`].
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    index: Mutex<Index>,
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshotter at `root`, removing
    /// snapshot directories the index does not know and scratch snapshots
    /// (keys starting with [`SCRATCH_PREFIX`]): both are crash leftovers.
    pub fn open(root: impl AsRef<Path>) -> Result<Snapshotter, SnapshotError> {
        let root = root.as_ref().to_path_buf();
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(io_err("create directory", &snaps))?;
        mark_top_dir(&snaps);
        let meta = root.join("metadata.json");
        let mut index = Index::load(&meta).map_err(io_err("load index", &meta))?;
        let scratch: Vec<String> = index
            .snapshots
            .iter()
            .filter(|(k, e)| k.starts_with(SCRATCH_PREFIX) && e.kind == Kind::Active)
            .map(|(k, _)| k.clone())
            .collect();
        if !scratch.is_empty() {
            tracing::info!(keys = ?scratch, "removing unfinished layer extractions");
            for k in &scratch {
                index.snapshots.remove(k);
            }
            index.save(&meta).map_err(io_err("save index", &meta))?;
        }
        let known: HashSet<String> = index.snapshots.values().map(|e| e.id.to_string()).collect();
        for entry in fs::read_dir(&snaps).map_err(io_err("read directory", &snaps))? {
            let entry = entry.map_err(io_err("read directory", &snaps))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                tracing::info!(dir = %entry.path().display(), "removing unreferenced snapshot directory");
                let p = entry.path();
                fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(Snapshotter {
            root,
            index: Mutex::new(index),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves the in-memory index as it was
        // on disk or just before the failed save; keep going.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, index: &Index) -> Result<(), SnapshotError> {
        let meta = self.root.join("metadata.json");
        index.save(&meta).map_err(io_err("save index", &meta))
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Creates an active, writable snapshot `key` on top of the committed
    /// `parent` and returns the mounts that show it.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::Active)
    }

    /// Creates a read-only view `key` of the committed `parent`.
    pub fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::View)
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let mut index = self.lock();
        if index.snapshots.contains_key(key) {
            return Err(SnapshotError::AlreadyExists(key.to_string()));
        }
        if let Some(p) = parent {
            match index.snapshots.get(p) {
                None => return Err(SnapshotError::NotFound(p.to_string())),
                Some(e) if e.kind != Kind::Committed => {
                    return Err(SnapshotError::NotCommitted(p.to_string()))
                }
                Some(_) => {}
            }
        }
        let id = index.next_id.max(1);
        let dir = self.dir(id);
        for sub in ["fs", "work"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
        }
        index.next_id = id + 1;
        index.snapshots.insert(
            key.to_string(),
            Entry {
                id,
                kind,
                parent: parent.map(str::to_string),
            },
        );
        if let Err(e) = self.save(&index) {
            index.snapshots.remove(key);
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.mounts_locked(&index, key)
    }

    /// Commits the active snapshot `key` as the read-only snapshot `name`.
    pub fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        let mut index = self.lock();
        if index.snapshots.contains_key(name) {
            return Err(SnapshotError::AlreadyExists(name.to_string()));
        }
        let entry = index
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if entry.kind != Kind::Active {
            return Err(SnapshotError::NotActive(key.to_string()));
        }
        let mut entry = entry.clone();
        entry.kind = Kind::Committed;
        let old = index.snapshots.remove(key);
        index.snapshots.insert(name.to_string(), entry);
        if let Err(e) = self.save(&index) {
            index.snapshots.remove(name);
            if let Some(old) = old {
                index.snapshots.insert(key.to_string(), old);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Commits the active snapshot `key` as `name` with `parent` (a committed
    /// snapshot, or none) as its parent instead of the one it was prepared
    /// on. For layer extraction: a layer is applied into a parentless key
    /// while its parent may still be extracting, and placed on its parent
    /// here. Only valid when `key`'s own directory holds a diff (overlay
    /// whiteouts and opaque markers) rather than a full tree.
    pub fn commit_on(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let mut index = self.lock();
        if index.snapshots.contains_key(name) {
            return Err(SnapshotError::AlreadyExists(name.to_string()));
        }
        if let Some(p) = parent {
            match index.snapshots.get(p) {
                None => return Err(SnapshotError::NotFound(p.to_string())),
                Some(e) if e.kind != Kind::Committed => {
                    return Err(SnapshotError::NotCommitted(p.to_string()))
                }
                Some(_) => {}
            }
        }
        let old = index
            .snapshots
            .get(key)
            .cloned()
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if old.kind != Kind::Active {
            return Err(SnapshotError::NotActive(key.to_string()));
        }
        let entry = Entry {
            id: old.id,
            kind: Kind::Committed,
            parent: parent.map(str::to_string),
        };
        index.snapshots.remove(key);
        index.snapshots.insert(name.to_string(), entry);
        if let Err(e) = self.save(&index) {
            index.snapshots.remove(name);
            index.snapshots.insert(key.to_string(), old);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a snapshot by key or name. Refused if others have it as parent.
    pub fn remove(&self, key_or_name: &str) -> Result<(), SnapshotError> {
        let mut index = self.lock();
        let entry = index
            .snapshots
            .get(key_or_name)
            .cloned()
            .ok_or_else(|| SnapshotError::NotFound(key_or_name.to_string()))?;
        let children: Vec<String> = index
            .snapshots
            .iter()
            .filter(|(_, e)| e.parent.as_deref() == Some(key_or_name))
            .map(|(k, _)| k.clone())
            .collect();
        if !children.is_empty() {
            return Err(SnapshotError::HasChildren {
                name: key_or_name.to_string(),
                children,
            });
        }
        index.snapshots.remove(key_or_name);
        if let Err(e) = self.save(&index) {
            index.snapshots.insert(key_or_name.to_string(), entry);
            return Err(e);
        }
        let dir = self.dir(entry.id);
        // The index no longer references it: a failure here is cleaned on open.
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove snapshot directory");
        }
        Ok(())
    }

    /// The mounts of the active snapshot or view `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let index = self.lock();
        self.mounts_locked(&index, key)
    }

    fn mounts_locked(&self, index: &Index, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let entry = index
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let lowers = self.lower_dirs(index, entry.parent.as_deref())?;
        let dir = self.dir(entry.id);
        let fs_dir = dir.join("fs").to_string_lossy().into_owned();
        let bind = |source: String, mode: &str| Mount {
            kind: "bind".into(),
            source,
            target: String::new(),
            options: vec!["rbind".into(), mode.into()],
        };
        match entry.kind {
            Kind::Committed => Err(SnapshotError::NotActive(key.to_string())),
            Kind::Active if lowers.is_empty() => Ok(vec![bind(fs_dir, "rw")]),
            Kind::Active => Ok(vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec![
                    format!("lowerdir={}", lowers.join(":")),
                    format!("upperdir={fs_dir}"),
                    format!("workdir={}", dir.join("work").display()),
                ],
            }]),
            Kind::View if lowers.is_empty() => Ok(vec![bind(fs_dir, "ro")]),
            Kind::View if lowers.len() == 1 => Ok(vec![bind(lowers[0].clone(), "ro")]),
            Kind::View => Ok(vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec!["ro".into(), format!("lowerdir={}", lowers.join(":"))],
            }]),
        }
    }

    /// The `fs` dirs of `parent` and its ancestors, nearest first.
    fn lower_dirs(
        &self,
        index: &Index,
        parent: Option<&str>,
    ) -> Result<Vec<String>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = parent.map(str::to_string);
        while let Some(name) = cur {
            let e = index
                .snapshots
                .get(&name)
                .ok_or_else(|| SnapshotError::NotFound(name.clone()))?;
            out.push(self.dir(e.id).join("fs").to_string_lossy().into_owned());
            if out.len() > index.snapshots.len() {
                // A cycle can only come from a corrupted index.
                return Err(SnapshotError::NotFound(name));
            }
            cur = e.parent.clone();
        }
        Ok(out)
    }

    /// Whether a snapshot with this key or name exists (any kind).
    pub fn exists(&self, name: &str) -> bool {
        self.lock().snapshots.contains_key(name)
    }

    /// Describes the snapshot `name`.
    pub fn stat(&self, name: &str) -> Result<SnapshotInfo, SnapshotError> {
        let index = self.lock();
        let e = index
            .snapshots
            .get(name)
            .ok_or_else(|| SnapshotError::NotFound(name.to_string()))?;
        Ok(SnapshotInfo {
            name: name.to_string(),
            kind: e.kind,
            parent: e.parent.clone(),
            id: e.id,
        })
    }

    /// The committed parent of `name`, if any.
    pub fn parent(&self, name: &str) -> Result<Option<String>, SnapshotError> {
        Ok(self.stat(name)?.parent)
    }

    /// The writable directory of the active snapshot `key` (the overlay
    /// upper dir): layers are applied straight into it.
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let info = self.stat(key)?;
        if info.kind != Kind::Active {
            return Err(SnapshotError::NotActive(key.to_string()));
        }
        Ok(self.dir(info.id).join("fs"))
    }

    /// The directory holding the files of snapshot `name` itself (its own
    /// layer only, without its parents), whatever its kind.
    pub fn fs_dir(&self, name: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.dir(self.stat(name)?.id).join("fs"))
    }

    /// Bytes used by the snapshot's own layer (apparent sizes of files and
    /// symlinks, hardlinks counted once).
    pub fn usage(&self, key: &str) -> Result<u64, SnapshotError> {
        let dir = self.fs_dir(key)?;
        let mut seen = HashSet::new();
        du(&dir, &mut seen)
    }

    /// Every snapshot, sorted by name.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        self.lock()
            .snapshots
            .iter()
            .map(|(k, e)| SnapshotInfo {
                name: k.clone(),
                kind: e.kind,
                parent: e.parent.clone(),
                id: e.id,
            })
            .collect()
    }
}

/// Marks the directory holding the snapshots as a top of a hierarchy
/// (`chattr +T`): ext4 then spreads new snapshot directories over block
/// groups instead of packing each into the group its parent lives in, where
/// the inodes of snapshots removed moments ago would have to be skipped one
/// by one (a cost that grows with each pull after a removal). Best effort:
/// other filesystems ignore or refuse the flag.
fn mark_top_dir(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(f) = fs::File::open(dir) else { return };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
        if !flags.contains(IFlags::TOPDIR) {
            if let Err(e) = rustix::fs::ioctl_setflags(&f, flags | IFlags::TOPDIR) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot mark snapshot dir as a top directory");
            }
        }
    }
}

fn du(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64, SnapshotError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let path = entry.path();
        let md = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        if md.is_dir() {
            total += du(&path, seen)?;
        } else if (md.is_file() || md.file_type().is_symlink()) && seen.insert((md.dev(), md.ino()))
        {
            total += md.len();
        }
    }
    Ok(total)
}
