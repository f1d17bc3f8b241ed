//! Blob downloads teed to a second reader as they arrive (unpack while
//! downloading): the reader sees exactly the blob's bytes across range
//! resumes, partial data on disk and broken connections, or an error when the
//! bytes it saw can no longer continue the blob.

mod common;

use std::io::Read;

use berth_content::ContentStore;
use berth_image::Reference;
use berth_registry::{blob_tee, pull_to_store, ClientConfig, LayerDesc, RegistryClient};
use common::{make_busybox_layout, skopeo_push, Registry};

/// Pulls the image once into a scratch store; returns its biggest layer and its bytes.
async fn biggest_layer(
    c: &RegistryClient,
    r: &Reference,
    dir: &std::path::Path,
) -> (LayerDesc, Vec<u8>) {
    let store = ContentStore::open(dir).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(c, &store, r, None, tx).await.unwrap();
    let big = pulled.layers.iter().max_by_key(|l| l.size).unwrap().clone();
    let bytes = store.read(&big.digest).unwrap();
    (big, bytes)
}

/// Downloads `l` into `store` through a tee; returns what the tee's reader read.
async fn fetch_teed(
    c: &RegistryClient,
    r: &Reference,
    l: &LayerDesc,
    store: &ContentStore,
) -> std::io::Result<Vec<u8>> {
    let (mut tee, mut reader) = blob_tee();
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map(|_| out)
    });
    c.fetch_blob_tee(
        r,
        &l.digest,
        Some(l.size),
        store,
        None,
        &|_, _| {},
        &mut tee,
    )
    .await
    .unwrap();
    drop(tee);
    read.await.unwrap()
}

#[tokio::test]
async fn tee_sees_the_blob_from_partial_data_and_the_network() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let r: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    let (big, bytes) = biggest_layer(&c, &r, &tmp.path().join("first")).await;

    // A fresh download.
    let store = ContentStore::open(tmp.path().join("fresh")).unwrap();
    assert_eq!(fetch_teed(&c, &r, &big, &store).await.unwrap(), bytes);
    assert_eq!(store.read(&big.digest).unwrap(), bytes);

    // Half the blob already on disk: replayed to the reader, then the rest by Range.
    let store = ContentStore::open(tmp.path().join("resumed")).unwrap();
    {
        let mut ing = store.ingest(&big.digest).unwrap();
        ing.write_all(&bytes[..bytes.len() / 2]).unwrap();
    }
    assert_eq!(fetch_teed(&c, &r, &big, &store).await.unwrap(), bytes);
    assert_eq!(store.read(&big.digest).unwrap(), bytes);

    // All of it on disk but not committed: replayed, then committed.
    let store = ContentStore::open(tmp.path().join("whole")).unwrap();
    {
        let mut ing = store.ingest(&big.digest).unwrap();
        ing.write_all(&bytes).unwrap();
    }
    assert_eq!(fetch_teed(&c, &r, &big, &store).await.unwrap(), bytes);
    assert!(store.has(&big.digest));

    // Already stored: nothing to stream, the reader is told so.
    let err = fetch_teed(&c, &r, &big, &store)
        .await
        .map(|v| v.len())
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn tee_continues_across_a_broken_connection() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let direct: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    let (big, bytes) = biggest_layer(&c, &direct, &tmp.path().join("first")).await;
    // The proxy cuts the first blob download halfway; the retry resumes by Range.
    let proxy = common::flaky::FlakyProxy::start(&reg.addr);
    let r: Reference = format!("{}/busybox:1", proxy.addr).parse().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    assert_eq!(fetch_teed(&c, &r, &big, &store).await.unwrap(), bytes);
    assert_eq!(store.read(&big.digest).unwrap(), bytes);
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.to_ascii_lowercase().contains("range: bytes=")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn tee_is_abandoned_when_the_download_restarts_from_zero() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    skopeo_push(&layout, &format!("{}/busybox:1", reg.addr), "oci");
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let r: Reference = format!("{}/busybox:1", reg.addr).parse().unwrap();
    let (big, bytes) = biggest_layer(&c, &r, &tmp.path().join("first")).await;
    // A corrupt partial: the reader is fed it, the digest check fails, the
    // download restarts from zero, so what the reader saw cannot go on.
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    {
        let mut ing = store.ingest(&big.digest).unwrap();
        ing.write_all(&vec![0u8; bytes.len() / 2]).unwrap();
    }
    let err = fetch_teed(&c, &r, &big, &store)
        .await
        .map(|v| v.len())
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(store.read(&big.digest).unwrap(), bytes);
}
