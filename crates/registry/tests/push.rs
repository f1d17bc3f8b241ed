//! Pushes to a real docker-registry, then checks with skopeo and our pull.

mod common;

use std::process::Command;

use berth_content::{ContentStore, Digest};
use berth_image::manifest::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST_V2};
use berth_image::{unpack_layers, Reference, UnpackError};
use berth_registry::{pull_to_store, push_from_store, ClientConfig, PushEvent, RegistryClient};
use berth_snapshot::Snapshotter;
use common::{make_busybox_layout, skopeo_push, Registry};

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default()).unwrap()
}

/// Pushes an image made of the given (uncompressed) layer tars, gzipped,
/// with a Docker v2s2 manifest. Returns the manifest digest.
async fn push_image(
    c: &RegistryClient,
    store: &ContentStore,
    r: &Reference,
    tars: &[Vec<u8>],
) -> Digest {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in tars {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, t).unwrap();
        let gz = e.finish().unwrap();
        let d = store.write_blob(&gz).unwrap();
        c.push_blob(r, &d, &store.path(&d), gz.len() as u64, None, &|_, _| {})
            .await
            .unwrap();
        layers.push(
            serde_json::json!({"mediaType": DOCKER_LAYER_GZIP, "digest": d, "size": gz.len()}),
        );
        diff_ids.push(Digest::sha256_of(t));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let cd = store.write_blob(&config).unwrap();
    c.push_blob(
        r,
        &cd,
        &store.path(&cd),
        config.len() as u64,
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_V2,
        "config": {"mediaType": DOCKER_CONFIG, "digest": cd, "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    c.put_manifest(r, &manifest, DOCKER_MANIFEST_V2, None)
        .await
        .unwrap()
}

/// A tar with one raw entry, written by hand so hostile names survive.
fn raw_tar(entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[tokio::test]
async fn hostile_layers_fail_and_write_nothing_outside() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let root = tmp.path().join("jail");
    let snaps = Snapshotter::open(root.join("snaps")).unwrap();
    let c = client();
    use tar::EntryType::{Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[("../../../escaped", Regular, None, b"x")]),
        ),
        (
            "symlink",
            raw_tar(&[
                ("s", Symlink, Some("/"), b""),
                ("s/tmp/escaped", Regular, None, b"x"),
            ]),
        ),
        (
            "relsymlink",
            raw_tar(&[
                ("s", Symlink, Some("../../../.."), b""),
                ("s/escaped", Regular, None, b"x"),
            ]),
        ),
        (
            "hardlink",
            raw_tar(&[("h", Link, Some("../../../../etc/passwd"), b"")]),
        ),
    ];
    for (name, tar) in cases {
        let r: Reference = format!("{}/hostile:{name}", reg.addr).parse().unwrap();
        push_image(&c, &store, &r, &[tar]).await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let pulled = pull_to_store(&c, &store, &r, None, tx).await.unwrap();
        let pairs: Vec<_> = pulled
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.diff_id.clone()))
            .collect();
        let err = unpack_layers(&store, &snaps, &pairs).unwrap_err();
        assert!(matches!(err, UnpackError::Apply { .. }), "{name}: {err}");
        assert!(err.to_string().contains("unsafe"), "{name}: {err}");
        assert!(
            snaps.list().is_empty(),
            "{name}: a half-unpacked layer was left"
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["snaps"]);
    assert!(!std::path::Path::new("/tmp/escaped").exists());

    // An absolute path is taken relative to the layer root.
    let r: Reference = format!("{}/hostile:abs", reg.addr).parse().unwrap();
    push_image(
        &c,
        &store,
        &r,
        &[raw_tar(&[("/abs/file", Regular, None, b"in")])],
    )
    .await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(&c, &store, &r, None, tx).await.unwrap();
    let pairs: Vec<_> = pulled
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.diff_id.clone()))
        .collect();
    let chains = unpack_layers(&store, &snaps, &pairs).unwrap();
    let fs = snaps.fs_dir(&chains[0].to_string()).unwrap();
    assert_eq!(std::fs::read(fs.join("abs/file")).unwrap(), b"in");
}

#[tokio::test]
async fn push_pulled_image_to_another_repo() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "v2s2");
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let c = client();
    let src: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(&c, &store, &src, None, tx).await.unwrap();

    let dst: Reference = format!("{}/copies/busybox:2", reg.addr).parse().unwrap();
    // The first layer is mounted across repositories, the rest uploaded.
    let first = &pulled.layers[0];
    assert!(!c.blob_exists(&dst, &first.digest, None).await.unwrap());
    assert!(c
        .mount_blob(&src.repository, &dst, &first.digest, None)
        .await
        .unwrap());
    assert!(c.blob_exists(&dst, &first.digest, None).await.unwrap());
    for l in &pulled.layers[1..] {
        c.push_blob(
            &dst,
            &l.digest,
            &store.path(&l.digest),
            l.size,
            None,
            &|_, _| {},
        )
        .await
        .unwrap();
    }
    let cd = &pulled.config_digest;
    c.push_blob(
        &dst,
        cd,
        &store.path(cd),
        pulled.config_bytes.len() as u64,
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    let d = c
        .put_manifest(&dst, &pulled.manifest_bytes, &pulled.media_type, None)
        .await
        .unwrap();
    assert_eq!(d, pulled.manifest_digest);

    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{dst}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], d.to_string());
    assert_eq!(v["Layers"].as_array().unwrap().len(), pulled.layers.len());
}

#[tokio::test]
async fn push_from_store_then_pull_back() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let c = client();
    let src: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(&c, &store, &src, None, tx).await.unwrap();

    let dst: Reference = format!("{}/mine/bb:v1", reg.addr).parse().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let d = push_from_store(&c, &store, &dst, &pulled.manifest_digest, None, tx)
        .await
        .unwrap();
    assert_eq!(d, pulled.manifest_digest);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    for l in &pulled.layers {
        assert!(
            events.contains(&PushEvent::Pushed(l.digest.short().to_string())),
            "{events:?}"
        );
    }
    assert!(
        matches!(events.last(), Some(PushEvent::ManifestPushed { .. })),
        "{events:?}"
    );

    // Pushing again finds every layer there.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    push_from_store(&c, &store, &dst, &pulled.manifest_digest, None, tx)
        .await
        .unwrap();
    let mut exists = 0;
    while let Ok(e) = rx.try_recv() {
        exists += usize::from(matches!(e, PushEvent::LayerAlreadyExists(_)));
    }
    assert_eq!(exists, pulled.layers.len());

    // And it pulls back into a fresh store.
    let fresh = ContentStore::open(tmp.path().join("fresh")).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let again = pull_to_store(&c, &fresh, &dst, None, tx).await.unwrap();
    assert_eq!(again.config_digest, pulled.config_digest);
}
