//! `docker cp` and `docker export`: `HEAD`/`GET`/`PUT /containers/{id}/archive` and
//! `GET /containers/{id}/export`. A running container is reached through its init's root
//! (`/proc/<pid>/root`, so volumes and bind mounts are seen as inside), a stopped one by
//! mounting its snapshot for the time of the copy. Paths are resolved inside that root:
//! `..` stops at the root and symlinks, absolute or relative, are followed within it.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedMutexGuard};

use super::start::is_mountpoint;
use crate::error::{EngineError, Result};
use crate::Engine;

mod export;

/// Symlinks followed in one resolution before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// The `X-Docker-Container-Path-Stat` header, before base64.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathStat {
    /// Base name of the path.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go's `os.FileMode` bits (type bits high, permissions low), as the CLI reads them.
    pub mode: u32,
    /// Modification time, RFC 3339.
    pub mtime: String,
    /// For a symlink: its target resolved inside the container, absolute.
    pub link_target: String,
}

/// A container's root filesystem, reachable for the time of one copy. A snapshot mounted
/// for it is unmounted on drop, and the container cannot start meanwhile.
pub struct RootAccess {
    /// The directory that is `/` of the container.
    pub root: PathBuf,
    mounted_here: Option<PathBuf>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for RootAccess {
    fn drop(&mut self) {
        if let Some(p) = self.mounted_here.take() {
            if let Err(e) = berth_snapshot::unmount(&p) {
                tracing::warn!("unmount {}: {e}", p.display());
            }
        }
    }
}

/// Resolves `path` (absolute in the container) under `root` without leaving it. Every
/// symlink is followed within `root`, the last component only with `follow_last`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf> {
    let mut todo: Vec<OsString> = components(Path::new(path));
    todo.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let mut cand = root.to_path_buf();
        cand.extend(&done);
        cand.push(&part);
        let last = todo.is_empty();
        let is_link = std::fs::symlink_metadata(&cand)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(EngineError::invalid(format!(
                    "too many levels of symbolic links resolving {path}"
                )));
            }
            let target = std::fs::read_link(&cand)
                .map_err(|e| EngineError::internal(format!("read link {}: {e}", cand.display())))?;
            if target.is_absolute() {
                done.clear();
            }
            let mut more = components(&target);
            more.reverse();
            todo.extend(more);
            continue;
        }
        done.push(part);
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Go's `os.FileMode` for a unix mode.
pub fn go_file_mode(meta: &std::fs::Metadata) -> u32 {
    let mode = meta.permissions().mode();
    let ft = meta.file_type();
    let mut m = mode & 0o777;
    if ft.is_dir() {
        m |= 1 << 31;
    } else if ft.is_symlink() {
        m |= 1 << 27;
    } else if ft.is_block_device() {
        m |= 1 << 26;
    } else if ft.is_char_device() {
        m |= (1 << 26) | (1 << 21);
    } else if ft.is_fifo() {
        m |= 1 << 25;
    } else if ft.is_socket() {
        m |= 1 << 24;
    }
    if mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((_, b)) if !b.is_empty() => b.to_string(),
        _ if trimmed.is_empty() => "/".to_string(),
        _ => trimmed.to_string(),
    }
}

fn not_found(path: &str, name: &str) -> EngineError {
    EngineError::not_found(format!(
        "Could not find the file {path} in container {name}"
    ))
}

/// Stats `path` inside `root` (the last component not followed).
pub fn stat_in_root(root: &Path, path: &str, container: &str) -> Result<(PathBuf, PathStat)> {
    let host = resolve_in_root(root, path, false)?;
    let meta = std::fs::symlink_metadata(&host).map_err(|_| not_found(path, container))?;
    let mut link_target = String::new();
    if meta.file_type().is_symlink() {
        let full = resolve_in_root(root, path, true)?;
        let rel = full.strip_prefix(root).unwrap_or(&full);
        link_target = format!("/{}", rel.display());
    }
    let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let stat = PathStat {
        name: base_name(path),
        size: meta.len() as i64,
        mode: go_file_mode(&meta),
        mtime,
        link_target,
    };
    Ok((host, stat))
}

/// A writer that sends what it gets as chunks on a channel (used from blocking tasks).
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader over chunks received from a channel (used from blocking tasks).
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    /// Reads the chunks of `rx` in order; the sender's drop is the end of the data.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Writes `host` (a file, symlink or directory tree) into a tar on `tx` under `name`,
/// owners through `owners`.
fn tar_into(
    host: &Path,
    name: &str,
    tx: mpsc::Sender<Bytes>,
    owners: berth_image::OwnerMap<'_>,
) -> Result<()> {
    let w = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx));
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let err = |e: std::io::Error| EngineError::internal(format!("archive {}: {e}", host.display()));
    let meta = std::fs::symlink_metadata(host).map_err(err)?;
    export::append_entry(&mut b, host, Path::new(name), &meta, owners).map_err(err)?;
    if meta.is_dir() {
        export::write_tree(&mut b, host, Path::new(name), owners).map_err(err)?;
    }
    b.into_inner().map_err(err)?.flush().map_err(err)?;
    Ok(())
}

impl Engine {
    /// Makes the container's root reachable: `/proc/<pid>/root` when it runs (`through_init`),
    /// else its snapshot mounted at the container's rootfs directory for the time of the copy.
    pub async fn root_access(&self, name: &str, through_init: bool) -> Result<RootAccess> {
        let c = self.find_container(name)?;
        let rootfs = self.container_dir(&c.id).join("rootfs");
        if c.state.running && c.state.pid > 0 {
            let root = if through_init {
                PathBuf::from(format!("/proc/{}/root", c.state.pid))
            } else {
                rootfs
            };
            return Ok(RootAccess {
                root,
                mounted_here: None,
                _guard: None,
            });
        }
        let op = self.live.with(&c.id, |l| l.op.clone());
        let guard = op.lock_owned().await;
        let mut c = self.find_container(&c.id)?;
        let mut mounted_here = None;
        if !is_mountpoint(&rootfs) {
            c.mounted = false;
            self.mount_rootfs(&mut c, &rootfs)?;
            mounted_here = Some(rootfs.clone());
        }
        Ok(RootAccess {
            root: rootfs,
            mounted_here,
            _guard: Some(guard),
        })
    }

    /// `HEAD /containers/{id}/archive?path=`: the stat of a path in the container.
    pub async fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let access = self.root_access(name, true).await?;
        let root = access.root.clone();
        let (name, path) = (name.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || {
            let r = stat_in_root(&root, &path, &name).map(|(_, s)| s);
            drop(access);
            r
        })
        .await
        .map_err(|e| EngineError::internal(format!("stat task: {e}")))?
    }

    /// `GET /containers/{id}/archive?path=`: the stat and a tar stream of the path.
    pub async fn archive_get(
        &self,
        name: &str,
        path: &str,
    ) -> Result<(PathStat, mpsc::Receiver<Bytes>)> {
        let access = self.root_access(name, true).await?;
        let (host, stat) = stat_in_root(&access.root, path, name)?;
        let (tx, rx) = mpsc::channel(8);
        let entry = stat.name.clone();
        let owners = self.layer_owners(&self.find_container(name)?.host_config);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = tar_into(&host, &entry, tx, &owners) {
                tracing::debug!("{e}");
            }
            drop(access);
        });
        Ok((stat, rx))
    }

    /// `GET /containers/{id}/export`: a tar stream of the container's whole filesystem,
    /// hardlinked files as tar hardlinks (see [`export::write_tree`]).
    pub async fn export_container(&self, name: &str) -> Result<mpsc::Receiver<Bytes>> {
        let c = self.find_container(name)?;
        let access = self.root_access(&c.id, false).await?;
        let (tx, rx) = mpsc::channel(8);
        let owners = self.layer_owners(&c.host_config);
        tokio::task::spawn_blocking(move || {
            let w = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx));
            let mut b = tar::Builder::new(w);
            let written = export::write_tree(&mut b, &access.root, Path::new(""), &owners);
            if let Err(e) = written.and_then(|_| b.finish()) {
                tracing::debug!("export {}: {e}", c.id);
            }
            drop(access);
        });
        Ok(rx)
    }

    /// `PUT /containers/{id}/archive?path=`: extracts the tar read from `tar` into the
    /// directory `path`. 404 when it does not exist, 400 when it is not a directory, a
    /// read-only root or an entry that would replace a directory by a non-directory (or
    /// the reverse, with `no_overwrite_dir_non_dir`).
    pub async fn archive_put(
        &self,
        name: &str,
        path: &str,
        no_overwrite_dir_non_dir: bool,
        tar: mpsc::Receiver<Bytes>,
    ) -> Result<()> {
        let c = self.find_container(name)?;
        if c.host_config.readonly_rootfs {
            return Err(EngineError::invalid(format!(
                "container rootfs is marked read-only: {}",
                c.name
            )));
        }
        let access = self.root_access(&c.id, true).await?;
        let (name, path) = (c.name.clone(), path.to_string());
        let owner = self
            .remap_of(&c.host_config)
            .map(|ns| (ns.root_uid(), ns.root_gid()));
        tokio::task::spawn_blocking(move || {
            let r = extract(
                &access.root,
                &path,
                &name,
                Extract {
                    no_overwrite_dir_non_dir,
                    owner,
                },
                ChannelReader::new(tar),
            );
            drop(access);
            r
        })
        .await
        .map_err(|e| EngineError::internal(format!("extract task: {e}")))?
    }
}

/// How [`extract`] treats what it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extract {
    /// refuse to replace a directory by a non-directory or the reverse
    pub no_overwrite_dir_non_dir: bool,
    /// host (uid, gid) to give every extracted entry: the remapped root of a container
    /// under `--userns-remap` (otherwise entries belong to the host's root, as in Docker)
    pub owner: Option<(u32, u32)>,
}

/// Extracts a tar into the directory `path` under `root`, every entry resolved within it.
pub fn extract(
    root: &Path,
    path: &str,
    container: &str,
    opts: Extract,
    reader: impl Read,
) -> Result<()> {
    let no_overwrite_dir_non_dir = opts.no_overwrite_dir_non_dir;
    let dest = resolve_in_root(root, path, true)?;
    let meta = std::fs::metadata(&dest).map_err(|_| not_found(path, container))?;
    if !meta.is_dir() {
        return Err(EngineError::invalid(format!(
            "extraction point is not a directory: {path}"
        )));
    }
    let dest_rel = format!("/{}", dest.strip_prefix(root).unwrap_or(&dest).display());
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    let bad = |e: std::io::Error| EngineError::invalid(format!("bad tar for {path}: {e}"));
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.display().to_string();
        let inner = format!("{dest_rel}/{name}");
        let target = resolve_in_root(root, &inner, false)?;
        if target == root {
            continue;
        }
        let kind = entry.header().entry_type();
        if let Ok(existing) = std::fs::symlink_metadata(&target) {
            let new_is_dir = kind.is_dir();
            if no_overwrite_dir_non_dir && existing.is_dir() != new_is_dir {
                return Err(EngineError::invalid(format!(
                    "cannot overwrite {} with a {} in {container}",
                    if existing.is_dir() {
                        "directory"
                    } else {
                        "non-directory"
                    },
                    if new_is_dir {
                        "directory"
                    } else {
                        "non-directory"
                    },
                )));
            }
            if !(existing.is_dir() && new_is_dir) {
                let _ = if existing.is_dir() {
                    std::fs::remove_dir_all(&target)
                } else {
                    std::fs::remove_file(&target)
                };
            }
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| EngineError::internal(format!("create {}: {e}", parent.display())))?;
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(bad)?
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let src = resolve_in_root(root, &format!("{dest_rel}/{link}"), false)?;
            std::fs::hard_link(&src, &target).map_err(|e| {
                EngineError::internal(format!(
                    "link {} to {}: {e}",
                    target.display(),
                    src.display()
                ))
            })?;
            continue;
        }
        entry
            .unpack(&target)
            .map_err(|e| EngineError::internal(format!("extract {name} in {container}: {e}")))?;
        if let Some((uid, gid)) = opts.owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| EngineError::internal(format!("chown {name} in {container}: {e}")))?;
            // chown clears the set-user-id and set-group-id bits: put the entry's mode back.
            let mode = entry.header().mode().unwrap_or(0) & 0o7777;
            if mode & 0o6000 != 0 && !entry.header().entry_type().is_symlink() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| EngineError::internal(format!("chmod {name} in {container}: {e}")),
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("data/abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", r.join("data/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/data/abs/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, "/data/up/etc", true).unwrap(),
            r.join("etc")
        );
        assert_eq!(resolve_in_root(r, "/../../x", true).unwrap(), r.join("x"));
        assert_eq!(
            resolve_in_root(r, "/data/abs", false).unwrap(),
            r.join("data/abs")
        );
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, "/loop", true).is_err());
    }

    #[test]
    fn extract_refuses_to_escape() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dst")).unwrap();
        std::os::unix::fs::symlink("/", r.join("dst/esc")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/tmp/pwned", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        extract(r, "/dst", "c", Extract::default(), &data[..]).unwrap();
        assert!(r.join("tmp/pwned").exists());
    }

    #[test]
    fn go_modes() {
        let d = tempfile::tempdir().unwrap();
        let m = std::fs::symlink_metadata(d.path()).unwrap();
        assert_ne!(go_file_mode(&m) & (1 << 31), 0);
    }
}
