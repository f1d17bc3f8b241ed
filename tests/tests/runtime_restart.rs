//! Restart policies, their back-off, RestartCount, and `--rm`/policies across berthd
//! restarts, with the built-in runtime and with runc.
#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

use common::eventually;

fn inspect(d: &Daemon, name: &str, fmt: &str) -> String {
    d.docker_ok(&["inspect", "-f", fmt, name])
}

/// Kills a container's init from outside (as a crash would), without telling berthd.
fn kill_init(pid: &str) {
    let pid: i32 = pid.parse().unwrap();
    assert!(pid > 0);
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

both_runtimes!(
    on_failure_stops_after_max_retries,
    always_restarts_until_stopped,
    policies_are_honoured_after_a_daemon_restart,
);

fn on_failure_stops_after_max_retries(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let start = Instant::now();
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        &img,
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    eventually("three restarts", || {
        inspect(&d, "flaky", "{{.RestartCount}} {{.State.Status}}") == "3 exited"
    });
    // Docker's back-off: 100 ms, then doubled before each further restart.
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(inspect(&d, "flaky", "{{.State.ExitCode}}"), "3");
    assert_eq!(d.docker_ok(&["logs", "flaky"]).lines().count(), 4);
    // A clean exit is not a failure: no restart.
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "fine",
        "--restart",
        "on-failure",
        &img,
        "true",
    ]);
    assert_eq!(d.docker_ok(&["wait", "fine"]), "0");
    assert_eq!(
        inspect(&d, "fine", "{{.RestartCount}} {{.State.Status}}"),
        "0 exited"
    );
    // `no` never restarts.
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "never",
        "--restart",
        "no",
        &img,
        "false",
    ]);
    assert_eq!(d.docker_ok(&["wait", "never"]), "1");
    assert_eq!(inspect(&d, "never", "{{.RestartCount}}"), "0");
}

fn always_restarts_until_stopped(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "loop",
        "--restart",
        "always",
        &img,
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    eventually("two restarts", || {
        inspect(&d, "loop", "{{.RestartCount}}")
            .parse::<i64>()
            .unwrap()
            >= 2
    });
    assert_eq!(
        inspect(&d, "loop", "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );
    d.docker_ok(&["stop", "-t", "1", "loop"]);
    let count = inspect(&d, "loop", "{{.RestartCount}}");
    assert_eq!(inspect(&d, "loop", "{{.State.Status}}"), "exited");
    // Stopped by the user: it stays down.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(inspect(&d, "loop", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&d, "loop", "{{.RestartCount}}"), count);
    // A crash of a long-running one restarts it.
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        "svc",
        "--restart",
        "unless-stopped",
        &img,
        "sleep",
        "1000",
    ]);
    let pid = inspect(&d, "svc", "{{.State.Pid}}");
    kill_init(&pid);
    eventually("svc restarted", || {
        inspect(&d, "svc", "{{.RestartCount}} {{.State.Running}}") == "1 true"
    });
    assert_ne!(inspect(&d, "svc", "{{.State.Pid}}"), pid);
}

fn policies_are_honoured_after_a_daemon_restart(rt: &str) {
    let mut d = Daemon::start();
    let img = d.pull("busybox:1");
    let run = |name: &str, extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--runtime", rt, "--name", name];
        args.extend_from_slice(extra);
        args.push(&img);
        args.extend_from_slice(cmd);
        d.docker_ok(&args);
    };
    run("crashy", &["--restart", "always"], &["sleep", "1000"]);
    run("tmp", &["--rm"], &["sleep", "1000"]);
    run("kept", &["--restart", "unless-stopped"], &["sleep", "1000"]);
    run("down", &["--restart", "unless-stopped"], &["sleep", "1000"]);
    run("alw", &["--restart", "always"], &["sleep", "1000"]);
    d.docker_ok(&["stop", "-t", "0", "down"]);
    d.docker_ok(&["stop", "-t", "0", "alw"]);
    let crashy = inspect(&d, "crashy", "{{.State.Pid}}");
    let tmp = inspect(&d, "tmp", "{{.State.Pid}}");
    d.kill();
    // Both exit while no daemon is up.
    kill_init(&crashy);
    kill_init(&tmp);
    let gone = |pid: &str| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    eventually("inits gone", || gone(&crashy) && gone(&tmp));
    d.restart();
    eventually("crashy restarted", || {
        inspect(&d, "crashy", "{{.State.Running}} {{.RestartCount}}") == "true 1"
    });
    eventually("--rm honoured", || {
        !d.docker(&["inspect", "tmp"]).status.success()
    });
    assert_eq!(inspect(&d, "kept", "{{.State.Running}}"), "true");
    // unless-stopped stays stopped; always comes back when the daemon starts.
    assert_eq!(inspect(&d, "down", "{{.State.Status}}"), "exited");
    eventually("always started at daemon start", || {
        inspect(&d, "alw", "{{.State.Running}}") == "true"
    });
}
