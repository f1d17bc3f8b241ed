//! Test fixtures: a real `docker-registry` on a free loopback port, and
//! images made with umoci from the static busybox, pushed with skopeo.

#![allow(dead_code)]

pub mod flaky;
pub mod token;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; killed and reaped on drop, even on panic.
pub struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// Starts a registry requiring HTTP basic auth for `user`/`pass`.
    pub fn start_with_basic_auth(user: &str, pass: &str) -> Registry {
        Registry::start_with(Some((user, pass)))
    }

    /// Starts a registry that trusts bearer tokens from `realm`, signed
    /// with the key of `cert`.
    pub fn start_with_token_auth(realm: &str, cert: &Path) -> Registry {
        let auth = format!(
            "auth:\n  token: {{realm: \"{realm}\", service: {}, issuer: {}, rootcertbundle: {}}}\n",
            token::SERVICE,
            token::ISSUER,
            cert.display()
        );
        Registry::start_cfg(auth)
    }

    fn start_with(basic: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((user, pass)) = basic {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
                file.display()
            );
        }
        Registry::start_in(dir, auth)
    }

    fn start_cfg(auth: String) -> Registry {
        Registry::start_in(tempfile::tempdir().unwrap(), auth)
    }

    fn start_in(dir: tempfile::TempDir, auth: String) -> Registry {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed (apt-get install docker-registry)");
        let reg = Registry {
            child,
            addr,
            _dir: dir,
        };
        // Wait until /v2/ answers (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&reg.addr) {
                use std::io::{Read, Write};
                let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok()
                    && (buf.ends_with(b"200") || buf.ends_with(b"401"))
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up on {}",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes an OCI layout at `dir/layout` holding `image:1`: one layer with
/// /bin/busybox and /bin/sh -> busybox, a second layer adding /etc/hello and
/// deleting nothing; cmd ["sh"].
pub fn make_busybox_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let img = format!("{}:1", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &img]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    // repack diffs against the unpacked image: unpack again for a 2nd layer
    std::fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hello"), "hi\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    run(Command::new("umoci").args(["config", "--image", &img, "--config.cmd", "sh"]));
    layout
}

/// Pushes `layout`'s `1` tag to `dest` (e.g. "127.0.0.1:5000/busybox:1");
/// `format` is skopeo's `--format` ("oci" or "v2s2").
pub fn skopeo_push(layout: &Path, dest: &str, format: &str) {
    skopeo_push_as(layout, dest, format, None)
}

/// Like [`skopeo_push`], with `user:pass` credentials.
pub fn skopeo_push_as(layout: &Path, dest: &str, format: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false", "--format", format]);
    if let Some(c) = creds {
        cmd.arg(format!("--dest-creds={c}"));
    }
    run(cmd
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{dest}")));
}
