//! `docker stats`: samples of the container's cgroup (through its shim), the host's CPU
//! time (`/proc/stat`) and the container's network counters (`/proc/<pid>/net/dev`),
//! shaped as Docker's stats JSON so the CLI computes CPU %, memory and PIDs the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{CgroupStats, ShimClient};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::now_rfc3339;
use crate::error::Result;
use crate::model::ContainerRecord;
use crate::Engine;

/// The interval between streamed samples, as Docker's.
const INTERVAL: Duration = Duration::from_secs(1);

/// One reading of a container's counters.
#[derive(Debug, Clone, Default)]
pub struct StatsSample {
    /// When it was read (RFC 3339).
    pub read: String,
    /// The cgroup's counters (zero when the container is not running).
    pub cgroup: CgroupStats,
    /// Host CPU time of all CPUs, nanoseconds.
    pub system_cpu_ns: u64,
    /// Network interface name -> (rx bytes, rx packets, rx errors, rx dropped, tx bytes,
    /// tx packets, tx errors, tx dropped).
    pub networks: BTreeMap<String, [u64; 8]>,
}

impl Engine {
    /// Streams stats frames of a container. With `stream` a frame comes every second until
    /// the receiver is dropped; otherwise one frame (after two samples a second apart so
    /// CPU % can be computed, or at once with `one_shot`).
    pub async fn container_stats(
        self: &Arc<Self>,
        name: &str,
        stream: bool,
        one_shot: bool,
    ) -> Result<mpsc::Receiver<Value>> {
        let c = self.find_container(name)?;
        let (tx, rx) = mpsc::channel(4);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let mut prev: Option<StatsSample> = None;
            if !stream && !one_shot {
                prev = Some(engine.stats_sample(&c.id).await);
                tokio::time::sleep(INTERVAL).await;
            }
            loop {
                let cur = engine.stats_sample(&c.id).await;
                let c = engine.find_container(&c.id).unwrap_or_else(|_| c.clone());
                let frame = stats_json(&c, &cur, prev.as_ref());
                if tx.send(frame).await.is_err() || !stream {
                    return;
                }
                prev = Some(cur);
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    /// Reads the current counters of a container; zeros when it is not running.
    pub async fn stats_sample(&self, id: &str) -> StatsSample {
        let mut s = StatsSample {
            read: now_rfc3339(),
            system_cpu_ns: system_cpu_ns(),
            ..Default::default()
        };
        let Ok(c) = self.find_container(id) else {
            return s;
        };
        if !c.state.running {
            return s;
        }
        if let Ok(client) = ShimClient::connect(&self.state_dir(&c.id)).await {
            if let Ok(st) = client.stats().await {
                s.cgroup = st;
            }
        }
        if c.state.pid > 0 {
            s.networks = net_dev(c.state.pid);
        }
        s
    }
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// The host's CPU time from the `cpu` line of /proc/stat, in nanoseconds.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    parse_proc_stat(&text)
        .saturating_mul(1_000_000_000)
        .checked_div(ticks)
        .unwrap_or(0)
}

/// Sum of the first seven fields (user..softirq) of the aggregate `cpu` line, in ticks.
pub fn parse_proc_stat(text: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Network counters of the namespace of `pid`, without the loopback.
fn net_dev(pid: i64) -> BTreeMap<String, [u64; 8]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

/// Parses /proc/net/dev into interface -> rx/tx counters (loopback skipped).
pub fn parse_net_dev(text: &str) -> BTreeMap<String, [u64; 8]> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
        );
    }
    out
}

fn cpu_json(s: &StatsSample) -> Value {
    let g = &s.cgroup;
    json!({
        "cpu_usage": {
            "total_usage": g.cpu_total_ns,
            "usage_in_kernelmode": g.cpu_system_ns,
            "usage_in_usermode": g.cpu_user_ns,
        },
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": online_cpus(),
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// One stats frame in Docker's shape; `prev` fills `precpu_stats` (zeros when absent).
pub fn stats_json(c: &ContainerRecord, cur: &StatsSample, prev: Option<&StatsSample>) -> Value {
    let g = &cur.cgroup;
    let empty = StatsSample::default();
    let pre = prev.unwrap_or(&empty);
    let mut precpu = cpu_json(pre);
    if prev.is_none() {
        precpu["system_cpu_usage"] = json!(0);
        precpu["online_cpus"] = json!(0);
    }
    let networks: serde_json::Map<String, Value> = cur
        .networks
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({
                    "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                    "tx_bytes": v[4], "tx_packets": v[5], "tx_errors": v[6], "tx_dropped": v[7],
                }),
            )
        })
        .collect();
    let running = c.state.running;
    let mut v = json!({
        "name": format!("/{}", c.name),
        "id": c.id,
        "read": cur.read,
        "preread": if prev.is_some() { pre.read.clone() } else { super::ZERO_TIME.to_string() },
        "pids_stats": if running { json!({"current": g.pids, "limit": if g.pids_limit > 0 { json!(g.pids_limit) } else { json!(null) }}) } else { json!({}) },
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(cur),
        "precpu_stats": precpu,
        "memory_stats": if running { json!({
            "usage": g.memory_usage,
            "limit": g.memory_limit,
            "stats": {"inactive_file": g.memory_inactive_file},
        }) } else { json!({}) },
    });
    if !networks.is_empty() {
        v["networks"] = Value::Object(networks);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_sums_busy_and_idle_ticks() {
        let t = "cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 5 0 2 50 1 0 1 0 0 0\n";
        assert_eq!(parse_proc_stat(t), 121);
    }

    #[test]
    fn net_dev_skips_loopback() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n  eth0: 900 9 1 2 0 0 0 0 300 3 4 5 0 0 0 0\n";
        let m = parse_net_dev(t);
        assert_eq!(m.len(), 1);
        assert_eq!(m["eth0"], [900, 9, 1, 2, 300, 3, 4, 5]);
    }

    #[test]
    fn frame_has_docker_fields() {
        let c = ContainerRecord {
            name: "x".into(),
            ..Default::default()
        };
        let v = stats_json(&c, &StatsSample::default(), None);
        assert_eq!(v["name"], "/x");
        assert!(v["cpu_stats"]["cpu_usage"]["total_usage"].is_number());
        assert_eq!(v["precpu_stats"]["system_cpu_usage"], 0);
    }
}
