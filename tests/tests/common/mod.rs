//! Test fixtures: a real `docker-registry` on a loopback port, a real `berthd` with its own
//! socket, data root, exec root, bridge and nft table, and helpers to drive both with the
//! real `docker` CLI and `berth`.
#![allow(dead_code)]

/// Defines each named test `fn NAME(runtime: &str)` twice, as `builtin::NAME` (Berth's
/// built-in runtime) and `runc::NAME` (Debian's runc through the same shim).
#[allow(unused_macros)]
macro_rules! both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod builtin { $( #[test] fn $name() { super::$name("berth"); } )* }
        mod runc { $( #[test] fn $name() { super::$name("runc"); } )* }
    };
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built binary of the workspace (cargo test builds them for us).
pub fn bin(name: &str) -> PathBuf {
    // The test binary lives in <target>/debug/deps; the workspace binaries beside it in
    // <target>/debug, wherever CARGO_TARGET_DIR put the target dir.
    let debug = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(|d| d.parent()).map(Path::to_path_buf))
        .unwrap_or_else(|| root().join("target/debug"));
    let p = debug.join(name);
    assert!(
        p.exists(),
        "{} not built: run cargo build first",
        p.display()
    );
    p
}

/// Lazily unmounts every mount at or below one of `roots`, deepest first. Paths are
/// compared by components: a string prefix test also matched another test daemon's exec
/// root (/run/bt-X1 vs /run/bt-X10) and unmounted its netns pins while its containers
/// started (runc: "can't get final child's PID from pipe").
pub fn unmount_under(roots: &[&Path]) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines().rev() {
        if let Some(target) = line.split_whitespace().nth(1) {
            if roots.iter().any(|root| Path::new(target).starts_with(root)) {
                let _ = Command::new("umount").args(["-l", target]).status();
            }
        }
    }
}

/// Polls `f` every 100 ms until it is true, failing after a generous deadline.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique token for names (bridges are limited to 15 characters).
pub fn unique() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{:x}{:x}", std::process::id() % 0xffff, n)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `docker-registry` process serving from a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with an optional extra YAML `auth:` block.
    pub fn start_with(auth: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(a) = auth {
            cfg.push_str(a);
        }
        std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
        // A wrapper shell ends the registry when this test process goes away, even for
        // the process-wide shared registry that is never dropped.
        let script = "docker-registry serve \"$1\" & r=$!; trap 'kill $r 2>/dev/null' EXIT TERM; \
                      while kill -0 \"$2\" 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.5; done";
        let child = Command::new("bash")
            .args(["-c", script, "registry"])
            .arg(dir.path().join("config.yml"))
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/install-deps.sh)");
        let reg = Registry { child, port, dir };
        wait_until("registry", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        reg
    }

    /// Starts an open registry.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Builds and pushes a busybox image (see tests/fixtures/make-image.sh) as `name`.
    pub fn push_busybox(&self, name: &str, extra_args: &[&str]) {
        let out = Command::new("bash")
            .arg(root().join("tests/fixtures/make-image.sh"))
            .arg(format!("{}/{name}", self.addr()))
            .args(extra_args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGTERM lets the wrapper's trap stop the registry itself.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// One registry for the whole test binary, seeded with `busybox:1` (OCI, gzip) and
/// `busybox:v2s2` (Docker schema 2, two layers). Left running until the process exits.
pub fn shared_registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let r = Registry::start();
        r.push_busybox("busybox:1", &[]);
        r.push_busybox("busybox:v2s2", &["--format", "v2s2", "--extra-layer"]);
        r
    })
}

/// A running `berthd` with everything of its own; stopped and cleaned up on drop.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub exec_root: PathBuf,
    pub bridge: String,
    pub table: String,
    pub subnet: String,
    extra_args: Vec<String>,
}

static SUBNET: AtomicU32 = AtomicU32::new(0);

impl Daemon {
    /// Starts a daemon with default options.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra berthd flags.
    pub fn start_with(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let u = unique();
        let exec_root = PathBuf::from(format!("/run/bt-{u}"));
        let n = SUBNET.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 50) * 4;
        let subnet = format!("10.{}.{}.0/24", 200 + (n / 250) % 50, n % 250);
        let mut d = Daemon {
            child: None,
            socket: dir.path().join("berth.sock"),
            dir,
            exec_root,
            bridge: format!("bt{u}"),
            table: format!("berth_t{u}"),
            subnet,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(bin("berthd"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--data-root")
            .arg(self.dir.path().join("data"))
            .arg("--exec-root")
            .arg(&self.exec_root)
            .args([
                "--bridge",
                &self.bridge,
                "--nft-table",
                &self.table,
                "--bip",
                &self.subnet,
            ])
            .args(["--cgroup-parent", "berth-test"])
            .args(&self.extra_args)
            .env("BERTH_SHIM", bin("berth-shim"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let sock = self.socket.clone();
        wait_until("berthd socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Kills the daemon with SIGKILL (containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again over the same state.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the daemon again over the same state with other extra flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra_args = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// `unix:///path/to/socket`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `berth` against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(bin("berth"))
            .arg("-H")
            .arg(self.host())
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

    /// berth, asserting success; returns trimmed stdout.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        ok(self.berth(args), args)
    }

    /// The daemon's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// Pulls the shared registry's image `name` and returns its full reference.
    pub fn pull(&self, name: &str) -> String {
        let r = format!("{}/{name}", shared_registry().addr());
        self.docker_ok(&["pull", "-q", &r]);
        r
    }

    /// The data root.
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// Asserts a command succeeded and returns its trimmed stdout.
pub fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// stdout and stderr of an output as strings.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Remove containers so no shim, mount or cgroup outlives the test.
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.kill();
        // Anything left (a test that killed the daemon mid-way): kill shims, unmount.
        let _ = Command::new("pkill")
            .args([
                "-9",
                "-f",
                // The long-lived half of a shim is `berth-monitor`, whose argument names
                // the exec root before the shim's path; match either order. The slash
                // after the exec root matters: /run/bt-X1 is a prefix of /run/bt-X10,
                // another test's daemon.
                &format!(
                    "berth-(shim|monitor).*{0}/|{0}/.*berth-shim",
                    self.exec_root.display()
                ),
            ])
            .status();
        unmount_under(&[self.dir.path(), &self.exec_root]);
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            let _ = rt.block_on(berth_network::cleanup_all(&self.table));
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

/// Whether a path exists (for readable assertions).
pub fn exists(p: impl AsRef<Path>) -> bool {
    p.as_ref().exists()
}
