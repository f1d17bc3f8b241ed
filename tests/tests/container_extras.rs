//! The rest of the container API (pause, top, stats, diff, cp, export, commit, update,
//! health checks) driven by the real docker CLI against a real berthd.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::{text, Daemon};

both_runtimes!(
    pause_unpause_and_top,
    stats_show_cpu_memory_and_pids,
    diff_lists_added_changed_and_deleted_paths,
    cp_both_ways_on_running_and_stopped_containers,
    commit_makes_a_runnable_image,
    update_writes_the_cgroup_and_host_config,
    health_checks_go_unhealthy_then_healthy,
);

use common::eventually;

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.docker_ok(&["inspect", "-f", format, name])
}

fn pause_unpause_and_top(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "pz",
        &img,
        "sleep",
        "1000",
    ]);
    let top = d.docker_ok(&["top", "pz"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    assert_eq!(
        top.lines().count(),
        2,
        "only the container's process: {top}"
    );
    let top = d.docker_ok(&["top", "pz", "-o", "pid,comm"]);
    assert!(top.contains("COMMAND") && top.contains("sleep"), "{top}");

    d.docker_ok(&["pause", "pz"]);
    assert_eq!(
        inspect(&d, "pz", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    assert!(d
        .docker_ok(&["ps", "--format", "{{.Status}}"])
        .contains("(Paused)"));
    let out = d.docker(&["exec", "pz", "true"]);
    assert!(
        !out.status.success(),
        "exec in a paused container must fail"
    );
    let out = d.docker(&["pause", "pz"]);
    assert!(text(&out).1.contains("already paused"), "{:?}", text(&out));
    // The process is frozen: its state in the host's /proc is D or T... or at least
    // the freezer says so through the engine's state.
    d.docker_ok(&["unpause", "pz"]);
    assert_eq!(
        inspect(&d, "pz", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    let out = d.docker(&["unpause", "pz"]);
    assert!(text(&out).1.contains("not paused"), "{:?}", text(&out));
    assert_eq!(d.docker_ok(&["exec", "pz", "echo", "ok"]), "ok");
    // Events for both.
    let ev = d.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!("{}", now_secs() + 1),
        "--filter",
        "container=pz",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.contains("pause") && ev.contains("unpause"), "{ev}");
    // A paused container can still be stopped.
    d.docker_ok(&["pause", "pz"]);
    d.docker_ok(&["stop", "-t", "1", "pz"]);
    assert_eq!(inspect(&d, "pz", "{{.State.Status}}"), "exited");
    let out = d.docker(&["top", "pz"]);
    assert!(!out.status.success());
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Reads `n` JSON lines from a streamed GET over the daemon's socket.
fn stream_lines(d: &Daemon, path: &str, n: usize) -> Vec<serde_json::Value> {
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) {
            if v.is_object() {
                out.push(v);
            }
        }
    }
    out
}

fn stats_show_cpu_memory_and_pids(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "st",
        "-m",
        "64m",
        &img,
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & while :; do :; done",
    ]);
    let out = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "st",
    ]);
    let f: Vec<&str> = out.split('|').collect();
    assert_eq!(f.len(), 4, "{out}");
    assert_eq!(f[0], "st");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 1.0, "a busy loop shows CPU use: {out}");
    assert!(f[2].ends_with("/ 64MiB"), "memory limit: {out}");
    assert!(!f[2].starts_with("0B"), "memory in use: {out}");
    assert_eq!(f[3], "3", "sh and its two sleeps, no more: {out}");
    // The streamed API: one frame a second with precpu from the frame before.
    let frames = stream_lines(&d, "/v1.47/containers/st/stats?stream=true", 2);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        frames[1]["precpu_stats"]["cpu_usage"]["total_usage"],
        frames[0]["cpu_stats"]["cpu_usage"]["total_usage"]
    );
    assert_eq!(frames[0]["name"], "/st");
    assert!(
        frames[0]["networks"]["eth0"]["rx_bytes"].is_number(),
        "{}",
        frames[0]
    );
    let one = stream_lines(&d, "/containers/st/stats?stream=false&one-shot=true", 1);
    assert_eq!(one[0]["pids_stats"]["current"], 3);
    // A stopped container answers with zeros instead of an error.
    d.docker_ok(&["stop", "-t", "1", "st"]);
    let out = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.CPUPerc}} {{.PIDs}}",
        "st",
    ]);
    assert_eq!(out, "0.00% 0");
    d.docker_ok(&["rm", "-f", "st"]);
}

fn diff_lists_added_changed_and_deleted_paths(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:v2s2");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "df",
        &img,
        "sh",
        "-c",
        "echo x > /tmp/new && mkdir -p /srv/a/b && rm /bin/ls /etc/layer2 && echo y >> /etc/passwd",
    ]);
    let out = d.docker_ok(&["diff", "df"]);
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "C /bin",
        "D /bin/ls",
        "C /etc",
        "D /etc/layer2",
        "C /etc/passwd",
        "A /srv",
        "A /srv/a",
        "A /srv/a/b",
        "C /tmp",
        "A /tmp/new",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{out}");
    }
    for unwanted in [
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/proc",
        "/sys",
        "/dev",
    ] {
        assert!(
            !lines.iter().any(|l| l.ends_with(&format!(" {unwanted}"))),
            "engine mount point {unwanted} reported:\n{out}"
        );
    }
    // A container that changed nothing has no changes.
    d.docker_ok(&["run", "--runtime", rt, "--name", "none", &img, "true"]);
    assert_eq!(d.docker_ok(&["diff", "none"]), "");
}

fn cp_both_ways_on_running_and_stopped_containers(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let host = d.dir.path().join("cp");
    std::fs::create_dir_all(host.join("dir/sub")).unwrap();
    std::fs::write(host.join("file.txt"), "from the host\n").unwrap();
    std::fs::write(host.join("dir/sub/inner"), "inner\n").unwrap();
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "cpc",
        "-v",
        "cpvol:/data",
        &img,
        "sh",
        "-c",
        "ln -s /etc /data/etclink; echo vol > /data/v; sleep 1000",
    ]);
    eventually("the volume file", || {
        d.docker(&["exec", "cpc", "test", "-f", "/data/v"])
            .status
            .success()
    });
    let h = |p: &str| host.join(p).display().to_string();
    // Into a running container: a file and a directory.
    d.docker_ok(&["cp", &h("file.txt"), "cpc:/tmp/"]);
    d.docker_ok(&["cp", &h("dir"), "cpc:/tmp/copied"]);
    assert_eq!(
        d.docker_ok(&["exec", "cpc", "cat", "/tmp/file.txt"]),
        "from the host"
    );
    assert_eq!(
        d.docker_ok(&["exec", "cpc", "cat", "/tmp/copied/sub/inner"]),
        "inner"
    );
    // Out of it: a file, a directory, and a file in a volume.
    d.docker_ok(&["cp", "cpc:/etc/passwd", &h("passwd")]);
    assert!(std::fs::read_to_string(host.join("passwd"))
        .unwrap()
        .contains("web:x:1000"));
    d.docker_ok(&["cp", "cpc:/tmp/copied", &h("back")]);
    assert_eq!(
        std::fs::read_to_string(host.join("back/sub/inner")).unwrap(),
        "inner\n"
    );
    d.docker_ok(&["cp", "cpc:/data/v", &h("v")]);
    assert_eq!(std::fs::read_to_string(host.join("v")).unwrap(), "vol\n");
    // An absolute symlink is resolved inside the container, never on the host.
    d.docker_ok(&["cp", "cpc:/data/etclink/passwd", &h("via-link")]);
    assert!(std::fs::read_to_string(host.join("via-link"))
        .unwrap()
        .contains("web:x:1000"));
    // Writing through that symlink lands in the container's /etc, not the host's.
    let marker = format!("berth-cp-{}", std::process::id());
    std::fs::write(host.join(&marker), "m\n").unwrap();
    d.docker_ok(&["cp", &h(&marker), "cpc:/data/etclink/"]);
    assert!(!std::path::Path::new("/etc").join(&marker).exists());
    assert_eq!(
        d.docker_ok(&["exec", "cpc", "cat", &format!("/etc/{marker}")]),
        "m"
    );
    // A destination that does not exist yet names the copy; `-` streams a tar.
    d.docker_ok(&["cp", &h("file.txt"), "cpc:/tmp/renamed.txt"]);
    assert_eq!(
        d.docker_ok(&["exec", "cpc", "cat", "/tmp/renamed.txt"]),
        "from the host"
    );
    let out = d.docker(&["cp", "cpc:/etc/passwd", "-"]);
    assert!(out.status.success());
    let mut ar = std::process::Command::new("tar")
        .args(["-tf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let listed = ar.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "passwd");
    let out = d.docker(&["cp", "cpc:/nonexistent", &h("x")]);
    assert!(
        text(&out).1.contains("Could not find the file"),
        "{:?}",
        text(&out)
    );
    // Stopped: the snapshot is mounted for the copy, and unmounted after.
    d.docker_ok(&["stop", "-t", "1", "cpc"]);
    d.docker_ok(&["cp", &h("file.txt"), "cpc:/root/stopped.txt"]);
    d.docker_ok(&["cp", "cpc:/tmp/file.txt", &h("again.txt")]);
    assert_eq!(
        std::fs::read_to_string(host.join("again.txt")).unwrap(),
        "from the host\n"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&d.data_root().display().to_string()),
        "nothing stays mounted for a stopped container"
    );
    d.docker_ok(&["start", "cpc"]);
    assert_eq!(
        d.docker_ok(&["exec", "cpc", "cat", "/root/stopped.txt"]),
        "from the host"
    );
    // Export: the whole filesystem as a tar.
    let tarfile = host.join("export.tar");
    d.docker_ok(&["export", "-o", tarfile.to_str().unwrap(), "cpc"]);
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tarfile)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    for want in [
        "bin/busybox",
        "etc/passwd",
        "tmp/file.txt",
        "root/stopped.txt",
    ] {
        assert!(
            list.lines().any(|l| l.trim_start_matches("./") == want),
            "{want} not in export"
        );
    }
    d.docker_ok(&["rm", "-f", "cpc"]);
}

fn commit_makes_a_runnable_image(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "src",
        "-e",
        "FROM_RUN=1",
        &img,
        "sh",
        "-c",
        "echo committed > /hello && rm /bin/vi",
    ]);
    let id = d.docker_ok(&[
        "commit",
        "--change",
        "CMD [\"cat\", \"/hello\"]",
        "--change",
        "ENV FOO=bar",
        "--change",
        "LABEL made=by-commit",
        "--change",
        "WORKDIR /tmp",
        "-m",
        "a message",
        "-a",
        "tester",
        "src",
        "committed:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        d.docker_ok(&["run", "--runtime", rt, "--rm", "committed:v1"]),
        "committed"
    );
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--runtime",
            rt,
            "--rm",
            "committed:v1",
            "sh",
            "-c",
            "echo $FOO $FROM_RUN $(pwd); test -e /bin/vi || echo novi"
        ]),
        "bar 1 /tmp\nnovi"
    );
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.Config.Labels.made}} {{.Author}} {{.Comment}}",
            "committed:v1"
        ]),
        "by-commit tester a message"
    );
    let layers = |name: &str| {
        d.docker_ok(&["inspect", "-f", "{{len .RootFS.Layers}}", name])
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(layers("committed:v1"), layers(&img) + 1);
    let hist = d.docker_ok(&["history", "--no-trunc", "committed:v1"]);
    assert!(hist.contains("a message"), "{hist}");
    // A running container is committed too (paused meanwhile), and a bad change is refused.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "live",
        &img,
        "sh",
        "-c",
        "echo live > /live; sleep 1000",
    ]);
    eventually("the file", || {
        d.docker(&["exec", "live", "test", "-f", "/live"])
            .status
            .success()
    });
    d.docker_ok(&["commit", "live", "committed:live"]);
    assert_eq!(inspect(&d, "live", "{{.State.Status}}"), "running");
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--runtime",
            rt,
            "--rm",
            "committed:live",
            "cat",
            "/live"
        ]),
        "live"
    );
    let out = d.docker(&["commit", "--change", "RUN true", "live"]);
    assert!(!out.status.success());
    d.docker_ok(&["rm", "-f", "live"]);
}

fn cgroup_file(pid: &str, ctrl: &str, file: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(3, ':').collect();
        if parts[1].split(',').any(|c| c == ctrl) {
            let p = format!("/sys/fs/cgroup/{}{}/{file}", parts[1], parts[2]);
            return std::fs::read_to_string(p).unwrap().trim().to_string();
        }
    }
    // cgroup v2
    let rel = text.lines().find(|l| l.starts_with("0::")).unwrap()[3..].to_string();
    let v2 = match file {
        "memory.limit_in_bytes" => "memory.max",
        "cpu.cfs_quota_us" => "cpu.max",
        other => other,
    };
    std::fs::read_to_string(format!("/sys/fs/cgroup{rel}/{v2}"))
        .unwrap()
        .trim()
        .to_string()
}

fn update_writes_the_cgroup_and_host_config(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "upd",
        &img,
        "sleep",
        "1000",
    ]);
    d.docker_ok(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--restart",
        "on-failure:3",
        "upd",
    ]);
    let pid = inspect(&d, "upd", "{{.State.Pid}}");
    assert_eq!(
        cgroup_file(&pid, "memory", "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_file(&pid, "pids", "pids.max"), "50");
    let quota = cgroup_file(&pid, "cpu", "cpu.cfs_quota_us");
    assert!(quota == "50000" || quota == "50000 100000", "{quota}");
    assert_eq!(
        inspect(
            &d,
            "upd",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "67108864 50 500000000 512 on-failure 3"
    );
    let out = d.docker(&["update", "--memory", "1m", "upd"]);
    assert!(
        text(&out).1.contains("Minimum memory limit"),
        "{:?}",
        text(&out)
    );
    // A stopped container keeps the update for its next start.
    d.docker_ok(&["stop", "-t", "1", "upd"]);
    d.docker_ok(&["update", "--pids-limit", "77", "upd"]);
    d.docker_ok(&["start", "upd"]);
    let pid = inspect(&d, "upd", "{{.State.Pid}}");
    assert_eq!(cgroup_file(&pid, "pids", "pids.max"), "77");
    d.docker_ok(&["rm", "-f", "upd"]);
}

fn health_checks_go_unhealthy_then_healthy(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "cat /tmp/ok",
        "--health-interval",
        "1s",
        "--health-timeout",
        "5s",
        "--health-retries",
        "2",
        &img,
        "sleep",
        "1000",
    ]);
    assert_eq!(
        inspect(&d, "hc", "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD-SHELL","cat /tmp/ok"]"#
    );
    eventually("unhealthy", || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "unhealthy"
    });
    assert!(
        inspect(&d, "hc", "{{.State.Health.FailingStreak}}")
            .parse::<i64>()
            .unwrap()
            >= 2
    );
    let last = inspect(&d, "hc", "{{(index .State.Health.Log 0).Output}}");
    assert!(last.contains("No such file"), "{last}");
    d.docker_ok(&["exec", "hc", "sh", "-c", "echo fine > /tmp/ok"]);
    eventually("healthy", || {
        inspect(&d, "hc", "{{.State.Health.Status}}") == "healthy"
    });
    assert_eq!(inspect(&d, "hc", "{{.State.Health.FailingStreak}}"), "0");
    assert!(d
        .docker_ok(&["ps", "--format", "{{.Status}}"])
        .contains("(healthy)"));
    assert_eq!(
        d.docker_ok(&["ps", "--filter", "health=healthy", "--format", "{{.Names}}"]),
        "hc"
    );
    eventually("the log keeps five results", || {
        inspect(&d, "hc", "{{len .State.Health.Log}}") == "5"
    });
    let ev = d.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!("{}", now_secs() + 1),
        "--filter",
        "container=hc",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.lines().any(|l| l == "health_status: unhealthy"), "{ev}");
    assert!(ev.lines().any(|l| l == "health_status: healthy"), "{ev}");
    // The monitor ends with the container: no more probes after it stops.
    d.docker_ok(&["stop", "-t", "1", "hc"]);
    let n = inspect(&d, "hc", "{{len .State.Health.Log}}");
    assert_eq!(n, "5");
    // --no-healthcheck: no health state at all.
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "nh",
        "--no-healthcheck",
        &img,
        "sleep",
        "1000",
    ]);
    assert_eq!(inspect(&d, "nh", "{{.State.Health}}"), "<nil>");
    d.docker_ok(&["rm", "-f", "hc", "nh"]);
}

/// `tar tvf` of a tar the docker CLI wrote to stdout.
fn tar_listing(tar: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.tar");
    std::fs::write(&path, tar).unwrap();
    let out = std::process::Command::new("tar")
        .arg("tvf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cp_out_and_export_keep_device_numbers() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run", "--name", "devs", &img, "mknod", "/mydev", "c", "1", "3",
    ]);
    let out = d.docker(&["cp", "devs:/mydev", "-"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let listing = tar_listing(&out.stdout);
    assert!(
        listing.starts_with('c') && listing.contains("1,3") && listing.contains("mydev"),
        "{listing}"
    );
    let out = d.docker(&["export", "devs"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let listing = tar_listing(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.ends_with("mydev"))
        .unwrap_or_else(|| panic!("no mydev in the export:\n{listing}"));
    assert!(line.starts_with('c') && line.contains("1,3"), "{line}");
}
