use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_content::Digest;
use berth_image::layer::{apply_layer, chain_id, chain_ids, LayerError};
use tar::{EntryType, Header};

/// Builds tars entry by entry, writing names raw so hostile paths survive.
struct TarBuilder(Vec<u8>);

impl TarBuilder {
    fn new() -> Self {
        TarBuilder(Vec::new())
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_000_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, 0o644, None, data)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, EntryType::Directory, 0o755, None, b"")
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn full_featured() -> Vec<u8> {
    let mut b = TarBuilder::new();
    b.dir("./etc/")
        .file("./etc/passwd", b"root:x:0:0")
        .entry("bin/su", EntryType::Regular, 0o4755, None, b"suid")
        .entry(
            "bin/sh",
            EntryType::Symlink,
            0o777,
            Some("/bin/busybox"),
            b"",
        )
        .entry("bin/su2", EntryType::Link, 0o4755, Some("bin/su"), b"")
        .entry("/abs/file", EntryType::Regular, 0o600, None, b"abs")
        .entry("dev/fifo", EntryType::Fifo, 0o600, None, b"")
        .entry("dev/null", EntryType::Char, 0o666, None, b"")
        .file("gone/.wh.old", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .file(".wh..wh.plnk", b"");
    b.finish()
}

#[test]
fn applies_everything_docker_does() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tar = full_featured();
    let applied = apply_layer(&gzip(&tar)[..], d).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256_of(&tar));
    assert_eq!(applied.size, tar.len() as u64);

    assert_eq!(fs::read(d.join("etc/passwd")).unwrap(), b"root:x:0:0");
    let su = fs::metadata(d.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(su.mtime(), 1_000_000_000);
    assert_eq!(
        fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::symlink_metadata(d.join("bin/sh")).unwrap().uid(), 1234);
    assert_eq!(fs::metadata(d.join("bin/su2")).unwrap().ino(), su.ino());
    assert_eq!(fs::read(d.join("abs/file")).unwrap(), b"abs");
    assert!(fs::metadata(d.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(fs::metadata(d.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());
    let wh = fs::symlink_metadata(d.join("gone/old")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!d.join("gone/.wh.old").exists());
    let mut buf = [0u8; 4];
    let p = std::ffi::CString::new(d.join("opq").to_str().unwrap()).unwrap();
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            4,
        )
    };
    assert_eq!(&buf[..n as usize], b"y");
    assert!(!d.join(".wh..wh.plnk").exists());
    // directory mtimes are set after their children were written
    assert_eq!(fs::metadata(d.join("etc")).unwrap().mtime(), 1_000_000_000);
}

#[test]
fn zstd_and_plain_give_same_diff_id() {
    let tar = full_featured();
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let a = apply_layer(&z[..], t1.path()).unwrap();
    let b = apply_layer(&tar[..], t2.path()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn xattrs_from_pax_headers() {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("SCHILY.xattr.user.berth", b"v1".as_slice()),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
        ])
        .unwrap();
    let mut h = Header::new_ustar();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(EntryType::Regular);
    builder.append_data(&mut h, "x", &b"1"[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    apply_layer(&tar[..], tmp.path()).unwrap();
    let p = std::ffi::CString::new(tmp.path().join("x").to_str().unwrap()).unwrap();
    let mut buf = [0u8; 8];
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"user.berth".as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        )
    };
    assert_eq!(&buf[..n as usize], b"v1");
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            c"trusted.overlay.redirect".as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        )
    };
    assert_eq!(n, -1, "overlay xattrs must not come from a layer");
}

/// Applies `tar` into `<tmp>/root/dest` and checks it fails as unsafe,
/// naming `entry`, and that nothing appeared next to `dest`.
fn assert_hostile(tar: Vec<u8>, entry: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root/dest");
    fs::create_dir_all(&dest).unwrap();
    let outside = tmp.path().join("root/outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(tmp.path().join("root/secret"), "s").unwrap();
    let err = apply_layer(&tar[..], &dest).unwrap_err();
    match &err {
        LayerError::Unsafe { entry: e, .. } => assert_eq!(e, entry, "{err}"),
        other => panic!("expected unsafe error for {entry}, got {other}"),
    }
    assert!(err.to_string().contains(entry));
    let mut names: Vec<_> = fs::read_dir(tmp.path().join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dest", "outside", "secret"]);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(fs::read(tmp.path().join("root/secret")).unwrap(), b"s");
}

#[test]
fn refuses_dotdot() {
    assert_hostile(TarBuilder::new().file("../x", b"evil").finish(), "../x");
    assert_hostile(
        TarBuilder::new().file("a/../../x", b"evil").finish(),
        "a/../../x",
    );
}

#[test]
fn refuses_symlink_parent_escape() {
    let mut b = TarBuilder::new();
    b.entry("evil", EntryType::Symlink, 0o777, Some("../outside"), b"")
        .file("evil/pwned", b"x");
    assert_hostile(b.finish(), "evil/pwned");
    let mut b = TarBuilder::new();
    b.entry("abs", EntryType::Symlink, 0o777, Some("/"), b"")
        .file("abs/tmp/pwned", b"x");
    assert_hostile(b.finish(), "abs/tmp/pwned");
    // a whiteout through a symlinked parent is refused as well
    let mut b = TarBuilder::new();
    b.entry("evil", EntryType::Symlink, 0o777, Some(".."), b"")
        .file("evil/.wh.secret", b"");
    assert_hostile(b.finish(), "evil/.wh.secret");
}

#[test]
fn refuses_hardlink_escape() {
    assert_hostile(
        TarBuilder::new()
            .entry("hl", EntryType::Link, 0o644, Some("../secret"), b"")
            .finish(),
        "hl",
    );
    // absolute targets are inside dest, where there is no such file
    assert_hostile(
        TarBuilder::new()
            .entry("hl", EntryType::Link, 0o644, Some("/etc/passwd"), b"")
            .finish(),
        "hl",
    );
    let mut b = TarBuilder::new();
    b.entry("up", EntryType::Symlink, 0o777, Some(".."), b"")
        .entry("hl", EntryType::Link, 0o644, Some("up/secret"), b"");
    assert_hostile(b.finish(), "hl");
}

#[test]
fn absolute_symlink_target_is_kept_but_never_followed() {
    // A symlink may point anywhere; writing a file over it replaces the link.
    let mut b = TarBuilder::new();
    b.entry(
        "link",
        EntryType::Symlink,
        0o777,
        Some("/tmp/berth-should-not-exist"),
        b"",
    )
    .file("link", b"data");
    let tmp = tempfile::tempdir().unwrap();
    apply_layer(&b.finish()[..], tmp.path()).unwrap();
    assert_eq!(fs::read(tmp.path().join("link")).unwrap(), b"data");
    assert!(!Path::new("/tmp/berth-should-not-exist").exists());
}

#[test]
fn truncated_stream_is_a_read_error() {
    let tar = full_featured();
    let tmp = tempfile::tempdir().unwrap();
    let gz = gzip(&tar);
    let err = apply_layer(&gz[..gz.len() / 2], tmp.path()).unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err}");
}

#[test]
fn chain_ids_follow_oci() {
    let a = Digest::sha256_of(b"a");
    let b = Digest::sha256_of(b"b");
    let c = Digest::sha256_of(b"c");
    assert_eq!(chain_id(&[]), None);
    assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
    let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
    let abc = Digest::sha256_of(format!("{ab} {c}").as_bytes());
    assert_eq!(
        chain_id(&[a.clone(), b.clone(), c.clone()]),
        Some(abc.clone())
    );
    assert_eq!(chain_ids(&[a.clone(), b, c]), vec![a, ab, abc]);
}

#[test]
fn gnu_sparse_files_from_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    {
        use std::io::{Seek, SeekFrom};
        let mut f = fs::File::create(src.join("sparse")).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
    }
    let tarball = tmp.path().join("s.tar");
    let st = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .arg("sparse")
        .status()
        .unwrap();
    assert!(st.success());
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    apply_layer(fs::File::open(&tarball).unwrap(), &dest).unwrap();
    assert_eq!(
        fs::read(dest.join("sparse")).unwrap(),
        fs::read(src.join("sparse")).unwrap()
    );
}
