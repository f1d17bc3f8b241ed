//! Less common `run`/`create` flags (namespaces, resource tuning, devices) and how they
//! land in the create body. Flattened into [`crate::create_opts::CreateOpts`].

use clap::Args;
use serde_json::{json, Map, Value};

use crate::parse::{self, ParseError};

/// Extra create flags.
#[derive(Args, Debug, Default, Clone)]
pub struct ExtraOpts {
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Limit CPU CFS period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Add a host device to the container (host[:container[:perms]])
    #[arg(long)]
    pub device: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// IPv6 address
    #[arg(long)]
    pub ip6: Option<String>,
    /// Container MAC address
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
}

impl ExtraOpts {
    /// Adds these flags' fields to the container config and host config.
    pub fn apply(
        &self,
        cfg: &mut Map<String, Value>,
        host: &mut Map<String, Value>,
    ) -> Result<(), ParseError> {
        if let Some(s) = &self.shm_size {
            host.insert("ShmSize".into(), json!(parse::parse_bytes(s)?));
        }
        if !self.sysctl.is_empty() {
            host.insert("Sysctls".into(), Value::Object(parse::kv_map(&self.sysctl)));
        }
        if !self.group_add.is_empty() {
            host.insert("GroupAdd".into(), json!(self.group_add));
        }
        let modes = [
            ("IpcMode", &self.ipc),
            ("PidMode", &self.pid),
            ("UTSMode", &self.uts),
            ("UsernsMode", &self.userns),
            ("CgroupnsMode", &self.cgroupns),
        ];
        for (key, v) in modes {
            if let Some(v) = v {
                host.insert(key.into(), json!(v));
            }
        }
        if let Some(s) = &self.memory_swap {
            let v = if s == "-1" {
                -1
            } else {
                parse::parse_bytes(s)?
            };
            host.insert("MemorySwap".into(), json!(v));
        }
        if let Some(s) = &self.memory_reservation {
            host.insert("MemoryReservation".into(), json!(parse::parse_bytes(s)?));
        }
        if self.oom_kill_disable {
            host.insert("OomKillDisable".into(), json!(true));
        }
        if let Some(p) = self.cpu_period {
            host.insert("CpuPeriod".into(), json!(p));
        }
        if let Some(q) = self.cpu_quota {
            host.insert("CpuQuota".into(), json!(q));
        }
        if let Some(c) = &self.cpuset_cpus {
            host.insert("CpusetCpus".into(), json!(c));
        }
        if !self.device.is_empty() {
            let devs: Vec<Value> = self.device.iter().map(|d| parse_device(d)).collect();
            host.insert("Devices".into(), json!(devs));
        }
        if !self.volumes_from.is_empty() {
            host.insert("VolumesFrom".into(), json!(self.volumes_from));
        }
        if !self.link.is_empty() {
            host.insert("Links".into(), json!(self.link));
        }
        if let Some(m) = &self.mac_address {
            cfg.insert("MacAddress".into(), json!(m));
        }
        Ok(())
    }
}

/// Parses `--device host[:container[:perms]]` into an API `DeviceMapping`.
pub fn parse_device(d: &str) -> Value {
    let parts: Vec<&str> = d.split(':').collect();
    let host = parts.first().copied().unwrap_or("");
    let (container, perms) = match parts.as_slice() {
        [_, c, p] => (*c, *p),
        [_, x] if x.chars().all(|ch| "rwm".contains(ch)) => (host, *x),
        [_, c] => (*c, "rwm"),
        _ => (host, "rwm"),
    };
    json!({"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": perms})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_flags() {
        let o = ExtraOpts {
            shm_size: Some("64m".into()),
            sysctl: vec!["net.ipv4.ip_forward=1".into()],
            pid: Some("host".into()),
            memory_swap: Some("-1".into()),
            cpu_quota: Some(50000),
            device: vec!["/dev/fuse".into(), "/dev/sda:/dev/xvda:r".into()],
            mac_address: Some("02:42:ac:11:00:02".into()),
            ..Default::default()
        };
        let (mut cfg, mut host) = (Map::new(), Map::new());
        o.apply(&mut cfg, &mut host).unwrap();
        assert_eq!(host["ShmSize"], 64 * 1024 * 1024);
        assert_eq!(host["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(host["PidMode"], "host");
        assert_eq!(host["MemorySwap"], -1);
        assert_eq!(host["CpuQuota"], 50000);
        assert_eq!(
            host["Devices"][0],
            json!({"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"})
        );
        assert_eq!(host["Devices"][1]["CgroupPermissions"], "r");
        assert_eq!(cfg["MacAddress"], "02:42:ac:11:00:02");
        let bad = ExtraOpts {
            shm_size: Some("huge".into()),
            ..Default::default()
        };
        assert!(bad.apply(&mut cfg, &mut host).is_err());
    }
}
