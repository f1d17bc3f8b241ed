//! Basic auth against a real docker-registry with an htpasswd file.

mod common;

use berth_content::ContentStore;
use berth_image::Reference;
use berth_registry::{pull_to_store, ClientConfig, Credentials, RegistryClient, RegistryError};
use common::{make_busybox_layout, skopeo_push_as, Registry};

#[tokio::test]
async fn basic_auth() {
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_busybox_layout(tmp.path());
    let image = format!("{}/private/busybox:1", reg.addr);
    skopeo_push_as(&layout, &image, "oci", Some("alice:s3cret"));
    let r: Reference = image.parse().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();

    let anon = RegistryClient::new(ClientConfig::default()).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = pull_to_store(&anon, &store, &r, None, tx)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("private/busybox:1"), "{err}");

    let wrong = Credentials::new("alice", "nope");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = pull_to_store(&anon, &store, &r, Some(&wrong), tx)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    let client = RegistryClient::new(ClientConfig::default()).unwrap();
    let good = Credentials::new("alice", "s3cret");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(&client, &store, &r, Some(&good), tx)
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 2);
    assert!(pulled.layers.iter().all(|l| store.has(&l.digest)));
}
