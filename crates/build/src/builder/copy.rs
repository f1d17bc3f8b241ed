//! COPY and ADD: source resolution (wildcards, context confinement, heredocs, URLs,
//! archives), content hashing for the cache, and copying into the rootfs.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dispatch::{abs_in_workdir, commit_layer};
use super::{archive, run, users, BuildError, Run, StageState};
use crate::host::WorkRoot;
use crate::parser::expand::expand_vars_only;
use crate::parser::CopyInstr;

/// One resolved source.
#[derive(Debug)]
struct Src {
    /// Where the data is (resolved, inside its root).
    path: PathBuf,
    /// Base name to use when copying into a directory.
    name: String,
    /// A downloaded URL (never unpacked).
    remote: bool,
}

/// Creates `dir` (absolute, inside `root`) and its parents, never following symlinks out of
/// `root`.
pub(crate) fn mkdir_in_root(root: &Path, dir: &str) -> std::io::Result<PathBuf> {
    let mut prefix = String::new();
    let mut resolved = root.to_path_buf();
    for c in dir.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(c);
        resolved = safe_path::scoped_join(root, &prefix)?;
        match fs::symlink_metadata(&resolved) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{prefix} exists and is not a directory"
                )))
            }
            Err(_) => {
                fs::create_dir(&resolved)?;
                fs::set_permissions(&resolved, fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    Ok(resolved)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands a wildcard source relative to `root`; returns matching relative paths, sorted.
fn glob(root: &Path, pattern: &str) -> Result<Vec<String>, String> {
    let mut found = vec![String::new()];
    for seg in pattern.split('/').filter(|s| !s.is_empty() && *s != ".") {
        let mut next = Vec::new();
        for base in &found {
            if has_wildcard(seg) {
                let re = crate::context::ignore::compile(seg).map_err(|e| e.to_string())?;
                let dir = root.join(base);
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| re.is_match(n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| {
                    if base.is_empty() {
                        n
                    } else {
                        format!("{base}/{n}")
                    }
                }));
            } else {
                next.push(if base.is_empty() {
                    seg.to_string()
                } else {
                    format!("{base}/{seg}")
                });
            }
        }
        found = next;
    }
    Ok(found
        .into_iter()
        .filter(|p| !p.is_empty() && fs::symlink_metadata(root.join(p)).is_ok())
        .collect())
}

/// Resolves a source path in its root: context sources may not escape (error names the
/// source), image/stage sources are confined like a chroot.
fn resolve_src(root: &Path, rel: &str, in_context: bool) -> Result<PathBuf, String> {
    if in_context {
        crate::context::resolve(root, rel).map_err(|e| e.to_string())
    } else {
        safe_path::scoped_join(root, rel).map_err(|e| format!("{rel}: {e}"))
    }
}

pub(crate) fn hash_tree(h: &mut Sha256, path: &Path, rel: &str) -> std::io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    h.update(
        format!(
            "{rel}\0{:o}\0{}\0",
            m.mode(),
            if m.is_file() { m.len() } else { 0 }
        )
        .as_bytes(),
    );
    if m.file_type().is_symlink() {
        h.update(fs::read_link(path)?.to_string_lossy().as_bytes());
    } else if m.is_file() {
        let mut f = fs::File::open(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if m.is_dir() {
        let mut names: Vec<String> = fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            hash_tree(h, &path.join(&n), &format!("{rel}/{n}"))?;
        }
    }
    h.update(b"\n");
    Ok(())
}

fn set_owner_mode(
    path: &Path,
    owner: (u32, u32),
    mode: Option<u32>,
    is_link: bool,
) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1))?;
    if let (Some(mode), false) = (mode, is_link) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Copies a file or tree `src` to the absolute path `dest` inside `root` (owned by root).
pub(crate) fn copy_tree(src: &Path, root: &Path, dest: &str) -> std::io::Result<()> {
    copy_entry(src, root, dest, (0, 0), None)
}

/// Gives `target` the modification time of the source (like Docker's COPY does).
fn keep_times(target: &Path, src: &fs::Metadata) -> std::io::Result<()> {
    let mtime = filetime::FileTime::from_last_modification_time(src);
    filetime::set_symlink_file_times(target, mtime, mtime)
}

/// Copies `src` to the absolute path `dest` in `root` (the parent must exist).
fn copy_entry(
    src: &Path,
    root: &Path,
    dest: &str,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> std::io::Result<()> {
    let (parent, name) = dest.rsplit_once('/').unwrap_or(("", dest));
    let parent = mkdir_in_root(root, parent)?;
    let target = parent.join(name);
    let m = fs::symlink_metadata(src)?;
    let existing = fs::symlink_metadata(&target).ok();
    if m.is_dir() {
        match existing {
            Some(e) if e.is_dir() => {}
            Some(_) => {
                fs::remove_file(&target)?;
                fs::create_dir(&target)?;
            }
            None => fs::create_dir(&target)?,
        }
        fs::set_permissions(&target, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        set_owner_mode(&target, owner, chmod, false)?;
        let mut names: Vec<_> = fs::read_dir(src)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            copy_entry(
                &src.join(&n),
                root,
                &format!("{}/{}", dest.trim_end_matches('/'), n.to_string_lossy()),
                owner,
                chmod,
            )?;
        }
        keep_times(&target, &m)?;
        return Ok(());
    }
    if let Some(e) = existing {
        if e.is_dir() {
            return Err(std::io::Error::other(format!(
                "cannot overwrite directory {dest} with a non-directory"
            )));
        }
        fs::remove_file(&target)?;
    }
    if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, &target)?;
        set_owner_mode(&target, owner, None, true)?;
        keep_times(&target, &m)
    } else if m.is_file() {
        fs::copy(src, &target)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        set_owner_mode(&target, owner, chmod, false)?;
        keep_times(&target, &m)
    } else {
        Ok(()) // sockets, fifos and devices are not copied
    }
}

fn hash_sources(srcs: &[Src]) -> Result<String, String> {
    let mut h = Sha256::new();
    for s in srcs {
        h.update(format!("{}\0", s.name).as_bytes());
        hash_tree(&mut h, &s.path, "").map_err(|e| format!("hashing {}: {e}", s.path.display()))?;
    }
    Ok(hex::encode(h.finalize()))
}

/// Everything [`place`] needs, owned so it can run on a blocking thread.
struct Placement {
    srcs: Vec<Src>,
    rootfs: PathBuf,
    dest_abs: String,
    dest_is_dir_hint: bool,
    chown: Option<String>,
    chmod: Option<u32>,
    add: bool,
}

/// Writes the sources into the rootfs: archives unpacked (ADD), directories by content,
/// files under their name in a directory destination or as the destination itself.
fn place(job: Placement) -> Result<(), String> {
    let Placement {
        srcs,
        rootfs,
        dest_abs,
        dest_is_dir_hint,
        chown,
        chmod,
        add,
    } = job;
    let owner = match &chown {
        Some(spec) => users::resolve_chown(&rootfs, spec)?,
        None => (0, 0),
    };
    let dest_path =
        safe_path::scoped_join(&rootfs, &dest_abs).map_err(|e| format!("{dest_abs}: {e}"))?;
    let dest_is_dir = dest_is_dir_hint
        || fs::metadata(&dest_path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
    for s in &srcs {
        let is_dir = fs::metadata(&s.path).map(|m| m.is_dir()).unwrap_or(false);
        let kind = if add && !s.remote && !is_dir {
            archive::detect(&s.path)
        } else {
            None
        };
        if let Some(kind) = kind {
            let d = mkdir_in_root(&rootfs, &dest_abs).map_err(|e| format!("{dest_abs}: {e}"))?;
            archive::unpack(&s.path, kind, &d).map_err(|e| format!("unpacking {}: {e}", s.name))?;
        } else if is_dir {
            mkdir_in_root(&rootfs, &dest_abs).map_err(|e| format!("{dest_abs}: {e}"))?;
            let mut names: Vec<_> = fs::read_dir(&s.path)
                .map_err(|e| format!("{}: {e}", s.name))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let to = format!("{}/{}", dest_abs.trim_end_matches('/'), n.to_string_lossy());
                copy_entry(&s.path.join(&n), &rootfs, &to, owner, chmod)
                    .map_err(|e| format!("copying {} to {to}: {e}", s.name))?;
            }
        } else {
            let to = if dest_is_dir {
                format!("{}/{}", dest_abs.trim_end_matches('/'), s.name)
            } else {
                dest_abs.clone()
            };
            // A single source file was resolved through symlinks already: its content is copied.
            copy_entry(&s.path, &rootfs, &to, owner, chmod)
                .map_err(|e| format!("copying {} to {to}: {e}", s.name))?;
        }
    }
    Ok(())
}

/// Executes COPY or ADD.
pub(crate) async fn copy_step(
    run: &mut Run<'_>,
    state: &mut StageState,
    stage: usize,
    line: usize,
    _original: &str,
    c: &CopyInstr,
    add: bool,
) -> Result<(), BuildError> {
    let run: &Run<'_> = run;
    let name = if add { "ADD" } else { "COPY" };
    let fail = |message: String| BuildError::Copy { line, message };
    let dest_raw = run.expand(state, &c.dest, line)?;
    let dest_is_dir_hint = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
    let mut dest_abs = super::dispatch::clean_abs(&abs_in_workdir(state, &dest_raw));
    if dest_is_dir_hint && !dest_abs.ends_with('/') {
        dest_abs.push('/');
    }
    let chown = c
        .chown
        .as_deref()
        .map(|v| run.expand(state, v, line))
        .transpose()?;
    let chmod = match c
        .chmod
        .as_deref()
        .map(|v| run.expand(state, v, line))
        .transpose()?
    {
        Some(m) => Some(
            u32::from_str_radix(&m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    fail(format!(
                        "invalid --chmod value {m:?}: only octal modes are supported"
                    ))
                })?,
        ),
        None => None,
    };
    let from = c
        .from
        .as_deref()
        .map(|v| run.expand(state, v, line))
        .transpose()?;
    let staging = tempfile::tempdir().map_err(|e| fail(format!("creating staging dir: {e}")))?;
    let mut view: Option<WorkRoot> = None;
    if let Some(f) = &from {
        view = Some(run::view_of(run, stage, f, line).await?.0);
    }
    let result = async {
        let (root, in_context) = match &view {
            Some(v) => (v.rootfs.clone(), false),
            None => (run.context.to_path_buf(), true),
        };
        let mut srcs = Vec::new();
        for raw in &c.sources {
            if let Some(hname) = raw.strip_prefix("<<") {
                let hname = hname.trim_start_matches('-').trim_matches(['"', '\'']);
                let h = c.heredocs.iter().find(|h| h.name == hname).ok_or_else(|| fail(format!("heredoc {hname} not found")))?;
                let content = if h.expand { expand_vars_only(&h.content, &state.lookup()).map_err(|source| BuildError::Expand { line, source })? } else { h.content.clone() };
                let p = staging.path().join(format!("heredoc-{}", srcs.len()));
                fs::write(&p, content).map_err(|e| fail(format!("{}: {e}", p.display())))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(|e| fail(e.to_string()))?;
                srcs.push(Src { path: p, name: h.name.clone(), remote: false });
                continue;
            }
            let s = run.expand(state, raw, line)?;
            if s.starts_with("http://") || s.starts_with("https://") {
                if !add {
                    return Err(fail(format!("source can't be a URL for COPY: {s}")));
                }
                let dir = staging.path().join(format!("url-{}", srcs.len()));
                fs::create_dir(&dir).map_err(|e| fail(e.to_string()))?;
                let p = archive::download(&s, &dir).await.map_err(fail)?;
                srcs.push(Src { name: archive::url_file_name(&s), path: p, remote: true });
                continue;
            }
            let matches = if has_wildcard(&s) {
                glob(&root, &s).map_err(fail)?
            } else {
                vec![s.clone()]
            };
            if matches.is_empty() {
                return Err(fail(format!("{name} failed: no source files were specified matching {s:?}")));
            }
            for m in matches {
                let path = resolve_src(&root, &m, in_context).map_err(&fail)?;
                if fs::symlink_metadata(&path).is_err() {
                    return Err(fail(format!("{name} failed: file not found in build context or excluded by .dockerignore: stat {m}: file does not exist")));
                }
                let base = crate::context::ignore::clean(&m);
                let base = base.rsplit('/').next().unwrap_or("").to_string();
                srcs.push(Src { path, name: base, remote: false });
            }
        }
        if srcs.len() > 1 && !dest_is_dir_hint {
            return Err(fail(format!("When using {name} with more than one source file, the destination must be a directory and end with a /")));
        }
        // Content hash of the sources, for the cache key and the history entry.
        let (srcs, sum) = tokio::task::spawn_blocking(move || {
            let sum = hash_sources(&srcs);
            (srcs, sum)
        })
        .await
        .map_err(|e| fail(format!("hashing task: {e}")))?;
        let sum = sum.map_err(fail)?;
        let kind = match srcs.as_slice() {
            [one] if one.path.is_dir() => "dir",
            [_] => "file",
            _ => "multi",
        };
        let desc = format!("{name} {kind}:{sum} in {dest_abs} chown={chown:?} chmod={chmod:?}");
        let key = Run::cache_key(&state.state_id, &desc);
        if run.try_cache(state, &key, line).await? {
            return Ok(());
        }
        let work = run.host.prepare_rootfs(state.top_layer.as_deref()).await.map_err(|source| BuildError::Host { line, source })?;
        let job = Placement { srcs, rootfs: work.rootfs.clone(), dest_abs: dest_abs.clone(), dest_is_dir_hint, chown: chown.clone(), chmod, add };
        let copied = match tokio::task::spawn_blocking(move || place(job)).await {
            Ok(r) => r,
            Err(e) => Err(format!("copy task: {e}")),
        };
        if let Err(e) = copied {
            let _ = run.host.discard(work).await;
            return Err(fail(e));
        }
        let shell = state.image.shell().join(" ");
        commit_layer(run, state, work, line, format!("{shell} #(nop) {name} {kind}:{sum} in {dest_abs} ")).await?;
        run.record(state, &key, line).await
    }
    .await;
    if let Some(v) = view {
        let _ = run.host.discard(v).await;
    }
    result
}
