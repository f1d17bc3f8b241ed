//! Issue 2: the container lifecycle driven by the real docker CLI against a real berthd
//! and a real registry.

#[macro_use]
mod common;

use common::{shared_registry, text, Daemon};

both_runtimes!(
    run_prints_output_and_exit_codes,
    image_config_and_run_flags_are_honoured,
    detached_container_lifecycle,
    stop_escalates_to_sigkill_after_timeout,
    create_then_start_attached,
    interactive_stdin_reaches_the_container,
    a_tty_container_runs_with_a_terminal,
    containers_survive_a_daemon_restart,
    two_containers_share_image_layers,
);

#[test]
fn ping_version_and_info_show_berth() {
    let d = Daemon::start();
    let v = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.Platform.Name}} {{.Server.APIVersion}}",
    ]);
    assert!(v.starts_with("Berth Engine 1.4"), "{v}");
    let info = d.docker_ok(&["info", "--format", "{{.Driver}} {{.OSType}}"]);
    assert_eq!(info, "overlay2 linux");
    // Versioned and unversioned paths, HEAD and GET.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-I",
            "--unix-socket",
            d.socket.to_str().unwrap(),
            "http://x/v1.44/_ping",
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("api-version: 1.4"), "{head}");
}

fn run_prints_output_and_exit_codes(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    assert_eq!(
        d.docker_ok(&["run", "--runtime", rt, "--rm", &img, "echo", "hello"]),
        "hello"
    );
    let out = d.docker(&["run", "--runtime", rt, "--rm", &img, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    // stderr is kept apart from stdout.
    let out = d.docker(&[
        "run",
        "--runtime",
        rt,
        "--rm",
        &img,
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let (o, e) = text(&out);
    assert_eq!((o.trim(), e.trim()), ("out", "err"));
    // --rm removed them all.
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

fn image_config_and_run_flags_are_honoured(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let env_file = d.dir.path().join("env");
    std::fs::write(&env_file, "FROM_FILE=yes\n").unwrap();
    let out = d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "box",
        &img,
        "sh",
        "-c",
        "echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname)",
    ]);
    assert_eq!(out, "1 yes /tmp 1000:1000 box");
    let out = d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--rm",
        "--entrypoint",
        "echo",
        &img,
        "via",
        "entrypoint",
    ]);
    assert_eq!(out, "via entrypoint");
    let out = d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--rm",
        "-u",
        "web",
        &img,
        "id",
        "-un",
    ]);
    assert_eq!(out, "web");
}

fn detached_container_lifecycle(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let id = d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        &img,
        "sh",
        "-c",
        "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert_eq!(id.len(), 64);
    assert!(d
        .docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .starts_with("web Up"));
    assert_eq!(
        d.docker_ok(&["ps", "-q", "--filter", "label=tier=front"]),
        &id[..12]
    );
    assert_eq!(d.docker_ok(&["ps", "-q", "--filter", "name=nomatch"]), "");
    let state = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}} {{.Config.Labels.tier}}",
        "web",
    ]);
    assert_eq!(state, "running true front");
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", "web"]),
        rt
    );
    let pid: i64 = d
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .parse()
        .unwrap();
    assert!(pid > 0);
    // Its own namespaces.
    for ns in ["mnt", "pid", "ipc", "uts", "net"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(mine, theirs, "{ns} namespace is shared with the host");
    }
    // logs
    let mut logs = String::new();
    for _ in 0..50 {
        logs = d.docker_ok(&["logs", "web"]);
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "started");
    assert!(d.docker_ok(&["logs", "-t", "web"]).contains("Z started"));
    // stop: SIGTERM handled by the trap.
    d.docker_ok(&["stop", "web"]);
    let state = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web",
    ]);
    assert_eq!(state, "exited 0");
    assert_eq!(d.docker_ok(&["logs", "--tail", "1", "web"]), "bye");
    assert_eq!(d.docker_ok(&["ps", "-q"]), "");
    assert_eq!(d.docker_ok(&["ps", "-aq"]), &id[..12]);
    // start again, kill with a signal, wait.
    d.docker_ok(&["start", "web"]);
    d.docker_ok(&["kill", "-s", "KILL", "web"]);
    assert_eq!(d.docker_ok(&["wait", "web"]), "137");
    d.docker_ok(&["restart", "web"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "true"
    );
    // rm refuses a running container, rm -f removes it.
    let out = d.docker(&["rm", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("container is running"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&["rm", "-f", "web"]);
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

fn stop_escalates_to_sigkill_after_timeout(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "stubborn",
        &img,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    d.docker_ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]),
        "137"
    );
}

fn create_then_start_attached(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "create",
        "--runtime",
        rt,
        "--name",
        "later",
        &img,
        "echo",
        "attached output",
    ]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Status}}", "later"]),
        "created"
    );
    assert_eq!(d.docker_ok(&["start", "-a", "later"]), "attached output");
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "later"
        ]),
        "exited 0"
    );
}

#[test]
fn unknown_names_and_conflicts_answer_like_docker() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let out = d.docker(&["inspect", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("No such object: nope") || text(&out).1.contains("No such container"),
        "{:?}",
        text(&out)
    );
    let out = d.docker(&["stop", "nope"]);
    assert!(
        text(&out).1.contains("No such container: nope"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&["create", "--name", "twice", &img, "true"]);
    let out = d.docker(&["create", "--name", "twice", &img, "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is already in use"),
        "{:?}",
        text(&out)
    );
    let out = d.docker(&["rmi", "does-not-exist:1"]);
    assert!(text(&out).1.contains("No such image"), "{:?}", text(&out));
}

fn interactive_stdin_reaches_the_container(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let mut child = std::process::Command::new("docker")
        .args([
            "-H",
            &d.host(),
            "run",
            "--runtime",
            rt,
            "--rm",
            "-i",
            &img,
            "sh",
            "-c",
            "read line; echo got:$line",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "got:ping");
}

fn a_tty_container_runs_with_a_terminal(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    // `script` gives docker a terminal of its own, as a user's shell would.
    let cmd = format!(
        "docker -H {} run --runtime {rt} --rm -t {img} sh -c 'test -t 0 && echo is-a-tty; stty size'",
        d.host()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("is-a-tty"), "{s}");
}

fn containers_survive_a_daemon_restart(rt: &str) {
    let mut d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "keeper",
        &img,
        "sh",
        "-c",
        "echo one; sleep 1000",
    ]);
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "short",
        &img,
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    d.kill();
    std::thread::sleep(std::time::Duration::from_secs(2));
    d.restart();
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", "keeper"]),
        "true"
    );
    assert_eq!(d.docker_ok(&["logs", "keeper"]), "one");
    assert_eq!(
        d.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "short"
        ]),
        "exited 7"
    );
    d.docker_ok(&["stop", "-t", "1", "keeper"]);
    assert_eq!(d.docker_ok(&["wait", "keeper"]), "137");
}

fn two_containers_share_image_layers(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "ca",
        &img,
        "sleep",
        "100",
    ]);
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "cb",
        &img,
        "sleep",
        "100",
    ]);
    d.docker_ok(&["exec", "ca", "sh", "-c", "echo mine > /tmp/file"]);
    let out = d.docker(&["exec", "cb", "cat", "/tmp/file"]);
    assert!(
        !out.status.success(),
        "a write in one container showed up in the other"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let data = d.data_root().display().to_string();
    let lowers: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(&data) && l.starts_with("overlay"))
        .filter_map(|l| l.split("lowerdir=").nth(1))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(lowers.len(), 2, "{mounts}");
    assert_eq!(
        lowers[0], lowers[1],
        "both containers use the same image layers"
    );
    let _ = shared_registry();
}
