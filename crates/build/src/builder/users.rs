//! `--chown` resolution against the image's `/etc/passwd` and `/etc/group`.

use std::path::Path;

fn read_db(root: &Path, file: &str) -> Vec<Vec<String>> {
    let Ok(path) = safe_path::scoped_join(root, file) else {
        return vec![];
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect()
}

/// Resolves `user[:group]` (names or numbers) to uid/gid using the files of `root`.
/// Without a group, a numeric user gets the same number as gid and a named user its group of
/// the same name, else its primary group.
pub(crate) fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(format!("invalid --chown value {spec:?}"));
    }
    let passwd = read_db(root, "/etc/passwd");
    let groups = read_db(root, "/etc/group");
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            let entry = passwd.iter().find(|f| f[0] == user).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?;
            let uid = entry[2]
                .parse::<u32>()
                .map_err(|_| format!("bad uid for user {user} in passwd file"))?;
            let gid = entry
                .get(3)
                .and_then(|g| g.parse::<u32>().ok())
                .unwrap_or(uid);
            (uid, gid)
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let entry = groups.iter().find(|f| f[0] == g).ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?;
                entry[2]
                    .parse::<u32>()
                    .map_err(|_| format!("bad gid for group {g} in group file"))?
            }
        },
        None if user.parse::<u32>().is_ok() => primary,
        None => groups
            .iter()
            .find(|f| f[0] == user)
            .and_then(|f| f[2].parse::<u32>().ok())
            .unwrap_or(primary),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\napps:x:1001:\n",
        )
        .unwrap();
        assert_eq!(resolve_chown(d.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(d.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(d.path(), "5:6").unwrap(), (5, 6));
        assert_eq!(resolve_chown(d.path(), "7").unwrap(), (7, 7));
        assert_eq!(resolve_chown(d.path(), "root:apps").unwrap(), (0, 1001));
        assert!(resolve_chown(d.path(), "nobody")
            .unwrap_err()
            .contains("nobody"));
        assert!(resolve_chown(d.path(), "app:nogroup")
            .unwrap_err()
            .contains("nogroup"));
    }
}
