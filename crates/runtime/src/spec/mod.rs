//! OCI runtime spec generation: turns Docker-style create options into the `config.json`
//! that Docker itself would hand to runc (default capabilities, mounts, masked paths,
//! namespaces, resources, rlimits and the default seccomp profile).

pub mod defaults;
mod limits;
pub mod seccomp;
mod userns;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use defaults::*;
use limits::{capabilities, rlimits};
pub use userns::{IdMapping, UsernsMaps};

/// Errors from building a runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A capability name is not known.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A ulimit name is not known.
    #[error("unknown ulimit {0:?}")]
    UnknownUlimit(String),
    /// A ulimit asks for more than this daemon may grant.
    #[error("ulimit {name} hard limit {requested} exceeds the daemon's hard limit {max} and the daemon lacks CAP_SYS_RESOURCE")]
    UlimitTooHigh {
        /// ulimit name
        name: String,
        /// requested hard limit
        requested: u64,
        /// the daemon's own hard limit
        max: u64,
    },
    /// A device given with --device could not be used.
    #[error("device {path}: {reason}")]
    Device {
        /// host path
        path: PathBuf,
        /// what went wrong
        reason: String,
    },
    /// A seccomp profile could not be parsed or converted.
    #[error("seccomp profile: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    /// The assembled document is not a valid OCI spec.
    #[error("invalid generated spec for {id}: {source}")]
    Invalid {
        /// container id
        id: String,
        /// the deserialization error
        source: serde_json::Error,
    },
}

/// The user a container process runs as (numeric; the engine resolves names via /etc/passwd).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// user id
    pub uid: u32,
    /// primary group id
    pub gid: u32,
    /// supplementary groups
    pub additional_gids: Vec<u32>,
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetnsMode {
    /// Join this existing network namespace (e.g. a bind-mounted `/run/netns/X`).
    New(PathBuf),
    /// Share the host's network namespace.
    Host,
    /// A fresh, empty namespace (only loopback).
    #[default]
    None,
}

/// Seccomp confinement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompMode {
    /// Docker's default profile.
    #[default]
    Default,
    /// No seccomp filter.
    Unconfined,
    /// A profile in Docker's JSON format (`--security-opt seccomp=FILE`).
    Profile(String),
}

/// One extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// absolute path in the container
    pub destination: String,
    /// host path, or the filesystem's source name
    pub source: String,
    /// "bind", "tmpfs", ...
    pub kind: String,
    /// mount options such as "rbind", "ro", "size=1m"
    pub options: Vec<String>,
}

/// A host device made available in the container (`--device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// path on the host
    pub path_on_host: PathBuf,
    /// path inside the container
    pub path_in_container: String,
    /// cgroup permissions, e.g. "rwm"
    pub permissions: String,
}

/// Everything [`build_spec`] needs; field meanings follow `docker create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecOptions {
    /// container id (used for the cgroup path)
    pub id: String,
    /// the mounted root filesystem
    pub rootfs: PathBuf,
    /// entrypoint + cmd
    pub args: Vec<String>,
    /// "KEY=value" entries; PATH is added when missing
    pub env: Vec<String>,
    /// working directory ("/" when empty)
    pub cwd: String,
    /// user and groups
    pub user: UserSpec,
    /// UTS hostname
    pub hostname: String,
    /// allocate a pseudo terminal
    pub tty: bool,
    /// network namespace choice
    pub netns: NetnsMode,
    /// extra mounts (replace default mounts with the same destination)
    pub mounts: Vec<MountSpec>,
    /// mount the root filesystem read-only
    pub readonly_rootfs: bool,
    /// all capabilities, no masking, no seccomp, all devices
    pub privileged: bool,
    /// capabilities to add ("NET_ADMIN" or "CAP_NET_ADMIN"; "ALL")
    pub cap_add: Vec<String>,
    /// capabilities to drop ("ALL" allowed)
    pub cap_drop: Vec<String>,
    /// set the no_new_privs bit
    pub no_new_privileges: bool,
    /// seccomp confinement
    pub seccomp: SeccompMode,
    /// memory limit in bytes
    pub memory: Option<i64>,
    /// memory+swap limit in bytes (-1 unlimited)
    pub memory_swap: Option<i64>,
    /// relative CPU weight
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds
    pub cpu_period: Option<u64>,
    /// CPUs allowed, e.g. "0-1"
    pub cpuset_cpus: Option<String>,
    /// maximum number of tasks
    pub pids_limit: Option<i64>,
    /// (name without RLIMIT_ prefix, e.g. "nofile", soft, hard)
    pub ulimits: Vec<(String, u64, u64)>,
    /// /dev/shm size in bytes (64 MiB when None)
    pub shm_size: Option<u64>,
    /// namespaced sysctls
    pub sysctls: BTreeMap<String, String>,
    /// host devices to expose
    pub devices: Vec<DeviceSpec>,
    /// OOM score adjustment of the container's processes
    pub oom_score_adj: Option<i32>,
    /// cgroup parent ("berth" when empty)
    pub cgroup_parent: String,
    /// run in a new user namespace with these mappings (`--userns-remap`); None = the host's
    pub userns: Option<UsernsMaps>,
}

impl SpecOptions {
    /// Options with Docker's defaults for `id`, `rootfs` and `args`.
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        SpecOptions {
            id: id.into(),
            rootfs: rootfs.into(),
            args,
            env: Vec::new(),
            cwd: "/".into(),
            user: UserSpec::default(),
            hostname: String::new(),
            tty: false,
            netns: NetnsMode::None,
            mounts: Vec::new(),
            readonly_rootfs: false,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            no_new_privileges: false,
            seccomp: SeccompMode::Default,
            memory: None,
            memory_swap: None,
            cpu_shares: None,
            cpu_quota: None,
            cpu_period: None,
            cpuset_cpus: None,
            pids_limit: None,
            ulimits: Vec::new(),
            shm_size: None,
            sysctls: BTreeMap::new(),
            devices: Vec::new(),
            oom_score_adj: None,
            cgroup_parent: "berth".into(),
            userns: None,
        }
    }
}

/// The cgroupsPath written into the spec: `/<parent>/<id>` (cgroupfs style, valid on v1 and v2).
pub fn cgroups_path(cgroup_parent: &str, id: &str) -> String {
    let parent = cgroup_parent.trim_matches('/');
    let parent = if parent.is_empty() { "berth" } else { parent };
    format!("/{parent}/{id}")
}

/// Builds the OCI runtime spec Docker would produce for these options.
pub fn build_spec(o: &SpecOptions) -> Result<Spec, SpecError> {
    let caps = capabilities(o)?;
    let mut env = o.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = if o.cwd.is_empty() { "/" } else { &o.cwd };

    let mut process = json!({
        "terminal": o.tty,
        "user": {"uid": o.user.uid, "gid": o.user.gid},
        "args": o.args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits(&o.ulimits)?,
    });
    if !o.user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(o.user.additional_gids);
    }
    // Omit rather than write `false`: libcontainer mishandles an explicit false.
    if o.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(adj) = o.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match &o.netns {
        NetnsMode::New(path) => namespaces.push(json!({"type": "network", "path": path})),
        NetnsMode::None => namespaces.push(json!({"type": "network"})),
        NetnsMode::Host => {}
    }

    let (devices, device_rules) = devices(o)?;
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path(&o.cgroup_parent, &o.id),
        "resources": resources(o, device_rules),
        "sysctl": o.sysctls,
        "devices": devices,
    });
    if !o.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        let profile = match &o.seccomp {
            SeccompMode::Unconfined => None,
            SeccompMode::Default => Some(seccomp::default_profile(&caps)?),
            SeccompMode::Profile(text) => Some(seccomp::convert_profile(text, &caps)?),
        };
        if let Some(p) = profile {
            linux["seccomp"] = p;
        }
    }

    if let Some(maps) = &o.userns {
        userns::apply(maps, &mut linux);
    }
    let mut doc = json!({
        "ociVersion": "1.0.2",
        "root": {"path": o.rootfs, "readonly": o.readonly_rootfs},
        "process": process,
        "mounts": mounts(o),
        "linux": linux,
    });
    if !o.hostname.is_empty() {
        doc["hostname"] = json!(o.hostname);
    }
    serde_json::from_value(doc).map_err(|source| SpecError::Invalid {
        id: o.id.clone(),
        source,
    })
}

fn mounts(o: &SpecOptions) -> Vec<Value> {
    let user_dest = |d: &str| o.mounts.iter().any(|m| m.destination == d);
    let mut out = Vec::new();
    for (dest, typ, src, opts) in DEFAULT_MOUNTS {
        if user_dest(dest) {
            continue;
        }
        if *dest == "/sys" && o.userns.is_some() && matches!(o.netns, NetnsMode::Host) {
            out.push(host_sysfs_bind());
            continue;
        }
        let mut opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        if o.privileged && (*dest == "/sys" || *dest == "/sys/fs/cgroup") {
            opts.retain(|x| x != "ro");
            opts.push("rw".into());
        }
        out.push(json!({"destination": dest, "type": typ, "source": src, "options": opts}));
    }
    if !user_dest("/dev/shm") {
        let size = o.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
        out.push(json!({
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={size}")],
        }));
    }
    for m in &o.mounts {
        out.push(json!({
            "destination": m.destination, "type": m.kind, "source": m.source, "options": m.options,
        }));
    }
    out
}

/// The `/sys` of a process in its own user namespace that shares the host's network
/// namespace: sysfs can only be mounted by the user namespace owning the network namespace,
/// so the host's `/sys` is bound read-only instead (as runc does). The flags the host's
/// mount carries (nosuid, nodev, noexec) are kept: a child user namespace may not clear
/// them on a bind.
fn host_sysfs_bind() -> Value {
    json!({
        "destination": "/sys", "type": "bind", "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    })
}

fn resources(o: &SpecOptions, device_rules: Vec<Value>) -> Value {
    let mut r = json!({"devices": device_rules});
    let mut memory = serde_json::Map::new();
    if let Some(m) = o.memory {
        memory.insert("limit".into(), json!(m));
    }
    if let Some(s) = o.memory_swap {
        memory.insert("swap".into(), json!(s));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(v) = o.cpu_shares {
        cpu.insert("shares".into(), json!(v));
    }
    if let Some(v) = o.cpu_quota {
        cpu.insert("quota".into(), json!(v));
    }
    if let Some(v) = o.cpu_period {
        cpu.insert("period".into(), json!(v));
    }
    if let Some(v) = &o.cpuset_cpus {
        cpu.insert("cpus".into(), json!(v));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = o.pids_limit {
        r["pids"] = json!({"limit": p});
    }
    r
}

fn host_device(path: &Path) -> Result<(&'static str, i64, i64, u32), SpecError> {
    let err = |reason: String| SpecError::Device {
        path: path.to_path_buf(),
        reason,
    };
    let md = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(err("not a device node".into()));
    };
    let rdev = md.rdev();
    let major = libc::major(rdev) as i64;
    let minor = libc::minor(rdev) as i64;
    Ok((kind, major, minor, md.mode() & 0o7777))
}

fn device_node(path: &str, kind: &str, major: i64, minor: i64, mode: u32) -> Value {
    json!({
        "path": path, "type": kind, "major": major, "minor": minor,
        "fileMode": mode, "uid": 0, "gid": 0,
    })
}

/// Every device node under `dir` (recursively), as a privileged container gets them; the
/// container's own /dev/pts, /dev/shm, /dev/mqueue and console are left out.
fn host_devices(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = ["/dev/pts", "/dev/shm", "/dev/mqueue"];
            if !skip.iter().any(|s| path == Path::new(s)) {
                out.extend(host_devices(&path));
            }
            continue;
        }
        if ft.is_symlink() || path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
            continue;
        }
        if let Ok((kind, major, minor, mode)) = host_device(&path) {
            out.push(device_node(
                &path.to_string_lossy(),
                kind,
                major,
                minor,
                mode,
            ));
        }
    }
    out
}

/// (linux.devices, linux.resources.devices)
fn devices(o: &SpecOptions) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    if o.privileged {
        let mut nodes = host_devices(Path::new("/dev"));
        for d in &o.devices {
            let (kind, major, minor, mode) = host_device(&d.path_on_host)?;
            nodes.retain(|n| n["path"] != json!(d.path_in_container));
            nodes.push(device_node(&d.path_in_container, kind, major, minor, mode));
        }
        return Ok((nodes, vec![json!({"allow": true, "access": "rwm"})]));
    }
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in ALLOWED_CHAR_DEVICES {
        let mut rule = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
        if *minor >= 0 {
            rule["minor"] = json!(minor);
        }
        rules.push(rule);
    }
    let mut nodes = Vec::new();
    for d in &o.devices {
        let (kind, major, minor, mode) = host_device(&d.path_on_host)?;
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            &d.permissions
        };
        nodes.push(device_node(&d.path_in_container, kind, major, minor, mode));
        rules.push(
            json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
        );
    }
    Ok((nodes, rules))
}

#[cfg(test)]
mod tests;
