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

#[tokio::test]
async fn bearer_token_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = common::token::TokenServer::start(tmp.path(), "bob", "hunter2");
    let reg = Registry::start_with_token_auth(&tokens.realm, &tokens.cert);
    let client = RegistryClient::new(ClientConfig::default()).unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let creds = Credentials::new("bob", "hunter2");

    // Push with our own client (exercises push + pull,push scopes).
    let r: Reference = format!("{}/team/app:1", reg.addr).parse().unwrap();
    let layer = store
        .write_blob(b"not really a tar, never unpacked")
        .unwrap();
    let layer_size = store.size(&layer).unwrap();
    client
        .push_blob(
            &r,
            &layer,
            &store.path(&layer),
            layer_size,
            Some(&creds),
            &|_, _| {},
        )
        .await
        .unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}
    }))
    .unwrap();
    let cd = store.write_blob(&config).unwrap();
    client
        .push_blob(
            &r,
            &cd,
            &store.path(&cd),
            config.len() as u64,
            Some(&creds),
            &|_, _| {},
        )
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": berth_image::manifest::OCI_MANIFEST,
        "config": {"mediaType": berth_image::manifest::OCI_CONFIG, "digest": cd, "size": config.len()},
        "layers": [{"mediaType": berth_image::manifest::OCI_LAYER_GZIP, "digest": layer, "size": layer_size}]
    }))
    .unwrap();
    client
        .put_manifest(
            &r,
            &manifest,
            berth_image::manifest::OCI_MANIFEST,
            Some(&creds),
        )
        .await
        .unwrap();

    // Pull into a fresh store with a fresh client.
    let puller = RegistryClient::new(ClientConfig::default()).unwrap();
    let fresh = ContentStore::open(tmp.path().join("fresh")).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pulled = pull_to_store(&puller, &fresh, &r, Some(&creds), tx)
        .await
        .unwrap();
    assert_eq!(pulled.layers[0].digest, layer);
    assert!(fresh.has(&layer));
    // Tokens are cached per scope: one for the pull, not one per request.
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    puller.get_manifest(&r, Some(&creds)).await.unwrap();
    assert_eq!(
        tokens.issued.load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // Wrong password: the token server refuses.
    let other = RegistryClient::new(ClientConfig::default()).unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = pull_to_store(&other, &fresh, &r, Some(&Credentials::new("bob", "x")), tx)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}
