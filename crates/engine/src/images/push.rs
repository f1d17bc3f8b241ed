//! `docker push` and `docker login`.

use std::sync::Arc;

use berth_registry::Credentials;

use super::Progress;
use crate::error::{EngineError, ErrorKind, Result};
use crate::Engine;

impl Engine {
    /// Pushes a local image to its registry.
    pub async fn push_image(
        self: &Arc<Self>,
        reference: &str,
        creds: Option<Credentials>,
        progress: Progress,
    ) -> Result<()> {
        let _ = (reference, creds, progress);
        Err(EngineError::new(
            ErrorKind::NotImplemented,
            "push is not implemented yet",
        ))
    }

    /// Checks credentials against a registry (`docker login`).
    pub async fn login(&self, server: &str, username: &str, password: &str) -> Result<()> {
        let _ = (server, username, password);
        Err(EngineError::new(
            ErrorKind::NotImplemented,
            "login is not implemented yet",
        ))
    }
}
