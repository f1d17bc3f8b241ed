use std::io::Write;

use berth_content::{ContentStore, Digest};
use berth_image::unpack::{unpack_layers, UnpackError};
use berth_snapshot::{mount_all, unmount, Snapshotter};

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

#[test]
fn unpacks_once_and_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let l1 = layer(&[("a", b"1"), ("gone", b"x")]);
    let l2 = layer(&[("b", b"2"), (".wh.gone", b"")]);
    let layers: Vec<(Digest, Digest)> = [&l1, &l2]
        .iter()
        .map(|l| (store.write_blob(&gz(l)).unwrap(), Digest::sha256_of(l)))
        .collect();
    let chains = unpack_layers(&store, &snaps, &layers).unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(snaps.list().len(), 2);
    assert_eq!(
        snaps.parent(&chains[1].to_string()).unwrap(),
        Some(chains[0].to_string())
    );
    // again: nothing new
    assert_eq!(unpack_layers(&store, &snaps, &layers).unwrap(), chains);
    assert_eq!(snaps.list().len(), 2);

    snaps.prepare("c", Some(&chains[1].to_string())).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    mount_all(&snaps.mounts("c").unwrap(), &mnt).unwrap();
    let seen = (
        std::fs::read(mnt.join("a")),
        std::fs::read(mnt.join("b")),
        mnt.join("gone").exists(),
    );
    unmount(&mnt).unwrap();
    assert_eq!(seen.0.unwrap(), b"1");
    assert_eq!(seen.1.unwrap(), b"2");
    assert!(!seen.2);
    snaps.remove("c").unwrap();
}

#[test]
fn wrong_diff_id_leaves_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let l1 = layer(&[("a", b"1")]);
    let blob = store.write_blob(&l1).unwrap();
    let wrong = Digest::sha256_of(b"not it");
    let err = unpack_layers(&store, &snaps, &[(blob, wrong)]).unwrap_err();
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
    assert!(snaps.list().is_empty());
    let missing = Digest::sha256_of(b"missing");
    let err = unpack_layers(&store, &snaps, &[(missing.clone(), missing)]).unwrap_err();
    assert!(matches!(err, UnpackError::Content { .. }), "{err}");
    assert!(snaps.list().is_empty());
}

#[test]
fn concurrent_unpacks_of_one_image_share_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("content")).unwrap();
    let snaps = Snapshotter::open(tmp.path().join("snap")).unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let l1 = layer(&[("big", &big)]);
    let l2 = layer(&[("small", b"s")]);
    let layers: Vec<(Digest, Digest)> = [&l1, &l2]
        .iter()
        .map(|l| (store.write_blob(&gz(l)).unwrap(), Digest::sha256_of(l)))
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| unpack_layers(&store, &snaps, &layers)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = results[0].as_ref().unwrap().clone();
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), &first);
    }
    // Only the two committed layers remain: no extract-* leftovers.
    let names: Vec<String> = snaps.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("sha256:")));
}
