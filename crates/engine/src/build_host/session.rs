//! One `docker build`: the context read as it arrives, the builder driven over the engine,
//! its events turned into Docker's JSON progress messages.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::EngineBuildHost;
use crate::error::EngineError;
use crate::Engine;

impl Engine {
    /// Builds an image from a tar build context (a file), sending Docker's JSON progress
    /// messages. Returns the image id. A failed build leaves no work snapshot mounted.
    pub async fn build_image(
        self: &Arc<Self>,
        context_tar: impl std::io::Read + Send + 'static,
        opts: berth_build::BuildOptions,
        progress: UnboundedSender<Value>,
    ) -> Result<String, EngineError> {
        let parent = self.cfg.data_root.join("tmp");
        std::fs::create_dir_all(&parent)?;
        let dockerfile = opts.dockerfile.clone();
        let ctx = tokio::task::spawn_blocking(move || {
            berth_build::BuildContext::from_tar(
                std::io::BufReader::with_capacity(1 << 16, context_tar),
                &dockerfile,
                Some(&parent),
            )
            .map_err(|e| EngineError::invalid(format!("build context: {e}")))
        })
        .await
        .map_err(|e| EngineError::internal(format!("context task: {e}")))??;
        let mut opts = opts;
        opts.dockerfile = ctx.dockerfile().to_string();
        let quiet = opts.quiet;
        let builder = berth_build::Builder::new(EngineBuildHost::new(Arc::clone(self)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<berth_build::BuildEvent>();
        let fwd = progress.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let line = match ev {
                    berth_build::BuildEvent::Step(s) => format!("{s}\n"),
                    berth_build::BuildEvent::Output(s) => s,
                    berth_build::BuildEvent::Cached => " ---> Using cache\n".to_string(),
                    berth_build::BuildEvent::Id(s) => format!(" ---> {s}\n"),
                    berth_build::BuildEvent::Warning(s) => format!("[Warning] {s}\n"),
                };
                let _ = fwd.send(serde_json::json!({ "stream": line }));
            }
        });
        let result = builder.build(ctx.path(), opts, tx).await;
        let _ = forward.await;
        // Removing the unpacked context can take a while; the client need not wait for it.
        tokio::task::spawn_blocking(move || drop(ctx));
        let result = result.map_err(|e| EngineError::invalid(e.to_string()))?;
        let _ = progress.send(serde_json::json!({"aux": {"ID": result.image_id}}));
        if quiet {
            // As dockerd: with `q` the stream carries just the image id.
            let _ = progress.send(serde_json::json!({"stream": format!("{}\n", result.image_id)}));
        }
        Ok(result.image_id)
    }
}

/// A blocking [`std::io::Read`] over chunks sent through a channel: lets the build context
/// be unpacked while the HTTP body is still arriving, without spooling it to a file.
/// Read it from a blocking thread only.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    buf: bytes::Bytes,
}

impl ChannelReader {
    /// A reader and the sender that feeds it; dropping the sender ends the stream, sending
    /// an error makes the next read fail with it.
    pub fn new() -> (
        tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
        ChannelReader,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (
            tx,
            ChannelReader {
                rx,
                buf: bytes::Bytes::new(),
            },
        )
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}
