//! Conformance-style tests: these mount overlayfs for real (we run as root).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use berth_snapshot::{mount_all, unmount, Kind, SnapshotError, Snapshotter};

/// Unmounts on drop so a failing assertion never leaks a mount.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn mount_at(snaps: &Snapshotter, key: &str, target: &Path) -> Mounted {
    fs::create_dir_all(target).unwrap();
    mount_all(&snaps.mounts(key).unwrap(), target).unwrap();
    Mounted(target.to_path_buf())
}

fn whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

#[test]
fn prepare_commit_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let m = s.prepare("k1", None).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "bind");
    let upper = s.upper_dir("k1").unwrap();
    fs::write(upper.join("a"), "hello").unwrap();
    assert_eq!(s.usage("k1").unwrap(), 5);
    assert!(matches!(
        s.prepare("k1", None),
        Err(SnapshotError::AlreadyExists(_))
    ));
    assert!(matches!(
        s.prepare("k2", Some("k1")),
        Err(SnapshotError::NotCommitted(_))
    ));
    assert!(matches!(
        s.prepare("k2", Some("nope")),
        Err(SnapshotError::NotFound(_))
    ));
    s.commit("l1", "k1").unwrap();
    assert!(!s.exists("k1"));
    assert!(s.exists("l1"));
    assert_eq!(s.stat("l1").unwrap().kind, Kind::Committed);
    assert!(matches!(
        s.upper_dir("l1"),
        Err(SnapshotError::NotActive(_))
    ));
    assert!(matches!(s.mounts("l1"), Err(SnapshotError::NotActive(_))));
    s.prepare("k2", Some("l1")).unwrap();
    assert_eq!(s.parent("k2").unwrap().as_deref(), Some("l1"));
    let err = s.remove("l1").unwrap_err();
    assert!(matches!(err, SnapshotError::HasChildren { .. }), "{err}");
    assert!(err.to_string().contains("k2"));
    s.remove("k2").unwrap();
    s.remove("l1").unwrap();
    assert!(s.list().is_empty());
    assert_eq!(
        fs::read_dir(tmp.path().join("snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn reopen_keeps_index_and_cleans_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = Snapshotter::open(tmp.path()).unwrap();
        s.prepare("a", None).unwrap();
        s.commit("A", "a").unwrap();
        s.prepare("b", Some("A")).unwrap();
    }
    fs::create_dir_all(tmp.path().join("snapshots/999/fs")).unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    assert_eq!(s.list().len(), 2);
    assert!(!tmp.path().join("snapshots/999").exists());
    // ids are never reused
    s.prepare("c", None).unwrap();
    let ids: Vec<u64> = s.list().iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids
        .iter()
        .all(|&id| ids.iter().filter(|&&x| x == id).count() == 1));
}

#[test]
fn chain_of_three_overlay_shows_layers_and_whiteouts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path().join("store")).unwrap();

    s.prepare("x1", None).unwrap();
    let u = s.upper_dir("x1").unwrap();
    fs::write(u.join("base"), "1").unwrap();
    fs::write(u.join("gone"), "will be whited out").unwrap();
    fs::create_dir(u.join("dir")).unwrap();
    fs::write(u.join("dir/old"), "old").unwrap();
    s.commit("L1", "x1").unwrap();

    s.prepare("x2", Some("L1")).unwrap();
    let u = s.upper_dir("x2").unwrap();
    fs::write(u.join("second"), "2").unwrap();
    whiteout(&u.join("gone"));
    // opaque dir: hides L1's dir/old
    fs::create_dir(u.join("dir")).unwrap();
    xattr_set(&u.join("dir"), "trusted.overlay.opaque", b"y");
    fs::write(u.join("dir/new"), "new").unwrap();
    symlink("base", u.join("link")).unwrap();
    s.commit("L2", "x2").unwrap();

    s.prepare("x3", Some("L2")).unwrap();
    fs::write(s.upper_dir("x3").unwrap().join("third"), "3").unwrap();
    s.commit("L3", "x3").unwrap();

    // An active container layer on the chain of three.
    let m = s.prepare("rw", Some("L3")).unwrap();
    assert_eq!(m[0].kind, "overlay");
    let target = tmp.path().join("mnt");
    {
        let _g = mount_at(&s, "rw", &target);
        assert_eq!(fs::read_to_string(target.join("base")).unwrap(), "1");
        assert_eq!(fs::read_to_string(target.join("second")).unwrap(), "2");
        assert_eq!(fs::read_to_string(target.join("third")).unwrap(), "3");
        assert!(!target.join("gone").exists());
        assert!(!target.join("dir/old").exists());
        assert_eq!(fs::read_to_string(target.join("dir/new")).unwrap(), "new");
        assert_eq!(
            fs::read_link(target.join("link")).unwrap(),
            Path::new("base")
        );
        fs::write(target.join("written"), "rw").unwrap();
        fs::remove_file(target.join("base")).unwrap();
    }
    let upper = s.upper_dir("rw").unwrap();
    assert_eq!(fs::read_to_string(upper.join("written")).unwrap(), "rw");
    // the deletion became a whiteout in the upper dir
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(upper.join("base"))
        .unwrap()
        .file_type()
        .is_char_device());
    // lower layers untouched
    assert!(s.fs_dir("L1").unwrap().join("base").exists());

    // A read-only view of the chain.
    s.view("v", Some("L3")).unwrap();
    let vt = tmp.path().join("view");
    {
        let _g = mount_at(&s, "v", &vt);
        assert!(vt.join("third").exists() && vt.join("base").exists());
        assert!(fs::write(vt.join("nope"), "x").is_err());
    }
    // A view of a single layer is a read-only bind mount.
    s.view("v1", Some("L1")).unwrap();
    assert_eq!(s.mounts("v1").unwrap()[0].kind, "bind");
    let v1 = tmp.path().join("view1");
    {
        let _g = mount_at(&s, "v1", &v1);
        assert!(v1.join("gone").exists());
        assert!(fs::write(v1.join("nope"), "x").is_err());
    }

    for k in ["v1", "v", "rw", "L3", "L2", "L1"] {
        s.remove(k).unwrap();
    }
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name} on {}", path.display());
}

#[test]
fn deep_chain_beyond_one_page_of_options() {
    let tmp = tempfile::tempdir().unwrap();
    // A long root makes every lowerdir long: 120 of them exceed 4 KiB.
    let root = tmp
        .path()
        .join("a-rather-long-directory-name-to-make-paths-longer");
    let s = Snapshotter::open(&root).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..120 {
        let key = format!("k{i}");
        s.prepare(&key, parent.as_deref()).unwrap();
        fs::write(
            s.upper_dir(&key).unwrap().join(format!("f{i}")),
            i.to_string(),
        )
        .unwrap();
        let name = format!("L{i}");
        s.commit(&name, &key).unwrap();
        parent = Some(name);
    }
    let m = s.prepare("top", parent.as_deref()).unwrap();
    assert!(m[0].options.join(",").len() > 4096);
    let target = tmp.path().join("mnt");
    {
        let _g = mount_at(&s, "top", &target);
        assert_eq!(fs::read_to_string(target.join("f0")).unwrap(), "0");
        assert_eq!(fs::read_to_string(target.join("f119")).unwrap(), "119");
        fs::write(target.join("new"), "x").unwrap();
    }
    assert!(s.upper_dir("top").unwrap().join("new").exists());
}

#[test]
fn scratch_extractions_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir;
    {
        let s = Snapshotter::open(tmp.path()).unwrap();
        s.prepare("extract-00ff", None).unwrap();
        dir = s.upper_dir("extract-00ff").unwrap();
        fs::write(dir.join("half"), b"x").unwrap();
        s.prepare("keep", None).unwrap();
    }
    let s = Snapshotter::open(tmp.path()).unwrap();
    assert!(!s.exists("extract-00ff"));
    assert!(s.exists("keep"));
    assert!(!dir.exists(), "the scratch directory is gone");
}

#[test]
fn commit_on_places_a_parentless_diff_on_a_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    // The child is extracted before its parent is committed.
    s.prepare("extract-child", None).unwrap();
    let up = s.upper_dir("extract-child").unwrap();
    fs::write(up.join("top"), b"child").unwrap();
    whiteout(&up.join("gone"));
    s.prepare("extract-base", None).unwrap();
    let up = s.upper_dir("extract-base").unwrap();
    fs::write(up.join("gone"), b"base").unwrap();
    fs::write(up.join("kept"), b"base").unwrap();
    assert!(matches!(
        s.commit_on("C", "extract-child", Some("B")),
        Err(SnapshotError::NotFound(_))
    ));
    s.commit_on("B", "extract-base", None).unwrap();
    s.commit_on("C", "extract-child", Some("B")).unwrap();
    assert_eq!(s.parent("C").unwrap().as_deref(), Some("B"));
    assert_eq!(s.stat("C").unwrap().kind, Kind::Committed);
    assert!(!s.exists("extract-child"));
    s.view("v", Some("C")).unwrap();
    let target = tmp.path().join("mnt");
    fs::create_dir_all(&target).unwrap();
    let m = mount_at(&s, "v", &target);
    assert_eq!(fs::read(target.join("top")).unwrap(), b"child");
    assert_eq!(fs::read(target.join("kept")).unwrap(), b"base");
    assert!(!target.join("gone").exists());
    drop(m);
    s.remove("v").unwrap();
    assert!(matches!(
        s.commit_on("D", "C", None),
        Err(SnapshotError::NotActive(_))
    ));
}
