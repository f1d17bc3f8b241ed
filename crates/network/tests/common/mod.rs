//! Shared helpers of the integration tests (real kernel objects, unique names).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_network::{cleanup_all, Ipv4Net, NetworkSpec};

/// A short random hex string.
pub fn rand_hex(n: usize) -> String {
    let v: u64 = rand::random();
    format!("{v:016x}")[..n].to_string()
}

/// A network spec with a unique bridge name on `subnet`.
pub fn spec(subnet: &str) -> NetworkSpec {
    let subnet: Ipv4Net = subnet.parse().unwrap();
    let id = rand_hex(12);
    NetworkSpec {
        bridge: format!("bt{}", &id[..8]),
        name: format!("test-{id}"),
        id,
        gateway: subnet.first_host(),
        subnet,
        internal: false,
        masquerade: true,
        mtu: 0,
    }
}

/// A unique nft table name.
pub fn table() -> String {
    format!("berth_test_{}", rand_hex(8))
}

/// Runs a command and returns (success, stdout+stderr).
pub fn run(cmd: &[&str]) -> (bool, String) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text += &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `busybox ping -c1 -W1` from inside a namespace.
pub fn ping_from(ns: &Path, ip: Ipv4Addr) -> bool {
    let net = format!("--net={}", ns.display());
    run(&[
        "nsenter",
        &net,
        "busybox",
        "ping",
        "-c1",
        "-W1",
        &ip.to_string(),
    ])
    .0
}

/// Whether a link of that name exists in the host namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes the table and its bridges when dropped (also on test failure).
pub struct Cleanup {
    pub table: String,
    pub netns: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.netns {
            let _ = berth_network::remove_netns(ns);
        }
        let table = self.table.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(cleanup_all(&table))
        })
        .join();
    }
}
