use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_content::Digest;
use berth_image::{apply_layer, write_layer};

fn mknod_whiteout(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
}

fn setx(p: &Path, k: &str, v: &[u8]) {
    xattr::set(p, k, v).unwrap();
}

#[test]
fn round_trips_an_upper_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path().join("upper");
    fs::create_dir_all(up.join("etc")).unwrap();
    fs::write(up.join("etc/conf"), "c").unwrap();
    fs::write(up.join("bin-su"), "suid").unwrap();
    std::os::unix::fs::chown(up.join("bin-su"), Some(42), Some(43)).unwrap();
    fs::set_permissions(up.join("bin-su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(up.join("bin-su"), up.join("bin-su2")).unwrap();
    symlink("etc/conf", up.join("link")).unwrap();
    mknod_whiteout(&up.join("deleted"));
    fs::create_dir(up.join("opq")).unwrap();
    setx(&up.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(up.join("opq/kept"), "k").unwrap();
    setx(&up.join("etc/conf"), "user.note", b"hello");
    let fifo = std::ffi::CString::new(up.join("fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

    let mut tar = Vec::new();
    let written = write_layer(&up, &mut tar).unwrap();
    assert_eq!(written.diff_id, Digest::sha256_of(&tar));
    assert_eq!(written.size, tar.len() as u64);

    // The tar speaks Docker's language: .wh. entries, not device nodes.
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.contains(&".wh.deleted".to_string()), "{names:?}");
    assert!(names.contains(&"opq/.wh..wh..opq".to_string()), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), sorted.len());

    // Applying it back reproduces the upper dir.
    let back = tmp.path().join("back");
    fs::create_dir(&back).unwrap();
    let applied = apply_layer(&tar[..], &back).unwrap();
    assert_eq!(applied, written);
    assert_eq!(fs::read(back.join("etc/conf")).unwrap(), b"c");
    assert_eq!(
        xattr::get(back.join("etc/conf"), "user.note")
            .unwrap()
            .unwrap(),
        b"hello"
    );
    let su = fs::metadata(back.join("bin-su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (42, 43));
    assert_eq!(fs::metadata(back.join("bin-su2")).unwrap().ino(), su.ino());
    assert_eq!(
        fs::read_link(back.join("link")).unwrap(),
        Path::new("etc/conf")
    );
    let wh = fs::symlink_metadata(back.join("deleted")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr::get(back.join("opq"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(fs::metadata(back.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::metadata(back.join("etc/conf")).unwrap().mtime(),
        fs::metadata(up.join("etc/conf")).unwrap().mtime()
    );

    // Deterministic: writing again gives the same bytes.
    let mut again = Vec::new();
    assert_eq!(write_layer(&up, &mut again).unwrap(), written);
    assert_eq!(again, tar);
}
