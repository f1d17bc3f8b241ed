//! The generated spec as a real container sees it, with both runtimes.

mod common;

use berth_runtime::*;
use common::*;

/// Runs `args` to completion; returns (stdout, stderr, exit).
async fn run(f: &Fixture) -> (String, String, ExitStatus) {
    let (_, c) = spawn(f).await;
    let mut s = c.attach(false).await.unwrap();
    c.start().await.unwrap();
    let (out, err) = within(read_all_frames(&mut s)).await;
    let exit = within(c.wait()).await.unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        exit,
    )
}

async fn identity_and_confinement(rt: Rt) {
    let script = "id -u; id -g; hostname; pwd; echo $FOO; \
        grep CapEff /proc/self/status; \
        cat /proc/kcore | wc -c; \
        touch /rootfs-write 2>/dev/null && echo rw || echo ro; \
        echo x > /proc/sys/kernel/hostname 2>/dev/null && echo sysrw || echo sysro";
    let f = fixture(rt, "ident", &["sh", "-c", script], |o, _| {
        o.user = UserSpec {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![],
        };
        o.hostname = "boxy".into();
        o.cwd = "/tmp".into();
        o.env = vec!["FOO=bar".into()];
        o.readonly_rootfs = true;
    });
    let (out, err, exit) = run(&f).await;
    assert_eq!(exit.code, 0, "{out} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        ["1000", "1001", "boxy", "/tmp", "bar"],
        "{out}"
    );
    // A non-root user gets no effective capabilities.
    assert!(lines[5].ends_with("0000000000000000"), "{out}");
    assert_eq!(lines[6], "0", "masked /proc/kcore reads empty: {out}");
    assert_eq!(lines[7], "ro");
    assert_eq!(lines[8], "sysro");
}

async fn root_caps_and_seccomp(rt: Rt) {
    let script = "grep CapEff /proc/self/status; unshare -m true && echo unshared || echo denied";
    let f = fixture(rt, "seccomp", &["sh", "-c", script], |_, _| {});
    let (out, _, exit) = run(&f).await;
    assert_eq!(exit.code, 0);
    // Docker's default capability set.
    assert!(out.contains("00000000a80425fb"), "{out}");
    assert!(out.contains("denied"), "{out}");

    let f = fixture(rt, "unconf", &["sh", "-c", script], |o, _| {
        o.seccomp = SeccompMode::Unconfined;
        o.cap_add = vec!["SYS_ADMIN".into()];
    });
    let (out, _, _) = run(&f).await;
    assert!(out.contains("unshared"), "{out}");
}

async fn custom_seccomp_profile(rt: Rt) {
    // Docker's format: allow everything except mkdir/mkdirat, which fail with EPERM.
    let profile = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    let f = fixture(
        rt,
        "prof",
        &["sh", "-c", "mkdir /tmp/d && echo made || echo refused"],
        |o, _| {
            o.seccomp = SeccompMode::Profile(profile.into());
        },
    );
    let (out, _, exit) = run(&f).await;
    assert_eq!(exit.code, 0);
    assert_eq!(out.trim(), "refused");
}

async fn oom_is_reported(rt: Rt) {
    let f = fixture(
        rt,
        "oom",
        &["sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1"],
        |o, _| {
            o.memory = Some(32 << 20);
            o.memory_swap = Some(32 << 20);
        },
    );
    let (_, _, exit) = run(&f).await;
    assert_eq!(exit.code, 137, "{exit:?}");
    assert!(exit.oom_killed, "{exit:?}");
}

async fn missing_executable_fails_create(rt: Rt) {
    let f = fixture(rt, "noexe", &["/no/such/binary"], |_, _| {});
    let err = spawn_shim(&shim_binary(), &f.cfg).unwrap_err();
    assert!(matches!(err, ShimError::Failed { .. }), "{err}");
}

async fn joins_given_netns(rt: Rt) {
    let name = format!("bt{}-{:?}", std::process::id(), rt).to_lowercase();
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(ok.success());
    let path = format!("/run/netns/{name}");
    let f = fixture(rt, "netns", &["readlink", "/proc/self/ns/net"], |o, _| {
        o.netns = NetnsMode::New(path.clone().into());
    });
    let (out, _, exit) = run(&f).await;
    // readlink inside prints the namespace file's inode.
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&path).unwrap().ino()
    };
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &name])
        .status();
    assert_eq!(exit.code, 0);
    assert_eq!(out.trim(), format!("net:[{ino}]"));
}

async fn host_netns_and_privileged(rt: Rt) {
    let script = "readlink /proc/self/ns/net; grep CapEff /proc/self/status; \
        mount -t tmpfs none /mnt && echo mounted; test -c /dev/loop-control && echo devices";
    let f = fixture(rt, "priv", &["sh", "-c", script], |o, _| {
        o.netns = NetnsMode::Host;
        o.privileged = true;
    });
    std::fs::create_dir_all(f.dir.path().join("rootfs/mnt")).unwrap();
    let (out, err, exit) = run(&f).await;
    assert_eq!(exit.code, 0, "{out} {err}");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.lines().next().unwrap(), host.to_string_lossy());
    assert!(out.contains("mounted"), "{out}");
    assert!(out.contains("devices"), "host devices are visible: {out}");
    assert!(!out.contains("CapEff:\t00000000a80425fb"), "{out}");
}

async fn attach_after_start(rt: Rt) {
    let f = fixture(
        rt,
        "late",
        &["sh", "-c", "read x; echo got $x"],
        |_, cfg| cfg.open_stdin = true,
    );
    let (_, c) = spawn(&f).await;
    c.start().await.unwrap();
    let mut s = c.attach(true).await.unwrap();
    send(&mut s, b"it\n").await;
    let (out, _) = within(read_all_frames(&mut s)).await;
    assert_eq!(String::from_utf8_lossy(&out), "got it\n");
    assert_eq!(within(c.wait()).await.unwrap().code, 0);
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
    identity_and_confinement,
    root_caps_and_seccomp,
    oom_is_reported,
    custom_seccomp_profile,
    missing_executable_fails_create,
    joins_given_netns,
    host_netns_and_privileged,
    attach_after_start
);
