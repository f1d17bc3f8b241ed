//! The tar writer behind `docker export`: the container's filesystem in lexical order,
//! regular files that share an inode written once and then as tar hardlinks to the first
//! path seen (as dockerd does), sockets left out (a tar cannot hold them). Owners pass
//! through a map: a container under `--userns-remap` has its files owned by subordinate
//! ids on the host, and its tars carry the ids it sees.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes every entry under `root` (not `root` itself) into `b`, named `prefix` joined
/// with the path relative to `root`, owners through `owners`. Fails on the first entry
/// that cannot be read or written (a client that went away).
pub fn write_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    prefix: &Path,
    owners: berth_image::OwnerMap<'_>,
) -> std::io::Result<()> {
    b.follow_symlinks(false);
    // (dev, inode) of regular files with more than one link -> first name archived.
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Directories still to list, deepest last; each is relative to root.
    let mut todo: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| ctx(&dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| ctx(&dir, e))?;
        names.sort();
        // Subdirectories are walked right after their own entry: push them in reverse.
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let host = root.join(&rel_path);
            let meta = std::fs::symlink_metadata(&host).map_err(|e| ctx(&host, e))?;
            let ft = meta.file_type();
            if ft.is_socket() {
                continue;
            }
            if ft.is_file() && meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = seen.get(&key) {
                    let mut h = header(&meta, owners);
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, prefix.join(&rel_path), first)
                        .map_err(|e| ctx(&host, e))?;
                    continue;
                }
                seen.insert(key, prefix.join(&rel_path));
            }
            append_entry(b, &host, &prefix.join(&rel_path), &meta, owners)
                .map_err(|e| ctx(&host, e))?;
            if ft.is_dir() {
                subdirs.push(rel_path);
            }
        }
        // Depth-first, in order: the first subdirectory is popped first.
        todo.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// A header for `meta` (type, mode, size, mtime, device numbers), owners mapped.
fn header(meta: &Metadata, owners: berth_image::OwnerMap<'_>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    let (uid, gid) = owners(meta.uid(), meta.gid());
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h
}

/// Appends the file, directory, symlink or special file at `host` as `name`.
pub fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    host: &Path,
    name: &Path,
    meta: &Metadata,
    owners: berth_image::OwnerMap<'_>,
) -> std::io::Result<()> {
    let mut h = header(meta, owners);
    let ft = meta.file_type();
    if ft.is_file() {
        // A running container may swap the file for a symlink since `meta` was read: the
        // open refuses to follow one, and the size written is the opened file's.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)?;
        let now = f.metadata()?;
        if !now.is_file() {
            return Err(std::io::Error::other("changed while being archived"));
        }
        h.set_size(now.len());
        return b.append_data(&mut h, name, f.take(now.len()));
    }
    h.set_size(0);
    if ft.is_symlink() {
        let target = std::fs::read_link(host)?;
        return b.append_link(&mut h, name, target);
    }
    if ft.is_socket() {
        return Err(std::io::Error::other("a socket can not be archived"));
    }
    if ft.is_char_device() || ft.is_block_device() {
        let dev = meta.rdev();
        h.set_device_major(libc::major(dev))?;
        h.set_device_minor(libc::minor(dev))?;
    }
    b.append_data(&mut h, name, std::io::empty())
}

fn ctx(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardlinks_are_written_once_then_linked() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/sub")).unwrap();
        std::fs::write(r.join("a/keep"), b"data").unwrap();
        std::fs::hard_link(r.join("a/keep"), r.join("a/hl")).unwrap();
        std::fs::hard_link(r.join("a/keep"), r.join("a/sub/z")).unwrap();
        std::os::unix::fs::symlink("keep", r.join("a/sl")).unwrap();
        std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        write_tree(&mut b, r, Path::new(""), &|u, g| (u, g)).unwrap();
        let data = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let got: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                match e.header().entry_type() {
                    tar::EntryType::Link => {
                        format!("{name} -> {}", e.link_name().unwrap().unwrap().display())
                    }
                    t => format!("{name} {t:?} {}", e.header().size().unwrap()),
                }
            })
            .collect();
        assert_eq!(
            got,
            [
                "a Directory 0",
                "a/hl Regular 4",
                "a/keep -> a/hl",
                "a/sl Symlink 0",
                "a/sub Directory 0",
                "a/sub/z -> a/hl",
            ]
        );
    }

    #[test]
    fn owners_pass_through_the_map_and_the_prefix_is_applied() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("dir/l")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        write_tree(&mut b, d.path(), Path::new("top"), &|u, g| (u + 7, g + 8)).unwrap();
        let data = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let got: Vec<(String, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect();
        let (u, g) = (u64::from(me.0) + 7, u64::from(me.1) + 8);
        assert_eq!(
            got,
            [
                ("top/dir".to_string(), u, g),
                ("top/dir/f".to_string(), u, g),
                ("top/dir/l".to_string(), u, g),
            ]
        );
    }
}
