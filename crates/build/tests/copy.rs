//! COPY and ADD semantics against the TestHost (needs root for chown and chroot).

mod common;

use std::path::Path;

use berth_build::BuildError;
use common::{build, env, tagged, write};

#[tokio::test]
async fn copy_semantics() {
    let e = env();
    write(
        &e.ctx,
        &[
            (
                "Dockerfile",
                r#"FROM busybox
COPY *.txt /texts/
COPY dir /d
COPY --chown=app:staff --chmod=640 dir/a /owned
COPY dir/a dir/sub/ /multi/
WORKDIR /rel
COPY dir/a .
COPY <<EOF /heredoc
hello $HOME
EOF
"#,
            ),
            ("a.txt", "A"),
            ("b.txt", "B"),
            ("c.md", "C"),
            ("dir/a", "x"),
            ("dir/sub/b", "y"),
        ],
    );
    std::os::unix::fs::symlink("a", e.ctx.join("dir/link")).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(e.ctx.join("dir/a"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (r, _) = build(&e, tagged("cp:1")).await;
    r.unwrap();
    let (img, root) = e.host.image_by_tag("cp:1");
    let root = root.unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("texts/a.txt"), "A");
    assert_eq!(read("texts/b.txt"), "B");
    assert!(!root.join("texts/c.md").exists());
    assert_eq!(read("d/a"), "x", "a directory source copies its contents");
    assert_eq!(
        std::fs::metadata(root.join("d/a"))
            .unwrap()
            .modified()
            .unwrap(),
        old,
        "COPY keeps mtimes"
    );
    assert_eq!(read("d/sub/b"), "y");
    assert_eq!(
        std::fs::read_link(root.join("d/link")).unwrap(),
        Path::new("a"),
        "symlinks inside a directory stay links"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 50, 0o640));
    assert_eq!(read("multi/a"), "x");
    assert_eq!(read("multi/b"), "y");
    assert_eq!(read("rel/a"), "x");
    assert_eq!(read("heredoc"), "hello \n");
    let hist = img["history"].as_array().unwrap();
    let cb = hist[1]["created_by"].as_str().unwrap();
    assert!(
        cb.starts_with("/bin/sh -c #(nop) COPY multi:") && cb.ends_with(" in /texts/ "),
        "{cb}"
    );
    assert!(hist[2]["created_by"]
        .as_str()
        .unwrap()
        .contains("COPY dir:"));
}

#[tokio::test]
async fn copy_rejects_escapes() {
    let e = env();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), e.ctx.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", e.ctx.join("rel-link")).unwrap();
    for (src, needle) in [
        ("../x", "../x"),
        ("abs-link", "abs-link"),
        ("rel-link", "rel-link"),
        ("missing", "missing"),
    ] {
        write(
            &e.ctx,
            &[("Dockerfile", &format!("FROM busybox\nCOPY {src} /x\n"))],
        );
        let err = build(&e, tagged("esc:1")).await.0.unwrap_err();
        assert!(matches!(err, BuildError::Copy { line: 2, .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    write(
        &e.ctx,
        &[
            ("Dockerfile", "FROM busybox\nCOPY a b /x\n"),
            ("a", ""),
            ("b", ""),
        ],
    );
    let err = build(&e, tagged("esc:2")).await.0.unwrap_err();
    assert!(err.to_string().contains("must be a directory"), "{err}");
}

#[tokio::test]
async fn add_archives_and_urls() {
    let e = env();
    // A gzip tar in the context.
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "pkg/file", &b"inner"[..]).unwrap();
    std::fs::write(
        e.ctx.join("a.tar.gz"),
        b.into_inner().unwrap().finish().unwrap(),
    )
    .unwrap();
    // A small HTTP server for ADD <url>.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nfetched")
            .unwrap();
    });
    write(&e.ctx, &[("Dockerfile", &format!("FROM busybox\nADD a.tar.gz /opt/\nADD http://127.0.0.1:{port}/dl/file.txt /web/\nCOPY a.tar.gz /raw/\n"))]);
    build(&e, tagged("add:1")).await.0.unwrap();
    server.join().unwrap();
    let (_, root) = e.host.image_by_tag("add:1");
    let root = root.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("opt/pkg/file")).unwrap(),
        "inner"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("web/file.txt")).unwrap(),
        "fetched"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(root.join("web/file.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(root.join("raw/a.tar.gz").is_file(), "COPY never unpacks");
}

#[tokio::test]
async fn add_bzip2_and_xz_archives_with_the_real_tools() {
    let e = env();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("t")).unwrap();
    std::fs::write(src.path().join("t/data"), "packed").unwrap();
    for (flag, name) in [("-j", "a.tar.bz2"), ("-J", "a.tar.xz"), ("-c", "a.tar")] {
        let st = std::process::Command::new("tar")
            .arg("-c")
            .arg(if flag == "-c" { "-f" } else { flag })
            .args(if flag == "-c" { vec![] } else { vec!["-f"] })
            .arg(e.ctx.join(name))
            .arg("-C")
            .arg(src.path())
            .arg("t")
            .status()
            .unwrap();
        assert!(st.success());
    }
    write(&e.ctx, &[("Dockerfile", "FROM busybox\nADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD a.tar /plain/\nCOPY --from=busybox /etc/group /copied-group\n")]);
    build(&e, tagged("arch:1")).await.0.unwrap();
    let (_, root) = e.host.image_by_tag("arch:1");
    let root = root.unwrap();
    for d in ["bz", "xz", "plain"] {
        assert_eq!(
            std::fs::read_to_string(root.join(d).join("t/data")).unwrap(),
            "packed",
            "{d}"
        );
    }
    assert!(
        std::fs::read_to_string(root.join("copied-group"))
            .unwrap()
            .contains("staff"),
        "COPY --from an image"
    );
}
