//! Turning an overlay upper directory back into a layer tar: overlay whiteouts (0/0 char
//! devices) become `.wh.NAME` entries and opaque directories get `.wh..wh..opq`, as Docker
//! writes them. Used by `commit` and by build steps.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_content::Digest;
use sha2::Digest as _;

use crate::error::{EngineError, Result};

/// What was written: the diff_id (sha256 of the tar) and the bytes of the tar.
#[derive(Debug, Clone)]
pub struct WrittenLayer {
    pub diff_id: Digest,
    pub size: u64,
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::internal(format!("layer from {}: {e}", path.display()))
}

/// Writes the tar of `upper` to `out`.
pub fn write_layer(upper: &Path, out: impl Write) -> Result<WrittenLayer> {
    let hw = HashingWriter {
        inner: out,
        hasher: sha2::Sha256::new(),
        count: 0,
    };
    let mut builder = tar::Builder::new(hw);
    builder.follow_symlinks(false);
    walk(upper, upper, &mut builder)?;
    let hw = builder.into_inner().map_err(|e| io_err(upper, e))?;
    let diff_id: Digest = format!("sha256:{}", hex::encode(hw.hasher.finalize()))
        .parse()
        .map_err(|e| io_err(upper, e))?;
    Ok(WrittenLayer {
        diff_id,
        size: hw.count,
    })
}

fn is_opaque(p: &Path) -> bool {
    matches!(xattr_get(p, "trusted.overlay.opaque"), Some(v) if v == b"y")
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

fn walk<W: Write>(root: &Path, dir: &Path, b: &mut tar::Builder<W>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).map_err(|err| io_err(&path, err))?;
        let meta = std::fs::symlink_metadata(&path).map_err(|err| io_err(&path, err))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            h.set_mtime(meta.mtime().max(0) as u64);
            b.append_data(&mut h, &wh, std::io::empty())
                .map_err(|err| io_err(&path, err))?;
            continue;
        }
        b.append_path_with_name(&path, rel)
            .map_err(|err| io_err(&path, err))?;
        if ft.is_dir() {
            if is_opaque(&path) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_data(&mut h, rel.join(".wh..wh..opq"), std::io::empty())
                    .map_err(|err| io_err(&path, err))?;
            }
            walk(root, &path, b)?;
        }
    }
    Ok(())
}
