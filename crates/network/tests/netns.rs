//! Network namespace creation and removal.

mod common;

use berth_network::netns::in_netns;
use berth_network::{create_netns, remove_netns};
use common::run;

#[test]
fn create_has_lo_up_and_remove_cleans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns").join("one");
    let _guard = common::Cleanup {
        table: common::table(),
        netns: vec![path.clone()],
    };
    create_netns(&path).unwrap();
    let net = format!("--net={}", path.display());
    let (ok, out) = run(&["nsenter", &net, "ip", "-o", "link", "show", "lo"]);
    assert!(ok, "{out}");
    assert!(out.contains(",UP"), "lo not up: {out}");
    // Only lo lives in a fresh namespace.
    let (_, all) = run(&["nsenter", &net, "ip", "-o", "link"]);
    assert_eq!(all.lines().count(), 1, "{all}");
    // A second create on the same path fails and leaves the first intact.
    assert!(create_netns(&path).is_err());
    assert!(in_netns(&path, || std::fs::read_to_string(
        "/proc/thread-self/net/dev"
    )
    .unwrap())
    .unwrap()
    .contains("lo:"));
    remove_netns(&path).unwrap();
    assert!(!path.exists());
    remove_netns(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_multithreaded_runtime() {
    let host = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..8).map(|i| dir.path().join(format!("ns{i}"))).collect();
    let _guard = common::Cleanup {
        table: common::table(),
        netns: paths.clone(),
    };
    let tasks: Vec<_> = paths
        .iter()
        .cloned()
        .map(|p| tokio::task::spawn_blocking(move || create_netns(&p)))
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // The runtime's own threads are still in the host namespace.
    assert_eq!(
        host,
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    );
    for p in &paths {
        remove_netns(p).unwrap();
    }
}
