//! Issue 2/3: pulling from a real registry, the image commands, and bad input.

mod common;

use common::{shared_registry, text, Daemon, Registry};

#[test]
fn pull_shows_progress_and_lists_the_image() {
    let d = Daemon::start();
    let reg = shared_registry();
    let r = format!("{}/busybox:1", reg.addr());
    let out = d.docker_ok(&["pull", &r]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains(&format!("Downloaded newer image for {r}")),
        "{out}"
    );
    let again = d.docker_ok(&["pull", &r]);
    assert!(again.contains("Image is up to date"), "{again}");
    let listed = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed, r);
    let inspect = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .RepoTags 0}} {{.Os}} {{len .RootFS.Layers}}",
        &r,
    ]);
    assert_eq!(inspect, format!("{r} linux 1"));
    let digests = d.docker_ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &r]);
    assert!(
        digests.starts_with(&format!("{}/busybox@sha256:", reg.addr())),
        "{digests}"
    );
}

#[test]
fn pulls_docker_schema2_multi_layer_images_with_whiteouts() {
    let d = Daemon::start();
    let img = d.pull("busybox:v2s2");
    let layers = d.docker_ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &img]);
    assert_eq!(layers, "2");
    // The second layer deleted /bin/vi and added /etc/layer2.
    assert_eq!(
        d.docker_ok(&["run", "--rm", &img, "cat", "/etc/layer2"]),
        "layer2"
    );
    let out = d.docker(&["run", "--rm", &img, "ls", "/bin/vi"]);
    assert!(!out.status.success(), "a whiteout did not hide /bin/vi");
}

#[test]
fn pulls_zstd_and_uncompressed_layers() {
    let reg = Registry::start();
    reg.push_busybox("bb:zstd", &["--compress", "zstd"]);
    reg.push_busybox("bb:plain", &["--compress", "none", "--format", "v2s2"]);
    let d = Daemon::start();
    for tag in ["zstd", "plain"] {
        let r = format!("{}/bb:{tag}", reg.addr());
        d.docker_ok(&["pull", "-q", &r]);
        assert_eq!(
            d.docker_ok(&["run", "--rm", &r, "cat", "/var/www/index.html"]),
            "hello-from-image"
        );
    }
}

#[test]
fn shared_layers_are_stored_once() {
    let d = Daemon::start();
    let reg = shared_registry();
    let a = format!("{}/busybox:1", reg.addr());
    d.docker_ok(&["pull", "-q", &a]);
    // A second tag of the same content in another repository.
    let reg2 = Registry::start();
    reg2.push_busybox("other:x", &[]);
    let b = format!("{}/other:x", reg2.addr());
    let out = d.docker_ok(&["pull", &b]);
    assert!(
        out.contains("Already exists")
            || out.contains("up to date")
            || !out.contains("Downloading"),
        "{out}"
    );
    let snaps = std::fs::read_dir(d.data_root().join("snapshots/snapshots"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(snaps, 1, "one layer unpacked once");
}

#[test]
fn tag_and_rmi_follow_docker_rules() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&["tag", &img, "mine:latest"]);
    d.docker_ok(&["tag", &img, "mine:two"]);
    assert_eq!(d.docker_ok(&["images", "-q"]).lines().count(), 3);
    // Untagging one of several names keeps the image.
    let out = d.docker_ok(&["rmi", "mine:two"]);
    assert!(out.contains("Untagged: mine:two"), "{out}");
    d.docker_ok(&["create", "--name", "user", "mine"]);
    let out = d.docker(&["rmi", &img]);
    assert!(out.status.success(), "{:?}", text(&out)); // still tagged as mine:latest
    let out = d.docker(&["rmi", "mine"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is using its referenced image"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&["rm", "user"]);
    let out = d.docker_ok(&["rmi", "mine"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
}

#[test]
fn pull_errors_name_the_image_and_cause_and_leave_nothing() {
    let d = Daemon::start();
    let reg = shared_registry();
    let out = d.docker(&["pull", &format!("{}/busybox:nope", reg.addr())]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(
        err.contains("busybox:nope") && (err.contains("not found") || err.contains("unknown")),
        "{err}"
    );
    let out = d.docker(&["pull", &format!("{}/missing/repo:1", reg.addr())]);
    assert!(!out.status.success());
    let port = common::free_port();
    let out = d.docker(&["pull", &format!("127.0.0.1:{port}/busybox:1")]);
    assert!(!out.status.success());
    let err = text(&out).1;
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
    // docker run of a missing image says so.
    let out = d.docker(&[
        "run",
        "--rm",
        &format!("{}/busybox:nope", reg.addr()),
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn malformed_requests_get_400_with_a_message() {
    let d = Daemon::start();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            d.socket.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "-d",
            "{not json",
            "http://x/v1.44/containers/create",
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.ends_with("400"), "{s}");
    assert!(s.contains("\"message\""), "{s}");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
            d.socket.to_str().unwrap(),
            "http://x/v1.44/containers/nope/json",
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.ends_with("404") && s.contains("No such container: nope"),
        "{s}"
    );
}
