//! Capabilities and rlimits: what the container asks for, bounded by what this daemon holds.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::defaults::{ALL_CAPS, DEFAULT_CAPS};
use super::{SpecError, SpecOptions};

fn normalize_cap(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") || upper == "ALL" {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Every capability this daemon holds in its bounding set (what "ALL" can grant).
fn all_grantable() -> Vec<String> {
    let bounding = proc_status_mask("CapBnd:").unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set for the container's process.
pub(super) fn capabilities(o: &SpecOptions) -> Result<Vec<String>, SpecError> {
    if o.privileged {
        return Ok(all_grantable());
    }
    let add: Vec<String> = o.cap_add.iter().map(|c| normalize_cap(c)).collect();
    let drop: Vec<String> = o.cap_drop.iter().map(|c| normalize_cap(c)).collect();
    for c in add.iter().chain(drop.iter()) {
        if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
            return Err(SpecError::UnknownCapability(c.clone()));
        }
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|s| s.to_string())
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        caps = all_grantable();
    } else {
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// Bit number of CAP_SYS_RESOURCE in the capability masks of /proc/self/status.
const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// A hex capability mask line of /proc/self/status, e.g. "CapEff:".
fn proc_status_mask(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has_cap_sys_resource() -> bool {
    proc_status_mask("CapEff:").is_some_and(|mask| mask & (1u64 << CAP_SYS_RESOURCE_BIT) != 0)
}

fn rlimit_resource(name: &str) -> Option<(nix::sys::resource::Resource, &'static str)> {
    use nix::sys::resource::Resource as R;
    Some(
        match name.to_ascii_lowercase().trim_start_matches("rlimit_") {
            "core" => (R::RLIMIT_CORE, "RLIMIT_CORE"),
            "cpu" => (R::RLIMIT_CPU, "RLIMIT_CPU"),
            "data" => (R::RLIMIT_DATA, "RLIMIT_DATA"),
            "fsize" => (R::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
            "locks" => (R::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
            "memlock" => (R::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
            "msgqueue" => (R::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
            "nice" => (R::RLIMIT_NICE, "RLIMIT_NICE"),
            "nofile" => (R::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
            "nproc" => (R::RLIMIT_NPROC, "RLIMIT_NPROC"),
            "rss" => (R::RLIMIT_RSS, "RLIMIT_RSS"),
            "rtprio" => (R::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
            "rttime" => (R::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
            "sigpending" => (R::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
            "stack" => (R::RLIMIT_STACK, "RLIMIT_STACK"),
            "as" => (R::RLIMIT_AS, "RLIMIT_AS"),
            _ => return None,
        },
    )
}

/// The daemon's own NOFILE limit, then each requested ulimit (checked against what we may grant).
pub(super) fn rlimits(ulimits: &[(String, u64, u64)]) -> Result<Vec<Value>, SpecError> {
    use nix::sys::resource::getrlimit;
    let mut out: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    if let Ok((soft, hard)) = getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        out.insert("RLIMIT_NOFILE", (soft, hard));
    }
    let privileged = has_cap_sys_resource();
    for (name, soft, hard) in ulimits {
        let (res, key) =
            rlimit_resource(name).ok_or_else(|| SpecError::UnknownUlimit(name.clone()))?;
        if !privileged {
            if let Ok((_, max)) = getrlimit(res) {
                if *hard > max {
                    return Err(SpecError::UlimitTooHigh {
                        name: name.clone(),
                        requested: *hard,
                        max,
                    });
                }
            }
        }
        out.insert(key, (*soft, *hard));
    }
    Ok(out
        .into_iter()
        .map(|(t, (soft, hard))| json!({"type": t, "soft": soft, "hard": hard}))
        .collect())
}
