//! The build context: a tar stream (plain or gzip) unpacked safely into a private temporary
//! directory, with `.dockerignore` applied, and helpers that resolve paths inside it without
//! letting `..` or symlinks escape.

pub mod ignore;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

pub use ignore::{IgnoreError, IgnoreMatcher};

/// Errors of context handling; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Reading or unpacking the tar failed.
    #[error("reading build context: {0}")]
    Tar(#[source] std::io::Error),
    /// A tar entry tried to leave the context directory.
    #[error("build context entry {0:?} escapes the context")]
    UnsafeEntry(String),
    /// Filesystem error on a path in the context.
    #[error("{path}: {source}")]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The Dockerfile named by the `dockerfile` option is missing.
    #[error("cannot locate specified Dockerfile: {0}")]
    NoDockerfile(String),
    /// A path (or a symlink on the way) leads outside the context.
    #[error("forbidden path outside the build context: {0}")]
    Escapes(String),
    /// A bad `.dockerignore`.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An unpacked build context. The directory is removed when this value is dropped.
#[derive(Debug)]
pub struct BuildContext {
    dir: tempfile::TempDir,
    dockerfile: String,
}

impl BuildContext {
    /// Unpacks a (possibly gzip, bzip2 or xz compressed) tar context into a new temp dir under `parent`
    /// (the system temp dir if `None`), locates the Dockerfile (`dockerfile` is a path inside
    /// the tar; empty means `Dockerfile`, falling back to `dockerfile`), and removes what
    /// `.dockerignore` excludes, except the Dockerfile and `.dockerignore` themselves.
    pub fn from_tar<R: Read>(
        reader: R,
        dockerfile: &str,
        parent: Option<&Path>,
    ) -> Result<Self, ContextError> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new()
                .prefix("berth-build-")
                .tempdir_in(p),
            None => tempfile::Builder::new().prefix("berth-build-").tempdir(),
        }
        .map_err(|e| ContextError::Io {
            path: parent
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir),
            source: e,
        })?;
        extract_tar(reader, dir.path())?;
        let dockerfile = locate_dockerfile(dir.path(), dockerfile)?;
        apply_dockerignore(dir.path(), &[dockerfile.as_str(), ".dockerignore"])?;
        Ok(BuildContext { dir, dockerfile })
    }

    /// The directory holding the context.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The Dockerfile's path relative to [`BuildContext::path`].
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }
}

/// Unpacks a plain, gzip, bzip2 or xz tar stream into `dest`, refusing absolute paths and `..`
/// components and never writing through symlinks outside `dest`.
pub fn extract_tar<R: Read>(reader: R, dest: &Path) -> Result<(), ContextError> {
    let mut buf = BufReader::new(reader);
    let head = buf.fill_buf().map_err(ContextError::Tar)?;
    let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::BzDecoder::new(buf))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(xz2::read::XzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    let mut ar = tar::Archive::new(ZeroPadded::new(input));
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for entry in ar.entries().map_err(ContextError::Tar)? {
        let mut entry = entry.map_err(ContextError::Tar)?;
        let path = entry.path().map_err(ContextError::Tar)?.into_owned();
        let bad = path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        });
        if bad {
            return Err(ContextError::UnsafeEntry(path.display().to_string()));
        }
        if let Some(link) = entry.link_name().map_err(ContextError::Tar)? {
            if entry.header().entry_type().is_hard_link() && lexical_escapes(&link) {
                return Err(ContextError::UnsafeEntry(path.display().to_string()));
            }
        }
        let ok = entry.unpack_in(dest).map_err(ContextError::Tar)?;
        if !ok {
            return Err(ContextError::UnsafeEntry(path.display().to_string()));
        }
    }
    Ok(())
}

/// A reader that, once its inner stream ends, completes the last 512-byte tar block and adds
/// the two zero blocks that end an archive. The docker CLI sends contexts whose last entry
/// (the `.dockerignore` it rewrites for `-f` outside the context) lacks both; Go's tar reader
/// accepts that, the `tar` crate does not.
struct ZeroPadded<R> {
    inner: R,
    read: u64,
    /// Zero bytes still to produce once the inner reader is done (`None` before that).
    padding: Option<u64>,
}

impl<R: Read> ZeroPadded<R> {
    fn new(inner: R) -> Self {
        ZeroPadded {
            inner,
            read: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for ZeroPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            self.padding = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.padding.unwrap_or(0);
        let n = (left.min(buf.len() as u64)) as usize;
        buf[..n].fill(0);
        self.padding = Some(left - n as u64);
        Ok(n)
    }
}

fn lexical_escapes(p: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::RootDir | Component::Prefix(_) => return true,
            Component::CurDir => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn locate_dockerfile(dir: &Path, name: &str) -> Result<String, ContextError> {
    let name = name.trim();
    let candidates: Vec<String> = if name.is_empty() {
        vec!["Dockerfile".into(), "dockerfile".into()]
    } else {
        let c = ignore::clean(name);
        let mut v = vec![c.clone()];
        if c == "Dockerfile" {
            v.push("dockerfile".into());
        }
        v
    };
    for c in &candidates {
        if let Ok(p) = resolve(dir, c) {
            if p.is_file() {
                return Ok(c.clone());
            }
        }
    }
    Err(ContextError::NoDockerfile(if name.is_empty() {
        "Dockerfile".into()
    } else {
        name.to_string()
    }))
}

/// Removes from `dir` every entry its `.dockerignore` excludes. Paths in `keep` (context
/// relative) are never removed; a directory is kept while an exception keeps something in it.
pub fn apply_dockerignore(dir: &Path, keep: &[&str]) -> Result<(), ContextError> {
    let file = dir.join(".dockerignore");
    let text = match fs::symlink_metadata(&file) {
        Ok(m) if m.is_file() => fs::read_to_string(&file).map_err(io(&file))?,
        _ => return Ok(()),
    };
    let matcher = IgnoreMatcher::parse(&text)?;
    if matcher.is_empty() {
        return Ok(());
    }
    let keep: Vec<String> = keep.iter().map(|k| ignore::clean(k)).collect();
    prune(dir, "", &matcher, &keep)?;
    Ok(())
}

/// Returns true if `dir/rel` was removed.
fn prune(root: &Path, rel: &str, m: &IgnoreMatcher, keep: &[String]) -> Result<bool, ContextError> {
    let path = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
    if meta.is_dir() {
        let mut names: Vec<String> = Vec::new();
        for e in fs::read_dir(&path).map_err(io(&path))? {
            let e = e.map_err(io(&path))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        let mut left = names.len();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            if prune(root, &child, m, keep)? {
                left -= 1;
            }
        }
        if !rel.is_empty() && left == 0 && m.matches(rel) && !keep.iter().any(|k| k == rel) {
            fs::remove_dir(&path).map_err(io(&path))?;
            return Ok(true);
        }
        return Ok(false);
    }
    if m.matches(rel) && !keep.iter().any(|k| k == rel) {
        fs::remove_file(&path).map_err(io(&path))?;
        return Ok(true);
    }
    Ok(false)
}

/// Resolves a context-relative path (absolute paths are taken relative to the context root)
/// following symlinks, and fails with [`ContextError::Escapes`] naming `rel` if `..` or a
/// symlink would leave `root`. The final component is followed too.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, ContextError> {
    resolve_inner(root, rel, true)
}

/// Like [`resolve`] but does not follow a symlink in the final component.
pub fn resolve_nofollow(root: &Path, rel: &str) -> Result<PathBuf, ContextError> {
    resolve_inner(root, rel, false)
}

fn resolve_inner(root: &Path, rel: &str, follow_last: bool) -> Result<PathBuf, ContextError> {
    let escapes = || ContextError::Escapes(rel.to_string());
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if stack.pop().is_none() {
                    return Err(escapes());
                }
                continue;
            }
            _ => {}
        }
        let mut cur = root.to_path_buf();
        cur.extend(&stack);
        cur.push(&c);
        let is_last = pending.iter().all(|p| p.is_empty() || p == ".");
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !is_last) => {
                links += 1;
                if links > 40 {
                    return Err(ContextError::Io {
                        path: cur,
                        source: std::io::Error::other("too many levels of symbolic links"),
                    });
                }
                let target = fs::read_link(&cur).map_err(io(&cur))?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    // Absolute links point outside the context.
                    return Err(escapes());
                }
                pending.extend(t.split('/').rev().map(str::to_string));
            }
            _ => stack.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Ok(out)
}

#[cfg(test)]
mod tests;
