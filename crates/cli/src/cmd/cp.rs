//! `cp`: copies between a container and the local filesystem through the archive API.

use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use clap::Args;
use serde_json::Value;

use crate::client::{self, query, Client};
use crate::error::{CliError, CmdResult};

/// `cp` arguments.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Suppress progress output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or local path
    pub src: String,
    /// CONTAINER:DEST_PATH or local path
    pub dest: String,
}

/// Splits `container:path`; a local path (absolute, relative with `./`, or without `:`) is `None`.
pub fn split_container_path(s: &str) -> Option<(String, String)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    (!c.is_empty()).then(|| (c.to_owned(), p.to_owned()))
}

const GO_DIR_BIT: u64 = 1 << 31;

/// Reads the `X-Docker-Container-Path-Stat` header: whether the path is a directory.
fn stat_is_dir(v: &Value) -> bool {
    v["mode"].as_u64().is_some_and(|m| m & GO_DIR_BIT != 0)
}

async fn stat(c: &Client, container: &str, path: &str) -> Result<Option<Value>, CliError> {
    let p = format!(
        "/containers/{container}/archive?{}",
        query(&[("path", path.to_owned())])
    );
    match c.send("HEAD", &p, &[], None, false).await {
        Ok(resp) => {
            let v = resp
                .headers()
                .get("X-Docker-Container-Path-Stat")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            Ok(Some(v))
        }
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn base_name(p: &str) -> String {
    Path::new(p.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

/// Extracts a tar whose entries start with `src_base`, renaming that top entry to `rename`.
fn extract(
    data: &[u8],
    dest_dir: &Path,
    src_base: &str,
    rename: Option<&str>,
) -> Result<(), CliError> {
    let mut ar = tar::Archive::new(data);
    let entries = ar.entries().map_err(CliError::io("reading archive"))?;
    for e in entries {
        let mut e = e.map_err(CliError::io("reading archive"))?;
        let path = e
            .path()
            .map_err(CliError::io("reading archive"))?
            .into_owned();
        let path = match rename {
            Some(new) => match path.strip_prefix(src_base) {
                Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from(new),
                Ok(rest) => Path::new(new).join(rest),
                Err(_) => path,
            },
            None => path,
        };
        let target = dest_dir.join(&path);
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(CliError::Usage(format!(
                "archive entry {} escapes the destination",
                path.display()
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(CliError::io(format!("creating {}", parent.display())))?;
        }
        e.set_preserve_permissions(true);
        e.unpack(&target)
            .map_err(CliError::io(format!("writing {}", target.display())))?;
    }
    Ok(())
}

async fn copy_from(c: &Client, container: &str, src: &str, dest: &str) -> CmdResult {
    let p = format!(
        "/containers/{container}/archive?{}",
        query(&[("path", src.to_owned())])
    );
    let resp = c.send("GET", &p, &[], None, false).await?;
    let data = client::read_body(&p, resp).await?;
    if dest == "-" {
        use std::io::Write;
        std::io::stdout()
            .write_all(&data)
            .map_err(CliError::io("writing stdout"))?;
        return Ok(0);
    }
    let src_base = base_name(src);
    let dest_path = PathBuf::from(dest);
    if dest_path.is_dir() {
        extract(&data, &dest_path, &src_base, None)?;
    } else {
        let parent = dest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(CliError::Usage(format!(
                "destination directory {} does not exist",
                parent.display()
            )));
        }
        extract(&data, parent, &src_base, Some(&base_name(dest)))?;
    }
    Ok(0)
}

async fn copy_to(c: &Client, src: &str, container: &str, dest: &str) -> CmdResult {
    let src_path = Path::new(src);
    let meta = std::fs::symlink_metadata(src_path).map_err(CliError::io(format!("lstat {src}")))?;
    let dest_stat = stat(c, container, dest).await?;
    let (dir, name) = match dest_stat {
        Some(s) if stat_is_dir(&s) => (dest.to_owned(), base_name(src)),
        _ => {
            let d = Path::new(dest);
            let parent = d
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            (parent, base_name(dest))
        }
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let res = if meta.is_dir() {
        b.append_dir_all(&name, src_path)
    } else {
        b.append_path_with_name(src_path, &name)
    };
    res.map_err(CliError::io(format!("archiving {src}")))?;
    let data = b
        .into_inner()
        .map_err(CliError::io(format!("archiving {src}")))?;
    let p = format!(
        "/containers/{container}/archive?{}",
        query(&[("path", dir)])
    );
    c.send("PUT", &p, &[], Some(Bytes::from(data)), false)
        .await?;
    Ok(0)
}

/// `berth cp`.
pub async fn cp(c: &Client, a: CpArgs) -> CmdResult {
    match (split_container_path(&a.src), split_container_path(&a.dest)) {
        (Some((ctr, src)), None) => copy_from(c, &ctr, &src, &a.dest).await,
        (None, Some((ctr, dest))) => copy_to(c, &a.src, &ctr, &dest).await,
        (Some(_), Some(_)) => Err(CliError::Usage(
            "copying between containers is not supported".into(),
        )),
        (None, None) => Err(CliError::Usage(
            "must specify at least one container source".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_container_path("web:/etc/hosts"),
            Some(("web".into(), "/etc/hosts".into()))
        );
        assert_eq!(split_container_path("/tmp/a:b"), None);
        assert_eq!(split_container_path("./a:b"), None);
        assert_eq!(split_container_path("file"), None);
    }

    #[test]
    fn extract_renames_top_entry() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hosts", &b"hi"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        extract(&data, dir.path(), "hosts", Some("copy")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("copy")).unwrap(), b"hi");
    }
}
