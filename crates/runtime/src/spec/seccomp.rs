//! Seccomp profiles in Docker's JSON format, converted to the OCI `linux.seccomp` object.
//!
//! Docker's format adds `includes`/`excludes` conditions (by capability and architecture)
//! to each rule; conversion keeps the rules whose conditions hold for the container's
//! capabilities and this machine's architecture.

use serde::Deserialize;
use serde_json::{json, Value};

/// Errors from reading a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is not valid JSON of the expected shape.
    #[error("invalid profile: {0}")]
    Parse(#[from] serde_json::Error),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conditions {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    includes: Conditions,
    #[serde(default)]
    excludes: Conditions,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

/// Berth's default profile (Docker-compatible allow-list), as data.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "arm" => "SCMP_ARCH_ARM",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

fn arch_matches(list: &[String]) -> bool {
    let native = native_arch();
    list.iter().any(|a| {
        a == native
            || (native == "SCMP_ARCH_X86_64" && (a == "amd64" || a == "x86_64"))
            || (native == "SCMP_ARCH_AARCH64" && a == "arm64")
    })
}

/// Converts a Docker-format profile to an OCI `linux.seccomp` value for a process with `caps`.
pub fn convert_profile(text: &str, caps: &[String]) -> Result<Value, SeccompError> {
    let p: Profile = serde_json::from_str(text)?;
    let has_cap = |c: &String| caps.iter().any(|x| x == c);
    let mut architectures: Vec<String> = Vec::new();
    let native = native_arch();
    if let Some(m) = p.arch_map.iter().find(|m| m.architecture == native) {
        architectures.push(m.architecture.clone());
        architectures.extend(m.sub_architectures.iter().cloned());
    } else {
        architectures.extend(p.architectures.iter().cloned());
    }
    let mut syscalls = Vec::new();
    for r in p.syscalls {
        if !r.includes.caps.is_empty() && !r.includes.caps.iter().all(has_cap) {
            continue;
        }
        if !r.includes.arches.is_empty() && !arch_matches(&r.includes.arches) {
            continue;
        }
        if r.excludes.caps.iter().any(has_cap) {
            continue;
        }
        if !r.excludes.arches.is_empty() && arch_matches(&r.excludes.arches) {
            continue;
        }
        let mut names = r.names;
        names.extend(r.name);
        if names.is_empty() {
            continue;
        }
        let mut rule = json!({"names": names, "action": r.action});
        if let Some(args) = r.args.filter(|a| !a.is_null()) {
            rule["args"] = args;
        }
        if let Some(e) = r.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        syscalls.push(rule);
    }
    let mut out = json!({
        "defaultAction": p.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    Ok(out)
}

/// The default profile converted for a process with `caps`.
pub fn default_profile(caps: &[String]) -> Result<Value, SeccompError> {
    convert_profile(DEFAULT_PROFILE, caps)
}
