//! Resolving `--user` (`name`, `uid`, `uid:gid`, `name:group`) against a container's
//! `/etc/passwd` and `/etc/group`, as Docker does.

use std::path::Path;

use crate::error::{EngineError, Result};

/// A resolved user: uid, primary gid and supplementary gids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd ("/" when unknown).
    pub home: String,
}

fn read_db(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(rootfs.join("etc").join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Resolves `spec` (empty means root) and `group_add` entries inside `rootfs`.
pub fn resolve_user(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser> {
    let passwd = read_db(rootfs, "passwd");
    let groups = read_db(rootfs, "group");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd.iter().find(|p| {
        p.first().map(String::as_str) == Some(user)
            || (user.parse::<u32>().is_ok() && p.get(2).map(String::as_str) == Some(user))
    });
    let (uid, mut gid, home, uname) = match (entry, user.parse::<u32>()) {
        (Some(p), _) => (
            p.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            p.get(3).and_then(|s| s.parse().ok()).unwrap_or(0),
            p.get(5).cloned().unwrap_or_else(|| "/".into()),
            p.first().cloned().unwrap_or_default(),
        ),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), String::new()),
        (None, Err(_)) => {
            return Err(EngineError::invalid(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    let find_group = |g: &str| -> Result<u32> {
        if let Some(e) = groups
            .iter()
            .find(|e| e.first().map(String::as_str) == Some(g))
        {
            return Ok(e.get(2).and_then(|s| s.parse().ok()).unwrap_or(0));
        }
        g.parse::<u32>().map_err(|_| {
            EngineError::invalid(format!(
                "unable to find group {g}: no matching entries in group file"
            ))
        })
    };
    if let Some(g) = group {
        gid = find_group(g)?;
    }
    let mut additional: Vec<u32> = Vec::new();
    if group.is_none() && !uname.is_empty() {
        for e in &groups {
            let members = e
                .get(3)
                .map(|m| m.split(',').any(|x| x == uname))
                .unwrap_or(false);
            if members {
                if let Some(g) = e.get(2).and_then(|s| s.parse().ok()) {
                    if g != gid {
                        additional.push(g);
                    }
                }
            }
        }
    }
    for g in group_add {
        additional.push(find_group(g)?);
    }
    // Like runc under dockerd, the primary group is also a supplementary group.
    if !additional.contains(&gid) {
        additional.insert(0, gid);
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nextra:x:2000:web\n",
        )
        .unwrap();
        let u = resolve_user(dir.path(), "web", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
            (1000, 1001, vec![1001, 2000], "/home/web")
        );
        let u = resolve_user(dir.path(), "1234:extra", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 2000));
        assert_eq!(resolve_user(dir.path(), "", &[]).unwrap().uid, 0);
        assert!(resolve_user(dir.path(), "nobody", &[]).is_err());
    }
}
