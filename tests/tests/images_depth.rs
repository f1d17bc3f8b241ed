//! Issue 3 completeness: layer application compared with dockerd's, push --all-tags, and
//! bad registry input (hostile manifests, truncated blobs, auth and redirect loops).

mod common;

#[path = "images_depth/dockerd.rs"]
mod dockerd;
#[path = "images_depth/tree.rs"]
mod tree;

use std::process::Command;

use common::{root, text, Daemon, Registry};

/// Pushes tests/fixtures/depth-image.py's image as NAME:TAG.
fn push_depth_image(reg: &Registry, name: &str, tag: &str) {
    let out = Command::new("python3")
        .arg(root().join("tests/fixtures/depth-image.py"))
        .args([&reg.addr(), name, tag])
        .output()
        .unwrap();
    assert!(out.status.success(), "depth-image.py: {}", text(&out).1);
}

/// Runs IMAGE detached with `docker` (given as a closure) and returns the tree its init sees.
fn container_tree(docker: impl Fn(&[&str]) -> String, image: &str) -> String {
    let id = docker(&[
        "run",
        "-d",
        "--network",
        "none",
        image,
        "/bin/sleep",
        "3600",
    ]);
    let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .unwrap();
    let t = tree::tree_of(pid);
    docker(&["rm", "-f", &id]);
    t
}

#[test]
fn layer_trees_match_dockerd() {
    let reg = Registry::start();
    push_depth_image(&reg, "depth", "1");
    let image = format!("{}/depth:1", reg.addr());
    let Some(dockerd) = dockerd::Dockerd::start(&reg.addr()) else {
        return;
    };
    dockerd.docker_ok(&["pull", "-q", &image]);
    let want = container_tree(|a| dockerd.docker_ok(a), &image);

    let d = Daemon::start();
    d.docker_ok(&["pull", "-q", &image]);
    let got = container_tree(|a| d.docker_ok(a), &image);

    // The fixture's corners are really there (a vacuous comparison would pass too).
    for needle in [
        "/a/hl2: file mode=100640 uid=5 gid=6",
        "/devs/null: char",
        "/devs/fifo: fifo",
        "/gone/new:",
        "/d/newer:",
        "user.y=\"two words\"",
        "mtime=1600000003.123456789",
    ] {
        assert!(
            want.contains(needle),
            "dockerd tree lacks {needle}:\n{want}"
        );
    }
    for gone in [
        "/a/f1:",
        "/d/old1:",
        "/d/new1:",
        "/gone/g1:",
        "/keep/k:",
        "/a/sub/deep:",
    ] {
        assert!(!want.contains(gone), "dockerd tree has {gone}:\n{want}");
    }
    if want != got {
        let w: Vec<&str> = want.lines().collect();
        let g: Vec<&str> = got.lines().collect();
        let only_docker: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
        let only_berth: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
        panic!("trees differ\nonly dockerd: {only_docker:#?}\nonly berthd: {only_berth:#?}");
    }
}
