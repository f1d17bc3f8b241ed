use super::*;
use std::os::unix::fs::symlink;

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn unpacks_plain_and_gzip_and_applies_ignore() {
    let raw = tar_of(&[
        ("Dockerfile", b"FROM scratch\n"),
        (".dockerignore", b"*.log\nsecret/\n!secret/ok\nDockerfile\n"),
        ("a.log", b"x"),
        ("src/main.rs", b"fn main(){}"),
        ("secret/key", b"k"),
        ("secret/ok", b"ok"),
    ]);
    let ctx = BuildContext::from_tar(&raw[..], "", None).unwrap();
    assert_eq!(ctx.dockerfile(), "Dockerfile");
    let p = ctx.path();
    assert!(p.join("Dockerfile").is_file(), "the Dockerfile is kept");
    assert!(!p.join("a.log").exists());
    assert!(p.join("src/main.rs").is_file());
    assert!(!p.join("secret/key").exists());
    assert!(p.join("secret/ok").is_file());

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar_of(&[("sub/.df.123", b"FROM x\n")])).unwrap();
    let ctx = BuildContext::from_tar(&gz.finish().unwrap()[..], "./sub/.df.123", None).unwrap();
    assert_eq!(ctx.dockerfile(), "sub/.df.123");

    let plain = tar_of(&[("Dockerfile", b"FROM x\n")]);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    std::io::Write::write_all(&mut bz, &plain).unwrap();
    let ctx = BuildContext::from_tar(&bz.finish().unwrap()[..], "", None).unwrap();
    assert!(ctx.path().join("Dockerfile").is_file());
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    std::io::Write::write_all(&mut xz, &plain).unwrap();
    let ctx = BuildContext::from_tar(&xz.finish().unwrap()[..], "", None).unwrap();
    assert!(ctx.path().join("Dockerfile").is_file());
}

#[test]
fn lowercase_dockerfile_and_missing() {
    let ctx = BuildContext::from_tar(
        &tar_of(&[("dockerfile", b"FROM x\n")])[..],
        "Dockerfile",
        None,
    )
    .unwrap();
    assert_eq!(ctx.dockerfile(), "dockerfile");
    let e = BuildContext::from_tar(&tar_of(&[("x", b"")])[..], "Other", None).unwrap_err();
    assert!(
        matches!(e, ContextError::NoDockerfile(ref n) if n == "Other"),
        "{e}"
    );
}

#[test]
fn rejects_escaping_entries() {
    // Build a tar with a `..` entry by writing the header name bytes directly.
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..9].copy_from_slice(b"../evil\0\0");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[b'x'; 512]);
    raw.extend_from_slice(&[0; 1024]);
    let dir = tempfile::tempdir().unwrap();
    let e = extract_tar(&raw[..], &dir.path().join("ctx")).unwrap_err();
    assert!(
        matches!(e, ContextError::UnsafeEntry(_) | ContextError::Tar(_)),
        "{e}"
    );
    assert!(!dir.path().join("evil").exists());

    // A symlink pointing out, then a file written through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_cksum();
    let outside = tempfile::tempdir().unwrap();
    b.append_link(&mut h, "link", outside.path()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "link/pwned", &b"x"[..]).unwrap();
    let raw = b.into_inner().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    assert!(extract_tar(&raw[..], ctx.path()).is_err());
    assert!(!outside.path().join("pwned").exists());
}

#[test]
fn resolve_rejects_escapes() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/f"), "x").unwrap();
    symlink("b/f", root.join("a/inside")).unwrap();
    symlink("../../..", root.join("a/out")).unwrap();
    symlink("/etc", root.join("abs")).unwrap();
    assert_eq!(resolve(root, "a/inside").unwrap(), root.join("a/b/f"));
    assert_eq!(resolve(root, "/a/b/../b/f").unwrap(), root.join("a/b/f"));
    assert!(matches!(resolve(root, "../x"), Err(ContextError::Escapes(ref p)) if p == "../x"));
    assert!(matches!(
        resolve(root, "a/out/x"),
        Err(ContextError::Escapes(_))
    ));
    assert!(matches!(
        resolve(root, "abs"),
        Err(ContextError::Escapes(_))
    ));
    assert_eq!(resolve_nofollow(root, "abs").unwrap(), root.join("abs"));
}

#[test]
fn accepts_a_tar_cut_after_the_last_entry_data() {
    // What the docker CLI sends for `-f` outside the context: no padding, no end blocks.
    let raw = tar_of(&[("Dockerfile", b"FROM x\n"), (".dockerignore", b"a\nb\n")]);
    let cut = 512 + 512 + 512 + 4;
    let ctx = BuildContext::from_tar(&raw[..cut], "", None).unwrap();
    assert_eq!(
        std::fs::read(ctx.path().join(".dockerignore")).unwrap(),
        b"a\nb\n"
    );
}
