//! `berth compose`: runs a docker-compose file against the daemon, naming and labelling
//! containers like docker-compose v1 (`<project>_<service>_<n>`, `com.docker.compose.*`
//! labels) on a project network `<project>_default` where each replica answers to its
//! service name. See [`compose_file`](super::compose_file) for the file format and
//! [`compose_up`](super::compose_up) for how replicas converge.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::compose_file::{self, ComposeFileError, Project};
use super::compose_up;
use crate::client::{query, Client};
use crate::cmd::ps::format_ports;
use crate::error::{CliError, CmdResult};
use crate::output::align;
use crate::stdio;

/// Label naming a container's project.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Label naming a container's service.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
/// Label holding a container's replica number.
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
/// Label marking one-off containers (`run`); always "False" here.
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";

/// `berth compose` global flags and subcommand.
#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose file (default: docker-compose.yml, docker-compose.yaml, compose.yaml, compose.yml)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Project name (default: the compose file's directory name)
    #[arg(short = 'p', long = "project-name")]
    pub project: Option<String>,
    /// What to do
    #[command(subcommand)]
    pub cmd: ComposeCmd,
}

/// `berth compose` subcommands.
#[derive(Subcommand, Debug)]
pub enum ComposeCmd {
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks (and volumes with -v)
    Down(DownArgs),
    /// List containers
    Ps(ServicesArgs),
    /// View output from containers
    Logs(LogsArgs),
    /// Set the number of containers for services
    Scale(ScaleArgs),
    /// Build or rebuild services
    Build(ServicesArgs),
}

/// `compose up` flags.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Scale SERVICE to NUM instances (SERVICE=NUM)
    #[arg(long)]
    pub scale: Vec<String>,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Services (default: all)
    pub services: Vec<String>,
}

/// `compose down` flags.
#[derive(Args, Debug)]
pub struct DownArgs {
    /// Remove named volumes declared in the file and anonymous volumes
    #[arg(short = 'v', long)]
    pub volumes: bool,
}

/// Commands taking an optional list of services.
#[derive(Args, Debug)]
pub struct ServicesArgs {
    /// Services (default: all)
    pub services: Vec<String>,
}

/// `compose logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Services (default: all)
    pub services: Vec<String>,
}

/// `compose scale` arguments.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// SERVICE=NUM pairs
    #[arg(required = true)]
    pub pairs: Vec<String>,
}

impl From<ComposeFileError> for CliError {
    fn from(e: ComposeFileError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// `berth compose ...`.
pub async fn compose(c: &Client, a: ComposeArgs) -> CmdResult {
    let project = compose_file::load(a.file.as_deref(), a.project.as_deref())?;
    match a.cmd {
        ComposeCmd::Up(u) => {
            let scales = compose_file::parse_scales(&project, &u.scale)?;
            let order = compose_file::start_order(&project, &u.services)?;
            compose_up::up(c, &project, &order, &scales, u.build).await?;
            if u.detach {
                Ok(0)
            } else {
                print_logs(c, &project, &order, true).await
            }
        }
        ComposeCmd::Scale(s) => {
            let scales = compose_file::parse_scales(&project, &s.pairs)?;
            let wanted: Vec<String> = scales.keys().cloned().collect();
            let order = compose_file::start_order(&project, &wanted)?;
            let only: Vec<String> = order
                .into_iter()
                .filter(|s| scales.contains_key(s))
                .collect();
            compose_up::up(c, &project, &only, &scales, false).await?;
            Ok(0)
        }
        ComposeCmd::Down(d) => down(c, &project, d.volumes).await,
        ComposeCmd::Ps(s) => {
            compose_file::start_order(&project, &s.services)?;
            ps(c, &project, &s.services).await
        }
        ComposeCmd::Logs(l) => {
            compose_file::start_order(&project, &l.services)?;
            print_logs(c, &project, &l.services, l.follow).await
        }
        ComposeCmd::Build(b) => {
            for svc in compose_file::start_order(&project, &b.services)? {
                if project.file.services[&svc].build.is_some() {
                    compose_up::build_service(c, &project, &svc).await?;
                }
            }
            Ok(0)
        }
    }
}

/// The project's containers (of `service` if given), stopped ones included, sorted by
/// service then replica number.
pub async fn containers(
    c: &Client,
    project: &str,
    service: Option<&str>,
) -> Result<Vec<Value>, CliError> {
    let mut labels = vec![format!("{LABEL_PROJECT}={project}")];
    if let Some(s) = service {
        labels.push(format!("{LABEL_SERVICE}={s}"));
    }
    let filters = json!({ "label": labels }).to_string();
    let list = c
        .get(&format!(
            "/containers/json?{}",
            query(&[("all", "1".into()), ("filters", filters)])
        ))
        .await?;
    let mut out: Vec<Value> = list.as_array().cloned().unwrap_or_default();
    out.sort_by_key(|v| (label(v, LABEL_SERVICE), number(v)));
    Ok(out)
}

/// A label of a listed container ("" if absent).
pub fn label(v: &Value, key: &str) -> String {
    v["Labels"][key].as_str().unwrap_or("").to_owned()
}

/// A listed container's replica number (0 if unlabelled).
pub fn number(v: &Value) -> u32 {
    label(v, LABEL_NUMBER).parse().unwrap_or(0)
}

/// A listed container's name without the leading slash.
pub fn name(v: &Value) -> String {
    v["Names"][0]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned()
}

async fn ps(c: &Client, project: &Project, services: &[String]) -> CmdResult {
    let mut lines = vec!["NAME\tSERVICE\tSTATE\tSTATUS\tPORTS".to_owned()];
    for v in containers(c, &project.name, None).await? {
        let svc = label(&v, LABEL_SERVICE);
        if !services.is_empty() && !services.contains(&svc) {
            continue;
        }
        lines.push(format!(
            "{}\t{svc}\t{}\t{}\t{}",
            name(&v),
            v["State"].as_str().unwrap_or(""),
            v["Status"].as_str().unwrap_or(""),
            format_ports(&v["Ports"])
        ));
    }
    print!("{}", align(&lines));
    Ok(0)
}

async fn down(c: &Client, project: &Project, volumes: bool) -> CmdResult {
    let list = containers(c, &project.name, None).await?;
    for v in list.iter().rev() {
        let n = name(v);
        eprintln!("Removing {n}");
        c.delete(&format!("/containers/{n}?force=1&v={}", u8::from(volumes)))
            .await?;
    }
    let net = compose_up::network_name(&project.name);
    match c.delete(&format!("/networks/{net}")).await {
        Ok(_) => eprintln!("Removing network {net}"),
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    if volumes {
        for (vol, spec) in &project.file.volumes {
            if spec.as_ref().is_some_and(|s| s.external) {
                continue;
            }
            let name = compose_file::volume_name(project, vol);
            match c.delete(&format!("/volumes/{name}")).await {
                Ok(_) => eprintln!("Removing volume {name}"),
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(0)
}

/// Prints the logs of the project's containers (of `services` if not empty), each line
/// prefixed with `name | `; with `follow`, streams all of them concurrently until they end.
async fn print_logs(c: &Client, project: &Project, services: &[String], follow: bool) -> CmdResult {
    let list: Vec<Value> = containers(c, &project.name, None)
        .await?
        .into_iter()
        .filter(|v| services.is_empty() || services.contains(&label(v, LABEL_SERVICE)))
        .collect();
    let width = list.iter().map(|v| name(v).len()).max().unwrap_or(0);
    let mut tasks = Vec::new();
    for v in list {
        let n = name(&v);
        let prefix = format!("{n:width$} | ");
        let c = c.clone();
        let task = async move {
            let q = query(&[
                ("stdout", "1".into()),
                ("stderr", "1".into()),
                ("follow", follow.to_string()),
            ]);
            let resp = c
                .send(
                    "GET",
                    &format!("/containers/{n}/logs?{q}"),
                    &[],
                    None,
                    false,
                )
                .await?;
            let raw = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.contains("raw-stream"));
            prefixed_lines(stdio::body_reader(resp), &prefix, raw).await?;
            Ok::<(), CliError>(())
        };
        if follow {
            tasks.push(tokio::spawn(task));
        } else {
            task.await?;
        }
    }
    for t in tasks {
        match t.await {
            Ok(r) => r?,
            Err(e) => return Err(CliError::Usage(format!("log stream task failed: {e}"))),
        }
    }
    Ok(0)
}

/// Prints a log stream (multiplexed unless `raw`) line by line, each line after `prefix`.
async fn prefixed_lines<R: AsyncRead + Unpin>(
    mut r: R,
    prefix: &str,
    raw: bool,
) -> Result<(), CliError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut header = [0u8; 8];
    let io = |e| CliError::io("reading log stream")(e);
    loop {
        let chunk = if raw {
            let mut buf = vec![0u8; 8192];
            let n = r.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            buf
        } else {
            match r.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io(e)),
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let mut buf = vec![0u8; len];
            r.read_exact(&mut buf).await.map_err(io)?;
            buf
        };
        pending.extend_from_slice(&chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            print_line(prefix, &line)?;
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        print_line(prefix, &pending)?;
    }
    Ok(())
}

fn print_line(prefix: &str, line: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(prefix.as_bytes())
        .and_then(|_| out.write_all(line))
        .and_then(|_| out.flush())
        .map_err(CliError::io("writing stdout"))
}
