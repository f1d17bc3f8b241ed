//! A private `dockerd` (own data root, exec root, socket and pidfile, no bridge, no
//! iptables) to compare Berth against; stopped and cleaned up on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common::{ok, unique};

/// A running dockerd of the test's own.
pub struct Dockerd {
    child: Child,
    pub dir: tempfile::TempDir,
    exec_root: PathBuf,
    socket: PathBuf,
}

impl Dockerd {
    /// Starts dockerd if it is installed; `None` (after printing why) when it is not.
    pub fn start(insecure_registry: &str) -> Option<Dockerd> {
        let found = Command::new("sh")
            .args(["-c", "command -v dockerd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipped: dockerd is not installed (apt-get install docker.io)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let exec_root = PathBuf::from(format!("/run/bt-dockerd-{}", unique()));
        let socket = dir.path().join("docker.sock");
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--config-file")
            .arg(dir.path().join("daemon.json"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .args(["--insecure-registry", insecure_registry])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Dockerd {
            child,
            dir,
            exec_root,
            socket,
        };
        let start = Instant::now();
        while !d.docker(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "dockerd did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(d)
    }

    /// Runs the docker CLI against this dockerd.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// docker CLI, asserting success; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        ok(self.docker(args), args)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SIGTERM: dockerd stops its managed containerd itself.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        super::common::unmount_under(&[self.dir.path(), &self.exec_root]);
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}
