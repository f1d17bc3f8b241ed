//! ADD's extras: recognizing and unpacking local tar archives, downloading URLs.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Compression of a recognized tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Archive {
    Plain,
    Gzip,
    Bzip2,
    Xz,
}

fn open_decoded(path: &Path, kind: Archive) -> std::io::Result<Box<dyn Read>> {
    let f = BufReader::new(File::open(path)?);
    Ok(match kind {
        Archive::Plain => Box::new(f),
        Archive::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        Archive::Bzip2 => Box::new(bzip2::read::BzDecoder::new(f)),
        Archive::Xz => Box::new(xz2::read::XzDecoder::new(f)),
    })
}

/// Whether the file is a (possibly compressed) tar archive that ADD unpacks.
pub(crate) fn detect(path: &Path) -> Option<Archive> {
    let mut head = [0u8; 6];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let kind = if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Archive::Gzip
    } else if n >= 3 && &head[..3] == b"BZh" {
        Archive::Bzip2
    } else if n >= 6 && head == [0xfd, b'7', b'z', b'X', b'Z', 0x00] {
        Archive::Xz
    } else {
        Archive::Plain
    };
    // Whatever the compression, it must decode to a tar header ("ustar" at offset 257).
    let mut r = open_decoded(path, kind).ok()?;
    let mut block = vec![0u8; 512];
    r.read_exact(&mut block).ok()?;
    (&block[257..262] == b"ustar").then_some(kind)
}

/// Unpacks archive `path` into the directory `dest` (already resolved inside the rootfs);
/// entries cannot leave `dest`.
pub(crate) fn unpack(path: &Path, kind: Archive, dest: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(open_decoded(path, kind)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let unpacked = entry.unpack_in(dest).map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            std::io::Error::other(format!("{e}: {cause}"))
        })?;
        if !unpacked {
            let name = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "archive entry {name} escapes the destination"
            )));
        }
    }
    Ok(())
}

/// The file name ADD gives a download: the last path segment of the URL.
pub(crate) fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    after_host
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("download")
        .to_string()
}

/// Downloads `url` into `dir` under its file name (mode 0600, like Docker); returns the path.
pub(crate) async fn download(url: &str, dir: &Path) -> Result<PathBuf, String> {
    let resp = reqwest::get(url)
        .await
        .map_err(|e| format!("downloading {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("downloading {url}: status {}", resp.status()));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("downloading {url}: {e}"))?;
    let path = dir.join(url_file_name(url));
    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(url_file_name("http://h:1/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("http://h/"), "download");
        assert_eq!(url_file_name("http://h/dir/"), "dir");
    }
}
