//! One RUN step as a one-off container: the spec and the mount stubs written into the
//! step's build dir, a shim started on them, output lines forwarded, the exit code
//! returned, and the shim and cgroups gone afterwards.

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedSender;

use berth_runtime::{ShimClient, SpecOptions};

use super::stubs;
use crate::error::EngineError;
use crate::Engine;

impl Engine {
    /// Runs `args` in `rootfs` as a one-off container through a shim; output lines go to
    /// `output`. Returns the exit code.
    pub(crate) async fn run_in_rootfs(
        &self,
        key: &str,
        mut opts: SpecOptions,
        output: UnboundedSender<String>,
    ) -> Result<i32, EngineError> {
        let dir = self.build_dir(key);
        opts.cgroup_parent = self.cfg.cgroup_parent.clone();
        let spec = berth_runtime::build_spec(&opts)
            .map_err(|e| EngineError::invalid(format!("build step spec: {e}")))?;
        let spec_json = serde_json::to_value(&spec)?;
        let destinations: Vec<String> = spec_json
            .get("mounts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("destination").and_then(Value::as_str))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let mut plan = read_stubs(&dir);
        let new = stubs::plan(&dir.join("rootfs"), &destinations);
        plan.created.extend(new.created);
        plan.parents.extend(new.parents);
        std::fs::write(dir.join("stubs.json"), serde_json::to_vec(&plan)?)?;
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec_json)?)?;
        let state_dir = self.cfg.exec_root.join("b").join(&key[..16.min(key.len())]);
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir)?;
        let cfg = berth_runtime::ShimConfig {
            id: key.to_string(),
            bundle: dir.clone(),
            state_dir: state_dir.clone(),
            log_path: dir.join("run.log"),
            log: berth_runtime::LogConfig {
                driver: berth_runtime::LogDriver::None,
                max_size: None,
                max_files: 1,
            },
            runtime: self.runtime_kind(&self.cfg.default_runtime),
            tty: false,
            open_stdin: false,
        };
        let bin = self.cfg.shim_binary.clone();
        tokio::task::spawn_blocking(move || berth_runtime::spawn_shim(&bin, &cfg))
            .await
            .map_err(|e| EngineError::internal(format!("shim task: {e}")))?
            .map_err(|e| EngineError::internal(format!("run build step: {e}")))?;
        let client = ShimClient::connect(&state_dir)
            .await
            .map_err(|e| EngineError::internal(format!("build shim: {e}")))?;
        let mut stream = client
            .attach(false)
            .await
            .map_err(|e| EngineError::internal(format!("build attach: {e}")))?;
        client
            .start()
            .await
            .map_err(|e| EngineError::internal(format!("start build step: {e}")))?;
        let reader = tokio::spawn(async move {
            let mut header = [0u8; 8];
            let mut pending = Vec::new();
            while stream.read_exact(&mut header).await.is_ok() {
                let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                let mut buf = vec![0u8; len];
                if stream.read_exact(&mut buf).await.is_err() {
                    break;
                }
                pending.extend_from_slice(&buf);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let _ = output.send(String::from_utf8_lossy(&line).to_string());
                }
            }
            if !pending.is_empty() {
                let _ = output.send(String::from_utf8_lossy(&pending).to_string());
            }
        });
        let status = client
            .wait()
            .await
            .map_err(|e| EngineError::internal(format!("wait build step: {e}")))?;
        let _ = reader.await;
        // Retire the shim, then remove the step's cgroups: the built-in runtime leaves them
        // to the engine after an exit, as it does for containers.
        let _ = client.shutdown().await;
        let _ = std::fs::remove_dir_all(&state_dir);
        self.remove_cgroups(key).await;
        Ok(status.code)
    }
}

/// The mount stubs noted for the work root whose build dir is `dir` (none when absent).
pub(super) fn read_stubs(dir: &std::path::Path) -> stubs::Stubs {
    std::fs::read(dir.join("stubs.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
