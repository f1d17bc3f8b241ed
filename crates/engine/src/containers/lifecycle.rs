//! Stop, kill, wait, restart and remove; the monitor that learns each exit from the shim;
//! restart policies; and the repair of containers at daemon start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerStatus, ExitStatus, ShimClient};

use super::now_rfc3339;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::ContainerRecord;
use crate::Engine;

/// First delay before restarting a container that exited.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay to [`BACKOFF_START`].
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// The current restart delay of each container that is being restarted, kept in memory only
/// (like Docker's, it starts over when the daemon restarts).
static BACKOFF: std::sync::Mutex<BTreeMap<String, Duration>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Docker's restart back-off: 100 ms, doubled before each further restart up to one
/// minute, and back to 100 ms after a run of ten seconds or more.
fn next_backoff(c: &ContainerRecord) -> Duration {
    let ran = chrono::DateTime::parse_from_rfc3339(&c.state.finished_at)
        .ok()
        .zip(chrono::DateTime::parse_from_rfc3339(&c.state.started_at).ok())
        .and_then(|(end, start)| (end - start).to_std().ok())
        .unwrap_or_default();
    let mut map = match BACKOFF.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    let prev = map
        .get(&c.id)
        .copied()
        .filter(|_| ran < BACKOFF_RESET_AFTER);
    let next = match prev {
        None => BACKOFF_START,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    };
    map.insert(c.id.clone(), next);
    next
}

/// Forgets a container's restart delay (it was stopped or removed).
fn reset_backoff(id: &str) {
    if let Ok(mut m) = BACKOFF.lock() {
        m.remove(id);
    }
}

/// `POST /containers/{id}/wait?condition=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Returns at once if not running, else at the exit.
    NotRunning,
    /// Waits for the next exit even if not running now.
    NextExit,
    /// Waits until the container is removed.
    Removed,
}

/// The exit code to answer a waiter with once the container is gone: the one recorded with
/// the last change it was told of (its exit may have been recorded and the record removed
/// before it looked), else the one it last read.
fn exit_after_removal(
    rx: &tokio::sync::watch::Receiver<super::Changed>,
    start_gen: u64,
    last_read: i64,
) -> i64 {
    let seen = *rx.borrow();
    if seen.generation != start_gen {
        seen.exit_code
    } else {
        last_read
    }
}

/// Parses a signal given as a name ("SIGTERM", "TERM", "kill") or a number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| EngineError::invalid(format!("Invalid signal: {s}")))
}

impl Engine {
    /// Watches a running container's shim and records its exit when it comes.
    pub(crate) fn spawn_monitor(self: &Arc<Self>, id: String) {
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let state_dir = engine.state_dir(&id);
            let status = match ShimClient::connect(&state_dir).await {
                Ok(client) => match client.wait().await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("wait on shim of {id}: {e}");
                        berth_runtime::read_exit(&state_dir)
                    }
                },
                Err(_) => berth_runtime::read_exit(&state_dir),
            };
            engine.on_exit(&id, status).await;
        });
    }

    /// Records an exit, tears down what start set up, then applies `--rm` or the restart
    /// policy.
    pub(crate) async fn on_exit(self: &Arc<Self>, id: &str, status: Option<ExitStatus>) {
        let op = self.live.with(id, |l| l.op.clone());
        let guard = op.lock().await;
        let Ok(mut c) = self.find_container(id) else {
            return;
        };
        if !c.state.running {
            return;
        }
        let status = status.unwrap_or(ExitStatus {
            code: 255,
            signal: None,
            oom_killed: false,
            finished_at: now_rfc3339(),
        });
        c.state.running = false;
        c.state.paused = false;
        c.state.status = "exited".into();
        c.state.pid = 0;
        c.state.exit_code = status.code as i64;
        c.state.oom_killed = status.oom_killed;
        c.state.finished_at = if status.finished_at.is_empty() {
            now_rfc3339()
        } else {
            status.finished_at.clone()
        };
        if let Some(h) = c.state.health.as_mut() {
            h.status = "unhealthy".into();
        }
        let joined = crate::events::JoinEvents::of(self, &c);
        self.teardown(&mut c).await;
        if status.oom_killed {
            self.container_event(&c, "oom");
        }
        self.container_event_with(
            &c,
            "die",
            BTreeMap::from([("exitCode".to_string(), status.code.to_string())]),
        );
        joined.publish(&self.events, false);
        let restart = self.should_restart(&c);
        if restart {
            c.state.restarting = true;
            c.state.status = "restarting".into();
            c.restart_count += 1;
        }
        if let Err(e) = self.save_container(&c) {
            tracing::error!("record exit of {id}: {e}");
        }
        drop(guard);
        if c.host_config.auto_remove {
            if let Err(e) = self.remove_container(id, true, false).await {
                tracing::warn!("auto-remove {id}: {e}");
            }
            return;
        }
        if restart {
            let delay = next_backoff(&c);
            self.restart_after(id.to_string(), delay);
        }
    }

    fn should_restart(&self, c: &ContainerRecord) -> bool {
        let Some(p) = &c.host_config.restart_policy else {
            return false;
        };
        if c.manually_stopped {
            return false;
        }
        match p.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                c.state.exit_code != 0
                    && (p.maximum_retry_count == 0 || c.restart_count < p.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// Undoes what start set up: network, rootfs mount, shim state. Errors are logged.
    pub(crate) async fn teardown(&self, c: &mut ContainerRecord) {
        self.teardown_network(c).await;
        let rootfs = self.container_dir(&c.id).join("rootfs");
        if c.mounted || super::start::is_mountpoint(&rootfs) {
            if let Err(e) = berth_snapshot::unmount(&rootfs) {
                tracing::warn!("unmount rootfs of {}: {e}", c.id);
            }
            c.mounted = false;
        }
        let state_dir = self.state_dir(&c.id);
        // An exited container's shim lingers for late waiters; retire it now, or on its way
        // out it would unlink the socket of the next run's shim in the same directory.
        if let Ok(client) = ShimClient::connect(&state_dir).await {
            let _ = client.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&state_dir);
        self.remove_cgroups(&c.id).await;
    }

    /// Sends `signal` to a running container.
    pub async fn kill_container(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.find_container(name)?;
        let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        if !c.state.running {
            return Err(EngineError::conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                c.id
            )));
        }
        let client = ShimClient::connect(&self.state_dir(&c.id)).await.kind_ctx(
            ErrorKind::Conflict,
            format!("container {name} is not running"),
        )?;
        client.kill(sig).await.ctx(format!("kill {name}"))?;
        self.container_event_with(
            &c,
            "kill",
            BTreeMap::from([("signal".to_string(), sig.to_string())]),
        );
        Ok(())
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds (the
    /// container's StopTimeout or 10 when None). Returns `Ok(false)` if it was not running.
    ///
    /// The stop runs in its own task: a caller that goes away (an API client hanging up)
    /// does not leave the container half stopped, as with dockerd.
    pub async fn stop_container(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let engine = Arc::clone(self);
        let (name, signal) = (name.to_string(), signal.map(str::to_string));
        detached("stop", &name.clone(), async move {
            engine.stop_now(&name, timeout, signal.as_deref()).await
        })
        .await
    }

    /// The body of [`Engine::stop_container`].
    async fn stop_now(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let c = self.mark_stopped(name).await?;
        if !c.state.running {
            return Ok(false);
        }
        let sig = signal
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or(c.config.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let timeout = timeout.or(c.config.stop_timeout).unwrap_or(10);
        let sig = parse_signal(&sig)?;
        let client = ShimClient::connect(&self.state_dir(&c.id)).await.ok();
        if let Some(client) = &client {
            if c.state.paused {
                let _ = client.resume().await;
            }
            let _ = client.kill(sig).await;
        } else {
            // The record says running but no shim answers on its socket: signal the init
            // directly, so the shim (or the monitor's fallback) still learns the exit.
            signal_init(&c, sig);
        }
        let exited = timeout >= 0
            && tokio::time::timeout(
                Duration::from_secs(timeout as u64),
                self.wait_container(&c.id, WaitCondition::NotRunning),
            )
            .await
            .is_ok();
        if !exited {
            let killed = match &client {
                Some(client) => client.kill(libc::SIGKILL).await.is_ok(),
                None => false,
            };
            if !killed {
                signal_init(&c, libc::SIGKILL);
            }
        }
        self.wait_container(&c.id, WaitCondition::NotRunning)
            .await?;
        if let Ok(c) = self.find_container(&c.id) {
            self.container_event(&c, "stop");
        }
        Ok(true)
    }

    /// Records that a user stopped the container (no restart policy brings it back) and
    /// returns the current record. Done under the container's op lock with a fresh read,
    /// so it cannot overwrite a state change (an exit, a start) made meanwhile.
    async fn mark_stopped(&self, name: &str) -> Result<ContainerRecord> {
        let id = self.find_container(name)?.id;
        let op = self.live.with(&id, |l| l.op.clone());
        let _guard = op.lock().await;
        let mut c = self.find_container(&id)?;
        c.manually_stopped = true;
        reset_backoff(&c.id);
        if c.state.restarting {
            c.state.restarting = false;
            c.state.status = "exited".into();
        }
        self.save_container(&c)?;
        Ok(c)
    }

    /// Stops (if running) then starts a container. Like a stop, it runs in its own task and
    /// completes even when the caller goes away.
    pub async fn restart_container(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<()> {
        let engine = Arc::clone(self);
        let name = name.to_string();
        detached("restart", &name.clone(), async move {
            engine.stop_container(&name, timeout, None).await?;
            engine.start_container(&name).await?;
            if let Ok(c) = engine.find_container(&name) {
                engine.container_event(&c, "restart");
            }
            Ok(())
        })
        .await
    }

    /// Waits for `condition`; returns the exit code.
    pub async fn wait_container(&self, name: &str, condition: WaitCondition) -> Result<i64> {
        let c = self.find_container(name)?;
        let mut rx = self.live.with(&c.id, |l| l.changed.subscribe());
        let start_gen = rx.borrow_and_update().generation;
        let mut seen_running = c.state.running;
        let mut last_code = c.state.exit_code;
        loop {
            let cur = match self.find_container(&c.id) {
                Ok(cur) => Some(cur),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if let Some(cur) = &cur {
                last_code = cur.state.exit_code;
            }
            match (&cur, condition) {
                (None, _) => return Ok(exit_after_removal(&rx, start_gen, last_code)),
                (Some(cur), WaitCondition::NotRunning)
                    if !cur.state.running && !cur.state.restarting =>
                {
                    return Ok(cur.state.exit_code)
                }
                (Some(cur), WaitCondition::NextExit) => {
                    if cur.state.running {
                        seen_running = true;
                    } else if seen_running
                        || rx.borrow().generation != start_gen && cur.state.status == "exited"
                    {
                        return Ok(cur.state.exit_code);
                    }
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Ok(exit_after_removal(&rx, start_gen, last_code));
            }
        }
    }

    /// Removes a container; a running one only with `force` (it is killed first).
    /// `volumes` also removes its anonymous volumes.
    pub async fn remove_container(
        self: &Arc<Self>,
        name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let c = if force {
            // No restart policy may bring it back while it goes.
            self.mark_stopped(name).await?
        } else {
            self.find_container(name)?
        };
        if c.state.running && !c.state.restarting {
            if !force {
                return Err(EngineError::conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.name
                )));
            }
            match ShimClient::connect(&self.state_dir(&c.id)).await {
                Ok(client) => {
                    let _ = client.kill(libc::SIGKILL).await;
                }
                Err(_) => {
                    // No shim to learn the exit from: end the process and record it here.
                    if c.state.pid > 0 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(c.state.pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    // The monitor finds no shim and records the last exit it left.
                    self.spawn_monitor(c.id.clone());
                }
            }
            self.wait_container(&c.id, WaitCondition::NotRunning)
                .await?;
        }
        let op = self.live.with(&c.id, |l| l.op.clone());
        let _guard = op.lock().await;
        let Ok(mut c) = self.find_container(&c.id) else {
            return Ok(());
        };
        c.manually_stopped = true;
        self.teardown(&mut c).await;
        if let Err(e) = self.snaps.remove(&c.id) {
            tracing::warn!("remove snapshot of {}: {e}", c.id);
        }
        let _ = std::fs::remove_dir_all(self.container_dir(&c.id));
        self.db.delete("containers", "id", &c.id)?;
        reset_backoff(&c.id);
        self.container_event(&c, "destroy");
        self.live.with(&c.id, |l| {
            l.changed.send_modify(|v| v.bump(c.state.exit_code))
        });
        self.live.forget(&c.id);
        if volumes {
            for m in c.mounts.iter().filter(|m| m.kind == "volume") {
                if let Ok(v) = self.get_volume(&m.name) {
                    if v.anonymous {
                        let _ = self.remove_volume(&v.name, false);
                    }
                }
            }
        }
        Ok(())
    }

    /// At daemon start: reconnect to the shims of running containers, learn the exits
    /// that happened meanwhile, honour `--rm` and restart policies.
    pub(crate) async fn restore(self: &Arc<Self>) -> Result<()> {
        self.restore_networks().await;
        let all: Vec<ContainerRecord> = self.db.all("containers")?;
        for mut c in all {
            if c.state.running || c.state.restarting {
                let state_dir = self.state_dir(&c.id);
                if c.state.running {
                    if let Ok(client) = ShimClient::connect(&state_dir).await {
                        match client.state().await {
                            // Exited while the daemon was down and its shim still lingers:
                            // record it now, so no client sees it running after the start.
                            Ok(st) if st.status == ContainerStatus::Stopped => {
                                let status = match st.exit {
                                    Some(exit) => Some(exit),
                                    None => client.wait().await.ok(),
                                };
                                self.on_exit(&c.id, status).await;
                                continue;
                            }
                            // Running (or the shim did not say): its monitor learns the exit.
                            _ => {
                                self.republish_ports(&c).await;
                                self.spawn_monitor(c.id.clone());
                                self.spawn_health(&c);
                                continue;
                            }
                        }
                    }
                }
                if c.state.restarting {
                    c.state.running = true;
                    self.save_container(&c)?;
                }
                let status = berth_runtime::read_exit(&state_dir);
                self.on_exit(&c.id, status).await;
            }
        }
        self.refresh_dns().await;
        self.prune_stale_cgroups();
        // Containers with restart=always that were stopped only by the daemon going down.
        let all: Vec<ContainerRecord> = self.db.all("containers")?;
        for c in all {
            let policy = c
                .host_config
                .restart_policy
                .as_ref()
                .map(|p| p.name.as_str())
                .unwrap_or("");
            // As in Docker, a daemon start brings back `always` containers even when a
            // user stopped them; `unless-stopped` ones only when nobody did.
            let wanted = policy == "always" || (policy == "unless-stopped" && !c.manually_stopped);
            if !c.state.running && wanted && c.state.status == "exited" {
                let _ = self.start_container(&c.id).await;
            }
        }
        Ok(())
    }
}

/// Runs `fut` in its own task and returns its result, so that dropping the caller (an API
/// client that hung up) does not cancel an operation half done.
pub(crate) async fn detached<T: Send + 'static>(
    op: &str,
    name: &str,
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(fut)
        .await
        .map_err(|e| EngineError::internal(format!("{op} {name}: task failed: {e}")))?
}

/// Sends `sig` to the container's init by its recorded pid, when that process still
/// exists and belongs to the container's cgroup (so a reused pid is never signalled).
fn signal_init(c: &ContainerRecord, sig: i32) {
    if c.state.pid <= 0 {
        return;
    }
    let cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", c.state.pid)).unwrap_or_default();
    if !cgroups.lines().any(|l| l.ends_with(&format!("/{}", c.id))) {
        return;
    }
    if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.state.pid as i32), sig);
    }
}
