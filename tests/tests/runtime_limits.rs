//! Resource limits seen from inside the container (cgroup v1 files here, v2 when the host
//! has it) and their effects: OOM kills, contained fork bombs, rlimits, /dev/shm size.
#[macro_use]
mod common;

use common::*;

both_runtimes!(
    cgroup_limits_are_visible_inside,
    memory_limit_ends_in_an_oom_kill,
    ulimits_and_shm_size,
    a_fork_bomb_is_contained_by_pids_limit,
);

/// Runs `sh -c script` in a fresh container with `flags`, returning its stdout.
fn run_sh(d: &Daemon, rt: &str, img: &str, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm", "--runtime", rt];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[img, "sh", "-c", script]);
    d.docker_ok(&args)
}

fn cgroup_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").exists()
}

fn cgroup_limits_are_visible_inside(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let flags = [
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "77",
    ];
    let out = if cgroup_v1() {
        run_sh(
            &d,
            rt,
            &img,
            &flags,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
             /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo noswap; \
             cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
             /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus \
             /sys/fs/cgroup/pids/pids.max",
        )
    } else {
        run_sh(
            &d,
            rt,
            &img,
            &flags,
            "cat /sys/fs/cgroup/memory.max; echo $(( $(cat /sys/fs/cgroup/memory.swap.max) + 67108864 )); \
             cat /sys/fs/cgroup/cpu.max | tr ' ' '\\n'; echo 512; cat /sys/fs/cgroup/cpuset.cpus /sys/fs/cgroup/pids.max",
        )
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "67108864", "{out}");
    if lines[1] != "noswap" {
        assert_eq!(lines[1], "134217728", "{out}");
    }
    assert_eq!(&lines[2..], ["50000", "100000", "512", "0", "77"], "{out}");
    // inspect shows what was asked for.
    d.docker_ok(&[
        "create",
        "--runtime",
        rt,
        "--name",
        "limited",
        "--memory",
        "64m",
        "--cpus",
        "1.5",
        "--pids-limit",
        "50",
        &img,
        "true",
    ]);
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
            "limited"
        ]),
        "67108864 1500000000 50"
    );
}

fn memory_limit_ends_in_an_oom_kill(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // Filling a tmpfs is charged to the cgroup; `tail /dev/zero` grows without bound.
    let out = d.docker(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "hog",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        &img,
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137), "{:?}", text(&out));
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "hog"
        ]),
        "true 137"
    );
    // A container well within its limit is not marked.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "calm",
        "--memory",
        "16m",
        &img,
        "true",
    ]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.OOMKilled}}", "calm"]),
        "false"
    );
}

/// The host path of a running container's pids cgroup (v1 controller dir or v2 unified dir),
/// found from its init's membership.
fn pids_cgroup(d: &Daemon, name: &str) -> std::path::PathBuf {
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", name]);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = membership
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()));
    match v1 {
        Some(p) => std::path::PathBuf::from(format!("/sys/fs/cgroup/pids{p}")),
        None => {
            let p = membership
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap();
            std::path::PathBuf::from(format!("/sys/fs/cgroup{p}"))
        }
    }
}

use common::eventually;

/// A fork bomb in a subshell: busybox sh gives up (the subshell exits) on the first failed
/// fork, so the line after it runs only once forking has failed inside the container.
const BOMB: &str = "( while :; do sleep 100000 & done ) 2>/dev/null; echo forks-failed";

fn a_fork_bomb_is_contained_by_pids_limit(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // 1. The bomb hits the limit; the shell (under --init, so the dead are reaped) then
    //    kills the sleepers with the kill builtin (no fork needed) and stays up.
    let script = format!("{BOMB}; kill -9 -1; echo cleared; exec sleep 100000");
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "bomb",
        "--init",
        "--pids-limit",
        "32",
        &img,
        "sh",
        "-c",
        &script,
    ]);
    let cg = pids_cgroup(&d, "bomb");
    let read = |f: &str| {
        std::fs::read_to_string(cg.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read("pids.max"), "32");
    eventually("the bomb to be stopped by the limit", || {
        d.docker_ok(&["logs", "bomb"]).contains("cleared")
    });
    // The kernel refused forks in the container's cgroup, and the host still forks fine.
    let failed: u64 = read("pids.events")
        .strip_prefix("max ")
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(failed > 0, "no fork was refused");
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    // Once the sleepers are gone the container answers exec again.
    eventually("exec into the container", || {
        d.docker(&["exec", "bomb", "echo", "alive"])
            .status
            .success()
    });
    d.docker_ok(&["rm", "-f", "bomb"]);

    // 2. A container still full of processes goes away at once and completely with rm -f.
    let script = format!("{BOMB}; exec sleep 100000");
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "full",
        "--pids-limit",
        "32",
        &img,
        "sh",
        "-c",
        &script,
    ]);
    let cg = pids_cgroup(&d, "full");
    eventually("the bomb to fill the container", || {
        d.docker_ok(&["logs", "full"]).contains("forks-failed")
    });
    let tasks: Vec<String> = std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(tasks.len() >= 30, "{tasks:?}");
    d.docker_ok(&["rm", "-f", "full"]);
    for t in &tasks {
        assert!(
            !std::path::Path::new(&format!("/proc/{t}")).exists() || zombie_or_gone(t),
            "{t} survived rm -f"
        );
    }
    assert!(!cg.exists(), "{} left behind", cg.display());
}

/// True if `pid` no longer runs (a zombie waiting for a reaper counts as gone).
fn zombie_or_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

fn ulimits_and_shm_size(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let out = run_sh(
        &d,
        rt,
        &img,
        &[
            "--ulimit",
            "nofile=1000:2000",
            "--ulimit",
            "nproc=500",
            "--shm-size",
            "32m",
        ],
        "ulimit -n; ulimit -Hn; ulimit -u; df -k /dev/shm | tail -1 | awk '{print $2}'",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000", "2000", "500", "32768"],
        "{out}"
    );
    // The default /dev/shm is 64 MiB, and the default rlimits are the daemon's own.
    let out = run_sh(
        &d,
        rt,
        &img,
        &[],
        "df -k /dev/shm | tail -1 | awk '{print $2}'; ulimit -Hn",
    );
    let hard = rustix_hard_nofile();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["65536".to_string(), hard],
        "{out}"
    );
    // Asking for more than the daemon's hard limit fails clearly.
    let too_high = format!("nofile={0}:{0}", 1u64 << 30);
    let out = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--ulimit",
        &too_high,
        &img,
        "true",
    ]);
    assert!(!out.status.success());
    let (_, err) = text(&out);
    assert!(err.contains("nofile"), "{err}");
}

fn rustix_hard_nofile() -> String {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r.rlim_max.to_string()
}
