//! Removing a container's cgroups in every hierarchy once it is gone.
//!
//! The runtime (libcontainer or runc, inside the shim) creates `<parent>/<id>` in every
//! mounted cgroup hierarchy and normally deletes it when the init is reaped. When the shim
//! itself is gone (killed, or its daemon and shim were killed together) nothing deletes
//! them, and the container's processes, reparented to the host's init, keep running in
//! them: the engine then records an exit while the process lives on, and the directories
//! stay behind, empty once the orphans end. So the engine removes them itself whenever it
//! tears a container down (exit, removal, failed start): it thaws the cgroup, kills what is
//! left in it, and removes the directories (deepest first) in every v1 hierarchy
//! (including named ones such as `name=systemd`) and the v2 one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Errors removing cgroup directories.
#[derive(Debug, thiserror::Error)]
pub enum CgroupCleanupError {
    /// The mount table could not be read.
    #[error("reading the mount table {path}: {source}")]
    Mounts {
        /// the file read
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("removing cgroup {path}: {source}")]
    Remove {
        /// the directory
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// How long processes left in a cgroup get to die after SIGKILL before giving up.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// The mount points of every cgroup (v1) and cgroup2 hierarchy, from `/proc/self/mounts`.
pub fn hierarchies() -> Result<Vec<PathBuf>, CgroupCleanupError> {
    let path = PathBuf::from("/proc/self/mounts");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| CgroupCleanupError::Mounts { path, source })?;
    Ok(parse_hierarchies(&text))
}

fn parse_hierarchies(mounts: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(target), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if fstype == "cgroup" || fstype == "cgroup2" {
            let p = PathBuf::from(unescape(target));
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// `/proc/mounts` writes spaces, tabs, newlines and backslashes as octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The directory of `<parent>/<name>` in each hierarchy (whether or not it exists).
pub fn dirs_of(hierarchies: &[PathBuf], parent: &str, name: &str) -> Vec<PathBuf> {
    let parent = parent.trim_matches('/');
    hierarchies
        .iter()
        .map(|h| {
            let base = if parent.is_empty() {
                h.clone()
            } else {
                h.join(parent)
            };
            base.join(name)
        })
        .collect()
}

/// Pids listed in `cgroup.procs` of `dir` and of its descendants.
fn members(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for d in subtree(dir) {
        if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

/// `dir` and every cgroup below it, deepest first.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect(&e.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// Lets frozen processes run again so that SIGKILL takes effect (v1 freezer, v2 cgroup.freeze).
fn thaw(dir: &Path) {
    for d in subtree(dir) {
        let v1 = d.join("freezer.state");
        if v1.exists() {
            let _ = std::fs::write(&v1, "THAWED");
        }
        let v2 = d.join("cgroup.freeze");
        if v2.exists() {
            let _ = std::fs::write(&v2, "0");
        }
    }
}

/// Kills every process left in `dirs` and removes the directories (and any cgroups below
/// them). Missing directories are fine. Processes get SIGKILL and up to 10 s to go; an
/// error names the first directory that could not be removed.
pub fn remove(dirs: &[PathBuf]) -> Result<(), CgroupCleanupError> {
    let present: Vec<&PathBuf> = dirs.iter().filter(|d| d.is_dir()).collect();
    if present.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        let mut pids: HashSet<i32> = HashSet::new();
        for d in &present {
            pids.extend(members(d));
        }
        if pids.is_empty() {
            break;
        }
        for d in &present {
            thaw(d);
            let kill = d.join("cgroup.kill");
            if kill.exists() {
                let _ = std::fs::write(&kill, "1");
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if start.elapsed() > KILL_DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first_err = None;
    for d in present {
        for sub in subtree(d) {
            if let Err(e) = rmdir_retrying(&sub) {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// rmdir, retried briefly on EBUSY: a killed process leaves its cgroup a moment after
/// its signal is delivered.
fn rmdir_retrying(dir: &Path) -> Result<(), CgroupCleanupError> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(2) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupCleanupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// At daemon start: removes the empty cgroups under `parent` in every hierarchy that belong
/// to no running container of this daemon (`keep`) and were created more than `min_age`
/// ago (other daemons may share the parent, and a runtime creates a cgroup a moment
/// before it moves the container's init into it). Returns how many directories went.
pub fn prune_stale(parent: &str, keep: &HashSet<String>, min_age: Duration) -> usize {
    let Ok(hs) = hierarchies() else {
        return 0;
    };
    let parent = parent.trim_matches('/');
    if parent.is_empty() {
        // Never sweep the root of a hierarchy.
        return 0;
    }
    let mut removed = 0;
    for h in hs {
        let Ok(rd) = std::fs::read_dir(h.join(parent)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if keep.contains(&name) || !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let dir = e.path();
            let old = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age >= min_age);
            if !old || !members(&dir).is_empty() {
                continue;
            }
            for sub in subtree(&dir) {
                if std::fs::remove_dir(&sub).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// Empty cgroups of unknown containers younger than this are left alone at daemon start.
const STALE_AGE: Duration = Duration::from_secs(60);

impl crate::Engine {
    /// Kills whatever is left in container `id`'s cgroups and removes them in every
    /// hierarchy. Errors are logged: the container is gone either way.
    pub(crate) async fn remove_cgroups(&self, id: &str) {
        let parent = self.cfg.cgroup_parent.clone();
        let id = id.to_string();
        let done = tokio::task::spawn_blocking(move || {
            let hs = hierarchies()?;
            remove(&dirs_of(&hs, &parent, &id))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("cgroup removal task: {e}"),
        }
    }

    /// At daemon start: removes empty, stale cgroups under the cgroup parent that belong
    /// to no running container of this daemon.
    pub(crate) fn prune_stale_cgroups(&self) {
        let running: HashSet<String> = self
            .db
            .all::<crate::model::ContainerRecord>("containers")
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.state.running)
            .map(|c| c.id)
            .collect();
        let n = prune_stale(&self.cfg.cgroup_parent, &running, STALE_AGE);
        if n > 0 {
            tracing::info!("removed {n} stale cgroup directories");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_come_from_cgroup_mounts_only() {
        let mounts = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                      cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n\
                      cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n\
                      tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n\
                      cgroup /odd\\040dir cgroup rw,name=x 0 0\n";
        assert_eq!(
            parse_hierarchies(mounts),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/pids"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/odd dir"),
            ]
        );
    }

    #[test]
    fn dirs_join_parent_and_name_in_each_hierarchy() {
        let hs = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        assert_eq!(
            dirs_of(&hs, "/berth/", "id1"),
            vec![PathBuf::from("/a/berth/id1"), PathBuf::from("/b/berth/id1")]
        );
        assert_eq!(dirs_of(&hs, "", "id1")[0], PathBuf::from("/a/id1"));
    }

    #[test]
    fn removing_missing_dirs_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("nope");
        remove(&[gone]).unwrap();
    }
}
