//! `docker pause` / `docker unpause`: freeze and thaw every process of a running container
//! through its shim (the cgroup freezer), recorded as State.Paused and Status "paused".

use berth_runtime::ShimClient;

use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::Engine;

impl Engine {
    /// Freezes a running container. 409 when it is not running or already paused.
    pub async fn pause_container(&self, name: &str) -> Result<()> {
        let c = self.find_container(name)?;
        let op = self.live.with(&c.id, |l| l.op.clone());
        let _guard = op.lock().await;
        let mut c = self.find_container(&c.id)?;
        if !c.state.running || c.state.restarting {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        if c.state.paused {
            return Err(EngineError::conflict(format!(
                "container {} is already paused",
                c.id
            )));
        }
        let client = ShimClient::connect(&self.state_dir(&c.id)).await.kind_ctx(
            ErrorKind::Conflict,
            format!("container {} is not running", c.id),
        )?;
        client.pause().await.ctx(format!("pause {}", c.name))?;
        c.state.paused = true;
        c.state.status = "paused".into();
        self.save_container(&c)?;
        self.container_event(&c, "pause");
        Ok(())
    }

    /// Thaws a paused container. 409 when it is not paused.
    pub async fn unpause_container(&self, name: &str) -> Result<()> {
        let c = self.find_container(name)?;
        let op = self.live.with(&c.id, |l| l.op.clone());
        let _guard = op.lock().await;
        let mut c = self.find_container(&c.id)?;
        if !c.state.paused || !c.state.running {
            return Err(EngineError::conflict(format!(
                "container {} is not paused",
                c.id
            )));
        }
        let client = ShimClient::connect(&self.state_dir(&c.id)).await.kind_ctx(
            ErrorKind::Conflict,
            format!("container {} is not running", c.id),
        )?;
        client.resume().await.ctx(format!("unpause {}", c.name))?;
        c.state.paused = false;
        c.state.status = "running".into();
        self.save_container(&c)?;
        self.container_event(&c, "unpause");
        Ok(())
    }
}
