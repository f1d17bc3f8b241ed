//! `--userns-remap`: which host ids a remapped container's ids are, read as Docker reads
//! them. `default` means the user `dockremap`, created (with a range in /etc/subuid and
//! /etc/subgid) when missing; `USER[:GROUP]` names an existing user (name or uid) and
//! group (default: the user's name). The first range of each in /etc/subuid and
//! /etc/subgid is used; the container's 0 is that range's first id.

use std::path::{Path, PathBuf};

use berth_snapshot::IdRange;

/// Errors from resolving `--userns-remap`.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The flag's value is empty or malformed.
    #[error("invalid --userns-remap value {0:?}: expected default or USER[:GROUP]")]
    Invalid(String),
    /// The named user does not exist.
    #[error("--userns-remap: no user {0:?} in /etc/passwd")]
    NoUser(String),
    /// The user or group has no subordinate id range.
    #[error("--userns-remap: no subordinate ids for {name:?} in {file}")]
    NoRange {
        /// user or group name
        name: String,
        /// /etc/subuid or /etc/subgid
        file: PathBuf,
    },
    /// A file could not be read or written.
    #[error("--userns-remap: {path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// `useradd` failed while creating the default user.
    #[error("--userns-remap: create user dockremap: {0}")]
    UserAdd(String),
}

/// The user Docker creates for `--userns-remap=default`.
pub const DEFAULT_REMAP_USER: &str = "dockremap";
/// Where Docker starts looking for a free range for that user, and the range's size.
const DEFAULT_RANGE_START: u64 = 100_000;
const DEFAULT_RANGE_SIZE: u64 = 65_536;

/// The resolved remapping: user and group names and their first subordinate ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemapConfig {
    /// user name whose subordinate uids are used
    pub user: String,
    /// group name whose subordinate gids are used
    pub group: String,
    /// container uid 0.. = host uid outside..
    pub uids: IdRange,
    /// container gid 0.. = host gid outside..
    pub gids: IdRange,
}

/// Files the resolution reads (and, for `default`, may write): `/etc` on a real host.
#[derive(Debug, Clone)]
pub struct IdFiles {
    /// the passwd file
    pub passwd: PathBuf,
    /// the group file
    pub group: PathBuf,
    /// the subuid file
    pub subuid: PathBuf,
    /// the subgid file
    pub subgid: PathBuf,
}

impl IdFiles {
    /// The files under `etc` (normally `/etc`).
    pub fn under(etc: &Path) -> Self {
        Self {
            passwd: etc.join("passwd"),
            group: etc.join("group"),
            subuid: etc.join("subuid"),
            subgid: etc.join("subgid"),
        }
    }
}

/// Resolves the flag's value against the host's /etc, creating `dockremap` and its
/// ranges for `default` as Docker does.
pub fn resolve_remap(value: &str) -> Result<RemapConfig, UsernsError> {
    resolve_with(
        value,
        &IdFiles::under(Path::new("/etc")),
        create_system_user,
    )
}

/// [`resolve_remap`] over `files`; `add_user` creates the default user when missing.
pub fn resolve_with(
    value: &str,
    files: &IdFiles,
    add_user: impl Fn(&str) -> Result<(), UsernsError>,
) -> Result<RemapConfig, UsernsError> {
    let value = value.trim();
    let (user_spec, group_spec) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    if user_spec.is_empty() || group_spec == Some("") {
        return Err(UsernsError::Invalid(value.to_string()));
    }
    let default = user_spec == "default";
    let user_spec = if default {
        DEFAULT_REMAP_USER
    } else {
        user_spec
    };
    let mut user = lookup(&read(&files.passwd)?, user_spec);
    if user.is_none() && default {
        add_user(DEFAULT_REMAP_USER)?;
        user = lookup(&read(&files.passwd)?, user_spec);
    }
    let (user_name, uid) = user.ok_or_else(|| UsernsError::NoUser(user_spec.to_string()))?;
    let group_spec = group_spec.unwrap_or(&user_name).to_string();
    let (group_name, gid) = lookup(&read_or_empty(&files.group)?, &group_spec)
        .unwrap_or((group_spec.clone(), u32::MAX));
    if default {
        ensure_range(&files.subuid, &user_name)?;
        ensure_range(&files.subgid, &group_name)?;
    }
    let uids = first_range(&read_or_empty(&files.subuid)?, &user_name, uid).ok_or_else(|| {
        UsernsError::NoRange {
            name: user_name.clone(),
            file: files.subuid.clone(),
        }
    })?;
    let gids = first_range(&read_or_empty(&files.subgid)?, &group_name, gid).ok_or_else(|| {
        UsernsError::NoRange {
            name: group_name.clone(),
            file: files.subgid.clone(),
        }
    })?;
    Ok(RemapConfig {
        user: user_name,
        group: group_name,
        uids,
        gids,
    })
}

fn read(path: &Path) -> Result<String, UsernsError> {
    std::fs::read_to_string(path).map_err(|source| UsernsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_or_empty(path: &Path) -> Result<String, UsernsError> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.map_err(|source| UsernsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// (name, id) of the passwd or group entry named `spec` (a name, or a numeric id).
fn lookup(db: &str, spec: &str) -> Option<(String, u32)> {
    db.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let (name, id) = (*f.first()?, f.get(2)?.parse::<u32>().ok()?);
        (name == spec || spec.parse::<u32>() == Ok(id)).then(|| (name.to_string(), id))
    })
}

/// The first `name:start:count` (or `id:start:count`) line of a subordinate id file.
pub(crate) fn first_range(db: &str, name: &str, id: u32) -> Option<IdRange> {
    db.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        let [who, start, count] = f.as_slice() else {
            return None;
        };
        if *who != name && who.parse::<u32>() != Ok(id) {
            return None;
        }
        Some(IdRange {
            inside: 0,
            outside: start.parse().ok()?,
            count: count.parse().ok().filter(|c: &u32| *c > 0)?,
        })
    })
}

/// The first id at or above 100000 after every range of a subordinate id file.
pub(crate) fn next_free_start(db: &str) -> u64 {
    db.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(':').collect();
            let [_, start, count] = f.as_slice() else {
                return None;
            };
            Some(start.parse::<u64>().ok()? + count.parse::<u64>().ok()?)
        })
        .fold(DEFAULT_RANGE_START, u64::max)
}

/// Appends a 65536-id range for `name` to `path` unless it already has one.
fn ensure_range(path: &Path, name: &str) -> Result<(), UsernsError> {
    let db = read_or_empty(path)?;
    if first_range(&db, name, u32::MAX).is_some() {
        return Ok(());
    }
    let start = next_free_start(&db);
    let io = |source| UsernsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if start + DEFAULT_RANGE_SIZE > u64::from(u32::MAX) {
        return Err(io(std::io::Error::other(format!(
            "no free range of {DEFAULT_RANGE_SIZE} ids left for {name}"
        ))));
    }
    let mut text = db;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{name}:{start}:{DEFAULT_RANGE_SIZE}\n"));
    // Written aside and renamed over, so a crash or a full disk never leaves the host's
    // subordinate id file (which rootless tools read too) cut short.
    let tmp = path.with_extension("berth-new");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// `useradd -r -s /bin/false NAME`, as Docker creates `dockremap`.
fn create_system_user(name: &str) -> Result<(), UsernsError> {
    let out = std::process::Command::new("useradd")
        .args(["-r", "-U", "-s", "/bin/false", name])
        .output()
        .map_err(|e| UsernsError::UserAdd(e.to_string()))?;
    if !out.status.success() {
        return Err(UsernsError::UserAdd(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Adds the search bit for others to `dir` and each of its ancestors that lacks it, so
/// that a remapped root can reach the container directories and volumes below (Docker
/// does the same to its data root's path).
pub fn make_searchable(dir: &Path) -> Result<(), UsernsError> {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.ancestors() {
        let md = std::fs::metadata(d).map_err(|source| UsernsError::Io {
            path: d.to_path_buf(),
            source,
        })?;
        let mode = md.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode((mode | 0o001) & 0o7777))
                .map_err(|source| UsernsError::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, subuid: &str) -> IdFiles {
        let f = IdFiles::under(dir);
        std::fs::write(
            &f.passwd,
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/h:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&f.group, "root:x:0:\nalice:x:1000:\nstaff:x:50:\n").unwrap();
        std::fs::write(&f.subuid, subuid).unwrap();
        std::fs::write(&f.subgid, "alice:300000:1000\nstaff:400000:65536\n").unwrap();
        f
    }

    fn no_add(_: &str) -> Result<(), UsernsError> {
        panic!("must not create a user")
    }

    #[test]
    fn named_user_and_group_use_their_first_ranges() {
        let t = tempfile::tempdir().unwrap();
        let f = files(t.path(), "bob:1:2\nalice:200000:65536\nalice:500000:10\n");
        let r = resolve_with("alice", &f, no_add).unwrap();
        assert_eq!((r.uids.outside, r.uids.count), (200000, 65536));
        assert_eq!((r.gids.outside, r.gids.count), (300000, 1000));
        let r = resolve_with("1000:staff", &f, no_add).unwrap();
        assert_eq!((r.user.as_str(), r.group.as_str()), ("alice", "staff"));
        assert_eq!(r.gids.outside, 400000);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let f = files(t.path(), "");
        assert!(matches!(
            resolve_with("nobody-here", &f, no_add),
            Err(UsernsError::NoUser(_))
        ));
        assert!(matches!(
            resolve_with("alice", &f, no_add),
            Err(UsernsError::NoRange { .. })
        ));
        assert!(matches!(
            resolve_with("alice:", &f, no_add),
            Err(UsernsError::Invalid(_))
        ));
    }

    #[test]
    fn default_creates_the_user_and_ranges_after_existing_ones() {
        let t = tempfile::tempdir().unwrap();
        let f = files(t.path(), "alice:100000:65536\n");
        let passwd = f.passwd.clone();
        let group = f.group.clone();
        let add = move |name: &str| {
            let mut p = std::fs::read_to_string(&passwd).unwrap();
            p.push_str(&format!("{name}:x:999:999::/:/bin/false\n"));
            std::fs::write(&passwd, p).unwrap();
            let mut g = std::fs::read_to_string(&group).unwrap();
            g.push_str(&format!("{name}:x:999:\n"));
            std::fs::write(&group, g).unwrap();
            Ok(())
        };
        let r = resolve_with("default", &f, add).unwrap();
        assert_eq!(r.user, "dockremap");
        assert_eq!((r.uids.outside, r.uids.count), (165536, 65536));
        // subgid's highest range ends at 465536.
        assert_eq!(r.gids.outside, 465536);
        // A second resolution finds what the first wrote and adds nothing.
        let again = resolve_with("default", &f, no_add).unwrap();
        assert_eq!(again, r);
        let subuid = std::fs::read_to_string(&f.subuid).unwrap();
        assert_eq!(subuid.matches("dockremap").count(), 1);
    }
}
