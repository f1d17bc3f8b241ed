//! The engine's error type. Every error carries its context (id, name, path) and maps to
//! exactly one [`ErrorKind`]; the api crate alone turns kinds into HTTP statuses.

/// What went wrong, independent of where: the api maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409), e.g. a name in use.
    Conflict,
    /// The request itself is malformed or not allowed (400).
    InvalidArgument,
    /// A peer (registry, runtime) is unreachable or refused (500 with a clear message).
    Unavailable,
    /// The caller lacks credentials (401).
    Unauthorized,
    /// Not implemented by this engine (501).
    NotImplemented,
    /// Anything else (500).
    Internal,
}

/// The engine's error: a kind plus a message that names the object and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    kind: ErrorKind,
    message: String,
}

impl EngineError {
    /// Makes an error of `kind` with a user-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// A 404 error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A 409 error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// A 400 error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    /// A 500 error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(self, ctx: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{ctx}: {}", self.message),
        }
    }
}

/// Shorthand for engine results.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(format!("metadata database: {e}"))
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(format!("i/o: {e}"))
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> Self {
        Self::internal(format!("json: {e}"))
    }
}

/// Adds context to any displayable error, turning it into an [`EngineError`] of `kind`.
pub trait ResultExt<T> {
    /// Maps the error to `kind` with `ctx: cause` as the message.
    fn kind_ctx(self, kind: ErrorKind, ctx: impl std::fmt::Display) -> Result<T>;
    /// Maps the error to an internal error with `ctx: cause` as the message.
    fn ctx(self, ctx: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn kind_ctx(self, kind: ErrorKind, ctx: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| EngineError::new(kind, format!("{ctx}: {e}")))
    }
    fn ctx(self, ctx: impl std::fmt::Display) -> Result<T> {
        self.kind_ctx(ErrorKind::Internal, ctx)
    }
}
