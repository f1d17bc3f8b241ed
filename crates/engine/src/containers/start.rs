//! `POST /containers/{id}/start`: mount the rootfs, set up the network, write the OCI
//! bundle, spawn the shim, hand it the attach streams that were waiting, start the process,
//! and watch for its exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_runtime::{MountSpec, SeccompMode, SpecOptions, UserSpec};

use super::now_rfc3339;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::ContainerRecord;
use crate::users::resolve_user;
use crate::Engine;

/// Parses Docker's size strings ("64m", "1g", "512k", "100") into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}

impl Engine {
    /// Starts a created or exited container. Starting a running one is a no-op that
    /// returns `Ok(false)` (the api answers 304), otherwise `Ok(true)`.
    /// A start by a user (not by a restart policy) sets RestartCount back to 0, as Docker's
    /// does.
    pub async fn start_container(self: &Arc<Self>, name: &str) -> Result<bool> {
        self.start_container_as(name, true).await
    }

    /// Starts a container; `by_user` is false for restarts made by the restart policy.
    /// The start runs in its own task: a caller that goes away mid-start (an API client
    /// hanging up) cannot leave a spawned shim behind a record that says "exited".
    pub(crate) async fn start_container_as(
        self: &Arc<Self>,
        name: &str,
        by_user: bool,
    ) -> Result<bool> {
        let engine = Arc::clone(self);
        let owned = name.to_string();
        let task: std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send>> =
            Box::pin(async move { engine.start_now(&owned, by_user).await });
        super::lifecycle::detached("start", name, task).await
    }

    /// The body of [`Engine::start_container_as`].
    async fn start_now(self: &Arc<Self>, name: &str, by_user: bool) -> Result<bool> {
        let c = self.find_container(name)?;
        let op = self.live.with(&c.id, |l| l.op.clone());
        let guard = op.lock().await;
        let mut c = self.find_container(&c.id)?;
        if c.state.running {
            return Ok(false);
        }
        c.manually_stopped = false;
        if by_user {
            c.restart_count = 0;
        }
        match self.start_locked(&mut c).await {
            Ok(()) => Ok(true),
            Err(e) => {
                // Attach streams waiting for this start get EOF instead of hanging.
                self.live.with(&c.id, |l| l.pending.clear());
                self.teardown(&mut c).await;
                c.state.error = e.to_string();
                c.state.exit_code = 128;
                if c.state.status == "created" || c.state.status.is_empty() {
                    c.state.status = "created".into();
                } else {
                    c.state.status = "exited".into();
                }
                let _ = self.save_container(&c);
                // As in Docker, `--rm` also covers a start that failed: the client waits
                // for the removal.
                if c.host_config.auto_remove {
                    drop(guard);
                    let rm: std::pin::Pin<
                        Box<dyn std::future::Future<Output = Result<()>> + Send + '_>,
                    > = Box::pin(self.remove_container(&c.id, true, true));
                    if let Err(rm) = rm.await {
                        tracing::warn!("auto-remove {} after failed start: {rm}", c.id);
                    }
                }
                Err(e)
            }
        }
    }

    /// Starts container `id` again after `delay`, for its restart policy, unless a user
    /// stopped or removed it meanwhile.
    pub(crate) fn restart_after(self: &Arc<Self>, id: String, delay: std::time::Duration) {
        let engine = Arc::clone(self);
        let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let Ok(cur) = engine.find_container(&id) else {
                    return;
                };
                if !cur.state.restarting || cur.manually_stopped {
                    return;
                }
                if let Err(e) = engine.start_container_as(&id, false).await {
                    tracing::warn!("restart {id}: {e}");
                } else if let Ok(c) = engine.find_container(&id) {
                    engine.container_event(&c, "restart");
                }
            });
        tokio::spawn(task);
    }

    /// The body of start; the caller holds the container's op lock and cleans up on error.
    pub(crate) async fn start_locked(self: &Arc<Self>, c: &mut ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&c.id);
        let rootfs = dir.join("rootfs");
        self.mount_rootfs(c, &rootfs)?;
        let netns = self.prepare_network(c).await?;
        let mut opts = self.spec_options(c, &rootfs, netns)?;
        opts.mounts.extend(self.etc_mounts(c));
        self.chown_for_remap(c, &opts.mounts)?;
        let spec = berth_runtime::build_spec(&opts).kind_ctx(
            ErrorKind::InvalidArgument,
            format!("runtime spec of {}", c.name),
        )?;
        let bundle = dir.clone();
        let spec_json = serde_json::to_vec_pretty(&spec)?;
        std::fs::write(bundle.join("config.json"), spec_json).ctx("write config.json")?;
        let state_dir = self.state_dir(&c.id);
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).ctx(format!("create {}", state_dir.display()))?;
        let shim_cfg = berth_runtime::ShimConfig {
            id: c.id.clone(),
            bundle,
            state_dir: state_dir.clone(),
            log_path: PathBuf::from(&c.log_path),
            log: self.log_config(c)?,
            runtime: self.runtime_kind(&c.runtime),
            tty: c.config.tty,
            open_stdin: c.config.open_stdin,
        };
        let shim_bin = self.cfg.shim_binary.clone();
        tokio::task::spawn_blocking(move || berth_runtime::spawn_shim(&shim_bin, &shim_cfg))
            .await
            .map_err(|e| EngineError::internal(format!("shim task: {e}")))?
            .map_err(|e| {
                EngineError::internal(format!(
                    "failed to create task for container {}: {e}",
                    c.name
                ))
            })?;
        let client = berth_runtime::ShimClient::connect(&state_dir)
            .await
            .ctx(format!("connect to shim of {}", c.name))?;
        let pending = self.live.with(&c.id, |l| std::mem::take(&mut l.pending));
        for p in pending {
            match client.attach(p.stdin).await {
                Ok(stream) => {
                    let _ = p.tx.send(stream);
                }
                Err(e) => tracing::warn!("attach to {} before start: {e}", c.id),
            }
        }
        let pid = client.start().await.map_err(|e| {
            EngineError::internal(format!("failed to start container {}: {e}", c.name))
        })?;
        c.state.status = "running".into();
        c.state.running = true;
        c.state.paused = false;
        c.state.restarting = false;
        c.state.oom_killed = false;
        c.state.dead = false;
        c.state.pid = pid as i64;
        c.state.exit_code = 0;
        c.state.error = String::new();
        c.state.started_at = now_rfc3339();
        if c.config.healthcheck.is_some() {
            c.state.health = Some(crate::model::Health {
                status: "starting".into(),
                ..Default::default()
            });
        }
        self.save_container(c)?;
        crate::events::JoinEvents::of(self, c).publish(&self.events, true);
        self.container_event(c, "start");
        self.spawn_monitor(c.id.clone());
        self.spawn_health(c);
        Ok(())
    }

    /// Mounts the container's snapshot at `rootfs` unless it already is; idmapped for the
    /// remapped root when the container runs under `--userns-remap`.
    pub(crate) fn mount_rootfs(&self, c: &mut ContainerRecord, rootfs: &Path) -> Result<()> {
        if c.mounted && is_mountpoint(rootfs) {
            return Ok(());
        }
        let remap = self.remap_of(&c.host_config);
        let now = remap.map(|ns| (ns.root_uid(), ns.root_gid()));
        if now != c.remapped_root {
            let show = |r: Option<(u32, u32)>| match r {
                Some((u, g)) => format!("with its root remapped to {u}:{g}"),
                None => "without user namespace remapping".to_string(),
            };
            return Err(EngineError::conflict(format!(
                "container {} was created {}, but the daemon now runs {}: its files would have the wrong owners; recreate it",
                c.name,
                show(c.remapped_root),
                show(now)
            )));
        }
        std::fs::create_dir_all(rootfs).ctx(format!("create {}", rootfs.display()))?;
        let mounts = self
            .snaps
            .mounts(&c.id)
            .map_err(|e| EngineError::internal(format!("rootfs of {}: {e}", c.name)))?;
        let mounted = match remap {
            Some(ns) => {
                berth_snapshot::mount_all_idmapped(&mounts, rootfs, ns).map_err(|e| e.to_string())
            }
            None => berth_snapshot::mount_all(&mounts, rootfs).map_err(|e| e.to_string()),
        };
        mounted.map_err(|e| EngineError::internal(format!("mount rootfs of {}: {e}", c.name)))?;
        c.mounted = true;
        Ok(())
    }

    /// Everything the runtime spec needs, from the record.
    fn spec_options(
        &self,
        c: &mut ContainerRecord,
        rootfs: &Path,
        netns: berth_runtime::NetnsMode,
    ) -> Result<SpecOptions> {
        let cfg = &c.config;
        let hc = &c.host_config;
        let mut args = cfg.entrypoint.clone().unwrap_or_default();
        args.extend(cfg.cmd.clone().unwrap_or_default());
        if args.is_empty() {
            return Err(EngineError::invalid("no command specified"));
        }
        let user = resolve_user(
            rootfs,
            &cfg.user,
            hc.group_add.as_deref().unwrap_or_default(),
        )?;
        let mut env = cfg.env.clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={}", cfg.hostname));
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                if user.home.is_empty() {
                    "/"
                } else {
                    &user.home
                }
            ));
        }
        if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let cwd = if cfg.working_dir.is_empty() {
            "/".to_string()
        } else {
            cfg.working_dir.clone()
        };
        // Docker creates a missing working directory (owned by the container's root, so a
        // remapped one can write in it); one that cannot be made fails in the runtime.
        if let Ok(p) = berth_image_safe_join(rootfs, &cwd) {
            let owner = self
                .remap_of(&c.host_config)
                .map(|ns| (ns.root_uid(), ns.root_gid()));
            if let Err(e) = super::userns::create_dirs_owned(&p, owner) {
                tracing::warn!("container {}: working directory: {e}", c.id);
            }
        }
        let mut o = SpecOptions::new(c.id.clone(), rootfs, args);
        o.env = env;
        o.cwd = cwd;
        o.user = UserSpec {
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
        };
        o.hostname = cfg.hostname.clone();
        o.tty = cfg.tty;
        o.netns = netns;
        o.readonly_rootfs = hc.readonly_rootfs;
        o.privileged = hc.privileged;
        o.cap_add = hc.cap_add.clone().unwrap_or_default();
        o.cap_drop = hc.cap_drop.clone().unwrap_or_default();
        o.cgroup_parent = self.cfg.cgroup_parent.clone();
        o.userns = self.userns_maps(c)?;
        for opt in hc.security_opt.clone().unwrap_or_default() {
            let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
            match k {
                "no-new-privileges" => o.no_new_privileges = v.is_empty() || v == "true",
                "seccomp" if v == "unconfined" => o.seccomp = SeccompMode::Unconfined,
                "seccomp" => {
                    let text = if v.trim_start().starts_with('{') {
                        v.to_string()
                    } else {
                        std::fs::read_to_string(v)
                            .kind_ctx(ErrorKind::InvalidArgument, format!("seccomp profile {v}"))?
                    };
                    o.seccomp = SeccompMode::Profile(text);
                }
                "apparmor" | "label" => {}
                other => {
                    return Err(EngineError::invalid(format!(
                        "invalid --security-opt: {other}"
                    )))
                }
            }
        }
        if hc.memory > 0 {
            o.memory = Some(hc.memory);
        }
        if hc.memory_swap != 0 {
            o.memory_swap = Some(hc.memory_swap);
        }
        if hc.cpu_shares > 0 {
            o.cpu_shares = Some(hc.cpu_shares as u64);
        }
        if hc.nano_cpus > 0 {
            o.cpu_period = Some(100_000);
            o.cpu_quota = Some(hc.nano_cpus / 10_000);
        } else if hc.cpu_quota > 0 {
            o.cpu_quota = Some(hc.cpu_quota);
            o.cpu_period = Some(if hc.cpu_period > 0 {
                hc.cpu_period as u64
            } else {
                100_000
            });
        }
        if !hc.cpuset_cpus.is_empty() {
            o.cpuset_cpus = Some(hc.cpuset_cpus.clone());
        }
        o.pids_limit = hc.pids_limit.filter(|p| *p != 0);
        for u in hc.ulimits.clone().unwrap_or_default() {
            o.ulimits
                .push((u.name.clone(), u.soft.max(0) as u64, u.hard.max(0) as u64));
        }
        if hc.shm_size > 0 {
            o.shm_size = Some(hc.shm_size as u64);
        }
        o.sysctls = hc.sysctls.clone().unwrap_or_default();
        if hc.oom_score_adj != 0 {
            o.oom_score_adj = Some(hc.oom_score_adj as i32);
        }
        for d in hc.devices.clone().unwrap_or_default() {
            let host = d
                .get("PathOnHost")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let inside = d
                .get("PathInContainer")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(&host)
                .to_string();
            let perms = d
                .get("CgroupPermissions")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("rwm")
                .to_string();
            if !Path::new(&host).exists() {
                return Err(EngineError::invalid(format!("error gathering device information while adding custom device \"{host}\": no such file or directory")));
            }
            o.devices.push(berth_runtime::DeviceSpec {
                path_on_host: host.into(),
                path_in_container: inside,
                permissions: perms,
            });
        }
        if hc.init == Some(true) {
            let init = find_init_binary().ok_or_else(|| {
                EngineError::invalid(format!(
                    "--init needs an init binary: none of {} exists (install Debian's tini)",
                    INIT_CANDIDATES.join(", ")
                ))
            })?;
            o.mounts.push(MountSpec {
                destination: INIT_PATH.into(),
                source: init.display().to_string(),
                kind: "bind".into(),
                options: vec!["bind".into(), "ro".into(), "rprivate".into()],
            });
            let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
            args.append(&mut o.args);
            o.args = args;
        }
        let (mounts, points) = self.user_mounts(c)?;
        o.mounts.extend(mounts);
        c.mounts = points;
        Ok(o)
    }

    /// The hostname, hosts and resolv.conf files written for the container, bind-mounted.
    fn etc_mounts(&self, c: &ContainerRecord) -> Vec<MountSpec> {
        let dir = self.container_dir(&c.id);
        let user_targets: Vec<String> = c.mounts.iter().map(|m| m.destination.clone()).collect();
        ["hostname", "hosts", "resolv.conf"]
            .iter()
            .filter(|f| dir.join(f).exists())
            .filter(|f| !user_targets.contains(&format!("/etc/{f}")))
            .map(|f| MountSpec {
                destination: format!("/etc/{f}"),
                source: dir.join(f).display().to_string(),
                kind: "bind".into(),
                options: vec!["rbind".into(), "rprivate".into()],
            })
            .collect()
    }

    /// The log settings for the shim from `--log-driver` / `--log-opt`.
    fn log_config(&self, c: &ContainerRecord) -> Result<berth_runtime::LogConfig> {
        let lc = c.host_config.log_config.clone().unwrap_or_default();
        let opts = lc.config.unwrap_or_default();
        let driver = match lc.kind.as_str() {
            "" | "json-file" | "local" => berth_runtime::LogDriver::JsonFile,
            "none" => berth_runtime::LogDriver::None,
            other => {
                return Err(EngineError::invalid(format!(
                    "logging driver {other} is not supported"
                )))
            }
        };
        let max_size = match opts.get("max-size") {
            Some(s) => Some(
                parse_size(s)
                    .ok_or_else(|| EngineError::invalid(format!("invalid max-size: {s}")))?,
            ),
            None => Some(20 << 20),
        };
        let max_files = match opts.get("max-file") {
            Some(s) => s
                .parse()
                .map_err(|_| EngineError::invalid(format!("invalid max-file: {s}")))?,
            None => 5,
        };
        Ok(berth_runtime::LogConfig {
            driver,
            max_size,
            max_files,
        })
    }

    /// The runtime a container runs under.
    pub(crate) fn runtime_kind(&self, name: &str) -> berth_runtime::RuntimeKind {
        if name == "runc" {
            berth_runtime::RuntimeKind::Runc {
                binary: self.cfg.runc_binary.clone(),
                root: self.cfg.exec_root.join("runc"),
            }
        } else {
            berth_runtime::RuntimeKind::Builtin
        }
    }
}

/// Where `--init` puts the init inside the container (Docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// Static init binaries on the host, tried in order (tini's static build first: the
/// container may lack the libc a dynamic one needs).
const INIT_CANDIDATES: [&str; 3] = [
    "/usr/bin/tini-static",
    "/usr/bin/docker-init",
    "/usr/libexec/docker/docker-init",
];

/// The host's init binary for `--init`, if any.
fn find_init_binary() -> Option<PathBuf> {
    INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// `rootfs` joined with an absolute in-container path, refusing `..` components.
pub(crate) fn berth_image_safe_join(rootfs: &Path, inner: &str) -> Result<PathBuf> {
    let mut out = rootfs.to_path_buf();
    for part in Path::new(inner).components() {
        match part {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::ParentDir => {
                return Err(EngineError::invalid(format!(
                    "path {inner} escapes the container root"
                )))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether `p` is a mount point (its device differs from its parent's).
pub(crate) fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(parent)) = (std::fs::metadata(p), p.parent()) else {
        return false;
    };
    match std::fs::metadata(parent) {
        Ok(pm) => me.dev() != pm.dev() || me.ino() == pm.ino(),
        Err(_) => false,
    }
}
