//! `POST /containers/{id}/attach`: a stream from the container's shim, opened now if the
//! container runs, or handed over right before its next start (so `docker run` loses no
//! output).

use std::sync::Arc;

use berth_runtime::ShimClient;
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::PendingAttach;
use crate::error::{Result, ResultExt};
use crate::model::ContainerRecord;
use crate::Engine;

impl Engine {
    /// Attaches to a container. The receiver yields the shim stream: output in Docker's
    /// multiplexed framing, input written raw to the container's stdin (if `stdin`).
    pub async fn attach_container(
        self: &Arc<Self>,
        name: &str,
        stdin: bool,
    ) -> Result<(ContainerRecord, oneshot::Receiver<UnixStream>)> {
        let c = self.find_container(name)?;
        let (tx, rx) = oneshot::channel();
        let op = self.live.with(&c.id, |l| l.op.clone());
        let _guard = op.lock().await;
        let c = self.find_container(&c.id)?;
        if c.state.running {
            let client = ShimClient::connect(&self.state_dir(&c.id))
                .await
                .ctx(format!("attach to {}", c.name))?;
            let stream = client
                .attach(stdin)
                .await
                .ctx(format!("attach to {}", c.name))?;
            let _ = tx.send(stream);
        } else {
            self.live
                .with(&c.id, |l| l.pending.push(PendingAttach { stdin, tx }));
        }
        self.container_event(&c, "attach");
        Ok((c, rx))
    }

    /// Resizes a running container's tty.
    pub async fn resize_container(&self, name: &str, rows: u16, cols: u16) -> Result<()> {
        let c = self.find_container(name)?;
        if !c.state.running {
            return Err(crate::EngineError::conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        let client = ShimClient::connect(&self.state_dir(&c.id))
            .await
            .ctx(format!("resize {}", c.name))?;
        client
            .resize(rows, cols)
            .await
            .ctx(format!("resize {}", c.name))?;
        Ok(())
    }
}
