//! `apply_layer`: the tar walk with Docker's overlay whiteout semantics.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::fsops::{existing, io, open_dir, os, proc_path, remove, Existing, OpError, OpResult};
use super::{decompress, AppliedLayer, Hashing, LayerError};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";

/// Applies a layer (gzip, zstd or plain tar, detected by magic bytes) into
/// `dest`, an overlay upper directory, with Docker's semantics: `.wh.NAME`
/// becomes an overlay whiteout (char device 0/0), `.wh..wh..opq` marks its
/// directory opaque (`trusted.overlay.opaque=y`); ownership, modes (setuid
/// included), xattrs, mtimes, hardlinks, symlinks, devices and fifos are
/// kept. Returns the diff_id (sha256 of the uncompressed tar) and its size.
///
/// Safety: `..` components are refused, absolute paths are taken relative
/// to `dest`, symlinks in parent components are never followed and hardlink
/// targets must lie inside `dest`. A hostile entry fails the whole apply
/// with an error naming it; nothing is ever written outside `dest`.
pub fn apply_layer(reader: impl Read, dest: &Path) -> Result<AppliedLayer, LayerError> {
    let root: OwnedFd = File::open(dest)
        .map_err(|source| LayerError::Dir {
            op: "open destination",
            path: dest.to_path_buf(),
            source,
        })?
        .into();
    let mut stream = Hashing::new(decompress(reader)?);
    let mut dir_times: Vec<(Vec<Vec<u8>>, Timespec)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut stream);
        let entries = archive.entries().map_err(LayerError::Read)?;
        for entry in entries {
            let mut entry = entry.map_err(LayerError::Read)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let unsafe_err = |reason: String| LayerError::Unsafe {
                entry: shown.clone(),
                reason,
            };
            let comps = normalize(&raw).map_err(unsafe_err)?;
            apply_entry(&root, &mut entry, &comps, &mut dir_times).map_err(|e| match e {
                OpError::Unsafe(reason) => LayerError::Unsafe {
                    entry: shown.clone(),
                    reason,
                },
                OpError::Io(op, source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                    let _ = op;
                    LayerError::Read(source)
                }
                OpError::Io(op, source) => LayerError::Entry {
                    entry: shown.clone(),
                    op,
                    source,
                },
            })?;
        }
    }
    // Hash whatever follows the end-of-archive marker too.
    io::copy(&mut stream, &mut io::sink()).map_err(LayerError::Read)?;
    // Directory mtimes last: creating children changed them.
    for (comps, mtime) in dir_times.iter().rev() {
        let refs: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        if let Ok(fd) = open_dir(&root, &refs, false) {
            let _ = rustix::fs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(stream.finish())
}

/// Splits a tar path into safe components: leading `/` and `.` are
/// dropped, `..` is refused.
fn normalize(raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains '..'".into()),
            c if c.contains(&0) => return Err("path contains a NUL byte".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn times(t: Timespec) -> Timestamps {
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses a PAX time (`secs[.fraction]`, possibly negative) to the nanosecond, as Go's
/// archive/tar (and so dockerd) reads it; `None` when it is not a number.
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nsec: i64 = digits.parse().ok()?;
    Some(if !neg {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec as _,
        }
    } else if nsec == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: (1_000_000_000 - nsec) as _,
        }
    })
}

fn pax_id(v: &[u8], what: &str) -> OpResult<u32> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&x| x != u32::MAX)
        .ok_or_else(|| {
            OpError::Unsafe(format!(
                "invalid pax {what} {:?}",
                String::from_utf8_lossy(v)
            ))
        })
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> OpResult<Meta> {
    let h = entry.header();
    let id = |v: io::Result<u64>, what: &str| -> OpResult<u32> {
        let v = v.map_err(|e| OpError::Io("read header", e))?;
        u32::try_from(v)
            .ok()
            .filter(|&x| x != u32::MAX)
            .ok_or_else(|| OpError::Unsafe(format!("invalid {what} {v}")))
    };
    let mut uid = id(h.uid(), "uid")?;
    let mut gid = id(h.gid(), "gid")?;
    let mode = h.mode().map_err(|e| OpError::Io("read header", e))? & 0o7777;
    let secs = h.mtime().map_err(|e| OpError::Io("read header", e))?;
    let mut mtime = Timespec {
        tv_sec: secs.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| OpError::Io("read pax header", e))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| OpError::Io("read pax header", e))?;
            // PAX records override the ustar fields (Go's archive/tar does the same).
            match ext.key_bytes() {
                b"mtime" => mtime = pax_time(ext.value_bytes()).unwrap_or(mtime),
                b"uid" => uid = pax_id(ext.value_bytes(), "uid")?,
                b"gid" => gid = pax_id(ext.value_bytes(), "gid")?,
                _ => {}
            }
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                // overlay's own attributes must not come from a layer
                if !name.starts_with(b"trusted.overlay.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(Meta {
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        mode: Mode::from_raw_mode(mode),
        mtime,
        xattrs,
    })
}

fn apply_entry<R: Read>(
    root: &OwnedFd,
    entry: &mut tar::Entry<'_, R>,
    comps: &[Vec<u8>],
    dir_times: &mut Vec<(Vec<Vec<u8>>, Timespec)>,
) -> OpResult<()> {
    let kind = entry.header().entry_type();
    let Some((name, parents)) = comps.split_last() else {
        return Ok(()); // the root itself: its metadata stays the upper dir's
    };
    let parent_refs: Vec<&[u8]> = parents.iter().map(Vec::as_slice).collect();
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(());
    }
    if name.as_slice() == OPAQUE {
        let dir = open_dir(root, &parent_refs, true)?;
        rustix::fs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
            .map_err(io("set opaque xattr"))?;
        return Ok(());
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(()); // other AUFS metadata (.wh..wh.plnk, ...) means nothing here
    }
    let parent = open_dir(root, &parent_refs, true)?;
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() {
            return Err(OpError::Unsafe("empty whiteout name".into()));
        }
        remove(&parent, hidden)?;
        rustix::fs::mknodat(
            &parent,
            os(hidden),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .map_err(io("create whiteout"))?;
        return Ok(());
    }
    let m = meta(entry)?;
    match kind {
        EntryType::Directory => {
            if existing(&parent, name)? != Existing::Dir {
                remove(&parent, name)?;
                rustix::fs::mkdirat(&parent, os(name), Mode::from_raw_mode(0o700))
                    .map_err(io("create directory"))?;
            }
            let dir = rustix::fs::openat(
                &parent,
                os(name),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io("open directory"))?;
            set_fd_meta(&dir, &m)?;
            dir_times.push((comps.to_vec(), m.mtime));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            remove(&parent, name)?;
            let fd = rustix::fs::openat(
                &parent,
                os(name),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(io("create file"))?;
            let mut file = File::from(fd);
            io::copy(entry, &mut file).map_err(|e| OpError::Io("write file", e))?;
            let fd: OwnedFd = file.into();
            set_fd_meta(&fd, &m)?;
            rustix::fs::futimens(&fd, &times(m.mtime)).map_err(io("set times"))?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| OpError::Unsafe("symlink without target".into()))?
                .into_owned();
            remove(&parent, name)?;
            rustix::fs::symlinkat(os(&target), &parent, os(name)).map_err(io("create symlink"))?;
            set_at_meta(&parent, name, &m, false)?;
        }
        EntryType::Link => {
            let raw = entry
                .link_name_bytes()
                .ok_or_else(|| OpError::Unsafe("hardlink without target".into()))?
                .into_owned();
            let tcomps =
                normalize(&raw).map_err(|r| OpError::Unsafe(format!("hardlink target: {r}")))?;
            let Some((tname, tparents)) = tcomps.split_last() else {
                return Err(OpError::Unsafe("hardlink to the root directory".into()));
            };
            if tcomps.as_slice() == comps {
                return Ok(()); // a link to itself: nothing to do
            }
            let trefs: Vec<&[u8]> = tparents.iter().map(Vec::as_slice).collect();
            let tparent = open_dir(root, &trefs, false).map_err(|e| match e {
                OpError::Unsafe(r) => OpError::Unsafe(format!("hardlink target: {r}")),
                OpError::Io(..) => {
                    OpError::Unsafe("hardlink target does not exist in the layer".into())
                }
            })?;
            match existing(&tparent, tname)? {
                Existing::Nothing => {
                    return Err(OpError::Unsafe(
                        "hardlink target does not exist in the layer".into(),
                    ))
                }
                Existing::Dir => {
                    return Err(OpError::Unsafe("hardlink target is a directory".into()))
                }
                Existing::Other => {}
            }
            remove(&parent, name)?;
            rustix::fs::linkat(&tparent, os(tname), &parent, os(name), AtFlags::empty())
                .map_err(io("create hardlink"))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let ft = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            remove(&parent, name)?;
            rustix::fs::mknodat(
                &parent,
                os(name),
                ft,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(major, minor),
            )
            .map_err(io("create device node"))?;
            set_at_meta(&parent, name, &m, true)?;
        }
        other => {
            tracing::warn!(entry = %String::from_utf8_lossy(name), kind = ?other, "skipping unsupported tar entry type");
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid), then xattrs, on an open fd.
fn set_fd_meta(fd: &OwnedFd, m: &Meta) -> OpResult<()> {
    rustix::fs::fchown(fd, Some(m.uid), Some(m.gid)).map_err(io("chown"))?;
    rustix::fs::fchmod(fd, m.mode).map_err(io("chmod"))?;
    for (k, v) in &m.xattrs {
        match rustix::fs::fsetxattr(fd, os(k), v, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP) => {
                tracing::warn!(xattr = %String::from_utf8_lossy(k), "xattr not supported here, skipped")
            }
            Err(e) => return Err(io("set xattr")(e)),
        }
    }
    Ok(())
}

/// Metadata for symlinks and device nodes, which cannot be opened safely.
fn set_at_meta(parent: &OwnedFd, name: &[u8], m: &Meta, chmod: bool) -> OpResult<()> {
    rustix::fs::chownat(
        parent,
        os(name),
        Some(m.uid),
        Some(m.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io("chown"))?;
    if chmod {
        // The node was just created by us and is not a symlink.
        rustix::fs::chmodat(parent, os(name), m.mode, AtFlags::empty()).map_err(io("chmod"))?;
    }
    let path = proc_path(parent, name);
    for (k, v) in &m.xattrs {
        match rustix::fs::lsetxattr(&path, os(k), v, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP) | Err(Errno::PERM) => {
                tracing::warn!(xattr = %String::from_utf8_lossy(k), "xattr not allowed on this node, skipped")
            }
            Err(e) => return Err(io("set xattr")(e)),
        }
    }
    rustix::fs::utimensat(parent, os(name), &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io("set times"))?;
    Ok(())
}

#[cfg(test)]
mod pax_tests {
    use super::*;

    #[test]
    fn pax_times_parse_to_the_nanosecond() {
        let t = pax_time(b"1600000003.123456789").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1600000003, 123456789));
        let t = pax_time(b"12.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 500_000_000));
        let t = pax_time(b"7").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (7, 0));
        let t = pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(pax_time(b"x1").is_none());
        assert!(pax_time(b"").is_none());
        assert!(pax_id(b"70000", "uid").is_ok());
        assert!(pax_id(b"nope", "uid").is_err());
    }
}
