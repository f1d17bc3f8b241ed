//! Issue 3 item 4: layers are unpacked while they download. A multi-layer gzip image with
//! whiteouts, an opaque directory, hardlinks and symlinks gives the expected merged tree;
//! a blob that does not match its digest, or a layer whose diff_id does not match the
//! config, leaves no image, no snapshot and no scratch extraction behind.

mod common;

use std::path::Path;
use std::process::Command;

use common::{text, unique, Daemon, Registry};

/// Pushes a 3-layer gzip OCI image through the registry API. MODE `ok`, or `bad-diffid`
/// (the config's diff_id of layer 1 is wrong). Prints the layer digests, one a line.
const PUSH_PY: &str = r#"
import sys, json, hashlib, io, os, gzip, tarfile, urllib.request
addr, name, tag, mode = sys.argv[1:5]
def up(data):
    d = 'sha256:' + hashlib.sha256(data).hexdigest()
    r = urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/blobs/uploads/', method='POST', data=b''))
    loc = r.headers['Location']
    loc = loc if loc.startswith('http') else f'http://{addr}{loc}'
    loc += ('&' if '?' in loc else '?') + 'digest=' + d
    urllib.request.urlopen(urllib.request.Request(loc, method='PUT', data=data, headers={'Content-Type': 'application/octet-stream'}))
    return d
def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for n, typ, data in entries:
            i = tarfile.TarInfo(n); i.mtime = 1700000000
            if typ == 'd': i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
            elif typ == 'f': i.size = len(data); i.mode = 0o644; t.addfile(i, io.BytesIO(data))
            elif typ == 'l': i.type = tarfile.LNKTYPE; i.linkname = data; t.addfile(i)
            elif typ == 's': i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)
    return buf.getvalue()
rnd = os.urandom(3 * 1024 * 1024)
layers = [
    layer([('a', 'd', b''), ('a/keep', 'f', b'keep0'), ('a/gone', 'f', b'gone0'),
           ('a/hl', 'l', 'a/keep'), ('a/sl', 's', 'keep'), ('b', 'd', b''), ('b/x', 'f', b'x0'),
           ('b/sub', 'd', b''), ('b/sub/y', 'f', b'y0'), ('c', 'd', b''), ('c/file', 'f', b'c0'),
           ('d', 'd', b''), ('d/big.bin', 'f', rnd)]),
    layer([('a', 'd', b''), ('a/.wh.gone', 'f', b''), ('b', 'd', b''), ('b/.wh..wh..opq', 'f', b''),
           ('b/new', 'f', b'new1'), ('c', 'd', b''), ('c/file', 'f', b'c1'),
           ('d', 'd', b''), ('d/more.bin', 'f', os.urandom(2 * 1024 * 1024))]),
    layer([('e', 'd', b''), ('e/f', 'f', b'e2'), ('d', 'd', b''), ('d/.wh.more.bin', 'f', b'')]),
]
descs, diff_ids = [], []
for raw in layers:
    diff_ids.append('sha256:' + hashlib.sha256(raw).hexdigest())
    z = gzip.compress(raw, compresslevel=1)
    descs.append({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': up(z), 'size': len(z)})
if mode == 'bad-diffid':
    diff_ids[1] = 'sha256:' + hashlib.sha256(b'not this layer').hexdigest()
cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['/nothing']},
    'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}).encode()
m = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': up(cfg), 'size': len(cfg)},
    'layers': descs}).encode()
urllib.request.urlopen(urllib.request.Request(f'http://{addr}/v2/{name}/manifests/{tag}', method='PUT', data=m,
    headers={'Content-Type': 'application/vnd.oci.image.manifest.v1+json'}))
for d in descs: print(d['digest'])
"#;

/// Lists a tar's entries under a/ b/ c/ d/ e/ as "path kind detail", sorted.
const LIST_PY: &str = r#"
import sys, tarfile, hashlib
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        n = m.name.lstrip('./')
        if n.split('/')[0] not in ('a', 'b', 'c', 'd', 'e'): continue
        if m.isdir(): out.append(f'{n} dir')
        elif m.issym(): out.append(f'{n} symlink {m.linkname}')
        elif m.islnk(): out.append(f'{n} hardlink {m.linkname.lstrip("./")}')
        else:
            data = t.extractfile(m).read()
            shown = data.decode() if len(data) < 100 else f'{len(data)} bytes'
            out.append(f'{n} file {shown}')
print('\n'.join(sorted(out)))
"#;

fn push(reg: &Registry, image: &str, mode: &str) -> Vec<String> {
    let (name, tag) = image.split_once(':').unwrap();
    let out = Command::new("python3")
        .args(["-c", PUSH_PY, &reg.addr(), name, tag, mode])
        .output()
        .unwrap();
    assert!(out.status.success(), "push: {}", text(&out).1);
    text(&out).0.lines().map(str::to_string).collect()
}

/// The snapshot index's keys and the snapshot directories on disk.
fn snapshot_state(d: &Daemon) -> (Vec<String>, usize) {
    let root = d.data_root().join("snapshots");
    let keys = match std::fs::read(root.join("metadata.json")) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            v["snapshots"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    let dirs = std::fs::read_dir(root.join("snapshots"))
        .map(|r| r.count())
        .unwrap_or(0);
    (keys, dirs)
}

fn assert_nothing_left(d: &Daemon, what: &str) {
    assert_eq!(
        d.docker_ok(&["images", "-q"]),
        "",
        "{what}: an image is listed"
    );
    let (keys, dirs) = snapshot_state(d);
    assert!(keys.is_empty(), "{what}: snapshots left: {keys:?}");
    assert_eq!(dirs, 0, "{what}: snapshot directories left");
}

#[test]
fn streamed_pull_gives_the_merged_tree_with_whiteouts_and_opaque_dirs() {
    let reg = Registry::start();
    let d = Daemon::start();
    let image = format!("{}/stream:1", reg.addr());
    push(&reg, "stream:1", "ok");
    let out = d.docker_ok(&["pull", &image]);
    assert!(out.contains("Pull complete"), "{out}");
    let (keys, _) = snapshot_state(&d);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|k| !k.starts_with("extract-")), "{keys:?}");
    let name = format!("stream-{}", unique());
    d.docker_ok(&["create", "--name", &name, &image]);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("rootfs.tar");
    d.docker_ok(&["export", "-o", tar.to_str().unwrap(), &name]);
    let listing = list(&tar);
    let expected = "\
a dir
a/hl file keep0
a/keep hardlink a/hl
a/sl symlink keep
b dir
b/new file new1
c dir
c/file file c1
d dir
d/big.bin file 3145728 bytes
e dir
e/f file e2";
    assert_eq!(listing, expected);
    // Export keeps the hardlink (first name in lexical order holds the data, as dockerd
    // writes it); the base layer's own directory shares the inode too.
    let root = d.data_root().join("snapshots");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("metadata.json")).unwrap()).unwrap();
    let base = index["snapshots"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["parent"].is_null())
        .unwrap();
    let fs = root
        .join("snapshots")
        .join(base["id"].to_string())
        .join("fs");
    let ino =
        |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(fs.join(p)).unwrap());
    assert_eq!(ino("a/hl"), ino("a/keep"));
    d.docker_ok(&["rm", &name]);
    // Pulling again finds every layer in place.
    let out = d.docker_ok(&["pull", &image]);
    assert!(out.contains("up to date"), "{out}");
}

fn list(tar: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", LIST_PY, tar.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "list: {}", text(&out).1);
    text(&out).0.trim().to_string()
}

#[test]
fn a_layer_whose_diff_id_does_not_match_leaves_no_snapshot_and_no_image() {
    let reg = Registry::start();
    let d = Daemon::start();
    push(&reg, "baddiff:1", "bad-diffid");
    let image = format!("{}/baddiff:1", reg.addr());
    let out = d.docker(&["pull", &image]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "a wrong diff_id was accepted");
    assert!(err.contains("diff_id"), "{err}");
    assert_nothing_left(&d, "diff_id mismatch");
}

#[test]
fn a_blob_with_a_wrong_digest_leaves_no_snapshot_and_no_image() {
    let reg = Registry::start();
    let layers = push(&reg, "badblob:1", "ok");
    // Corrupt the middle layer in the registry's storage: still valid gzip framing at the
    // start, so its extractor gets going before the digest check fails.
    let hex = layers[1].trim_start_matches("sha256:").to_string();
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let d = Daemon::start();
    let image = format!("{}/badblob:1", reg.addr());
    let out = d.docker(&["pull", &image]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "a corrupted blob was accepted");
    assert!(err.contains("digest"), "{err}");
    assert_nothing_left(&d, "digest mismatch");
}
