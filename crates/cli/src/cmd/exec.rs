//! `exec`: run a command in a running container.

use clap::Args;
use serde_json::json;

use crate::client::Client;
use crate::cmd::container::spawn_resizer;
use crate::error::{CliError, CmdResult};
use crate::parse::{expand_env, read_env_file};
use crate::stdio::{self, RawTerminal};

/// `exec` flags.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// Builds the `POST /containers/{id}/exec` body.
pub fn exec_body(a: &ExecArgs) -> Result<serde_json::Value, CliError> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().map(|e| expand_env(e)));
    let attach = !a.detach;
    Ok(json!({
        "AttachStdin": attach && a.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Tty": a.tty,
        "Env": env,
        "Cmd": a.args[1..],
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
    }))
}

/// `berth exec`: exits with the command's exit code.
pub async fn exec(c: &Client, a: ExecArgs) -> CmdResult {
    let container = &a.args[0];
    let created = c
        .post(
            &format!("/containers/{container}/exec"),
            Some(&exec_body(&a)?),
        )
        .await?;
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| CliError::Stream("daemon returned no exec id".into()))?
        .to_owned();
    let mut start = json!({"Detach": a.detach, "Tty": a.tty});
    if a.tty {
        if let Some((h, w)) = stdio::window_size() {
            start["ConsoleSize"] = json!([h, w]);
        }
    }
    if a.detach {
        c.post(&format!("/exec/{id}/start"), Some(&start)).await?;
        return Ok(0);
    }
    let hijacked = c.hijack(&format!("/exec/{id}/start"), Some(&start)).await?;
    let raw = if a.tty && a.interactive {
        Some(RawTerminal::enable()?)
    } else {
        None
    };
    if a.tty {
        spawn_resizer(c.clone(), format!("/exec/{id}/resize"));
    }
    let keys = if a.tty && a.interactive {
        stdio::parse_detach_keys(&a.detach_keys)
    } else {
        None
    };
    if stdio::pump(hijacked, a.tty, a.interactive, keys).await? == stdio::PumpEnd::Detached {
        return Ok(0);
    }
    drop(raw);
    let info = c.get(&format!("/exec/{id}/json")).await?;
    Ok(info["ExitCode"].as_i64().unwrap_or(0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    #[test]
    fn body_from_flags() {
        let t = T::try_parse_from([
            "exec", "-it", "-u", "1", "-w", "/x", "-e", "A=1", "c1", "ls", "-l",
        ])
        .unwrap();
        let b = exec_body(&t.a).unwrap();
        assert_eq!(b["Cmd"], json!(["ls", "-l"]));
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["Tty"], true);
        assert_eq!(b["User"], "1");
        assert_eq!(b["WorkingDir"], "/x");
        assert_eq!(b["Env"], json!(["A=1"]));
    }
}
