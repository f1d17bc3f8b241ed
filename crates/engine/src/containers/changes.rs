//! `docker diff`: the changes of a container's writable layer, read from its overlay upper
//! directory. Whiteouts are deletions, paths the image already has are modifications, the
//! rest additions; the parent directory of an addition or deletion counts as modified.
//! The mount points the engine itself creates (/etc/hosts, /proc, ...) are not reported,
//! as Docker keeps them in a separate init layer.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::Engine;

/// Kind of one change, Docker's numbering.
pub const MODIFIED: u8 = 0;
/// An added path.
pub const ADDED: u8 = 1;
/// A deleted path.
pub const DELETED: u8 = 2;

/// Paths created as mount points for every container; never reported.
const ENGINE_PATHS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/.dockerenv",
];

/// One entry of `GET /containers/{id}/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    /// Absolute path in the container.
    pub path: String,
    /// 0 modified, 1 added, 2 deleted.
    pub kind: u8,
}

impl Engine {
    /// The changes of a container's filesystem against its image, sorted by path.
    pub fn container_changes(&self, name: &str) -> Result<Vec<Change>> {
        let c = self.find_container(name)?;
        let upper = self
            .snaps
            .upper_dir(&c.id)
            .map_err(|e| EngineError::internal(format!("writable layer of {}: {e}", c.name)))?;
        let mut lowers = Vec::new();
        let mut cur = self
            .snaps
            .parent(&c.id)
            .map_err(|e| EngineError::internal(format!("image layers of {}: {e}", c.name)))?;
        while let Some(name) = cur.filter(|n| !n.is_empty()) {
            lowers.push(
                self.snaps
                    .fs_dir(&name)
                    .map_err(|e| EngineError::internal(format!("layer {name}: {e}")))?,
            );
            cur = self
                .snaps
                .parent(&name)
                .map_err(|e| EngineError::internal(format!("layer {name}: {e}")))?;
        }
        let skip: Vec<String> = ENGINE_PATHS
            .iter()
            .map(|s| s.to_string())
            .chain(c.mounts.iter().map(|m| m.destination.clone()))
            .collect();
        diff_upper(&upper, &lowers, &skip)
    }
}

/// Whether `rel` exists in the image made of `lowers` (nearest layer first), honouring
/// whiteouts and opaque directories of upper layers.
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    for dir in lowers {
        let p = dir.join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if is_whiteout(&m) {
                return None;
            }
            return Some(m);
        }
        // A whiteout or an opaque directory above hides the lower layers.
        let mut anc = rel.parent();
        while let Some(a) = anc.filter(|a| !a.as_os_str().is_empty()) {
            let ap = dir.join(a);
            if let Ok(m) = std::fs::symlink_metadata(&ap) {
                if is_whiteout(&m) || (m.is_dir() && is_opaque(&ap)) {
                    return None;
                }
            }
            anc = a.parent();
        }
    }
    None
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(cp), Ok(cn)) = (
        CString::new(p.as_os_str().as_bytes()),
        CString::new("trusted.overlay.opaque"),
    ) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and buf is writable for its length.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

/// Walks `upper` against `lowers` and lists the changes, leaving out `skip` paths.
pub fn diff_upper(upper: &Path, lowers: &[PathBuf], skip: &[String]) -> Result<Vec<Change>> {
    let mut out: BTreeMap<String, u8> = BTreeMap::new();
    walk(upper, upper, lowers, skip, &mut out)?;
    Ok(out
        .into_iter()
        .map(|(path, kind)| Change { path, kind })
        .collect())
}

fn walk(
    root: &Path,
    dir: &Path,
    lowers: &[PathBuf],
    skip: &[String],
    out: &mut BTreeMap<String, u8>,
) -> Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| EngineError::internal(format!("read {}: {e}", dir.display())))?;
    for entry in rd.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let abs = format!("/{}", rel.display());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let lower = in_lowers(lowers, rel);
        if skip.contains(&abs) && lower.is_none() {
            // A mount point the engine made; look inside directories all the same.
            if meta.is_dir() {
                walk(root, &path, lowers, skip, out)?;
            }
            continue;
        }
        let kind = if is_whiteout(&meta) {
            if lower.is_none() {
                continue;
            }
            DELETED
        } else if let Some(l) = &lower {
            if meta.is_dir() && l.is_dir() && !is_opaque(&path) && meta.mode() == l.mode() {
                // Only a parent of changes; recorded below if one of them is reported.
                walk(root, &path, lowers, skip, out)?;
                continue;
            }
            MODIFIED
        } else {
            ADDED
        };
        out.insert(abs.clone(), kind);
        if let Some(parent) = Path::new(&abs).parent() {
            let parent = parent.display().to_string();
            if parent != "/" {
                out.entry(parent).or_insert(MODIFIED);
            }
        }
        if meta.is_dir() && kind != DELETED {
            walk(root, &path, lowers, skip, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_modified_and_parents() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lower.path().join("etc")).unwrap();
        std::fs::write(lower.path().join("etc/passwd"), "x").unwrap();
        std::fs::create_dir_all(upper.path().join("etc")).unwrap();
        std::fs::write(upper.path().join("etc/passwd"), "y").unwrap();
        std::fs::create_dir_all(upper.path().join("new/dir")).unwrap();
        std::fs::write(upper.path().join("etc/hosts"), "").unwrap();
        let got = diff_upper(
            upper.path(),
            &[lower.path().to_path_buf()],
            &["/etc/hosts".to_string()],
        )
        .unwrap();
        let want = vec![
            Change {
                path: "/etc".into(),
                kind: MODIFIED,
            },
            Change {
                path: "/etc/passwd".into(),
                kind: MODIFIED,
            },
            Change {
                path: "/new".into(),
                kind: ADDED,
            },
            Change {
                path: "/new/dir".into(),
                kind: ADDED,
            },
        ];
        assert_eq!(got, want);
    }
}
