//! Health checks: one task per running container runs the configured probe (HEALTHCHECK
//! or `--health-*`) through the exec machinery, keeps `State.Health` (status, failing
//! streak, the last five results) and publishes `health_status: ...` events on changes.
//! The task ends when the container stops or starts again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::exec::ExecRequest;
use super::now_rfc3339;
use crate::model::{ContainerRecord, Health, HealthConfig, HealthLog};
use crate::Engine;

/// At most this much probe output is kept per result.
const MAX_OUTPUT: usize = 4096;
/// Results kept in `State.Health.Log`.
const MAX_LOG: usize = 5;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;

/// The probe's command line: `CMD-SHELL x` runs `/bin/sh -c x`, `CMD a b` runs `a b`;
/// `NONE` or an empty test means no health check.
pub fn probe_command(test: &[String], shell: Option<&[String]>) -> Option<Vec<String>> {
    let (kind, rest) = test.split_first()?;
    match kind.as_str() {
        "CMD" if !rest.is_empty() => Some(rest.to_vec()),
        "CMD-SHELL" if !rest.is_empty() => {
            let mut cmd: Vec<String> = match shell {
                Some(s) if !s.is_empty() => s.to_vec(),
                _ => vec!["/bin/sh".into(), "-c".into()],
            };
            cmd.push(rest.join(" "));
            Some(cmd)
        }
        _ => None,
    }
}

fn ns(v: i64, default: Duration) -> Duration {
    if v > 0 {
        Duration::from_nanos(v as u64)
    } else {
        default
    }
}

/// Folds one probe result into the health state; returns whether the status changed.
/// Failures inside the start period do not count while the status is still "starting".
pub fn apply_result(h: &mut Health, log: HealthLog, retries: i64, in_start_period: bool) -> bool {
    let before = h.status.clone();
    let ok = log.exit_code == 0;
    h.log.push(log);
    if h.log.len() > MAX_LOG {
        let extra = h.log.len() - MAX_LOG;
        h.log.drain(..extra);
    }
    if ok {
        h.failing_streak = 0;
        h.status = "healthy".into();
    } else if !(in_start_period && h.status == "starting") {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h.status != before
}

impl Engine {
    /// Starts the health monitor of a container that has just started (no-op when it has
    /// no health check). The monitor stops by itself when that run of the container ends.
    pub(crate) fn spawn_health(self: &Arc<Self>, c: &ContainerRecord) {
        let Some(hc) = c.config.healthcheck.clone() else {
            return;
        };
        let Some(cmd) = probe_command(
            hc.test.as_deref().unwrap_or_default(),
            c.config.shell.as_deref(),
        ) else {
            // HEALTHCHECK NONE (or no test): no health state at all.
            if c.state.health.is_some() {
                if let Ok(mut cur) = self.find_container(&c.id) {
                    cur.state.health = None;
                    let _ = self.save_container(&cur);
                }
            }
            return;
        };
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let run = c.state.started_at.clone();
        tokio::spawn(async move { engine.health_loop(id, run, hc, cmd).await });
    }

    /// Whether the container is still in the run that started at `run`.
    fn same_run(&self, id: &str, run: &str) -> Option<ContainerRecord> {
        self.find_container(id)
            .ok()
            .filter(|c| c.state.running && c.state.started_at == run)
    }

    async fn health_loop(
        self: Arc<Self>,
        id: String,
        run: String,
        hc: HealthConfig,
        cmd: Vec<String>,
    ) {
        let started = Instant::now();
        let interval = ns(hc.interval, DEFAULT_INTERVAL);
        let timeout = ns(hc.timeout, DEFAULT_TIMEOUT);
        let start_period = ns(hc.start_period, Duration::ZERO);
        let start_interval = ns(hc.start_interval, DEFAULT_START_INTERVAL);
        let retries = if hc.retries > 0 {
            hc.retries
        } else {
            DEFAULT_RETRIES
        };
        let mut changed = self.live.with(&id, |l| l.changed.subscribe());
        loop {
            let in_start = started.elapsed() < start_period;
            let wait = if in_start && hc.start_interval > 0 {
                start_interval
            } else {
                interval
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    r = changed.changed() => {
                        if r.is_err() || self.same_run(&id, &run).is_none() {
                            return;
                        }
                    }
                }
            }
            let Some(c) = self.same_run(&id, &run) else {
                return;
            };
            if c.state.paused {
                continue;
            }
            let log = self.probe(&c, cmd.clone(), timeout).await;
            let in_start = started.elapsed() < start_period;
            let op = self.live.with(&id, |l| l.op.clone());
            let _guard = op.lock().await;
            let Some(mut c) = self.same_run(&id, &run) else {
                return;
            };
            let h = c.state.health.get_or_insert_with(|| Health {
                status: "starting".into(),
                ..Default::default()
            });
            let changed_status = apply_result(h, log, retries, in_start);
            let status = h.status.clone();
            if let Err(e) = self.save_container(&c) {
                tracing::warn!("record health of {id}: {e}");
            }
            if changed_status {
                self.container_event(&c, &format!("health_status: {status}"));
            }
        }
    }

    /// Runs one probe as an exec in the container; output is capped at 4096 bytes and a
    /// probe that outlives `timeout` is killed and counted as a failure.
    async fn probe(
        self: &Arc<Self>,
        c: &ContainerRecord,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> HealthLog {
        let start = now_rfc3339();
        let fail = |msg: String| HealthLog {
            start: start.clone(),
            end: now_rfc3339(),
            exit_code: -1,
            output: msg,
        };
        let req = ExecRequest {
            attach_stdout: true,
            attach_stderr: true,
            cmd,
            ..Default::default()
        };
        let exec_id = match self.create_exec(&c.id, req) {
            Ok(id) => id,
            Err(e) => return fail(format!("health check: {e}")),
        };
        let result = tokio::time::timeout(timeout, async {
            let mut stream = self.start_exec(&exec_id).await?;
            let output = read_frames(&mut stream).await;
            let code = self.wait_exec(&exec_id).await?;
            Ok::<_, crate::EngineError>((code, output))
        })
        .await;
        let log = match result {
            Ok(Ok((code, output))) => HealthLog {
                start: start.clone(),
                end: now_rfc3339(),
                exit_code: code,
                output,
            },
            Ok(Err(e)) => fail(format!("health check: {e}")),
            Err(_) => {
                if let Ok(r) = self.exec(&exec_id) {
                    if r.pid > 0 {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(r.pid as i32, libc::SIGKILL) };
                    }
                }
                fail(format!(
                    "Health check exceeded timeout ({}s)",
                    timeout.as_secs_f64()
                ))
            }
        };
        if let Ok(mut execs) = self.execs.lock() {
            execs.remove(&exec_id);
        }
        log
    }
}

/// Reads multiplexed frames until EOF, keeping at most [`MAX_OUTPUT`] payload bytes.
async fn read_frames(stream: &mut tokio::net::UnixStream) -> String {
    let mut out = Vec::new();
    let mut header = [0u8; 8];
    loop {
        if stream.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&payload[..len.min(room)]);
    }
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(code: i64) -> HealthLog {
        HealthLog {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn commands() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            probe_command(&s(&["CMD-SHELL", "test -f /x"]), None),
            Some(s(&["/bin/sh", "-c", "test -f /x"]))
        );
        assert_eq!(
            probe_command(&s(&["CMD", "true"]), None),
            Some(s(&["true"]))
        );
        assert_eq!(probe_command(&s(&["NONE"]), None), None);
        assert_eq!(probe_command(&[], None), None);
    }

    #[test]
    fn streak_and_status() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        assert!(!apply_result(&mut h, log(1), 2, true));
        assert_eq!(h.failing_streak, 0);
        assert!(apply_result(&mut h, log(0), 2, false));
        assert_eq!(h.status, "healthy");
        assert!(!apply_result(&mut h, log(1), 2, false));
        assert!(apply_result(&mut h, log(1), 2, false));
        assert_eq!(h.status, "unhealthy");
        for _ in 0..5 {
            apply_result(&mut h, log(1), 2, false);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(h.failing_streak, 7);
    }
}
