//! Helpers: a busybox rootfs, a bundle, a shim per test, frame decoding.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use berth_runtime::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const RUNC: &str = "/usr/sbin/runc";

/// Which runtime a test uses.
#[derive(Clone, Copy, Debug)]
pub enum Rt {
    Builtin,
    Runc,
}

/// Everything one test container owns; dropping it cleans up.
pub struct Fixture {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub cfg: ShimConfig,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.state_dir.join("shim.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // Only if it is still our shim (its cmdline names our config).
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&*self.state_dir.to_string_lossy()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let RuntimeKind::Runc { binary, root } = &self.cfg.runtime {
            let _ = std::process::Command::new(binary)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", &self.id])
                .output();
        }
        // A container whose shim died keeps running: kill what is left in its cgroup.
        if let Ok(procs) = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/pids/berth/{}/cgroup.procs",
            self.id
        )) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            for _ in 0..100 {
                let left = std::fs::read_to_string(format!(
                    "/sys/fs/cgroup/pids/berth/{}/cgroup.procs",
                    self.id
                ))
                .unwrap_or_default();
                if left.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        for ctrl in [
            "memory", "cpu", "cpuacct", "pids", "freezer", "cpuset", "devices", "blkio", "systemd",
        ] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{ctrl}/berth/{}", self.id));
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Builds a rootfs of busybox applet links in `root`.
pub fn make_rootfs(root: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let out = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for name in String::from_utf8(out.stdout).unwrap().lines() {
        if name == "busybox" || name.is_empty() {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(name));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
}

/// A fixture with a spec for `args`; `tweak` adjusts spec options and shim config.
pub fn fixture(
    rt: Rt,
    name: &str,
    args: &[&str],
    tweak: impl FnOnce(&mut SpecOptions, &mut ShimConfig),
) -> Fixture {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let id = format!("bt{}-{n}-{name}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    make_rootfs(&rootfs);
    let state_dir = PathBuf::from(format!("/run/berth-test/{id}"));
    let runtime = match rt {
        Rt::Builtin => RuntimeKind::Builtin,
        Rt::Runc => RuntimeKind::Runc {
            binary: RUNC.into(),
            root: "/run/berth-test-runc".into(),
        },
    };
    let mut cfg = ShimConfig {
        id: id.clone(),
        bundle: dir.path().to_path_buf(),
        state_dir: state_dir.clone(),
        log_path: dir.path().join("log.json"),
        log: LogConfig::default(),
        runtime,
        tty: false,
        open_stdin: false,
    };
    let mut opts = SpecOptions::new(&id, &rootfs, args.iter().map(|s| s.to_string()).collect());
    tweak(&mut opts, &mut cfg);
    opts.tty = cfg.tty;
    let spec = build_spec(&opts).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    Fixture {
        id,
        dir,
        state_dir,
        cfg,
    }
}

pub fn shim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-shim"))
}

/// Spawns the shim and connects a client.
pub async fn spawn(f: &Fixture) -> (ShimProcess, ShimClient) {
    let p = spawn_shim(&shim_binary(), &f.cfg).unwrap();
    let c = ShimClient::connect(&f.state_dir).await.unwrap();
    (p, c)
}

/// Guards against hangs: a test that would block forever fails instead.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .expect("timed out")
}

/// Reads frames until EOF: (stdout, stderr).
pub async fn read_all_frames(s: &mut UnixStream) -> (Vec<u8>, Vec<u8>) {
    let mut out = (Vec::new(), Vec::new());
    while let Some((t, data)) = read_frame(s).await {
        if t == 2 {
            out.1.extend(data)
        } else {
            out.0.extend(data)
        }
    }
    out
}

/// Reads one frame; None at EOF.
pub async fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await.ok()?;
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut data = vec![0; len];
    s.read_exact(&mut data).await.ok()?;
    Some((h[0], data))
}

/// Reads frames until stdout contains `needle`; returns what was read.
pub async fn read_until(s: &mut UnixStream, needle: &str) -> String {
    let mut acc = String::new();
    while !acc.contains(needle) {
        let (_, d) = read_frame(s).await.expect("stream ended early");
        acc.push_str(&String::from_utf8_lossy(&d));
    }
    acc
}

pub async fn send(s: &mut UnixStream, data: &[u8]) {
    s.write_all(data).await.unwrap();
}
