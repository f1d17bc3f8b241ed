//! Two berthd instances as two hosts: each in its own network namespace with its own
//! address on a test bridge, a registry in a third namespace. An image built on host A is
//! pushed once, pulled and run on host B, and B's containers serve what A's serve.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, ok, root, unique};

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test bridge in the host namespace and namespaces hanging off it by veth pairs;
/// everything is deleted on drop (deleting a namespace deletes its veth end).
struct Lan {
    bridge: String,
    prefix: String,
    namespaces: Vec<String>,
}

impl Lan {
    fn new(u: &str, third_octet: u32) -> Lan {
        let bridge = format!("bh{u}");
        let prefix = format!("10.{}.{}", 180 + third_octet / 250 % 20, third_octet % 250);
        let lan = Lan {
            bridge: bridge.clone(),
            prefix: prefix.clone(),
            namespaces: Vec::new(),
        };
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{prefix}.1/24"), "dev", &bridge],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        lan
    }

    /// Adds namespace `name` with address `<prefix>.<host>`; returns the address.
    fn host(&mut self, name: &str, host: u8) -> String {
        let ip = format!("{}.{host}", self.prefix);
        run("ip", &["netns", "add", name]);
        self.namespaces.push(name.to_owned());
        let outer = format!("{}{host}", self.bridge);
        run(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", name,
            ],
        );
        run("ip", &["link", "set", &outer, "master", &self.bridge, "up"]);
        let ns = |args: &[&str]| {
            let mut full = vec!["netns", "exec", name];
            full.extend_from_slice(args);
            run("ip", &full);
        };
        ns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns(&["ip", "link", "set", "eth0", "up"]);
        ns(&["ip", "link", "set", "lo", "up"]);
        ns(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("{}.1", self.prefix),
        ]);
        ip
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (i, ns) in self.namespaces.iter().enumerate() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{}{}", self.bridge, i + 2)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process started inside a network namespace (with `ip netns exec`);
/// killed on drop.
struct NsProcess(Child);

impl NsProcess {
    fn spawn(ns: &str, cmd: &Path, args: &[String], log: &Path) -> NsProcess {
        let log = std::fs::File::create(log).unwrap();
        // nsenter joins only the network namespace: /sys (and with it the cgroup
        // hierarchy) stays the host's, as for a daemon on a real second machine.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(cmd)
            .args(args)
            .env("BERTH_SHIM", bin("berth-shim"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        NsProcess(child)
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One berthd "host" in its namespace.
struct Host {
    dir: tempfile::TempDir,
    exec_root: PathBuf,
    proc: Option<NsProcess>,
}

impl Host {
    fn start(ns: &str, registry: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let exec_root = PathBuf::from(format!("/run/bh-{ns}"));
        let sock = dir.path().join("berth.sock");
        let args: Vec<String> = [
            "-H",
            &format!("unix://{}", sock.display()),
            "--data-root",
            &dir.path().join("data").display().to_string(),
            "--exec-root",
            &exec_root.display().to_string(),
            "--insecure-registry",
            registry,
            "--bridge",
            "berth0",
            "--bip",
            "172.30.9.0/24",
            "--cgroup-parent",
            "berth-test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = NsProcess::spawn(ns, &bin("berthd"), &args, &dir.path().join("berthd.log"));
        poll("berthd socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        Host {
            dir,
            exec_root,
            proc: Some(proc),
        }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("berth.sock").display()
            ))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        ok(self.docker(args), args)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        self.proc.take();
        common::unmount_under(&[self.dir.path(), &self.exec_root]);
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn image_built_on_a_is_pushed_once_and_served_by_b() {
    let u = unique();
    let mut lan = Lan::new(&u, std::process::id() % 5000);
    let (ns_a, ns_b, ns_r) = (format!("bhA{u}"), format!("bhB{u}"), format!("bhR{u}"));
    let ip_a = lan.host(&ns_a, 2);
    let ip_b = lan.host(&ns_b, 3);
    let ip_r = lan.host(&ns_r, 4);

    // The registry on the third host, reached over plain HTTP.
    let reg_dir = tempfile::tempdir().unwrap();
    let registry = format!("{ip_r}:5000");
    std::fs::write(
        reg_dir.path().join("config.yml"),
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {registry}}}\n",
            reg_dir.path().join("data").display()
        ),
    )
    .unwrap();
    let _reg = NsProcess::spawn(
        &ns_r,
        Path::new("/usr/bin/docker-registry"),
        &[
            "serve".into(),
            reg_dir.path().join("config.yml").display().to_string(),
        ],
        &reg_dir.path().join("registry.log"),
    );
    poll("registry", || {
        curl(&format!("http://{registry}/v2/")).is_some()
    });
    let out = Command::new("bash")
        .arg(root().join("tests/fixtures/make-image.sh"))
        .arg(format!("{registry}/busybox:1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = Host::start(&ns_a, &registry);
    let b = Host::start(&ns_b, &registry);

    // Build on A from the registry's busybox, push once.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {registry}/busybox:1\nRUN mkdir -p /www && echo 'built on host A' > /www/index.html\nEXPOSE 80\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
        ),
    )
    .unwrap();
    let image = format!("{registry}/web:1");
    a.docker_ok(&[
        "build",
        "-q",
        "-t",
        &image,
        &ctx.path().display().to_string(),
    ]);
    a.docker_ok(&["push", &image]);
    let catalog = curl(&format!("http://{registry}/v2/web/tags/list")).unwrap();
    assert!(catalog.contains("\"1\""), "{catalog}");

    // Pull and run on B; the same image id on both hosts.
    b.docker_ok(&["pull", "-q", &image]);
    let id_a = a.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    let id_b = b.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(id_a, id_b);

    let mut answers = Vec::new();
    for (host, ip) in [(&a, &ip_a), (&b, &ip_b), (&b, &ip_b)] {
        let id = host.docker_ok(&["run", "-d", "-p", "80", &image]);
        let port = host.docker_ok(&["port", &id, "80/tcp"]);
        let port = port
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let url = format!("http://{ip}:{port}/");
        let mut got = None;
        poll(&format!("{url} serving"), || {
            got = curl(&url);
            got.is_some()
        });
        answers.push(got.unwrap_or_default());
    }
    assert!(
        answers.iter().all(|a| a == "built on host A\n"),
        "{answers:?}"
    );
    drop(a);
    drop(b);
}
