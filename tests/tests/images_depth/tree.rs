//! A container's root tree as seen from the host through /proc/PID/root: one line per
//! path with type, mode, owner, size, mtime (ns), link target, device numbers, hardlink
//! group, xattrs and a content hash, so two engines' trees compare as text.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Paths each engine writes itself (mount points and files it bind-mounts), skipped with
/// everything under them.
const ENGINE_PATHS: &[&str] = &["/proc", "/sys", "/dev", "/etc", "/.dockerenv", "/run"];

/// Paths whose directory mtime the engine changes by creating its own mount points.
const TOUCHED_DIRS: &[&str] = &["/"];

fn xattrs(p: &Path) -> Vec<String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let s = String::from_utf8_lossy(name).to_string();
        if s.starts_with("trusted.") || s.starts_with("security.selinux") {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        let v = if len >= 0 {
            String::from_utf8_lossy(&val[..len as usize]).to_string()
        } else {
            "?".into()
        };
        out.push(format!("{s}={v:?}"));
    }
    out.sort();
    out
}

fn hash(p: &Path) -> String {
    let data = std::fs::read(p).unwrap_or_default();
    // FNV-1a is plenty to notice differing content between two engines.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn walk(
    root: &Path,
    rel: &str,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, Vec<String>>,
) {
    let path = root.join(rel.trim_start_matches('/'));
    let Ok(md) = std::fs::symlink_metadata(&path) else {
        return;
    };
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let mut line = format!(
        "{kind} mode={:o} uid={} gid={}",
        md.mode(),
        md.uid(),
        md.gid()
    );
    if !(ft.is_dir() && TOUCHED_DIRS.contains(&rel)) {
        line.push_str(&format!(" mtime={}.{:09}", md.mtime(), md.mtime_nsec()));
    }
    if ft.is_file() {
        line.push_str(&format!(
            " size={} nlink={} sum={}",
            md.size(),
            md.nlink(),
            hash(&path)
        ));
        if md.nlink() > 1 {
            inodes.entry(md.ino()).or_default().push(rel.to_string());
        }
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(&path).unwrap_or_default();
        line.push_str(&format!(" -> {}", target.display()));
    }
    if ft.is_char_device() || ft.is_block_device() {
        let rdev = md.rdev();
        line.push_str(&format!(" dev={}:{}", libc::major(rdev), libc::minor(rdev)));
    }
    let xa = xattrs(&path);
    if !xa.is_empty() {
        line.push_str(&format!(" xattrs=[{}]", xa.join(",")));
    }
    out.insert(rel.to_string(), line);
    if ft.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            let child = if rel == "/" {
                format!("/{n}")
            } else {
                format!("{rel}/{n}")
            };
            if !ENGINE_PATHS.contains(&child.as_str()) {
                walk(root, &child, out, inodes);
            }
        }
    }
}

/// The tree of the container whose init has host pid `pid`, one `path: attributes` line
/// per entry, sorted, with hardlinked files marked by the other paths of their group.
pub fn tree_of(pid: u32) -> String {
    let root = format!("/proc/{pid}/root");
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk(Path::new(&root), "/", &mut out, &mut inodes);
    for group in inodes.values() {
        for p in group {
            let others: Vec<&String> = group.iter().filter(|o| *o != p).collect();
            if let Some(line) = out.get_mut(p) {
                line.push_str(&format!(" linked={others:?}"));
            }
        }
    }
    out.iter().map(|(p, l)| format!("{p}: {l}\n")).collect()
}
