//! `run`, `create`, `start`, `attach`: creating containers and attaching to their stdio.

use std::time::Duration;

use clap::{ArgAction, Args};
use serde_json::{json, Value};

use crate::client::{self, query, Client, ClientError};
use crate::create_opts::{create_body, CreateOpts};
use crate::error::{CliError, CmdResult};
use crate::stdio::{self, RawTerminal};

/// `run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Options shared with create
    #[command(flatten)]
    pub opts: CreateOpts,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, num_args = 1..)]
    pub args: Vec<String>,
}

/// `create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Options shared with run
    #[command(flatten)]
    pub opts: CreateOpts,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(required = true, trailing_var_arg = true, num_args = 1..)]
    pub args: Vec<String>,
}

/// Exit code docker uses when a container's process cannot be started.
pub fn start_failure_code(message: &str) -> i32 {
    let m = message;
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        125
    }
}

/// Creates a container, pulling its image first when it is missing (per `--pull`).
pub async fn create_container(
    c: &Client,
    o: &CreateOpts,
    image: &str,
    body: &Value,
) -> Result<String, CliError> {
    let mut q = Vec::new();
    if let Some(n) = &o.name {
        q.push(("name", n.clone()));
    }
    if let Some(p) = &o.platform {
        q.push(("platform", p.clone()));
    }
    let path = format!("/containers/create?{}", query(&q));
    if o.pull == "always" {
        crate::cmd::image::pull_image(c, image, o.platform.as_deref(), true, o.quiet).await?;
    }
    let resp = match c.post(&path, Some(body)).await {
        Err(ClientError::Daemon {
            status: 404,
            message,
        }) if o.pull != "never" && message.to_lowercase().contains("no such image") => {
            eprintln!("Unable to find image '{}' locally", image_with_tag(image));
            crate::cmd::image::pull_image(c, image, o.platform.as_deref(), true, o.quiet).await?;
            c.post(&path, Some(body)).await?
        }
        other => other?,
    };
    for w in resp["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str().filter(|w| !w.is_empty()) {
            eprintln!("WARNING: {w}");
        }
    }
    resp["Id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Stream("daemon returned no container id".into()))
}

fn image_with_tag(image: &str) -> String {
    let (repo, tag, digest) = crate::cmd::image::split_ref(image);
    if digest {
        format!("{repo}@{tag}")
    } else {
        format!("{repo}:{tag}")
    }
}

fn body_for(o: &CreateOpts, args: &[String], attach: bool) -> Result<(String, Value), CliError> {
    let (image, cmd) = args
        .split_first()
        .ok_or_else(|| CliError::Usage("\"run\" requires at least 1 argument".into()))?;
    let mut body = create_body(o, image, cmd, attach)?;
    if o.tty {
        if let Some((h, w)) = stdio::window_size() {
            body["HostConfig"]["ConsoleSize"] = json!([h, w]);
        }
    }
    Ok((image.clone(), body))
}

/// `berth create`: prints the new container's ID.
pub async fn create(c: &Client, a: CreateArgs) -> CmdResult {
    let (image, body) = body_for(&a.opts, &a.args, false)?;
    let id = create_container(c, &a.opts, &image, &body).await?;
    write_cidfile(&a.opts, &id)?;
    println!("{id}");
    Ok(0)
}

/// Writes the new container's ID to `--cidfile`, if given.
fn write_cidfile(o: &CreateOpts, id: &str) -> Result<(), CliError> {
    match &o.extra.cidfile {
        Some(path) => {
            std::fs::write(path, id).map_err(CliError::io(format!("writing cidfile {path}")))
        }
        None => Ok(()),
    }
}

/// Sends `POST .../resize` for the current window size now and on every SIGWINCH.
pub fn spawn_resizer(c: Client, path: String) {
    tokio::spawn(async move {
        let resize = |c: Client, path: String| async move {
            if let Some((h, w)) = stdio::window_size() {
                let _ = c
                    .post(
                        &format!(
                            "{path}?{}",
                            query(&[("h", h.to_string()), ("w", w.to_string())])
                        ),
                        None,
                    )
                    .await;
            }
        };
        resize(c.clone(), path.clone()).await;
        let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            resize(c.clone(), path.clone()).await;
        }
    });
}

/// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT received by the client to the container
/// (docker's `--sig-proxy`, on for attached non-tty containers).
pub fn spawn_signal_proxy(c: Client, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    for (kind, name) in kinds {
        let Ok(mut sig) = signal(kind) else { continue };
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                let q = query(&[("signal", name.to_owned())]);
                let _ = c.post(&format!("/containers/{id}/kill?{q}"), None).await;
            }
        });
    }
}

/// Starts waiting on a container (`condition` next-exit or removed); the returned task yields
/// its exit code. Returns once the daemon has accepted the wait (or after a grace period).
async fn begin_wait(
    c: &Client,
    id: &str,
    condition: &str,
) -> tokio::task::JoinHandle<Result<i32, CliError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let c = c.clone();
    let path = format!(
        "/containers/{id}/wait?{}",
        query(&[("condition", condition.to_owned())])
    );
    let task = tokio::spawn(async move {
        let resp = c.send("POST", &path, &[], None, true).await;
        let _ = tx.send(());
        let body = client::read_body(&path, resp?).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|source| ClientError::Json {
            path: path.clone(),
            source,
        })?;
        if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
            return Err(CliError::Stream(m.to_owned()));
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
    });
    // The daemon answers the wait's headers once the waiter is registered; do not start
    // before that, but do not hang on a daemon that only answers at exit either.
    let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
    task
}

/// Attaches, starts and follows a container until it exits; returns its exit code.
async fn attach_start_wait(
    detach_keys: &str,
    c: &Client,
    id: &str,
    tty: bool,
    stdin: bool,
    auto_remove: bool,
    start: bool,
) -> CmdResult {
    let q = query(&[
        ("stream", "1".into()),
        ("stdin", if stdin { "1" } else { "0" }.into()),
        ("stdout", "1".into()),
        ("stderr", "1".into()),
    ]);
    let hijacked = c
        .hijack(&format!("/containers/{id}/attach?{q}"), None)
        .await?;
    let wait = begin_wait(c, id, if auto_remove { "removed" } else { "next-exit" }).await;
    if start {
        if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
            wait.abort();
            let code = match &e {
                ClientError::Daemon { message, .. } => start_failure_code(message),
                _ => 125,
            };
            eprintln!("berth: {}", CliError::from(e).render());
            return Ok(code);
        }
    }
    let _raw = if tty && stdin {
        Some(RawTerminal::enable()?)
    } else {
        None
    };
    if tty {
        spawn_resizer(c.clone(), format!("/containers/{id}/resize"));
    } else {
        spawn_signal_proxy(c.clone(), id.to_owned());
    }
    let keys = if tty && stdin {
        stdio::parse_detach_keys(detach_keys)
    } else {
        None
    };
    if stdio::pump(hijacked, tty, stdin, keys).await? == stdio::PumpEnd::Detached {
        wait.abort();
        return Ok(0);
    }
    drop(_raw);
    match wait.await {
        Ok(r) => r,
        Err(_) => Ok(125),
    }
}

/// `berth run`: create (pulling if needed), attach, start, and exit with the container's code.
pub async fn run(c: &Client, a: RunArgs) -> CmdResult {
    let attach = !a.detach;
    let (image, body) = body_for(&a.opts, &a.args, attach)?;
    let id = create_container(c, &a.opts, &image, &body).await?;
    write_cidfile(&a.opts, &id)?;
    if a.detach {
        if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
            let code = match &e {
                ClientError::Daemon { message, .. } => start_failure_code(message),
                _ => 125,
            };
            eprintln!("berth: {}", CliError::from(e).render());
            return Ok(code);
        }
        println!("{id}");
        return Ok(0);
    }
    attach_start_wait(
        &a.detach_keys,
        c,
        &id,
        a.opts.tty,
        a.opts.interactive,
        a.opts.rm,
        true,
    )
    .await
}

/// `start` flags.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth start`.
pub async fn start(c: &Client, a: StartArgs) -> CmdResult {
    if a.attach || a.interactive {
        let [name] = a.containers.as_slice() else {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        };
        let info = c.get(&format!("/containers/{name}/json")).await?;
        let id = info["Id"].as_str().unwrap_or(name).to_owned();
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let auto_remove = info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
        return attach_start_wait(
            &a.detach_keys,
            c,
            &id,
            tty,
            a.interactive,
            auto_remove,
            true,
        )
        .await;
    }
    crate::error::for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/start"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

/// `attach` flags.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    /// Container
    pub container: String,
}

/// `berth attach`: follows a running container's output (and feeds stdin if it is open).
pub async fn attach(c: &Client, a: AttachArgs) -> CmdResult {
    let info = c.get(&format!("/containers/{}/json", a.container)).await?;
    if info["State"]["Running"].as_bool() != Some(true) {
        return Err(CliError::Usage(
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    let id = info["Id"].as_str().unwrap_or(&a.container).to_owned();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let auto_remove = info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
    attach_start_wait(&a.detach_keys, c, &id, tty, stdin, auto_remove, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    #[test]
    fn run_args_stop_at_image() {
        use clap::Parser;
        let t = T::try_parse_from([
            "run", "--rm", "-it", "-e", "A=1", "-p", "80:80", "img", "sh", "-c", "x", "--rm", "-d",
        ])
        .unwrap();
        assert_eq!(t.a.opts.env, vec!["A=1"]);
        assert!(t.a.opts.rm && t.a.opts.tty && t.a.opts.interactive && !t.a.detach);
        assert_eq!(t.a.args, vec!["img", "sh", "-c", "x", "--rm", "-d"]);
        assert!(T::try_parse_from(["run", "--bogus", "img"]).is_err());
        assert!(T::try_parse_from(["run", "-d"]).is_err());
        let t = T::try_parse_from(["run", "-h", "box", "img"]).unwrap();
        assert_eq!(t.a.opts.hostname.as_deref(), Some("box"));
    }

    #[test]
    fn start_failure_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec /x: permission denied"), 126);
        assert_eq!(start_failure_code("something else"), 125);
    }
}
