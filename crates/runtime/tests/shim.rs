//! Real containers through the shim, with both runtimes.

mod common;

use berth_runtime::*;
use common::*;
use tokio::io::AsyncWriteExt;

#[test]
fn shim_binary_is_found_next_to_test_binaries() {
    let found = find_shim_binary().unwrap();
    assert_eq!(
        found.canonicalize().unwrap(),
        shim_binary().canonicalize().unwrap()
    );
}

async fn echo_attach_before_start(rt: Rt) {
    let f = fixture(rt, "echo", &["echo", "hello"], |_, _| {});
    let (_, c) = spawn(&f).await;
    let mut s = c.attach(false).await.unwrap();
    let pid = c.start().await.unwrap();
    assert!(pid > 1);
    let (out, err) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");
    assert!(err.is_empty());
    let exit = within(c.wait()).await.unwrap();
    assert_eq!(exit.code, 0);
    assert_eq!(exit.signal, None);
    let log = std::fs::read_to_string(&f.cfg.log_path).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "hello\n");
    assert_eq!(first["stream"], "stdout");
    assert_eq!(read_exit(&f.state_dir).unwrap().code, 0);
}

async fn exit_code(rt: Rt) {
    let f = fixture(
        rt,
        "exit3",
        &["sh", "-c", "echo oops >&2; exit 3"],
        |_, _| {},
    );
    let (_, c) = spawn(&f).await;
    let mut s = c.attach(false).await.unwrap();
    c.start().await.unwrap();
    let (_, err) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    let exit = within(c.wait()).await.unwrap();
    assert_eq!(exit.code, 3);
    assert!(!exit.oom_killed);
}

async fn kill_signals(rt: Rt) {
    // SIGTERM reaches a PID 1 only through a handler: the trap answers with 143.
    let script = "trap 'exit 143' TERM; echo ready; while :; do sleep 1; done";
    let f = fixture(rt, "term", &["sh", "-c", script], |_, _| {});
    let (_, c) = spawn(&f).await;
    let mut s = c.attach(false).await.unwrap();
    c.start().await.unwrap();
    within(read_until(&mut s, "ready")).await;
    c.kill(15).await.unwrap();
    assert_eq!(within(c.wait()).await.unwrap().code, 143);

    let f = fixture(rt, "kill", &["sleep", "1000"], |_, _| {});
    let (_, c) = spawn(&f).await;
    c.start().await.unwrap();
    c.kill(9).await.unwrap();
    let exit = within(c.wait()).await.unwrap();
    assert_eq!(exit.code, 137);
    assert_eq!(exit.signal, Some(9));
}

async fn tty_and_resize(rt: Rt) {
    let f = fixture(
        rt,
        "tty",
        &["sh", "-c", "read x; tty; stty size"],
        |_, cfg| {
            cfg.tty = true;
            cfg.open_stdin = true;
        },
    );
    let (_, c) = spawn(&f).await;
    let mut s = c.attach(true).await.unwrap();
    c.start().await.unwrap();
    c.resize(30, 100).await.unwrap();
    send(&mut s, b"go\n").await;
    let (out, err) = within(read_all_frames(&mut s)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("30 100"), "{out}");
    assert!(err.is_empty());
    assert_eq!(within(c.wait()).await.unwrap().code, 0);
}

async fn stdin_pipe(rt: Rt) {
    let f = fixture(rt, "cat", &["cat"], |_, cfg| cfg.open_stdin = true);
    let (_, c) = spawn(&f).await;
    let mut s = c.attach(true).await.unwrap();
    c.start().await.unwrap();
    send(&mut s, b"abc\n").await;
    s.shutdown().await.unwrap();
    let (out, _) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&out), "abc\n");
    assert_eq!(within(c.wait()).await.unwrap().code, 0);
}

async fn exec_output_and_code(rt: Rt) {
    let f = fixture(rt, "exec", &["sleep", "1000"], |_, _| {});
    let (_, c) = spawn(&f).await;
    c.start().await.unwrap();
    let cfg = ExecConfig {
        id: "e1".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo out $FOO; echo err >&2; exit 7".into(),
        ],
        env: vec!["FOO=bar".into()],
        ..ExecConfig::default()
    };
    let mut s = c.exec(cfg).await.unwrap();
    let (out, err) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&out), "out bar\n");
    assert_eq!(String::from_utf8_lossy(&err), "err\n");
    assert_eq!(within(c.exec_wait("e1")).await.unwrap().code, 7);
    assert!(c.exec_pid("e1").await.unwrap() > 1);

    let tty = ExecConfig {
        id: "e2".into(),
        args: vec!["sh".into(), "-c".into(), "tty".into()],
        tty: true,
        ..ExecConfig::default()
    };
    let mut s = c.exec(tty).await.unwrap();
    let (out, _) = within(read_all_frames(&mut s)).await;
    assert!(String::from_utf8_lossy(&out).contains("/dev/pts/"));
    assert_eq!(within(c.exec_wait("e2")).await.unwrap().code, 0);

    c.kill(9).await.unwrap();
    assert_eq!(within(c.wait()).await.unwrap().code, 137);
}

async fn detached_and_controls(rt: Rt) {
    let f = fixture(rt, "ctl", &["sleep", "1000"], |o, _| {
        o.memory = Some(64 << 20)
    });
    let (p, c) = spawn(&f).await;
    // The shim is not our child and runs in its own session.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.shim_pid)).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ppid: u32 = fields[1].parse().unwrap();
    let sid: u32 = fields[3].parse().unwrap();
    assert_ne!(ppid, std::process::id());
    let own = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own_sid: u32 = own
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(sid, own_sid);
    assert_eq!(c.state().await.unwrap().status, ContainerStatus::Created);
    let pid = c.start().await.unwrap();
    assert_eq!(c.state().await.unwrap().pid, pid);
    assert!(c.pids().await.unwrap().contains(&pid));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.memory_limit, 64 << 20);
    assert!(stats.pids >= 1);
    assert!(stats.cpu_total_ns > 0);
    assert_eq!(c.state().await.unwrap().status, ContainerStatus::Running);
    c.pause().await.unwrap();
    assert_eq!(c.state().await.unwrap().status, ContainerStatus::Paused);
    let freezer = format!("/sys/fs/cgroup/freezer/berth/{}/freezer.state", f.id);
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    c.resume().await.unwrap();
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    c.pause().await.unwrap();
    // SIGKILL reaches a paused container (the shim thaws it).
    c.kill(9).await.unwrap();
    within(c.wait()).await.unwrap();
    // Once the container exited and clients left, the shim goes away; exit.json stays.
    assert_eq!(read_exit(&f.state_dir).unwrap().code, 137);
}

async fn restart_in_same_state_dir(rt: Rt) {
    let f = fixture(rt, "again", &["sh", "-c", "exit 3"], |_, _| {});
    let (_, c) = spawn(&f).await;
    // Only one shim per state directory.
    assert!(matches!(
        spawn_shim(&shim_binary(), &f.cfg),
        Err(ShimError::Failed { .. })
    ));
    c.start().await.unwrap();
    assert_eq!(within(c.wait()).await.unwrap().code, 3);
    // Once the first shim is gone, a second run starts clean (no stale exit record).
    spawn_shim(&shim_binary(), &f.cfg).unwrap();
    let c = ShimClient::connect(&f.state_dir).await.unwrap();
    assert!(read_exit(&f.state_dir).is_none());
    c.start().await.unwrap();
    assert_eq!(within(c.wait()).await.unwrap().code, 3);
}

async fn exec_stdin(rt: Rt) {
    let f = fixture(rt, "execin", &["sleep", "1000"], |_, _| {});
    let (_, c) = spawn(&f).await;
    c.start().await.unwrap();
    let cfg = ExecConfig {
        id: "cat".into(),
        args: vec!["sh".into(), "-c".into(), "cat; echo done".into()],
        stdin: true,
        user: Some(UserSpec {
            uid: 7,
            gid: 7,
            additional_gids: vec![],
        }),
        cwd: "/tmp".into(),
        ..ExecConfig::default()
    };
    let mut s = c.exec(cfg).await.unwrap();
    send(&mut s, b"piped\n").await;
    s.shutdown().await.unwrap();
    let (out, _) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&out), "piped\ndone\n");
    assert_eq!(within(c.exec_wait("cat")).await.unwrap().code, 0);
    // Duplicate ids and bad ids are refused.
    let dup = ExecConfig {
        id: "cat".into(),
        args: vec!["true".into()],
        ..ExecConfig::default()
    };
    assert!(c.exec(dup).await.is_err());
    let bad = ExecConfig {
        id: "../x".into(),
        args: vec!["true".into()],
        ..ExecConfig::default()
    };
    assert!(c.exec(bad).await.is_err());
    c.kill(9).await.unwrap();
    within(c.wait()).await.unwrap();
}

async fn execs_do_not_leak_fds(rt: Rt) {
    let f = fixture(rt, "leak", &["sleep", "1000"], |_, _| {});
    let (p, c) = spawn(&f).await;
    c.start().await.unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", p.shim_pid))
            .unwrap()
            .count()
    };
    let mut baseline = 0;
    for n in 0..30 {
        let cfg = ExecConfig {
            id: format!("x{n}"),
            args: vec!["true".into()],
            tty: n % 2 == 0,
            ..ExecConfig::default()
        };
        let mut s = c.exec(cfg).await.unwrap();
        within(read_all_frames(&mut s)).await;
        assert_eq!(within(c.exec_wait(&format!("x{n}"))).await.unwrap().code, 0);
        drop(s);
        if n == 1 {
            baseline = fds();
        }
    }
    assert!(
        fds() <= baseline + 1,
        "shim fds grew from {baseline} to {}",
        fds()
    );
    c.kill(9).await.unwrap();
    within(c.wait()).await.unwrap();
}

async fn log_rotation_and_parallel_containers(rt: Rt) {
    let script = "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done";
    let mut fixtures = Vec::new();
    for n in 0..6 {
        fixtures.push(fixture(
            rt,
            &format!("par{n}"),
            &["sh", "-c", script],
            |_, cfg| {
                cfg.log = LogConfig {
                    driver: LogDriver::JsonFile,
                    max_size: Some(2048),
                    max_files: 3,
                };
            },
        ));
    }
    let runs = fixtures.iter().map(|f| async move {
        let (_, c) = spawn(f).await;
        let mut s = c.attach(false).await.unwrap();
        c.start().await.unwrap();
        let (out, _) = within(read_all_frames(&mut s)).await;
        (
            String::from_utf8(out).unwrap(),
            within(c.wait()).await.unwrap(),
        )
    });
    for (f, (out, exit)) in fixtures.iter().zip(futures::future::join_all(runs).await) {
        assert_eq!(exit.code, 0);
        assert_eq!(out.lines().count(), 200);
        let files = berth_runtime::logs::log_files(&f.cfg.log_path);
        assert_eq!(files.len(), 3);
        let entries = berth_runtime::logs::read_logs(&f.cfg.log_path).unwrap();
        assert_eq!(entries.last().unwrap().log, "line 199\n");
        assert!(entries.len() < 200);
    }
}

macro_rules! both {
    ($($name:ident),*) => {
        mod builtin {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(Rt::Builtin).await } )*
        }
        mod runc {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(Rt::Runc).await } )*
        }
    };
}

both!(
    echo_attach_before_start,
    exit_code,
    kill_signals,
    tty_and_resize,
    stdin_pipe,
    exec_output_and_code,
    detached_and_controls,
    restart_in_same_state_dir,
    exec_stdin,
    execs_do_not_leak_fds,
    log_rotation_and_parallel_containers
);
