//! The command-level error type and how it maps to messages and exit codes.

use crate::auth::AuthError;
use crate::client::ClientError;
use crate::parse::ParseError;
use crate::stdio::StdioError;
use crate::template::TemplateError;

/// Any failure of a `berth` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon or the connection to it failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A flag value was malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A `--format` template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Stream plumbing failed.
    #[error(transparent)]
    Stdio(#[from] StdioError),
    /// The credentials file failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An error reported inside a JSON message stream (pull, push, build, load).
    #[error("{0}")]
    Stream(String),
    /// Wrong usage of a command.
    #[error("{0}")]
    Usage(String),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// what was being done, with the path
        context: String,
        /// underlying error
        source: std::io::Error,
    },
    /// Several targets failed; each message was already printed.
    #[error("")]
    Reported,
}

impl CliError {
    /// The line docker would print on stderr for this error.
    pub fn render(&self) -> String {
        match self {
            CliError::Client(ClientError::Daemon { message, .. }) => {
                format!("Error response from daemon: {message}")
            }
            CliError::Client(e @ ClientError::Connect { .. }) => e.to_string(),
            CliError::Stream(m) => m.clone(),
            other => format!("Error: {other}"),
        }
    }

    /// Builds an I/O error with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }
}

/// Result of a command: its exit code.
pub type CmdResult = Result<i32, CliError>;

/// Runs `f` on each target, printing docker-style errors for failures; returns 1 if any failed.
pub async fn for_each<F, Fut>(targets: &[String], mut f: F) -> CmdResult
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let mut failed = false;
    for t in targets {
        if let Err(e) = f(t.clone()).await {
            eprintln!("{}", e.render());
            failed = true;
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(0)
    }
}
