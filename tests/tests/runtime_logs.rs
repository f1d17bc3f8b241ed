//! Logging: json-file with rotation (read back across rotated files), `--log-driver none`,
//! and `logs --since/--until`, with both runtimes.
#[macro_use]
mod common;

use common::*;

both_runtimes!(rotated_logs_are_read_back, log_driver_none_and_time_windows);

fn rotated_logs_are_read_back(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        &img,
        "sh",
        "-c",
        "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let log_path = d.docker_ok(&["inspect", "-f", "{{.LogPath}}", "chatty"]);
    assert!(exists(format!("{log_path}.1")), "{log_path}");
    assert!(exists(format!("{log_path}.2")), "{log_path}");
    assert!(!exists(format!("{log_path}.3")), "{log_path}");
    for f in [log_path.clone(), format!("{log_path}.1")] {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len <= 2048, "{f}: {len}");
    }
    let logs = d.docker_ok(&["logs", "chatty"]);
    let nums: Vec<u32> = logs
        .lines()
        .map(|l| l.strip_prefix("line-").unwrap().parse().unwrap())
        .collect();
    // More than one file's worth, consecutive, ending with the last line.
    assert!(
        nums.len() > 2048 / 100 && nums.len() < 300,
        "{}",
        nums.len()
    );
    assert_eq!(*nums.last().unwrap(), 300);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{logs}");
    let tail = d.docker_ok(&["logs", "--tail", "2", "chatty"]);
    assert_eq!(tail, "line-299\nline-300");
    // The default is json-file, rotating (Docker's CLI shows the driver in inspect).
    d.docker_ok(&["create", "--runtime", rt, "--name", "plain", &img, "true"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "plain"]),
        "json-file"
    );
}

fn log_driver_none_and_time_windows(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "silent",
        "--log-driver",
        "none",
        &img,
        "echo",
        "hi",
    ]);
    let out = d.docker(&["logs", "silent"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("configured logging driver does not support reading"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "timed",
        &img,
        "sh",
        "-c",
        "echo first; sleep 1; echo second; sleep 1; echo third",
    ]);
    let stamped = d.docker_ok(&["logs", "-t", "timed"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{stamped}");
    assert_eq!(
        d.docker_ok(&["logs", "--since", times[1], "timed"]),
        "second\nthird"
    );
    assert_eq!(
        d.docker_ok(&["logs", "--until", times[1], "timed"]),
        "first\nsecond"
    );
    assert_eq!(
        d.docker_ok(&["logs", "--since", times[1], "--until", times[1], "timed"]),
        "second"
    );
    // Unix seconds work too; a window in the future is empty.
    assert_eq!(d.docker_ok(&["logs", "--since", "4102444800", "timed"]), "");
}
