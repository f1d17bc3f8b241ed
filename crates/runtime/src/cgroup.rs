//! Reading a container's cgroup (v1, hybrid or v2): statistics, member pids, OOM kills.

use std::path::{Path, PathBuf};

use crate::types::CgroupStats;

/// Errors reading cgroup files.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The process's cgroup membership could not be read.
    #[error("reading cgroups of pid {pid}: {source}")]
    Membership {
        /// the process
        pid: i32,
        /// the cause
        source: std::io::Error,
    },
}

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of one container, resolved once from its init's membership.
#[derive(Debug, Clone, Default)]
pub struct CgroupDirs {
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    pids: Option<PathBuf>,
    /// v2 unified directory (pure v2 hosts)
    unified: Option<PathBuf>,
}

impl CgroupDirs {
    /// Resolves the directories from `/proc/<pid>/cgroup`.
    pub fn for_pid(pid: i32) -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|source| CgroupError::Membership { pid, source })?;
        Ok(Self::parse(&text, Path::new(ROOT)))
    }

    fn parse(text: &str, root: &Path) -> Self {
        let mut dirs = CgroupDirs::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if ctrls.is_empty() {
                if root.join("cgroup.controllers").exists() {
                    dirs.unified = Some(root.join(rel));
                }
                continue;
            }
            let dir = root.join(ctrls).join(rel);
            for c in ctrls.split(',') {
                match c {
                    "memory" => dirs.memory = Some(dir.clone()),
                    "cpuacct" => dirs.cpu = Some(dir.clone()),
                    "pids" => dirs.pids = Some(dir.clone()),
                    _ => {}
                }
            }
        }
        dirs
    }

    fn v1_or_v2(&self, v1: &Option<PathBuf>, v1_file: &str, v2_file: &str) -> Option<String> {
        let path = match (v1, &self.unified) {
            (Some(d), _) => d.join(v1_file),
            (None, Some(u)) => u.join(v2_file),
            (None, None) => return None,
        };
        std::fs::read_to_string(path).ok()
    }

    /// Current statistics; counters that cannot be read are 0.
    pub fn stats(&self) -> CgroupStats {
        let num = |s: Option<String>| -> Option<u64> {
            s.and_then(|t| {
                let t = t.trim();
                if t == "max" {
                    Some(u64::MAX)
                } else {
                    t.parse().ok()
                }
            })
        };
        let memory_usage =
            num(self.v1_or_v2(&self.memory, "memory.usage_in_bytes", "memory.current"))
                .unwrap_or(0);
        // "Unlimited" (v1 reports a huge page-aligned number) is shown as the host's memory.
        let host = host_memory();
        let memory_limit = num(self.v1_or_v2(&self.memory, "memory.limit_in_bytes", "memory.max"))
            .map_or(host, |l| l.min(host));
        let cpu_total_ns = if self.cpu.is_some() {
            num(self.v1_or_v2(&self.cpu, "cpuacct.usage", "")).unwrap_or(0)
        } else {
            self.v1_or_v2(&None, "", "cpu.stat")
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(|us| us * 1000)
                .unwrap_or(0)
        };
        let pids = num(self.v1_or_v2(&self.pids, "pids.current", "pids.current")).unwrap_or(0);
        let pids_limit = num(self.v1_or_v2(&self.pids, "pids.max", "pids.max"))
            .filter(|l| *l != u64::MAX)
            .unwrap_or(0);
        let memory_inactive_file = match &self.memory {
            Some(_) => self
                .v1_or_v2(&self.memory, "memory.stat", "")
                .and_then(|t| keyed(&t, "total_inactive_file")),
            None => self
                .v1_or_v2(&None, "", "memory.stat")
                .and_then(|t| keyed(&t, "inactive_file")),
        }
        .unwrap_or(0);
        let (cpu_user_ns, cpu_system_ns) = if self.cpu.is_some() {
            // cpuacct.stat counts USER_HZ ticks (100 per second on Linux).
            let t = self
                .v1_or_v2(&self.cpu, "cpuacct.stat", "")
                .unwrap_or_default();
            let tick = 10_000_000;
            (
                keyed(&t, "user").unwrap_or(0) * tick,
                keyed(&t, "system").unwrap_or(0) * tick,
            )
        } else {
            let t = self.v1_or_v2(&None, "", "cpu.stat").unwrap_or_default();
            (
                keyed(&t, "user_usec").unwrap_or(0) * 1000,
                keyed(&t, "system_usec").unwrap_or(0) * 1000,
            )
        };
        CgroupStats {
            memory_usage,
            memory_limit,
            cpu_total_ns,
            pids,
            memory_inactive_file,
            cpu_user_ns,
            cpu_system_ns,
            pids_limit,
        }
    }

    /// Pids of every process in the container's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        let dir = self.pids.as_ref().or(self.memory.as_ref());
        let text = match (dir, &self.unified) {
            (Some(d), _) => std::fs::read_to_string(d.join("cgroup.procs")),
            (None, Some(u)) => std::fs::read_to_string(u.join("cgroup.procs")),
            (None, None) => return Vec::new(),
        };
        text.map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Number of OOM kills recorded by the memory controller.
    pub fn oom_kills(&self) -> u64 {
        self.v1_or_v2(&self.memory, "memory.oom_control", "memory.events")
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }
}

/// Total host memory in bytes (u64::MAX when unknown).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| keyed(&t.replace(':', " "), "MemTotal"))
        .map_or(u64::MAX, |kb| kb * 1024)
}

/// Value of `key N` in a flat keyed file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_membership() {
        let text = "12:pids:/berth/x\n4:memory:/berth/x\n3:cpu,cpuacct:/berth/x\n0::/\n";
        let d = CgroupDirs::parse(text, Path::new("/nonexistent"));
        assert_eq!(d.memory.unwrap(), Path::new("/nonexistent/memory/berth/x"));
        assert_eq!(
            d.cpu.unwrap(),
            Path::new("/nonexistent/cpu,cpuacct/berth/x")
        );
        assert_eq!(d.pids.unwrap(), Path::new("/nonexistent/pids/berth/x"));
        assert!(d.unified.is_none());
    }

    #[test]
    fn keyed_values() {
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(keyed("usage_usec 12\n", "oom_kill"), None);
    }
}
