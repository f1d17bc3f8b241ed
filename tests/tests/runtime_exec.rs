//! `exec` with its flags and `exec inspect`, `attach` without a terminal, `rename` and
//! `port` of a running container, on the built-in runtime and on runc.
#[macro_use]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{free_port, text, Daemon};
use serde_json::Value;

both_runtimes!(
    exec_honours_its_flags_and_exit_codes,
    exec_inspect_reports_the_process,
    attach_streams_stdin_and_output,
    rename_and_port_of_a_running_container,
);

use common::eventually;

/// Runs the docker CLI with `input` on its stdin; returns (exit code, stdout).
fn docker_with_stdin(d: &Daemon, args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new("docker")
        .arg("-H")
        .arg(d.host())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// One Engine API call over the daemon's socket with curl; returns the parsed JSON body
/// (Null when empty).
fn api(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--unix-socket"]).arg(&d.socket).args([
        "-X",
        method,
        &format!("http://x/v1.47{path}"),
    ]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{method} {path}: {:?}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    if s.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{method} {path}: {e}: {s}"))
    }
}

fn exec_honours_its_flags_and_exit_codes(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "ex",
        "-e",
        "FROM_RUN=1",
        &img,
        "sleep",
        "1000",
    ]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", "ex"]),
        rt
    );
    assert_eq!(d.docker_ok(&["exec", "ex", "echo", "hi"]), "hi");
    // The exit code of the exec'd process is the CLI's.
    let out = d.docker(&["exec", "ex", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{:?}", text(&out));
    let out = d.docker(&["exec", "ex", "sh", "-c", "echo out; echo err >&2"]);
    let (o, e) = text(&out);
    assert_eq!((o.trim(), e.trim()), ("out", "err"));
    // -u, -w, -e; the container's own environment is inherited.
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "-u",
            "1000:1000",
            "ex",
            "sh",
            "-c",
            "echo $(id -u):$(id -g)"
        ]),
        "1000:1000"
    );
    assert_eq!(
        d.docker_ok(&["exec", "-u", "web", "ex", "id", "-un"]),
        "web"
    );
    assert_eq!(d.docker_ok(&["exec", "-w", "/tmp", "ex", "pwd"]), "/tmp");
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "-e",
            "FOO=bar",
            "ex",
            "sh",
            "-c",
            "echo $FOO $FROM_RUN"
        ]),
        "bar 1"
    );
    // -i feeds stdin; the exec ends when its input does.
    let (code, out) = docker_with_stdin(
        &d,
        &["exec", "-i", "ex", "sh", "-c", "cat; exit 4"],
        b"fed\n",
    );
    assert_eq!((code, out.as_str()), (Some(4), "fed"));
    // -t gives the process a terminal (docker needs one of its own: `script`).
    let cmd = format!(
        "docker -H {} exec -t ex sh -c 'test -t 1 && echo has-a-tty'",
        d.host()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("has-a-tty"), "{s}");
    // -d returns at once and leaves the process running in the container.
    d.docker_ok(&[
        "exec",
        "-d",
        "ex",
        "sh",
        "-c",
        "echo bg > /tmp/bg; sleep 1000",
    ]);
    eventually("the detached exec", || {
        d.docker(&["exec", "ex", "test", "-f", "/tmp/bg"])
            .status
            .success()
    });
    let top = d.docker_ok(&["top", "ex"]);
    assert!(
        top.lines().filter(|l| l.contains("sleep 1000")).count() == 2,
        "{top}"
    );
    // Errors: an unknown binary, a stopped container.
    let out = d.docker(&["exec", "ex", "/no/such/binary"]);
    assert!(!out.status.success());
    d.docker_ok(&["stop", "-t", "1", "ex"]);
    let out = d.docker(&["exec", "ex", "true"]);
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
    d.docker_ok(&["rm", "ex"]);
}

fn exec_inspect_reports_the_process(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "ei",
        &img,
        "sleep",
        "1000",
    ]);
    let created = api(
        &d,
        "POST",
        "/containers/ei/exec",
        Some(
            r#"{"Cmd":["sh","-c","exit 7"],"AttachStdout":true,"User":"1000","WorkingDir":"/tmp"}"#,
        ),
    );
    let id = created["Id"].as_str().unwrap().to_string();
    let before = api(&d, "GET", &format!("/exec/{id}/json"), None);
    assert_eq!(before["Running"], false);
    assert_eq!(before["ExitCode"], Value::Null, "{before}");
    assert_eq!(before["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(before["ProcessConfig"]["user"], "1000");
    api(
        &d,
        "POST",
        &format!("/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    let mut info = Value::Null;
    eventually("the exec to end", || {
        info = api(&d, "GET", &format!("/exec/{id}/json"), None);
        info["ExitCode"] == 7
    });
    assert_eq!(info["Running"], false);
    assert!(info["ContainerID"].as_str().unwrap().len() == 64, "{info}");
    assert_eq!(info["ProcessConfig"]["arguments"][1], "exit 7");
    d.docker_ok(&["rm", "-f", "ei"]);
}

fn attach_streams_stdin_and_output(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "-i",
        "--name",
        "at",
        &img,
        "sh",
        "-c",
        "read line; echo got:$line; echo oops >&2; exit 6",
    ]);
    let (code, out) = docker_with_stdin(&d, &["attach", "at"], b"hello\n");
    assert_eq!(out, "got:hello");
    assert_eq!(code, Some(6), "attach ends with the container's exit code");
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "at"]),
        "6"
    );
    // Attaching to a stopped container is refused.
    let out = d.docker(&["attach", "at"]);
    assert!(!out.status.success());
    d.docker_ok(&["rm", "at"]);
}

fn rename_and_port_of_a_running_container(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let port = free_port().to_string();
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "-d",
        "--name",
        "old",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        &img,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    d.docker_ok(&["rename", "old", "renamed"]);
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.Name}} {{.State.Running}}", "renamed"]),
        "/renamed true"
    );
    let out = d.docker(&["inspect", "old"]);
    assert!(!out.status.success());
    assert_eq!(d.docker_ok(&["exec", "renamed", "echo", "same"]), "same");
    // The old name is free again; a taken name is refused.
    d.docker_ok(&["create", "--runtime", rt, "--name", "old", &img, "true"]);
    let out = d.docker(&["rename", "renamed", "old"]);
    assert!(text(&out).1.contains("already in use"), "{:?}", text(&out));
    // port lists the mapping, and it answers.
    assert_eq!(
        d.docker_ok(&["port", "renamed"]),
        format!("80/tcp -> 127.0.0.1:{port}")
    );
    assert_eq!(
        d.docker_ok(&["port", "renamed", "80/tcp"]),
        format!("127.0.0.1:{port}")
    );
    let mut body = String::new();
    eventually("httpd to answer", || {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "-m",
                "2",
                &format!("http://127.0.0.1:{port}/index.html"),
            ])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        out.status.success()
    });
    assert_eq!(body, "hello-from-image");
    d.docker_ok(&["rm", "-f", "renamed", "old"]);
}
