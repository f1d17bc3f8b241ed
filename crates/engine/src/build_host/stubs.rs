//! Mount-point stubs of RUN steps.
//!
//! The runtime creates the destination of every mount it makes (`/proc`, `/dev`,
//! `/etc/resolv.conf`, a cache mount's target...) when the image lacks it. Those files and
//! directories land in the step's overlay upper dir, and so in the layer, although the step
//! never made them. Docker avoids this with an "init" layer under the container; here the
//! engine notes, before the step runs, which mount destinations are missing and removes
//! what the runtime left for them from the upper dir before the layer is made.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// What to clean after a step: paths (relative to the rootfs) the runtime may create, and
/// existing directories it may copy up on the way, with their owner and mode.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stubs {
    /// Missing before the step: removed when still an empty directory or empty file.
    pub created: Vec<String>,
    /// Existing directories on the way: removed from the upper dir when they are an
    /// unchanged (same mode and owner), empty, non-opaque copy-up.
    pub parents: Vec<ExistingDir>,
}

/// An existing directory above a missing mount destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExistingDir {
    /// Path relative to the rootfs.
    pub path: String,
    /// `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Notes, for each mount destination (absolute paths inside the rootfs), the components
/// missing from `rootfs` and the directories above them. A destination reached through a
/// symlink is left alone (the runtime resolves it; whatever it makes is the step's).
pub(crate) fn plan(rootfs: &Path, destinations: &[String]) -> Stubs {
    use std::os::unix::fs::MetadataExt;
    let mut stubs = Stubs::default();
    for dest in destinations {
        let mut rel = String::new();
        let mut seen = Vec::new();
        let mut missing = Vec::new();
        let mut through_link = false;
        for c in Path::new(dest).components() {
            let Component::Normal(name) = c else {
                continue;
            };
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&name.to_string_lossy());
            if !missing.is_empty() {
                missing.push(rel.clone());
                continue;
            }
            match std::fs::symlink_metadata(rootfs.join(&rel)) {
                Ok(m) if m.file_type().is_symlink() => {
                    through_link = true;
                    break;
                }
                Ok(m) if m.is_dir() => seen.push(ExistingDir {
                    path: rel.clone(),
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                }),
                Ok(_) => break,
                Err(_) => missing.push(rel.clone()),
            }
        }
        if through_link || missing.is_empty() {
            continue;
        }
        for m in missing {
            if !stubs.created.contains(&m) {
                stubs.created.push(m);
            }
        }
        for d in seen {
            if !stubs.parents.iter().any(|p| p.path == d.path) {
                stubs.parents.push(d);
            }
        }
    }
    stubs
}

fn depth(p: &str) -> usize {
    p.matches('/').count()
}

/// Removes the stubs of `plan` from an overlay upper dir (not mounted any more).
/// Anything the step itself changed there (a non-empty directory or file, a changed mode or
/// owner, an opaque directory) is kept.
pub(crate) fn clean_upper(upper: &Path, stubs: &Stubs) {
    use std::os::unix::fs::MetadataExt;
    let mut created = stubs.created.clone();
    created.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    for rel in &created {
        let p = upper.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() && !is_opaque(&p) => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
    let mut parents = stubs.parents.clone();
    parents.sort_by_key(|d| std::cmp::Reverse(depth(&d.path)));
    for d in &parents {
        let p = upper.join(&d.path);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let unchanged = m.is_dir() && m.mode() == d.mode && m.uid() == d.uid && m.gid() == d.gid;
        let empty = std::fs::read_dir(&p).is_ok_and(|mut r| r.next().is_none());
        if unchanged && empty && !is_opaque(&p) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

fn is_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(xattr_get(p, n), Some(v) if v == b"y"))
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cp = CString::new(p.as_os_str().as_bytes()).ok()?;
    let cn = CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and buf is a valid writable buffer of its length.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_missing_components_and_cleans_only_stubs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("mnt")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", root.path().join("link")).unwrap();
        let stubs = plan(
            root.path(),
            &[
                "/etc/resolv.conf".into(),
                "/proc".into(),
                "/mnt/a/b".into(),
                "/link/x".into(),
                "/etc".into(),
            ],
        );
        assert_eq!(
            stubs.created,
            vec!["etc/resolv.conf", "proc", "mnt/a", "mnt/a/b"]
        );
        let parents: Vec<&str> = stubs.parents.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(parents, vec!["etc", "mnt"]);

        // An upper dir as the runtime and a step leave it: stubs plus one real change.
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::fs::set_permissions(
            u.join("etc"),
            std::fs::metadata(root.path().join("etc"))
                .unwrap()
                .permissions(),
        )
        .unwrap();
        std::fs::write(u.join("etc/resolv.conf"), "").unwrap();
        std::fs::create_dir_all(u.join("proc")).unwrap();
        std::fs::create_dir_all(u.join("mnt/a/b")).unwrap();
        std::fs::write(u.join("mnt/kept"), "step output").unwrap();
        clean_upper(u, &stubs);
        assert!(!u.join("etc").exists());
        assert!(!u.join("proc").exists());
        assert!(!u.join("mnt/a").exists());
        assert!(u.join("mnt/kept").exists());
    }
}
