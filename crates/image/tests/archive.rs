//! Save/load archives, checked against skopeo's docker-archive and OCI
//! readers and writers.

use std::path::Path;
use std::process::Command;

use berth_content::ContentStore;
use berth_image::archive::{load_archive, save_images, SaveImage};
use berth_image::{unpack_layers, Reference};
use berth_snapshot::Snapshotter;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout with tag `1`: static busybox plus /bin/sh, cmd sh.
fn busybox_layout(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let img = format!("{}:1", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &img]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&bundle));
    std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    std::fs::copy("/bin/busybox", bundle.join("rootfs/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bundle.join("rootfs/bin/sh")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&bundle));
    run(Command::new("umoci").args(["config", "--image", &img, "--config.cmd", "sh"]));
    layout
}

#[test]
fn loads_skopeo_docker_archive_saves_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path());
    let docker_tar = tmp.path().join("docker.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker-archive:{}:busybox:1", docker_tar.display())));

    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snaps")).unwrap();
    let images = load_archive(&store, std::fs::File::open(&docker_tar).unwrap()).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.repo_tags, vec![Reference::parse("busybox:1").unwrap()]);
    assert_eq!(img.layers.len(), 1);
    let chains = unpack_layers(&store, &snaps, &img.layers).unwrap();
    let fs = snaps.fs_dir(&chains[0].to_string()).unwrap();
    assert_eq!(
        std::fs::read(fs.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );

    // Save it again, with a second name, and read it back ourselves.
    let saved = tmp.path().join("saved.tar");
    let tags = vec![
        Reference::parse("busybox:1").unwrap(),
        Reference::parse("127.0.0.1:5000/bb:x").unwrap(),
    ];
    save_images(
        &store,
        &[SaveImage {
            manifest_digest: img.manifest_digest.clone(),
            repo_tags: tags.clone(),
        }],
        std::fs::File::create(&saved).unwrap(),
    )
    .unwrap();
    let other = ContentStore::open(tmp.path().join("content2")).unwrap();
    let again = load_archive(&other, std::fs::File::open(&saved).unwrap()).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].config_digest, img.config_digest);
    assert_eq!(again[0].layers, img.layers);
    assert_eq!(again[0].repo_tags, tags);

    // skopeo reads our archive both as a Docker archive and as an OCI one.
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", saved.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    // OCI readers find each name by its ref.name annotation.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}:x", saved.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        berth_content::Digest::sha256_of(&out.stdout),
        img.manifest_digest
    );
}

#[test]
fn loads_an_oci_layout_tar_and_rejects_corrupt_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = busybox_layout(tmp.path());
    let oci_tar = tmp.path().join("oci.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&oci_tar)
        .arg("."));
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let images = load_archive(&store, std::fs::File::open(&oci_tar).unwrap()).unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].repo_tags.is_empty());
    assert_eq!(images[0].layers.len(), 1);

    // Corrupt one blob: its name no longer matches its content.
    let blobs = layout.join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&victim, "corrupt").unwrap();
    let bad_tar = tmp.path().join("bad.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&bad_tar)
        .arg("."));
    let store = ContentStore::open(tmp.path().join("content2")).unwrap();
    let err = load_archive(&store, std::fs::File::open(&bad_tar).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
}
