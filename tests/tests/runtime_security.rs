//! Security defaults and options seen from inside the container: capabilities, seccomp,
//! masked and read-only /proc, no-new-privileges, privileged, read-only rootfs, tmpfs,
//! devices, extra groups and `--init`.
#[macro_use]
mod common;

use common::*;

both_runtimes!(
    default_confinement_matches_docker,
    capability_and_seccomp_options,
    a_seccomp_profile_file_is_applied,
    filesystem_options,
    init_reaps_zombies,
);

fn run(d: &Daemon, rt: &str, img: &str, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "--rm", "--runtime", rt];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[img, "sh", "-c", script]);
    d.docker(&args)
}

fn run_ok(d: &Daemon, rt: &str, img: &str, flags: &[&str], script: &str) -> String {
    let out = run(d, rt, img, flags, script);
    ok(out, &[script])
}

fn cap_eff(d: &Daemon, rt: &str, img: &str, flags: &[&str]) -> u64 {
    let s = run_ok(d, rt, img, flags, "grep CapEff /proc/self/status | cut -f2");
    u64::from_str_radix(s.trim(), 16).unwrap()
}

/// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER_DEFAULT_CAPS: u64 = 0xa80425fb;

fn default_confinement_matches_docker(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    assert_eq!(cap_eff(&d, rt, &img, &[]), DOCKER_DEFAULT_CAPS);
    // The default seccomp profile refuses unshare and mount.
    let out = run(&d, rt, &img, &[], "unshare -U true");
    assert!(!out.status.success(), "{:?}", text(&out));
    let out = run(&d, rt, &img, &[], "mkdir /m && mount -t tmpfs none /m");
    assert!(!out.status.success(), "{:?}", text(&out));
    // Masked and read-only /proc paths.
    let s = run_ok(
        &d,
        rt,
        &img,
        &[],
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname && echo wrote; \
         grep -c . /proc/self/status >/dev/null && echo ok; grep NoNewPrivs /proc/self/status | cut -f2",
    );
    assert_eq!(s.lines().collect::<Vec<_>>(), ["0", "0", "ok", "0"], "{s}");
}

fn capability_and_seccomp_options(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    const NET_ADMIN: u64 = 1 << 12;
    const CHOWN: u64 = 1 << 0;
    let caps = cap_eff(
        &d,
        rt,
        &img,
        &["--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN"],
    );
    assert_eq!(caps, (DOCKER_DEFAULT_CAPS | NET_ADMIN) & !CHOWN);
    assert_eq!(cap_eff(&d, rt, &img, &["--cap-drop", "ALL"]), 0);
    // Privileged: every capability, no seccomp, writable /proc/sys, host devices.
    // Privileged grants what the daemon itself may grant (its bounding set).
    let bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(cap_eff(&d, rt, &img, &["--privileged"]), bounding);
    run_ok(
        &d,
        rt,
        &img,
        &["--privileged"],
        "unshare -U true && ls /dev/loop-control",
    );
    let s = run_ok(
        &d,
        rt,
        &img,
        &["--security-opt", "no-new-privileges"],
        "grep NoNewPrivs /proc/self/status | cut -f2",
    );
    assert_eq!(s, "1");
    // Unconfined seccomp lets the syscall through (user namespaces need no capability).
    let out = run(
        &d,
        rt,
        &img,
        &["--security-opt", "seccomp=unconfined"],
        "unshare -U true",
    );
    assert!(out.status.success(), "{:?}", text(&out));
}

fn filesystem_options(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let s = run_ok(
        &d,
        rt,
        &img,
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        "touch /x 2>/dev/null && echo rootfs-writable; touch /scratch/y && echo tmpfs-ok; \
         df -k /scratch | tail -1 | awk '{print $2}'",
    );
    assert_eq!(s.lines().collect::<Vec<_>>(), ["tmpfs-ok", "1024"], "{s}");
    let s = run_ok(
        &d,
        rt,
        &img,
        &[
            "--device",
            "/dev/null:/dev/mynull",
            "--group-add",
            "1234",
            "--group-add",
            "4321",
        ],
        "echo hi > /dev/mynull && echo dev-ok; id -G",
    );
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "dev-ok", "{s}");
    let groups: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(groups.contains(&"1234"), "{s}");
    assert!(groups.contains(&"4321"), "{s}");
    // A group the image does not know fails the start, and `--rm` still removes it.
    let out = run(
        &d,
        rt,
        &img,
        &["--name", "nogroup", "--group-add", "no-such-group"],
        "true",
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("no-such-group"), "{:?}", text(&out));
    assert!(!d.docker(&["inspect", "nogroup"]).status.success());
}

fn init_reaps_zombies(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // The shell's child forks a grandchild and exits: the orphan is re-parented to PID 1,
    // which must reap it when it dies.
    let s = run_ok(
        &d,
        rt,
        &img,
        &["--init"],
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; (sh -c 'sleep 0.2 &' &); sleep 1; \
         grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l",
    );
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].starts_with("/sbin/docker-init -- sh -c"), "{s}");
    assert_eq!(lines[1].trim(), "0", "{s}");
    assert_eq!(
        d.docker_ok(&["create", "--init", "--runtime", rt, &img, "true"])
            .len(),
        64
    );
}

fn a_seccomp_profile_file_is_applied(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // The CLI reads the file and sends its JSON; everything but mkdir is allowed.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = run(
        &d,
        rt,
        &img,
        &["--security-opt", &opt],
        "touch /tmp/f && echo touched; mkdir /tmp/d",
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
    assert_eq!(stdout.trim(), "touched");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // inspect keeps the profile the container was created with.
    let id = d.docker_ok(&[
        "create",
        "--runtime",
        rt,
        "--security-opt",
        &opt,
        &img,
        "true",
    ]);
    let opts = d.docker_ok(&["inspect", "-f", "{{json .HostConfig.SecurityOpt}}", &id]);
    assert!(opts.contains("SCMP_ACT_ERRNO"), "{opts}");
    d.docker_ok(&["rm", &id]);
    // A profile that is not valid JSON is refused before anything runs.
    std::fs::write(&profile, "{not json").unwrap();
    let out = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--security-opt",
        &opt,
        &img,
        "true",
    ]);
    assert!(!out.status.success());
}
