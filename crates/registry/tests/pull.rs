//! Pulls from a real docker-registry and unpacks with berth-image.

mod common;

use berth_content::{ContentStore, Digest};
use berth_image::manifest::{DOCKER_MANIFEST_V2, OCI_MANIFEST};
use berth_image::{unpack_layers, Reference};
use berth_registry::{pull_to_store, ClientConfig, PullEvent, RegistryClient, RegistryError};
use berth_snapshot::Snapshotter;
use common::{make_busybox_layout, skopeo_push, Registry};

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default()).unwrap()
}

async fn pull(
    c: &RegistryClient,
    store: &ContentStore,
    image: &str,
) -> (
    Result<berth_registry::PulledManifest, RegistryError>,
    Vec<PullEvent>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r: Reference = image.parse().unwrap();
    let res = pull_to_store(c, store, &r, None, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (res, events)
}

#[tokio::test]
async fn pull_busybox_then_unpack() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    skopeo_push(&layout, &format!("{}/busybox:v2s2", reg.addr), "v2s2");

    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snapshots")).unwrap();
    let c = client();
    let (res, events) = pull(&c, &store, &format!("{}/busybox:1", reg.addr)).await;
    let pulled = res.unwrap();
    assert_eq!(pulled.media_type, OCI_MANIFEST);
    assert_eq!(pulled.layers.len(), 2);
    assert_eq!(
        pulled.manifest_digest,
        Digest::sha256_of(&pulled.manifest_bytes)
    );
    assert_eq!(
        pulled.config_digest,
        Digest::sha256_of(&pulled.config_bytes)
    );
    assert!(store.has(&pulled.manifest_digest) && store.has(&pulled.config_digest));
    for l in &pulled.layers {
        assert!(store.has(&l.digest));
        assert!(
            events.contains(&PullEvent::DownloadComplete(l.digest.short().to_string())),
            "{events:?}"
        );
    }
    assert!(
        matches!(events.first(), Some(PullEvent::Resolved { .. })),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, PullEvent::Downloading { .. })));

    let pairs: Vec<(Digest, Digest)> = pulled
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.diff_id.clone()))
        .collect();
    let chains = unpack_layers(&store, &snaps, &pairs).unwrap();
    let base = snaps.fs_dir(&chains[0].to_string()).unwrap();
    let busybox = std::fs::read(base.join("bin/busybox")).unwrap();
    assert_eq!(busybox, std::fs::read("/bin/busybox").unwrap());
    assert_eq!(
        std::fs::read_link(base.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    let top = snaps.fs_dir(&chains[1].to_string()).unwrap();
    assert_eq!(
        std::fs::read_to_string(top.join("etc/hello")).unwrap(),
        "hi\n"
    );

    // The unpacked image runs: mount a container layer on it and chroot in.
    snaps.prepare("ctr", Some(&chains[1].to_string())).unwrap();
    let mnt = tmp.path().join("rootfs");
    std::fs::create_dir(&mnt).unwrap();
    berth_snapshot::mount_all(&snaps.mounts("ctr").unwrap(), &mnt).unwrap();
    let out = std::process::Command::new("chroot")
        .arg(&mnt)
        .args([
            "/bin/sh",
            "-c",
            "/bin/busybox cat /etc/hello && echo written > /tmp-file",
        ])
        .output();
    berth_snapshot::unmount(&mnt).unwrap();
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let upper = snaps.upper_dir("ctr").unwrap();
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp-file")).unwrap(),
        "written\n"
    );
    snaps.remove("ctr").unwrap();

    // A second pull finds everything in the store.
    let (res, events) = pull(&c, &store, &format!("{}/busybox:1", reg.addr)).await;
    res.unwrap();
    let exists = events
        .iter()
        .filter(|e| matches!(e, PullEvent::AlreadyExists(_)))
        .count();
    assert_eq!(exists, 2, "{events:?}");

    // The same image in Docker's v2s2 format shares the layer blobs? skopeo
    // recompresses nothing, so the diff_ids match and no layer is unpacked twice.
    let (res, _) = pull(&c, &store, &format!("{}/busybox:v2s2", reg.addr)).await;
    let v2 = res.unwrap();
    assert_eq!(v2.media_type, DOCKER_MANIFEST_V2);
    let pairs: Vec<(Digest, Digest)> = v2
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.diff_id.clone()))
        .collect();
    assert_eq!(unpack_layers(&store, &snaps, &pairs).unwrap(), chains);
    assert_eq!(snaps.list().len(), 2);

    // By digest: verified.
    let by_digest = format!("{}/busybox@{}", reg.addr, pulled.manifest_digest);
    let (res, _) = pull(&c, &store, &by_digest).await;
    assert_eq!(res.unwrap().manifest_digest, pulled.manifest_digest);
}

#[tokio::test]
async fn unknown_tag_repo_and_registry_down() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let c = client();

    let (res, _) = pull(&c, &store, &format!("{}/busybox:nope", reg.addr)).await;
    let err = res.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestUnknown { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("busybox:nope"), "{err}");

    let (res, _) = pull(&c, &store, &format!("{}/nothere:1", reg.addr)).await;
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::NameUnknown { .. }), "{err}");
    assert!(err.to_string().contains("nothere"), "{err}");

    let down = format!("127.0.0.1:{}/busybox:1", common::free_port());
    let (res, _) = pull(&c, &store, &down).await;
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn resumes_a_partial_blob() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let c = client();
    // Pull once to learn the biggest layer and its bytes.
    let first = ContentStore::open(tmp.path().join("first")).unwrap();
    let (res, _) = pull(&c, &first, &format!("{}/busybox:1", reg.addr)).await;
    let pulled = res.unwrap();
    let big = pulled.layers.iter().max_by_key(|l| l.size).unwrap();
    let bytes = first.read(&big.digest).unwrap();

    let store = ContentStore::open(tmp.path().join("second")).unwrap();
    let half = bytes.len() / 2;
    {
        let mut ing = store.ingest(&big.digest).unwrap();
        ing.write_all(&bytes[..half]).unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let r: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    c.fetch_blob(&r, &big.digest, Some(big.size), &store, None, &|done, _| {
        seen.lock().unwrap().push(done)
    })
    .await
    .unwrap();
    assert_eq!(store.read(&big.digest).unwrap(), bytes);
    // The first progress report starts where the partial left off.
    assert_eq!(seen.lock().unwrap().first().copied(), Some(half as u64));

    // A corrupt partial is detected, thrown away and downloaded again.
    let store = ContentStore::open(tmp.path().join("third")).unwrap();
    {
        let mut ing = store.ingest(&big.digest).unwrap();
        ing.write_all(&vec![0u8; half]).unwrap();
    }
    c.fetch_blob(&r, &big.digest, Some(big.size), &store, None, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(store.read(&big.digest).unwrap(), bytes);
}

#[tokio::test]
async fn retries_5xx_and_resumes_broken_downloads() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let proxy = common::flaky::FlakyProxy::start(&reg.addr);
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let c = RegistryClient::new(ClientConfig {
        max_concurrent_downloads: 1,
        ..ClientConfig::default()
    })
    .unwrap();
    let r: Reference = format!("{}/busybox:1", proxy.addr).parse().unwrap();
    let big_layer = {
        // The proxy answers the first manifest request with 503: retried.
        let m = c.get_manifest(&r, None).await.unwrap();
        let (berth_image::Manifest::Image(m), _) =
            berth_image::parse_manifest(&m.bytes, Some(&m.media_type)).unwrap()
        else {
            panic!("expected an image manifest")
        };
        m.layers.into_iter().max_by_key(|l| l.size).unwrap()
    };
    c.fetch_blob(
        &r,
        &big_layer.digest,
        Some(big_layer.size),
        &store,
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(store.has(&big_layer.digest));
    let seen = proxy.seen.lock().unwrap().clone();
    let blob_gets: Vec<&String> = seen
        .iter()
        .filter(|s| s.starts_with("GET") && s.contains("/blobs/"))
        .collect();
    assert_eq!(blob_gets.len(), 2, "{seen:?}");
    assert!(
        seen[0].contains("/manifests/") && seen[1].contains("/manifests/"),
        "{seen:?}"
    );
    assert!(
        blob_gets[1].to_ascii_lowercase().contains("range: bytes="),
        "{seen:?}"
    );
}
