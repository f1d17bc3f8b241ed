//! `docker info` / `docker version` facts about this engine and host.

use serde_json::{json, Value};

use crate::error::Result;
use crate::model::ContainerRecord;
use crate::Engine;

/// Berth's version, reported as the server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// "2" on a pure cgroup v2 host, else "1" (v1 or hybrid).
pub fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn mem_total() -> i64 {
    read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|k| k * 1024)
        .unwrap_or(0)
}

fn os_name() -> String {
    read_trim("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

impl Engine {
    /// `GET /info`.
    pub fn info(&self) -> Result<Value> {
        let cs: Vec<ContainerRecord> = self.db.all("containers")?;
        let running = cs
            .iter()
            .filter(|c| c.state.running && !c.state.paused)
            .count();
        let paused = cs.iter().filter(|c| c.state.paused).count();
        let images = self.db.all::<Value>("images")?.len();
        let id_file = self.cfg.data_root.join("engine-id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                let id = crate::names::new_id();
                let _ = std::fs::write(&id_file, &id);
                id
            }
        };
        let mut insecure: Vec<String> = vec!["127.0.0.0/8".into(), "::1/128".into()];
        insecure.extend(self.cfg.insecure_registries.iter().cloned());
        Ok(json!({
            "ID": id,
            "Containers": cs.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": cs.len() - running - paused,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "DockerRootDir": self.cfg.data_root,
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file", "none"]},
            "MemoryLimit": true,
            "SwapLimit": true,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "CPUShares": true,
            "CPUSet": true,
            "PidsLimit": true,
            "OomKillDisable": false,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": crate::containers::now_rfc3339(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "NEventsListener": 0,
            "KernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "OperatingSystem": os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": insecure,
                "IndexConfigs": {},
                "Mirrors": [],
            },
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "Name": read_trim("/proc/sys/kernel/hostname"),
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": VERSION,
            "Runtimes": {"berth": {"path": "built-in (libcontainer)"}, "runc": {"path": self.cfg.runc_binary}},
            "DefaultRuntime": self.cfg.default_runtime,
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": self.security_options(),
            "ProductLicense": "Apache-2.0",
            "Warnings": [],
        }))
    }

    /// `docker info`'s SecurityOptions: seccomp, and userns when `--userns-remap` is on.
    fn security_options(&self) -> Vec<&'static str> {
        let mut out = vec!["name=seccomp,profile=builtin"];
        if self.idmap.is_some() {
            out.push("name=userns");
        }
        out
    }
}
