//! Issue 3 completeness: layer application compared with dockerd's, push --all-tags, and
//! bad registry input (hostile manifests, truncated blobs, auth and redirect loops).

mod common;

#[path = "images_depth/dockerd.rs"]
mod dockerd;
#[path = "images_depth/tree.rs"]
mod tree;

use std::process::Command;

use common::{root, text, Daemon, Registry};

/// Pushes tests/fixtures/depth-image.py's image as NAME:TAG.
fn push_depth_image(reg: &Registry, name: &str, tag: &str) {
    let out = Command::new("python3")
        .arg(root().join("tests/fixtures/depth-image.py"))
        .args([&reg.addr(), name, tag])
        .output()
        .unwrap();
    assert!(out.status.success(), "depth-image.py: {}", text(&out).1);
}

/// Runs IMAGE detached with `docker` (given as a closure) and returns the tree its init sees.
fn container_tree(docker: impl Fn(&[&str]) -> String, image: &str) -> String {
    let id = docker(&[
        "run",
        "-d",
        "--network",
        "none",
        image,
        "/bin/sleep",
        "3600",
    ]);
    let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .unwrap();
    let t = tree::tree_of(pid);
    docker(&["rm", "-f", &id]);
    t
}

#[test]
fn layer_trees_match_dockerd() {
    let reg = Registry::start();
    push_depth_image(&reg, "depth", "1");
    let image = format!("{}/depth:1", reg.addr());
    let Some(dockerd) = dockerd::Dockerd::start(&reg.addr()) else {
        return;
    };
    dockerd.docker_ok(&["pull", "-q", &image]);
    let want = container_tree(|a| dockerd.docker_ok(a), &image);

    let d = Daemon::start();
    d.docker_ok(&["pull", "-q", &image]);
    let got = container_tree(|a| d.docker_ok(a), &image);

    // The fixture's corners are really there (a vacuous comparison would pass too).
    for needle in [
        "/a/hl2: file mode=100640 uid=5 gid=6",
        "/devs/null: char",
        "/devs/fifo: fifo",
        "/gone/new:",
        "/d/newer:",
        "user.y=\"two words\"",
        "mtime=1600000003.123456789",
    ] {
        assert!(
            want.contains(needle),
            "dockerd tree lacks {needle}:\n{want}"
        );
    }
    for gone in [
        "/a/f1:",
        "/d/old1:",
        "/d/new1:",
        "/gone/g1:",
        "/keep/k:",
        "/a/sub/deep:",
    ] {
        assert!(!want.contains(gone), "dockerd tree has {gone}:\n{want}");
    }
    if want != got {
        let w: Vec<&str> = want.lines().collect();
        let g: Vec<&str> = got.lines().collect();
        let only_docker: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
        let only_berth: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
        panic!("trees differ\nonly dockerd: {only_docker:#?}\nonly berthd: {only_berth:#?}");
    }
}

/// The tags the registry at `addr` lists for `repo`, sorted.
fn registry_tags(addr: &str, repo: &str) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{addr}/v2/{repo}/tags/list")])
        .output()
        .unwrap();
    assert!(out.status.success(), "tags/list of {repo}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

#[test]
fn push_all_tags_pushes_every_local_tag() {
    let d = Daemon::start();
    let one = d.pull("busybox:1");
    let two = d.pull("busybox:v2s2");
    let reg = Registry::start();
    let repo = format!("{}/allt", reg.addr());
    for (src, tag) in [(&one, "a"), (&one, "b"), (&two, "c")] {
        d.docker_ok(&["tag", src, &format!("{repo}:{tag}")]);
    }
    // Another repository's tag must not go along.
    d.docker_ok(&["tag", &one, &format!("{}/other:x", reg.addr())]);

    let out = d.docker_ok(&["push", "--all-tags", &repo]);
    for tag in ["a", "b", "c"] {
        assert!(out.contains(&format!("{tag}: digest: sha256:")), "{out}");
    }
    assert_eq!(registry_tags(&reg.addr(), "allt"), ["a", "b", "c"]);
    assert!(!out.contains("other"), "{out}");

    // berth push -a does the same, and a second push sends no layer again.
    let brepo = format!("{}/berthall", reg.addr());
    for tag in ["v1", "v2"] {
        d.docker_ok(&["tag", &one, &format!("{brepo}:{tag}")]);
    }
    d.berth_ok(&["push", "-a", &brepo]);
    assert_eq!(registry_tags(&reg.addr(), "berthall"), ["v1", "v2"]);
    let again = d.docker_ok(&["push", "-a", &brepo]);
    assert!(!again.contains("Pushed"), "{again}");

    // A repository without local tags is a clear error, and so is a tag with -a.
    let out = d.docker(&["push", "-a", &format!("{}/nothing", reg.addr())]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("does not exist locally"),
        "{}",
        text(&out).1
    );
    let out = d.berth(&["push", "-a", &format!("{repo}:a")]);
    assert!(!out.status.success(), "{:?}", text(&out));
}

#[path = "images_depth/hostile.rs"]
mod hostile;

/// Pulls `repo:1` from the hostile registry, expecting failure; returns stderr.
fn failed_pull(d: &Daemon, h: &hostile::Hostile, repo: &str) -> String {
    let out = d.docker(&["pull", &format!("{}/{repo}:1", h.addr)]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{repo} pulled: {stdout}");
    stderr
}

/// Nothing partial is listed and the next good pull works and runs.
fn store_still_good(d: &Daemon) {
    assert_eq!(
        d.docker_ok(&["images", "-q"]),
        "",
        "a partial image is listed"
    );
    let image = d.pull("busybox:1");
    assert_eq!(d.docker_ok(&["run", "--rm", &image, "echo", "ok"]), "ok");
}

#[test]
fn bad_manifests_are_refused_clearly() {
    let h = hostile::Hostile::start();
    let d = Daemon::start();
    for (repo, want) in [
        ("notjson", "invalid manifest"),
        ("huge", "too large"),
        ("hugelen", "too large"),
        ("badtype", "unsupported manifest media type"),
    ] {
        let err = failed_pull(&d, &h, repo);
        assert!(err.contains(want) && err.contains(repo), "{repo}: {err}");
    }
    store_still_good(&d);
}

#[test]
fn bad_content_is_refused_and_leaves_no_image() {
    let h = hostile::Hostile::start();
    let d = Daemon::start();
    for (repo, want) in [
        ("badlayer", "application/vnd.example.unknown.layer"),
        ("diffids", "diff_ids"),
        ("trunc", "end of file before message length reached"),
        ("short", "ended early"),
    ] {
        let err = failed_pull(&d, &h, repo);
        assert!(err.contains(want), "{repo}: {err}");
    }
    // The truncated blob is retried, but a bounded number of times.
    for repo in ["trunc", "short"] {
        let n = h.count(repo);
        assert!((2..=8).contains(&n), "{repo} requests: {n}");
    }
    store_still_good(&d);
}

#[test]
fn auth_and_redirect_loops_and_5xx_are_bounded() {
    let h = hostile::Hostile::start();
    let d = Daemon::start();
    for (repo, want, max) in [
        ("auth401", "unauthorized", 4),
        ("bearer401", "unauthorized", 4),
        ("redirect", "redirect", 40),
        ("down503", "503", 10),
    ] {
        let err = failed_pull(&d, &h, repo);
        assert!(err.to_lowercase().contains(want), "{repo}: {err}");
        let n = h.count(repo);
        assert!(n >= 1 && n <= max, "{repo}: {n} requests");
    }
    // 5xx is retried (more than one request) before giving up.
    assert!(h.count("down503") > 1);
    store_still_good(&d);
}

#[test]
fn login_push_and_pull_through_a_bearer_token_registry() {
    let d = Daemon::start();
    let image = d.pull("busybox:1");
    let reg = Registry::start();
    let port = reg.port.to_string();
    let proxy = hostile::Hostile::script("token-proxy.py", &[&port, "alice", "s3cret"]);
    let target = format!("{}/alice/app:1", proxy.addr);
    d.docker_ok(&["tag", &image, &target]);

    // Anonymous: the token server refuses, and the error says so.
    let out = d.docker(&["push", &target]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("unauthorized"), "{}", text(&out).1);

    let out = d.docker(&["login", "-u", "alice", "-p", "wrong", &proxy.addr]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("unauthorized"), "{}", text(&out).1);

    let out = d.docker_ok(&["login", "-u", "alice", "-p", "s3cret", &proxy.addr]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = d.docker_ok(&["push", &target]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    d.docker_ok(&["rmi", &target]);
    d.docker_ok(&["pull", "-q", &target]);
    assert_eq!(d.docker_ok(&["run", "--rm", &target, "echo", "ok"]), "ok");

    // berth logs out the same way; pulls are refused again.
    d.berth_ok(&["logout", &proxy.addr]);
    d.docker_ok(&["rmi", &target]);
    let out = d.docker(&["pull", &target]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("unauthorized"), "{}", text(&out).1);
}

#[test]
fn image_prune_does_not_run_under_a_pull_in_flight() {
    let h = hostile::Hostile::start();
    let d = Daemon::start();
    let base = d.pull("busybox:1");
    d.docker_ok(&["tag", &base, "keep:1"]);
    d.docker_ok(&["rmi", &base]);
    let slow = format!("{}/slow:1", h.addr);
    let mut pull = Command::new("docker")
        .args(["-H", &d.host(), "pull", &slow])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The pull is in flight once the registry saw its blob request (it is held there).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while h.count("slow") < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "pull never reached the blob"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = d.docker(&["image", "prune", "-a", "-f"]);
    assert!(!out.status.success(), "prune ran during a pull");
    assert!(
        text(&out).1.contains("pull is in progress"),
        "{}",
        text(&out).1
    );
    assert!(
        d.docker_ok(&["images", "-q"]).len() >= 12,
        "prune removed an image"
    );

    Command::new("curl")
        .args(["-sf", &format!("http://{}/release", h.addr)])
        .output()
        .unwrap();
    assert!(pull.wait().unwrap().success(), "{}", d.log());
    assert!(d.docker_ok(&["image", "inspect", &slow]).contains("RootFS"));
    // Once the pull is done, prune runs and removes both unused images.
    let out = d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted"), "{out}");
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
}

/// `push ADDR NAME TAG N`: pushes an image of the first N of two small layers (l1/f, l2/f)
/// and prints the digest of the last layer. `proxy ADDR HELD`: forwards to the registry at
/// ADDR, holding GETs of blob HELD until `GET /release` (at most 120 s); `GET /seen` counts
/// them. Prints its port once listening; serves until stdin closes.
const RACE_PY: &str = r#"
import sys, json, hashlib, io, tarfile, threading, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode, addr = sys.argv[1], sys.argv[2]
if mode == 'push':
    name, tag, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
    def up(data):
        d = 'sha256:' + hashlib.sha256(data).hexdigest()
        r = urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/blobs/uploads/', method='POST', data=b''))
        loc = r.headers['Location']
        loc = loc if loc.startswith('http') else f'http://{addr}{loc}'
        loc += ('&' if '?' in loc else '?') + 'digest=' + d
        urllib.request.urlopen(urllib.request.Request(loc, method='PUT', data=data, headers={'Content-Type': 'application/octet-stream'}))
        return d
    def layer(d):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as t:
            i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o755; i.mtime = 1700000000; t.addfile(i)
            i = tarfile.TarInfo(d + '/f'); i.size = len(d); i.mode = 0o644; i.mtime = 1700000000; t.addfile(i, io.BytesIO(d.encode()))
        return buf.getvalue()
    raws = [layer('l1'), layer('l2')][:n]
    descs = [{'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': up(r), 'size': len(r)} for r in raws]
    cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['/nothing']},
        'rootfs': {'type': 'layers', 'diff_ids': ['sha256:' + hashlib.sha256(r).hexdigest() for r in raws]}}).encode()
    m = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': up(cfg), 'size': len(cfg)},
        'layers': descs}).encode()
    urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/manifests/{tag}', method='PUT', data=m,
        headers={'Content-Type': 'application/vnd.oci.image.manifest.v1+json'}))
    print(descs[-1]['digest'])
    sys.exit(0)
held = sys.argv[3]
release, lock, seen = threading.Event(), threading.Lock(), [0]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def fwd(self, body):
        if self.path == '/release':
            release.set(); return self.reply(200, {}, b'ok', body)
        if self.path == '/seen':
            with lock: return self.reply(200, {}, str(seen[0]).encode(), body)
        if held in self.path and self.command == 'GET':
            with lock: seen[0] += 1
            release.wait(120)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() in ('accept', 'range', 'authorization')}
        req = urllib.request.Request(f'http://{addr}{self.path}', method=self.command, headers=hdrs)
        try:
            r = urllib.request.urlopen(req)
            code, rh, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            code, rh, data = e.code, e.headers, e.read()
        keep = {k: v for k, v in rh.items() if k.lower() in ('content-type', 'docker-content-digest', 'www-authenticate', 'docker-distribution-api-version')}
        self.reply(code, keep, data, body)
    def reply(self, code, hdrs, data, body):
        self.send_response(code)
        for k, v in hdrs.items(): self.send_header(k, v)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if body: self.wfile.write(data)
    def do_GET(self): self.fwd(True)
    def do_HEAD(self): self.fwd(False)
s = ThreadingHTTPServer(('127.0.0.1', 0), H)
s.daemon_threads = True
threading.Thread(target=s.serve_forever, daemon=True).start()
print(s.server_address[1], flush=True)
sys.stdin.read()
release.set()
"#;

fn race_push(reg: &Registry, tag: &str, layers: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", RACE_PY, "push", &reg.addr(), "race", tag, layers])
        .output()
        .unwrap();
    assert!(out.status.success(), "push: {}", text(&out).1);
    text(&out).0.trim().to_string()
}

/// The holding proxy; killed (and its stdin closed) on drop.
struct HoldingProxy(std::process::Child, String);

impl HoldingProxy {
    fn get(&self, what: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{}/{what}", self.1)])
            .output()
            .unwrap();
        text(&out).0
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rmi_during_a_pull_that_reuses_its_layer_keeps_the_store_consistent() {
    use std::io::BufRead;
    let reg = Registry::start();
    let d = Daemon::start();
    race_push(&reg, "1", "1");
    let held = race_push(&reg, "2", "2");
    let mut child = Command::new("python3")
        .args(["-c", RACE_PY, "proxy", &reg.addr(), &held])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let proxy = HoldingProxy(child, format!("127.0.0.1:{}", port.trim()));
    let one = format!("{}/race:1", proxy.1);
    d.docker_ok(&["pull", &one]);
    // race:2 reuses race:1's layer (its snapshot exists) and waits for its second blob.
    let two = format!("{}/race:2", proxy.1);
    let mut pull = Command::new("docker")
        .args(["-H", &d.host(), "pull", &two])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while proxy.get("seen").trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "pull never reached the blob"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // rmi deletes race:1's records now; its layer, which the pull reuses, stays.
    let out = d.docker_ok(&["rmi", &one]);
    assert!(out.contains("Deleted"), "{out}");
    proxy.get("release");
    assert!(pull.wait().unwrap().success(), "{}", d.log());
    let name = format!("race-{}", common::unique());
    d.docker_ok(&["create", "--name", &name, &two]);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("fs.tar");
    d.docker_ok(&["export", "-o", tar.to_str().unwrap(), &name]);
    let out = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let listing = text(&out).0;
    assert!(
        listing.contains("l1/f") && listing.contains("l2/f"),
        "{listing}"
    );
    d.docker_ok(&["rm", &name]);
    // Once the image goes too, nothing is left behind: no snapshot, no blob.
    d.docker_ok(&["rmi", &two]);
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.data_root().join("snapshots/metadata.json")).unwrap(),
    )
    .unwrap();
    let left = index["snapshots"].as_object().map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "{index}");
    let blobs = walk_files(&d.data_root().join("content"));
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
