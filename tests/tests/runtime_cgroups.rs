//! No cgroup directory outlives its container, in any v1 hierarchy (named ones included)
//! or the v2 one: after `rm -f`, `--rm`, a failed start, a stop, and when the container's
//! shim was killed (with the daemon running, or with it down), on both runtimes.
#[macro_use]
mod common;

use std::path::PathBuf;

use common::Daemon;

both_runtimes!(
    removed_containers_leave_no_cgroup,
    a_container_whose_shim_died_leaves_no_process_or_cgroup,
);

/// The test daemons' `--cgroup-parent`.
const PARENT: &str = "berth-test";

/// Mount points of every cgroup and cgroup2 hierarchy.
fn hierarchies() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The cgroup directories of container `id` that exist.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(PARENT).join(id))
        .filter(|p| p.exists())
        .collect()
}

fn assert_no_cgroup(id: &str, what: &str) {
    let left = cgroup_dirs(id);
    assert!(left.is_empty(), "{what}: cgroups left behind: {left:?}");
}

use common::eventually;

fn alive(pid: &str) -> bool {
    // A zombie has no cgroup and no memory map left; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn cid(d: &Daemon, name: &str) -> String {
    d.docker_ok(&["inspect", "-f", "{{.Id}}", name])
}

fn removed_containers_leave_no_cgroup(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // A running container has its cgroups where the test looks for them.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "cg1",
        &img,
        "sleep",
        "1000",
    ]);
    let id = cid(&d, "cg1");
    assert!(
        cgroup_dirs(&id)
            .iter()
            .any(|p| p.starts_with("/sys/fs/cgroup/pids") || p.join("cgroup.controllers").exists()),
        "no cgroup found for a running container: {:?}",
        cgroup_dirs(&id)
    );
    // exec'd processes and a paused freezer do not keep them alive.
    d.docker_ok(&["exec", "-d", "cg1", "sleep", "1000"]);
    d.docker_ok(&["pause", "cg1"]);
    d.docker_ok(&["rm", "-f", "cg1"]);
    assert_no_cgroup(&id, "rm -f");

    // --rm
    let cidfile = d.dir.path().join("cidfile");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--rm",
        "--cidfile",
        cidfile.to_str().unwrap(),
        &img,
        "true",
    ]);
    let id = std::fs::read_to_string(&cidfile).unwrap();
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
    assert_no_cgroup(id.trim(), "--rm");

    // A failed start, then its removal.
    let out = d.docker(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "cg2",
        &img,
        "/no/such/binary",
    ]);
    assert!(!out.status.success());
    let id = cid(&d, "cg2");
    assert_no_cgroup(&id, "failed start");
    d.docker_ok(&["rm", "cg2"]);
    assert_no_cgroup(&id, "rm after a failed start");

    // Stop, then rm.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "cg3",
        &img,
        "sleep",
        "1000",
    ]);
    let id = cid(&d, "cg3");
    d.docker_ok(&["stop", "-t", "0", "cg3"]);
    assert_no_cgroup(&id, "stop");
    d.docker_ok(&["rm", "cg3"]);
    assert_no_cgroup(&id, "rm of a stopped container");
}

/// SIGKILLs the shim of container `id` (its pid file in the daemon's exec root).
fn kill_shim(d: &Daemon, id: &str) {
    let pidfile = d.exec_root.join("c").join(&id[..16]).join("shim.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    eventually("the shim to go", || !alive(&pid.to_string()));
}

fn a_container_whose_shim_died_leaves_no_process_or_cgroup(rt: &str) {
    let mut d = Daemon::start();
    let img = d.pull("busybox:1");
    // The daemon is up when the shim dies: the exit is recorded and the orphan killed.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "sd1",
        &img,
        "sleep",
        "1000",
    ]);
    let id = cid(&d, "sd1");
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "sd1"]);
    kill_shim(&d, &id);
    eventually("the exit to be recorded", || {
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "sd1"]) == "false"
    });
    assert!(!alive(&pid), "the container's process outlived its shim");
    assert_no_cgroup(&id, "shim killed");
    d.docker_ok(&["rm", "sd1"]);
    assert_no_cgroup(&id, "rm after the shim was killed");

    // The daemon is down when the shim dies: the next daemon cleans up.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "sd2",
        &img,
        "sleep",
        "1000",
    ]);
    let id = cid(&d, "sd2");
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "sd2"]);
    d.kill();
    kill_shim(&d, &id);
    d.restart();
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "sd2"]),
        "false"
    );
    assert!(!alive(&pid), "the container's process outlived its shim");
    assert_no_cgroup(&id, "shim killed while the daemon was down");
    d.docker_ok(&["rm", "sd2"]);
}
