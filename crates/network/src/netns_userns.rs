//! A network namespace owned by a new user namespace, both pinned by bind mounts, for
//! containers under `--userns-remap`: the container's runtime joins that user namespace
//! and then the network namespace, which only works when the user namespace owns it (a
//! process in a child user namespace holds no capability over the host's namespaces).
//! Owning it also lets the container mount sysfs, as it would with a namespace of its own.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;

use crate::netns::{in_netns, remove_netns, set_loopback_up, NetnsError};

/// Creates a user namespace with the given `uid_map` and `gid_map` (the text written to
/// `/proc/PID/uid_map`, e.g. `"0 100000 65536\n"`) and a network namespace it owns, pins
/// them at `userns_path` and `netns_path` (creating both files and their directories),
/// and brings the network namespace's `lo` up. Fails if either path already holds a
/// namespace; on other failures neither pin is left behind.
pub fn create_netns_in_userns(
    netns_path: &Path,
    userns_path: &Path,
    uid_map: &str,
    gid_map: &str,
) -> Result<(), NetnsError> {
    for (i, p) in [netns_path, userns_path].into_iter().enumerate() {
        if let Err(e) = create_pin_file(p) {
            if i == 1 {
                let _ = fs::remove_file(netns_path);
            }
            return Err(e);
        }
    }
    let result = pin_both(netns_path, userns_path, uid_map, gid_map).and_then(|()| {
        in_netns(netns_path, set_loopback_up)?.map_err(|source| NetnsError::Io {
            path: netns_path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = remove_netns(netns_path);
        let _ = remove_netns(userns_path);
    }
    result
}

/// Creates the empty file a namespace is bind-mounted on; fails if it exists.
fn create_pin_file(p: &Path) -> Result<(), NetnsError> {
    let io_err = |source| NetnsError::Io {
        path: p.to_path_buf(),
        source,
    };
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(io_err)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(io_err)?;
    Ok(())
}

fn pin_both(
    netns_path: &Path,
    userns_path: &Path,
    uid_map: &str,
    gid_map: &str,
) -> Result<(), NetnsError> {
    let sys = |op| {
        move |source| NetnsError::Sys {
            path: userns_path.to_path_buf(),
            op,
            source,
        }
    };
    let pid =
        spawn_parked(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(sys("clone"))?;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let pinned = (|| {
        fs::write(proc.join("uid_map"), uid_map).map_err(|source| NetnsError::Io {
            path: proc.join("uid_map"),
            source,
        })?;
        fs::write(proc.join("gid_map"), gid_map).map_err(|source| NetnsError::Io {
            path: proc.join("gid_map"),
            source,
        })?;
        for (ns, target) in [("ns/user", userns_path), ("ns/net", netns_path)] {
            mount(
                Some(&proc.join(ns)),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind mount"))?;
        }
        Ok(())
    })();
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
    pinned
}

/// Clones a child into new namespaces (`flags`) that waits to be killed; returns its pid.
fn spawn_parked(flags: CloneFlags) -> nix::Result<nix::unistd::Pid> {
    let mut stack = vec![0u8; 64 * 1024];
    let park: nix::sched::CloneCb = Box::new(|| loop {
        nix::unistd::pause();
    });
    // SAFETY: the child shares no memory with the parent (no CLONE_VM) and only calls
    // pause(2), which is async-signal-safe, until the parent kills it.
    unsafe { nix::sched::clone(park, &mut stack, flags, Some(libc::SIGCHLD)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The pinned network namespace can be joined after the pinned user namespace (it is
    /// owned by it), whose map is the one given; removing both pins works.
    #[test]
    fn netns_is_owned_by_the_pinned_userns() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (net, user) = (dir.path().join("net"), dir.path().join("user"));
        create_netns_in_userns(&net, &user, "0 300000 1000\n", "0 300000 1000\n").unwrap();
        assert!(create_netns_in_userns(&net, &user, "0 1 1\n", "0 1 1\n").is_err());
        let out = Command::new("nsenter")
            .arg(format!("--user={}", user.display()))
            .arg(format!("--net={}", net.display()))
            .args(["cat", "/proc/self/uid_map", "/proc/net/dev"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(&fields[..3], ["0", "300000", "1000"], "{text}");
        // Only the loopback device: the namespace joined is the new one.
        let devices: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(devices.len(), 1, "{text}");
        assert!(devices[0].trim_start().starts_with("lo:"), "{text}");
        remove_netns(&net).unwrap();
        remove_netns(&user).unwrap();
        assert!(!net.exists() && !user.exists());
    }
}
