//! `docker update`: change the restart policy and resource limits of a container. Limits
//! are written to the running container's cgroup (v1 controller directories or the v2
//! unified one, found from its init's membership) and recorded in its HostConfig, so the
//! next start applies them too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
use crate::model::RestartPolicy;
use crate::Engine;

/// The smallest memory limit Docker accepts.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The body of `POST /containers/{id}/update` (the fields Berth applies).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateRequest {
    pub restart_policy: Option<RestartPolicy>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A container's cgroup directories: v1 controller name -> directory, or the v2 one.
#[derive(Debug, Default)]
struct Cgroups {
    v1: BTreeMap<String, PathBuf>,
    v2: Option<PathBuf>,
}

impl Cgroups {
    fn of_pid(pid: i64) -> Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| EngineError::internal(format!("cgroups of pid {pid}: {e}")))?;
        Ok(Self::parse(&text, Path::new("/sys/fs/cgroup")))
    }

    fn parse(text: &str, root: &Path) -> Self {
        let mut out = Cgroups::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if ctrls.is_empty() {
                if root.join("cgroup.controllers").exists() {
                    out.v2 = Some(root.join(rel));
                }
                continue;
            }
            for c in ctrls.split(',') {
                out.v1.insert(c.to_string(), root.join(ctrls).join(rel));
            }
        }
        out
    }

    /// Writes `v1_file` of controller `ctrl` (v1) or `v2_file` (v2).
    fn write(&self, ctrl: &str, v1_file: &str, v2_file: &str, value: &str) -> Result<()> {
        let path = match (self.v1.get(ctrl), &self.v2) {
            (Some(d), _) => d.join(v1_file),
            (None, Some(d)) => d.join(v2_file),
            (None, None) => {
                return Err(EngineError::invalid(format!(
                    "the {ctrl} cgroup controller is not available"
                )))
            }
        };
        std::fs::write(&path, value)
            .map_err(|e| EngineError::internal(format!("write {value} to {}: {e}", path.display())))
    }

    fn is_v1(&self, ctrl: &str) -> bool {
        self.v1.contains_key(ctrl)
    }
}

/// cgroup v2's cpu.weight for Docker's cpu shares.
pub fn shares_to_weight(shares: i64) -> i64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

impl Engine {
    /// Updates a container's restart policy and limits; returns Docker's warnings.
    pub async fn update_container(&self, name: &str, req: UpdateRequest) -> Result<Vec<String>> {
        let c = self.find_container(name)?;
        let op = self.live.with(&c.id, |l| l.op.clone());
        let _guard = op.lock().await;
        let mut c = self.find_container(&c.id)?;
        if req.memory != 0 && req.memory < MIN_MEMORY {
            return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
        }
        if let Some(p) = &req.restart_policy {
            if c.host_config.auto_remove && !p.name.is_empty() && p.name != "no" {
                return Err(EngineError::invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            match p.name.as_str() {
                "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
                other => {
                    return Err(EngineError::invalid(format!(
                        "invalid restart policy '{other}'"
                    )))
                }
            }
        }
        if req.nano_cpus != 0 && (req.cpu_quota != 0 || req.cpu_period != 0) {
            return Err(EngineError::invalid(
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
            ));
        }
        if c.state.running && c.state.pid > 0 {
            let cg = Cgroups::of_pid(c.state.pid)?;
            apply_limits(&cg, &req)?;
        }
        let hc = &mut c.host_config;
        if let Some(p) = req.restart_policy.clone() {
            hc.restart_policy = Some(p);
        }
        if req.memory != 0 {
            hc.memory = req.memory;
        }
        if req.memory_swap != 0 {
            hc.memory_swap = req.memory_swap;
        }
        if req.nano_cpus != 0 {
            hc.nano_cpus = req.nano_cpus;
            hc.cpu_quota = 0;
            hc.cpu_period = 0;
        }
        if req.cpu_quota != 0 {
            hc.cpu_quota = req.cpu_quota;
            hc.nano_cpus = 0;
        }
        if req.cpu_period != 0 {
            hc.cpu_period = req.cpu_period;
            hc.nano_cpus = 0;
        }
        if req.cpu_shares != 0 {
            hc.cpu_shares = req.cpu_shares;
        }
        if !req.cpuset_cpus.is_empty() {
            hc.cpuset_cpus = req.cpuset_cpus.clone();
        }
        if let Some(p) = req.pids_limit.filter(|p| *p != 0) {
            hc.pids_limit = Some(p);
        }
        self.save_container(&c)?;
        self.container_event(&c, "update");
        Ok(Vec::new())
    }
}

fn apply_limits(cg: &Cgroups, req: &UpdateRequest) -> Result<()> {
    if req.memory > 0 {
        let mem = req.memory.to_string();
        if cg.is_v1("memory") {
            let swap = match req.memory_swap {
                0 => None,
                -1 => Some("-1".to_string()),
                s => Some(s.to_string()),
            };
            // memsw must stay >= memory: write it first when raising, after when lowering.
            let first = cg.write("memory", "memory.limit_in_bytes", "", &mem);
            if first.is_err() {
                let swap = swap.clone().unwrap_or_else(|| (req.memory * 2).to_string());
                cg.write("memory", "memory.memsw.limit_in_bytes", "", &swap)?;
                cg.write("memory", "memory.limit_in_bytes", "", &mem)?;
            } else if let Some(s) = swap {
                cg.write("memory", "memory.memsw.limit_in_bytes", "", &s)?;
            }
        } else {
            cg.write("memory", "", "memory.max", &mem)?;
            if req.memory_swap > 0 {
                let swap = (req.memory_swap - req.memory).max(0).to_string();
                cg.write("memory", "", "memory.swap.max", &swap)?;
            }
        }
    }
    let (quota, period) = if req.nano_cpus > 0 {
        (Some(req.nano_cpus / 10_000), Some(100_000))
    } else {
        (
            (req.cpu_quota != 0).then_some(req.cpu_quota),
            (req.cpu_period != 0).then_some(req.cpu_period),
        )
    };
    if quota.is_some() || period.is_some() {
        if cg.is_v1("cpu") {
            if let Some(p) = period {
                cg.write("cpu", "cpu.cfs_period_us", "", &p.to_string())?;
            }
            if let Some(q) = quota {
                cg.write("cpu", "cpu.cfs_quota_us", "", &q.to_string())?;
            }
        } else {
            let q = quota.filter(|q| *q > 0).map(|q| q.to_string());
            let value = format!(
                "{} {}",
                q.unwrap_or_else(|| "max".into()),
                period.unwrap_or(100_000)
            );
            cg.write("cpu", "", "cpu.max", &value)?;
        }
    }
    if req.cpu_shares > 0 {
        if cg.is_v1("cpu") {
            cg.write("cpu", "cpu.shares", "", &req.cpu_shares.to_string())?;
        } else {
            cg.write(
                "cpu",
                "",
                "cpu.weight",
                &shares_to_weight(req.cpu_shares).to_string(),
            )?;
        }
    }
    if !req.cpuset_cpus.is_empty() {
        cg.write("cpuset", "cpuset.cpus", "cpuset.cpus", &req.cpuset_cpus)?;
    }
    if let Some(p) = req.pids_limit.filter(|p| *p != 0) {
        let v = if p < 0 {
            "max".to_string()
        } else {
            p.to_string()
        };
        cg.write("pids", "pids.max", "pids.max", &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_v1_controllers() {
        let cg = Cgroups::parse(
            "4:cpu,cpuacct:/berth/abc\n7:memory:/berth/abc\n0::/\n",
            Path::new("/nonexistent"),
        );
        assert_eq!(
            cg.v1["cpu"],
            PathBuf::from("/nonexistent/cpu,cpuacct/berth/abc")
        );
        assert_eq!(
            cg.v1["memory"],
            PathBuf::from("/nonexistent/memory/berth/abc")
        );
        assert!(cg.v2.is_none());
    }

    #[test]
    fn weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
