//! `volume create/ls/inspect/rm/prune`, and the shared prune flags.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{query, Client};
use crate::cmd::inspect::{inspect_kind, InspectArgs};
use crate::cmd::system::print_deleted;
use crate::error::{for_each, CmdResult};
use crate::output::{self, human_size};
use crate::parse::{filters_json, kv_map};

/// `volume` subcommands.
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

/// `volume create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Volume name
    pub name: Option<String>,
}

/// `volume ls` flags.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
}

/// `volume rm` flags.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Volumes
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

/// Prune flags shared by `volume`, `network` and `container prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `POST /{kind}/prune` printing docker's summary (`kind` is `containers` or `volumes`).
pub async fn prune_kind(c: &Client, a: PruneArgs, kind: &str) -> CmdResult {
    let warning = match (kind, a.all) {
        ("volumes", true) => {
            "WARNING! This will remove all local volumes not used by at least one container."
        }
        ("volumes", false) => {
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        }
        ("networks", _) => {
            "WARNING! This will remove all custom networks not used by at least one container."
        }
        _ => "WARNING! This will remove all stopped containers.",
    };
    if !a.force && !output::confirm(warning) {
        return Ok(0);
    }
    if kind == "networks" {
        let q = query(&[("filters", filters_json(&a.filter))]);
        let r = c.post(&format!("/networks/prune?{q}"), None).await?;
        print_deleted("Deleted Networks:", &r["NetworksDeleted"]);
        return Ok(0);
    }
    let mut f = a.filter.clone();
    if a.all && kind == "volumes" {
        f.push("all=true".into());
    }
    let r = c
        .post(
            &format!("/{kind}/prune?{}", query(&[("filters", filters_json(&f))])),
            None,
        )
        .await?;
    let (title, key) = if kind == "volumes" {
        ("Deleted Volumes:", "VolumesDeleted")
    } else {
        ("Deleted Containers:", "ContainersDeleted")
    };
    print_deleted(title, &r[key]);
    println!(
        "Total reclaimed space: {}",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

/// Dispatches `berth volume ...`.
pub async fn volume(c: &Client, cmd: VolumeCmd) -> CmdResult {
    match cmd {
        VolumeCmd::Create(a) => {
            let body = json!({"Name": a.name.unwrap_or_default(), "Driver": a.driver, "DriverOpts": kv_map(&a.opt), "Labels": kv_map(&a.label)});
            let r = c.post("/volumes/create", Some(&body)).await?;
            println!("{}", r["Name"].as_str().unwrap_or(""));
            Ok(0)
        }
        VolumeCmd::Ls(a) => {
            let mut q = Vec::new();
            if !a.filter.is_empty() {
                q.push(("filters", filters_json(&a.filter)));
            }
            let r = c.get(&format!("/volumes?{}", query(&q))).await?;
            let mut vols = r["Volumes"].as_array().cloned().unwrap_or_default();
            vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
            if a.quiet {
                for v in &vols {
                    println!("{}", v["Name"].as_str().unwrap_or(""));
                }
                return Ok(0);
            }
            let rows: Vec<Value> = vols
                .iter()
                .map(|v| json!({"Name": v["Name"], "Driver": v["Driver"], "Scope": v["Scope"], "Mountpoint": v["Mountpoint"], "CreatedAt": v["CreatedAt"], "Labels": v["Labels"]}))
                .collect();
            let fmt = a
                .format
                .unwrap_or_else(|| "table {{.Driver}}\t{{.Name}}".into());
            let header = |f: &str| {
                if f == "Name" {
                    "VOLUME NAME".to_owned()
                } else {
                    output::default_header(f)
                }
            };
            print!("{}", output::render_rows(&fmt, &rows, &header)?);
            Ok(0)
        }
        VolumeCmd::Inspect(a) => inspect_kind(c, a, Some("volume")).await,
        VolumeCmd::Rm(a) => {
            let force = a.force;
            for_each(&a.volumes, |v| async move {
                c.delete(&format!(
                    "/volumes/{v}?{}",
                    query(&[("force", force.to_string())])
                ))
                .await?;
                println!("{v}");
                Ok(())
            })
            .await
        }
        VolumeCmd::Prune(a) => prune_kind(c, a, "volumes").await,
    }
}
