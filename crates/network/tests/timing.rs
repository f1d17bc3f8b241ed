//! Not a timing assertion: prints how long connect/disconnect take, for the
//! report (`cargo test -p berth-network --test timing -- --nocapture`).

mod common;

use std::net::Ipv4Addr;
use std::time::Instant;

use berth_network::{create_netns, Networking};
use common::{spec, table, Cleanup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cost() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..10).map(|i| dir.path().join(format!("n{i}"))).collect();
    let guard = Cleanup {
        table: table(),
        netns: paths.clone(),
    };
    let net = spec("10.231.11.0/24");
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    let start = Instant::now();
    nw.ensure_network(&net).await.unwrap();
    println!(
        "ensure_network of an existing network: {:?}",
        start.elapsed()
    );
    let mut times = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let start = Instant::now();
        create_netns(p).unwrap();
        let ep = nw
            .connect(
                &net,
                p,
                "eth0",
                Ipv4Addr::new(10, 231, 11, 10 + i as u8),
                None,
            )
            .await
            .unwrap();
        let mid = start.elapsed();
        let state =
            std::fs::read_to_string(format!("/sys/class/net/{}/brport/state", ep.host_veth))
                .unwrap();
        assert_eq!(
            state.trim(),
            "3",
            "bridge port not forwarding after connect"
        );
        nw.disconnect(&ep).await.unwrap();
        let disc = start.elapsed() - mid;
        berth_network::remove_netns(p).unwrap();
        times.push((mid, disc, start.elapsed()));
    }
    times.sort();
    let (c, d, t) = times[times.len() / 2];
    println!("median: create_netns+connect {c:?}, disconnect {d:?}, whole cycle {t:?}");
}
