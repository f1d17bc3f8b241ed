//! `write_layer`: a tar of an overlay upper dir, whiteouts turned back into
//! `.wh.` entries (the reverse of [`crate::layer::apply_layer`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

use crate::layer::{AppliedLayer, Hashing, LayerError};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Writes the contents of `upper` (an overlay upper dir, or any directory)
/// to `out` as a plain, deterministic tar (entries sorted by path) and
/// returns its diff_id and size. Overlay whiteouts (char device 0/0)
/// become `.wh.NAME` entries, opaque directories get a `.wh..wh..opq`
/// entry, hardlinks within the tree become tar hardlinks, and owners,
/// modes, mtimes, device numbers and xattrs (other than overlay's own) are
/// recorded. Sockets are skipped, as Docker does.
pub fn write_layer(upper: &Path, out: impl Write) -> Result<AppliedLayer, LayerError> {
    write_layer_owned(upper, out, &|uid, gid| (uid, gid))
}

/// Maps an owner (uid, gid) on disk to the one recorded in a layer.
pub type OwnerMap<'a> = &'a dyn Fn(u32, u32) -> (u32, u32);

/// [`write_layer`], recording each entry's owner through `owners`: a container under
/// `--userns-remap` wrote its files as the host's subordinate ids, and its layer must
/// hold the ids it saw.
pub fn write_layer_owned(
    upper: &Path,
    out: impl Write,
    owners: OwnerMap<'_>,
) -> Result<AppliedLayer, LayerError> {
    let mut hashing = Hashing::new(out);
    {
        let mut builder = tar::Builder::new(&mut hashing);
        builder.mode(HeaderMode::Complete);
        builder.follow_symlinks(false);
        let mut links = HashMap::new();
        walk(&mut builder, upper, Path::new(""), &mut links, owners)?;
        builder
            .finish()
            .map_err(|source| write_err(upper, source))?;
    }
    hashing.flush().map_err(|source| write_err(upper, source))?;
    Ok(hashing.finish())
}

fn write_err(path: &Path, source: io::Error) -> LayerError {
    LayerError::Dir {
        op: "write layer entry",
        path: path.to_path_buf(),
        source,
    }
}

fn dir_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| LayerError::Dir {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    abs: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    owners: OwnerMap<'_>,
) -> Result<(), LayerError> {
    let mut names: Vec<_> = fs::read_dir(abs)
        .map_err(dir_err("read directory", abs))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(dir_err("read directory", abs))?;
    names.sort();
    for name in names {
        let path = abs.join(&name);
        let rel_path = rel.join(&name);
        let md = fs::symlink_metadata(&path).map_err(dir_err("stat", &path))?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            let mut wh = name.clone();
            wh.clear();
            wh.push(".wh.");
            wh.push(&name);
            let mut h = header(&md, EntryType::Regular, owners);
            h.set_mode(md.mode() & 0o777);
            h.set_size(0);
            b.append_data(&mut h, rel.join(wh), io::empty())
                .map_err(|e| write_err(&path, e))?;
            continue;
        }
        if ft.is_socket() {
            continue;
        }
        let xattrs = read_xattrs(&path)?;
        if !xattrs.is_empty() {
            let exts: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(|e| write_err(&path, e))?;
        }
        if ft.is_dir() {
            let mut h = header(&md, EntryType::Directory, owners);
            h.set_size(0);
            b.append_data(&mut h, &rel_path, io::empty())
                .map_err(|e| write_err(&path, e))?;
            if xattr::get(&path, OPAQUE_XATTR).ok().flatten().as_deref() == Some(b"y") {
                let mut h = header(&md, EntryType::Regular, owners);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, rel_path.join(".wh..wh..opq"), io::empty())
                    .map_err(|e| write_err(&path, e))?;
            }
            walk(b, &path, &rel_path, links, owners)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(dir_err("read link", &path))?;
            let mut h = header(&md, EntryType::Symlink, owners);
            h.set_size(0);
            b.append_link(&mut h, &rel_path, &target)
                .map_err(|e| write_err(&path, e))?;
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            if md.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    let mut h = header(&md, EntryType::Link, owners);
                    h.set_size(0);
                    b.append_link(&mut h, &rel_path, first)
                        .map_err(|e| write_err(&path, e))?;
                    continue;
                }
                links.insert(key, rel_path.clone());
            }
            let mut h = header(&md, EntryType::Regular, owners);
            h.set_size(md.len());
            let f = File::open(&path).map_err(dir_err("open", &path))?;
            b.append_data(&mut h, &rel_path, f)
                .map_err(|e| write_err(&path, e))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                EntryType::Fifo
            } else if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let mut h = header(&md, kind, owners);
            h.set_size(0);
            if !ft.is_fifo() {
                let dev = md.rdev();
                h.set_device_major(rustix::fs::major(dev))
                    .map_err(|e| write_err(&path, e))?;
                h.set_device_minor(rustix::fs::minor(dev))
                    .map_err(|e| write_err(&path, e))?;
            }
            b.append_data(&mut h, &rel_path, io::empty())
                .map_err(|e| write_err(&path, e))?;
        }
    }
    Ok(())
}

fn header(md: &fs::Metadata, kind: EntryType, owners: OwnerMap<'_>) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    let (uid, gid) = owners(md.uid(), md.gid());
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    h
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(dir_err("list xattrs", path)(e)),
    };
    let mut out = Vec::new();
    for n in names {
        let Some(name) = n.to_str() else { continue };
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(v) = xattr::get(path, name).map_err(dir_err("read xattr", path))? {
            out.push((name.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}
