//! Compose against berthd: the real docker-compose 1.29 (docker-py, API 1.2x paths) and
//! `berth compose`, with a busybox httpd web service scaled to three replicas and a client
//! service that asks for the web service by name.
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, shared_registry, text, Daemon};

fn compose_file(image: &str, web_port: &str) -> String {
    format!(
        r#"version: "3.7"
services:
  web:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo hello from $$(hostname) > /www/index.html && exec httpd -f -v -p 80 -h /www"]
    ports:
      - "{web_port}"
    volumes:
      - data:/data
  client:
    image: {image}
    depends_on: [web]
    command: ["sh", "-c", "while true; do wget -qO- http://web/; sleep 1; done"]
volumes:
  data:
"#
    )
}

fn write_project(dir: &Path, image: &str, web_port: &str) {
    std::fs::write(
        dir.join("docker-compose.yml"),
        compose_file(image, web_port),
    )
    .unwrap();
}

/// Runs the real docker-compose in `dir` against the daemon.
fn dc(d: &Daemon, dir: &Path, project: &str, args: &[&str]) -> Output {
    Command::new("docker-compose")
        .arg("-p")
        .arg(project)
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", d.host())
        .env("COMPOSE_HTTP_TIMEOUT", "300")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn dc_ok(d: &Daemon, dir: &Path, project: &str, args: &[&str]) -> String {
    common::ok(dc(d, dir, project, args), args)
}

/// Runs `berth compose` in `dir` against the daemon.
fn bc(d: &Daemon, dir: &Path, project: &str, args: &[&str]) -> Output {
    Command::new(bin("berth"))
        .arg("-H")
        .arg(d.host())
        .args(["compose", "-p", project])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn bc_ok(d: &Daemon, dir: &Path, project: &str, args: &[&str]) -> String {
    common::ok(bc(d, dir, project, args), args)
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn curl(port: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "5", &format!("http://127.0.0.1:{port}/")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Names of the project's containers (all states), sorted.
fn names(d: &Daemon, project: &str) -> Vec<String> {
    let out = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Each running web replica's answer over its published port (polled until it serves).
fn web_answers(d: &Daemon, project: &str, n: usize) -> BTreeSet<String> {
    let mut answers = BTreeSet::new();
    for i in 1..=n {
        let name = format!("{project}_web_{i}");
        let port = d.docker_ok(&["port", &name, "80/tcp"]);
        let port = port
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let hostname = d.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", &name]);
        let mut got = String::new();
        poll(&format!("{name} serving on {port}"), || {
            got = curl(&port).unwrap_or_default();
            !got.is_empty()
        });
        assert_eq!(
            got,
            format!("hello from {hostname}"),
            "{name} on port {port}"
        );
        answers.insert(got);
    }
    answers
}

fn assert_gone(d: &Daemon, project: &str) {
    assert!(names(d, project).is_empty(), "{:?}", names(d, project));
    let nets = d.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&format!("{project}_default")), "{nets}");
    let vols = d.docker_ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!vols.contains(&format!("{project}_data")), "{vols}");
}

#[test]
fn docker_compose_up_scale_exec_restart_down() {
    let d = Daemon::start();
    let image = d.pull("busybox:1");
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &image, "80");
    let p = format!("dc{}", common::unique());

    dc_ok(&d, dir.path(), &p, &["up", "-d"]);
    assert_eq!(
        names(&d, &p),
        vec![format!("{p}_client_1"), format!("{p}_web_1")]
    );
    dc_ok(&d, dir.path(), &p, &["up", "-d", "--scale", "web=3"]);
    assert_eq!(names(&d, &p).len(), 4);
    assert_eq!(web_answers(&d, &p, 3).len(), 3, "three distinct replicas");

    let ps = dc_ok(&d, dir.path(), &p, &["ps"]);
    for n in ["web_1", "web_2", "web_3", "client_1"] {
        assert!(ps.contains(&format!("{p}_{n}")), "{ps}");
    }
    assert_eq!(ps.matches(" Up ").count(), 4, "{ps}");

    // The client reaches the web service by its name on the project network.
    poll("client logs show answers from web", || {
        dc_ok(&d, dir.path(), &p, &["logs", "--no-color", "client"]).contains("hello from")
    });
    let served = dc_ok(
        &d,
        dir.path(),
        &p,
        &["exec", "-T", "web", "cat", "/www/index.html"],
    );
    assert!(served.starts_with("hello from"), "{served}");

    // Parallel restarts through API 1.2x (docker-py's threads); each stop needs its SIGKILL
    // (httpd and sh as pid 1 ignore SIGTERM), then every replica serves from a new run.
    let started = |n: &str| d.docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", n]);
    let web1 = format!("{p}_web_1");
    let before = started(&web1);
    dc_ok(&d, dir.path(), &p, &["restart"]);
    assert_ne!(started(&web1), before, "web_1 ran again");
    assert_eq!(
        web_answers(&d, &p, 3).len(),
        3,
        "replicas serve after restart"
    );

    // stop, then start: all four come back and serve.
    dc_ok(&d, dir.path(), &p, &["stop", "-t", "2"]);
    let ps = dc_ok(&d, dir.path(), &p, &["ps"]);
    assert_eq!(ps.matches("Exit ").count(), 4, "{ps}");
    dc_ok(&d, dir.path(), &p, &["start"]);
    let ps = dc_ok(&d, dir.path(), &p, &["ps"]);
    assert_eq!(ps.matches(" Up ").count(), 4, "{ps}");
    assert_eq!(
        web_answers(&d, &p, 3).len(),
        3,
        "replicas serve after start"
    );

    dc_ok(&d, dir.path(), &p, &["down", "-v"]);
    assert_gone(&d, &p);
}

#[test]
fn berth_compose_up_scale_logs_down() {
    let d = Daemon::start();
    let image = d.pull("busybox:1");
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &image, "80");
    let p = format!("bc{}", common::unique());

    bc_ok(&d, dir.path(), &p, &["up", "-d"]);
    assert_eq!(
        names(&d, &p),
        vec![format!("{p}_client_1"), format!("{p}_web_1")]
    );
    let labels = d.docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        &format!("{p}_web_1"),
    ]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["com.docker.compose.project"], p.as_str());
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");

    bc_ok(&d, dir.path(), &p, &["up", "-d", "--scale", "web=3"]);
    assert_eq!(web_answers(&d, &p, 3).len(), 3);
    let ps = bc_ok(&d, dir.path(), &p, &["ps"]);
    assert_eq!(ps.matches("running").count(), 4, "{ps}");
    assert!(ps.contains("->80/tcp"), "{ps}");

    poll("client reaches web by name", || {
        let logs = bc_ok(&d, dir.path(), &p, &["logs", "client"]);
        logs.lines()
            .any(|l| l.starts_with(&format!("{p}_client_1 | hello from")))
    });

    bc_ok(&d, dir.path(), &p, &["scale", "web=1"]);
    assert_eq!(
        names(&d, &p),
        vec![format!("{p}_client_1"), format!("{p}_web_1")]
    );
    bc_ok(&d, dir.path(), &p, &["scale", "web=2"]);
    assert_eq!(names(&d, &p).len(), 3);
    assert_eq!(web_answers(&d, &p, 2).len(), 2);

    bc_ok(&d, dir.path(), &p, &["down", "-v"]);
    assert_gone(&d, &p);
}

#[test]
fn berth_compose_bad_input_leaves_nothing_running() {
    let d = Daemon::start();
    let image = d.pull("busybox:1");
    let dir = tempfile::tempdir().unwrap();
    let p = format!("bad{}", common::unique());

    write_project(dir.path(), &image, "80");
    let fail = |args: &[&str], want: &str| {
        let out = bc(&d, dir.path(), &p, args);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            names(&d, &p).is_empty(),
            "{args:?} left {:?}",
            names(&d, &p)
        );
    };
    fail(&["up", "-d", "nope"], "no such service: nope");
    fail(&["up", "-d", "--scale", "nope=2"], "no such service: nope");
    fail(&["up", "-d", "--scale", "web=-1"], "invalid scale");
    fail(&["scale", "web=-1"], "invalid scale");

    // A fixed host port cannot be shared by replicas.
    let port = common::free_port().to_string();
    write_project(dir.path(), &image, &format!("{port}:80"));
    fail(&["up", "-d", "--scale", "web=2"], "replicas would conflict");

    // A service whose image cannot be pulled: the error names it and no replica is left.
    let broken = compose_file(&image, "80").replace(
        &format!("  client:\n    image: {image}"),
        &format!(
            "  client:\n    image: {}/no-such-image:1",
            shared_registry().addr()
        ),
    );
    std::fs::write(dir.path().join("docker-compose.yml"), broken).unwrap();
    fail(&["up", "-d"], "no-such-image");

    bc_ok(&d, dir.path(), &p, &["down", "-v"]);
    assert_gone(&d, &p);
}

/// `curl` to the daemon's socket: `METHOD path` → the HTTP status (0 when curl failed,
/// e.g. on its `max_secs` deadline).
fn api(d: &Daemon, method: &str, path: &str, max_secs: u32) -> u32 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .args(["-m", &max_secs.to_string(), "--unix-socket"])
        .arg(&d.socket)
        .arg(format!("http://berth{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Runs `METHOD /v1.25/containers/{id}{suffix}` for every id at once; returns the statuses.
fn api_parallel(d: &Daemon, method: &str, ids: &[String], suffix: &str) -> Vec<u32> {
    std::thread::scope(|s| {
        let calls: Vec<_> = ids
            .iter()
            .map(|id| {
                let path = format!("/v1.25/containers/{id}{suffix}");
                s.spawn(move || api(d, method, &path, 120))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// What docker-compose's restart does (parallel `POST /v1.25/containers/ID/restart`), then
/// `docker restart` of all at once, a client that hangs up mid-restart, and parallel stops
/// and removals: every call answers and every container runs a new process each time.
#[test]
fn parallel_api_restarts_then_stop_and_rm() {
    let d = Daemon::start();
    let image = d.pull("busybox:1");
    // httpd as pid 1 ignores SIGTERM: every stop ends with the SIGKILL after the timeout.
    let run = || {
        d.docker_ok(&[
            "run",
            "-d",
            "-p",
            "80",
            &image,
            "sh",
            "-c",
            "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www",
        ])
        .trim()
        .to_owned()
    };
    let ids: Vec<String> = (0..3).map(|_| run()).collect();
    let state = |id: &str| d.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", id]);
    let serves = |id: &str| {
        let port = d.docker_ok(&["port", id, "80/tcp"]);
        let port = port.lines().next().unwrap().rsplit(':').next().unwrap();
        let mut got = String::new();
        poll(&format!("{id} serving on {port}"), || {
            got = curl(port).unwrap_or_default();
            !got.is_empty()
        });
        assert_eq!(got, "hi", "{id}");
    };

    for round in 0..2 {
        let before: Vec<String> = ids.iter().map(|id| state(id)).collect();
        let codes = api_parallel(&d, "POST", &ids, "/restart?t=1");
        assert_eq!(codes, vec![204; 3], "round {round}");
        for (id, old) in ids.iter().zip(&before) {
            let now = state(id);
            assert!(now.starts_with("running "), "{id}: {now}");
            assert_ne!(&now, old, "{id} runs a new process");
            serves(id);
        }
    }

    // The docker CLI restarting all three in one command.
    let before: Vec<String> = ids.iter().map(|id| state(id)).collect();
    let mut args = vec!["restart", "-t", "1"];
    args.extend(ids.iter().map(String::as_str));
    d.docker_ok(&args);
    for (id, old) in ids.iter().zip(&before) {
        assert_ne!(&state(id), old, "{id} restarted by the CLI");
        serves(id);
    }

    // A client that hangs up before the restart is done (t=3 while it gives up after 1 s):
    // the restart still completes, as with dockerd.
    let old = state(&ids[0]);
    let code = api(
        &d,
        "POST",
        &format!("/v1.25/containers/{}/restart?t=3", ids[0]),
        1,
    );
    assert_eq!(code, 0, "the client gave up first");
    poll("restart completes after the client left", || {
        let now = state(&ids[0]);
        now.starts_with("running ") && now != old
    });
    serves(&ids[0]);

    assert_eq!(api_parallel(&d, "POST", &ids, "/stop?t=1"), vec![204; 3]);
    for id in &ids {
        assert!(state(id).starts_with("exited "), "{id}: {}", state(id));
    }
    assert_eq!(api_parallel(&d, "DELETE", &ids, "?v=1"), vec![204; 3]);
    let left = d.docker_ok(&["ps", "-aq"]);
    assert!(left.trim().is_empty(), "{left}");
}
