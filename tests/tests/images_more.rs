//! Issue 3, images in depth: push, login, save/load, import, prune and df, and robustness of
//! pulls (SIGKILL mid-pull with resume, hostile layers, corrupted registry blobs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{text, unique, Daemon, Registry};

/// Pushes a one-layer OCI image straight through the registry API. KIND is `random`
/// (a file of SIZE KiB random bytes), `dotdot`, `symlink` or `hardlink` (hostile tars
/// aiming at ARG). Prints the layer digest.
const PUSH_PY: &str = r#"
import sys, json, hashlib, io, os, tarfile, urllib.request
addr, name, tag, kind, arg = sys.argv[1:6]
def up(data):
    d = 'sha256:' + hashlib.sha256(data).hexdigest()
    r = urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/blobs/uploads/', method='POST', data=b''))
    loc = r.headers['Location']
    loc = loc if loc.startswith('http') else f'http://{addr}{loc}'
    loc += ('&' if '?' in loc else '?') + 'digest=' + d
    urllib.request.urlopen(urllib.request.Request(loc, method='PUT', data=data, headers={'Content-Type': 'application/octet-stream'}))
    return d
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as t:
    def add(n, data=b'', typ=tarfile.REGTYPE, link=''):
        i = tarfile.TarInfo(n); i.type = typ; i.linkname = link; i.size = len(data); i.mode = 0o644
        t.addfile(i, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
    if kind == 'random':
        add('random.bin', os.urandom(int(arg) * 1024))
    elif kind == 'dotdot':
        add('../../../../../../..' + arg, b'owned')
    elif kind == 'symlink':
        add('evil', typ=tarfile.SYMTYPE, link=arg)
        add('evil/owned', b'owned')
    elif kind == 'hardlink':
        add('hl', typ=tarfile.LNKTYPE, link='../../../../../../..' + arg)
        add('hl2', typ=tarfile.LNKTYPE, link=arg)
layer = buf.getvalue()
ld = up(layer)
cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {},
    'rootfs': {'type': 'layers', 'diff_ids': [ld]}}).encode()
cd = up(cfg)
m = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': cd, 'size': len(cfg)},
    'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': ld, 'size': len(layer)}]}).encode()
urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/manifests/{tag}', method='PUT', data=m,
    headers={'Content-Type': 'application/vnd.oci.image.manifest.v1+json'}))
print(ld)
"#;

fn push_raw(reg: &Registry, image: &str, kind: &str, arg: &str) -> String {
    let (name, tag) = image.split_once(':').unwrap();
    let out = Command::new("python3")
        .args(["-c", PUSH_PY, &reg.addr(), name, tag, kind, arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "push.py: {}", text(&out).1);
    text(&out).0.trim().to_string()
}

fn write_htpasswd(dir: &Path, user: &str, pass: &str) -> PathBuf {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "htpasswd (apache2-utils) is installed"
    );
    let p = dir.join("htpasswd");
    std::fs::write(&p, &out.stdout).unwrap();
    p
}

#[test]
fn push_retagged_image_then_second_push_sends_nothing() {
    let d = Daemon::start();
    let src = d.pull("busybox:v2s2");
    let reg = Registry::start();
    let dst = format!("{}/pushed/bb:v1", reg.addr());
    d.docker_ok(&["tag", &src, &dst]);
    let out = d.docker_ok(&["push", &dst]);
    assert!(out.contains("Pushed"), "{out}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    assert!(out.contains(" size: "), "{out}");
    let again = d.docker_ok(&["push", &dst]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains("Pushed"), "blobs sent again: {again}");
    // berth push of another tag of the same image: every layer is already there.
    let dst2 = format!("{}/pushed/bb:v2", reg.addr());
    d.docker_ok(&["tag", &src, &dst2]);
    let out2 = d.berth_ok(&["push", &dst2]);
    assert!(!out2.contains("Pushed"), "{out2}");
    // A fresh daemon pulls what was pushed and runs it.
    let d2 = Daemon::start();
    d2.docker_ok(&["pull", "-q", &dst]);
    assert_eq!(
        d2.docker_ok(&["run", "--rm", &dst, "cat", "/etc/layer2"]),
        "layer2"
    );
    let same = |dd: &Daemon, r: &str| dd.docker_ok(&["image", "inspect", "-f", "{{.Id}}", r]);
    assert_eq!(same(&d, &src), same(&d2, &dst));
}

#[test]
fn login_with_basic_auth_then_push_and_pull_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = write_htpasswd(dir.path(), "alice", "s3cret");
    let reg = Registry::start_with(Some(&format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        htpasswd.display()
    )));
    let d = Daemon::start();
    let src = d.pull("busybox:1");
    let dst = format!("{}/private/bb:1", reg.addr());
    d.docker_ok(&["tag", &src, &dst]);
    let denied = d.docker(&["push", &dst]);
    assert!(!denied.status.success(), "push without credentials worked");
    let bad = d.docker(&["login", "-u", "alice", "-p", "wrong", &reg.addr()]);
    let (_, err) = text(&bad);
    assert!(!bad.status.success(), "login with a wrong password worked");
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains(&reg.addr()), "{err}");
    let good = d.docker_ok(&["login", "-u", "alice", "-p", "s3cret", &reg.addr()]);
    assert!(good.contains("Login Succeeded"), "{good}");
    let out = d.docker_ok(&["push", &dst]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    d.docker_ok(&["rmi", &dst]);
    d.docker_ok(&["pull", "-q", &dst]);
    assert_eq!(d.docker_ok(&["run", "--rm", &dst, "echo", "ok"]), "ok");
    d.docker_ok(&["logout", &reg.addr()]);
    d.docker_ok(&["rmi", &dst]);
    let anon = d.docker(&["pull", &dst]);
    assert!(!anon.status.success(), "pull without credentials worked");
}

#[test]
fn save_and_load_round_trip_between_daemons() {
    let d1 = Daemon::start();
    let a = d1.pull("busybox:1");
    let b = d1.pull("busybox:v2s2");
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("images.tar");
    d1.docker_ok(&["save", "-o", tar.to_str().unwrap(), &a, &b]);
    let d2 = Daemon::start();
    let out = d2.docker_ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {a}")), "{out}");
    assert!(out.contains(&format!("Loaded image: {b}")), "{out}");
    let id = |d: &Daemon, r: &str| d.docker_ok(&["image", "inspect", "-f", "{{.Id}}", r]);
    assert_eq!(id(&d1, &a), id(&d2, &a));
    assert_eq!(id(&d1, &b), id(&d2, &b));
    assert_eq!(
        d2.docker_ok(&["run", "--rm", &b, "cat", "/etc/layer2"]),
        "layer2"
    );
    // `GET /images/{name}/get` (one image) through curl, loaded by berth.
    let one = dir.path().join("one.tar");
    let url = format!("http://localhost/images/{}/get", id(&d1, &a));
    let c = Command::new("curl")
        .args(["-fsS", "--unix-socket", d1.socket.to_str().unwrap(), "-o"])
        .arg(&one)
        .arg(&url)
        .status()
        .unwrap();
    assert!(c.success());
    let d3 = Daemon::start();
    let loaded = d3.berth_ok(&["load", "-i", one.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image ID: sha256:"), "{loaded}");
    assert_eq!(
        d3.docker_ok(&["run", "--rm", &id(&d1, &a), "echo", "hi"]),
        "hi"
    );
    // A truncated archive is refused and records nothing.
    let bytes = std::fs::read(&tar).unwrap();
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let d4 = Daemon::start();
    assert!(!d4
        .docker(&["load", "-i", cut.to_str().unwrap()])
        .status
        .success());
    assert_eq!(d4.docker_ok(&["images", "-q"]), "");
}

/// A root filesystem tar with a static busybox at /bin/busybox and /bin/sh.
fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar.gz");
    let ok = Command::new("tar")
        .args([
            "-czf",
            tar.to_str().unwrap(),
            "-C",
            root.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    tar
}

#[test]
fn import_a_rootfs_with_changes_and_run_it() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(dir.path());
    let name = format!("imported{}:v1", unique());
    let id = d.docker_ok(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\", \"-c\", \"echo imported $FOO\"]",
        "--change",
        "ENV FOO=bar",
        "--change",
        "WORKDIR /bin",
        "-m",
        "from a tar",
        tar.to_str().unwrap(),
        &name,
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(d.docker_ok(&["run", "--rm", &name]), "imported bar");
    assert_eq!(
        d.docker_ok(&["run", "--rm", &name, "sh", "-c", "pwd"]),
        "/bin"
    );
    let comment = d.docker_ok(&["image", "inspect", "-f", "{{.Comment}}", &name]);
    assert_eq!(comment, "from a tar");
    // An imported image can be saved and pushed like any other.
    let reg = Registry::start();
    let dst = format!("{}/imp:1", reg.addr());
    d.docker_ok(&["tag", &name, &dst]);
    let out = d.docker_ok(&["push", &dst]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    let bad = d.docker(&["import", "--change", "RUN true", tar.to_str().unwrap()]);
    assert!(!bad.status.success());
}

#[test]
fn prune_and_disk_usage() {
    let d = Daemon::start();
    let a = d.pull("busybox:1");
    let b = d.pull("busybox:v2s2");
    let dir = tempfile::tempdir().unwrap();
    let tar = rootfs_tar(dir.path());
    let dangling = d.docker_ok(&["import", tar.to_str().unwrap()]);
    d.docker_ok(&["create", "--name", &format!("keep{}", unique()), &a, "true"]);
    let df = d.docker_ok(&["system", "df", "--format", "{{json .}}"]);
    let rows: Vec<serde_json::Value> = df
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images = rows.iter().find(|r| r["Type"] == "Images").unwrap();
    assert_eq!(images["TotalCount"], "3", "{df}");
    assert_eq!(images["Active"], "1", "{df}");
    // The sizes of the listed images add up to the total shown (shared layers aside).
    let sizes = d.docker_ok(&["system", "df", "-v", "--format", "{{json .Images}}"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&sizes).unwrap();
    assert_eq!(listed.len(), 3, "{sizes}");
    let api_df: serde_json::Value = serde_json::from_slice(
        &Command::new("curl")
            .args([
                "-fsS",
                "--unix-socket",
                d.socket.to_str().unwrap(),
                "http://localhost/system/df",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let total: i64 = api_df["LayersSize"].as_i64().unwrap();
    let sum: i64 = api_df["Images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Size"].as_i64().unwrap())
        .sum();
    assert!(
        total > 1_000_000 && total <= sum && sum < 100_000_000,
        "layers {total}, images {sum}"
    );
    let pruned = d.docker_ok(&["image", "prune", "-f"]);
    assert!(pruned.contains(&dangling), "{pruned}");
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(d.docker_ok(&["images", "-q"]).lines().count(), 2);
    let all = d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(all.contains(&format!("untagged: {b}")), "{all}");
    let left = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(left, a, "an image in use by a container was pruned");
    let sys = d.docker_ok(&["system", "prune", "-f"]);
    assert!(sys.contains("Total reclaimed space"), "{sys}");
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
    d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
}

#[path = "images_more/robust.rs"]
mod robust;
