//! `docker exec`: exec instances are kept in memory (as dockerd does); each runs through the
//! container's shim in the container's namespaces and cgroup.

use std::sync::Arc;

use berth_runtime::ShimClient;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::UnixStream;

use crate::error::{EngineError, Result, ResultExt};
use crate::users::resolve_user;
use crate::Engine;

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecRequest {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub privileged: bool,
    pub user: String,
    pub working_dir: String,
    pub detach_keys: String,
}

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub req: ExecRequest,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

impl Engine {
    /// Creates an exec instance in a running container; returns its id.
    pub fn create_exec(&self, container: &str, req: ExecRequest) -> Result<String> {
        let c = self.find_container(container)?;
        if !c.state.running {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        if c.state.paused {
            return Err(EngineError::conflict(format!(
                "container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if req.cmd.is_empty() {
            return Err(EngineError::invalid("no exec command specified"));
        }
        let id = crate::names::new_id();
        let rec = ExecRecord {
            id: id.clone(),
            container_id: c.id.clone(),
            req,
            running: false,
            started: false,
            exit_code: None,
            pid: 0,
        };
        self.execs_lock().insert(id.clone(), rec);
        self.container_event(
            &c,
            &format!("exec_create: {}", self.exec(&id)?.req.cmd.join(" ")),
        );
        Ok(id)
    }

    fn execs_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ExecRecord>> {
        match self.execs.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// An exec instance by id.
    pub fn exec(&self, id: &str) -> Result<ExecRecord> {
        self.execs_lock()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    /// Starts an exec instance; returns the shim stream (framed output, raw stdin).
    pub async fn start_exec(self: &Arc<Self>, id: &str) -> Result<UnixStream> {
        let rec = self.exec(id)?;
        if rec.started {
            return Err(EngineError::conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        let c = self.find_container(&rec.container_id)?;
        if !c.state.running {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let rootfs = self.container_dir(&c.id).join("rootfs");
        let user_spec = if rec.req.user.is_empty() {
            c.config.user.clone()
        } else {
            rec.req.user.clone()
        };
        let user = resolve_user(
            &rootfs,
            &user_spec,
            c.host_config.group_add.as_deref().unwrap_or_default(),
        )?;
        let mut env = c.config.env.clone().unwrap_or_default();
        for e in rec.req.env.clone().unwrap_or_default() {
            let key = e.split('=').next().unwrap_or_default().to_string();
            env.retain(|x| x.split('=').next() != Some(key.as_str()));
            env.push(e);
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
        let cwd = if !rec.req.working_dir.is_empty() {
            rec.req.working_dir.clone()
        } else if !c.config.working_dir.is_empty() {
            c.config.working_dir.clone()
        } else {
            "/".into()
        };
        let cfg = berth_runtime::ExecConfig {
            id: id.to_string(),
            args: rec.req.cmd.clone(),
            env,
            cwd,
            user: Some(berth_runtime::UserSpec {
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids,
            }),
            tty: rec.req.tty,
            stdin: rec.req.attach_stdin,
        };
        let client = ShimClient::connect(&self.state_dir(&c.id))
            .await
            .ctx(format!("exec in {}", c.name))?;
        let stream = client
            .exec(cfg)
            .await
            .map_err(|e| EngineError::internal(format!("exec in {}: {e}", c.name)))?;
        let pid = client.exec_pid(id).await.unwrap_or(0);
        self.update_exec(id, |r| {
            r.started = true;
            r.running = true;
            r.pid = pid as i64;
        });
        self.container_event(&c, &format!("exec_start: {}", rec.req.cmd.join(" ")));
        let engine = Arc::clone(self);
        let exec_id = id.to_string();
        let state_dir = self.state_dir(&c.id);
        tokio::spawn(async move {
            let code = match ShimClient::connect(&state_dir).await {
                Ok(cl) => cl
                    .exec_wait(&exec_id)
                    .await
                    .map(|s| s.code as i64)
                    .unwrap_or(-1),
                Err(_) => -1,
            };
            engine.update_exec(&exec_id, |r| {
                r.running = false;
                r.exit_code = Some(code);
            });
            if let Ok(c) = engine.find_container(&c.id) {
                engine.container_event_with(
                    &c,
                    "exec_die",
                    [
                        ("exitCode".to_string(), code.to_string()),
                        ("execID".to_string(), exec_id.clone()),
                    ]
                    .into(),
                );
            }
        });
        Ok(stream)
    }

    fn update_exec(&self, id: &str, f: impl FnOnce(&mut ExecRecord)) {
        if let Some(r) = self.execs_lock().get_mut(id) {
            f(r);
        }
    }

    /// Waits until an exec instance has finished; returns its exit code.
    pub async fn wait_exec(&self, id: &str) -> Result<i64> {
        loop {
            let r = self.exec(id)?;
            if let Some(code) = r.exit_code {
                return Ok(code);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Resizes an exec instance's tty.
    pub async fn resize_exec(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let r = self.exec(id)?;
        let client = ShimClient::connect(&self.state_dir(&r.container_id))
            .await
            .ctx("resize exec")?;
        client
            .exec_resize(id, rows, cols)
            .await
            .ctx("resize exec")?;
        Ok(())
    }

    /// `GET /exec/{id}/json` in Docker's shape.
    pub fn inspect_exec(&self, id: &str) -> Result<Value> {
        let r = self.exec(id)?;
        Ok(json!({
            "ID": r.id,
            "Running": r.running,
            "ExitCode": r.exit_code,
            "ProcessConfig": {
                "tty": r.req.tty,
                "entrypoint": r.req.cmd.first(),
                "arguments": r.req.cmd.get(1..).unwrap_or_default(),
                "privileged": r.req.privileged,
                "user": r.req.user,
            },
            "OpenStdin": r.req.attach_stdin,
            "OpenStderr": r.req.attach_stderr,
            "OpenStdout": r.req.attach_stdout,
            "CanRemove": false,
            "ContainerID": r.container_id,
            "DetachKeys": r.req.detach_keys,
            "Pid": r.pid,
        }))
    }
}
