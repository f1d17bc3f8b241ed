//! `network create/ls/inspect/rm/prune/connect/disconnect`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{query, Client};
use crate::cmd::inspect::{inspect_kind, InspectArgs};
use crate::error::{for_each, CmdResult};
use crate::output::{self, short_id};
use crate::parse::{filters_json, kv_map};

/// `network` subcommands.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(crate::cmd::volume::PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

/// `network create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Network name
    pub name: String,
}

/// The `POST /networks/create` body for the flags.
pub fn create_body(a: &CreateArgs) -> Value {
    let config: Vec<Value> = a
        .subnet
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut c = json!({"Subnet": s});
            if let Some(g) = a.gateway.get(i) {
                c["Gateway"] = json!(g);
            }
            if let Some(r) = a.ip_range.get(i) {
                c["IPRange"] = json!(r);
            }
            c
        })
        .collect();
    json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "Labels": kv_map(&a.label),
        "Options": kv_map(&a.opt),
        "IPAM": {"Driver": "default", "Config": config, "Options": {}},
    })
}

/// `network ls` flags.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

/// `network rm` arguments.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Networks
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// `network connect` flags.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    /// Network
    pub network: String,
    /// Container
    pub container: String,
}

/// `network disconnect` flags.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Network
    pub network: String,
    /// Container
    pub container: String,
}

/// Dispatches `berth network ...`.
pub async fn network(c: &Client, cmd: NetworkCmd) -> CmdResult {
    match cmd {
        NetworkCmd::Create(a) => {
            let r = c.post("/networks/create", Some(&create_body(&a))).await?;
            println!("{}", r["Id"].as_str().unwrap_or(""));
            Ok(0)
        }
        NetworkCmd::Ls(a) => ls(c, a).await,
        NetworkCmd::Inspect(a) => inspect_kind(c, a, Some("network")).await,
        NetworkCmd::Rm(a) => {
            let force = a.force;
            for_each(&a.networks, |n| async move {
                match c.delete(&format!("/networks/{n}")).await {
                    Err(e) if force && e.status() == Some(404) => Ok(()),
                    Err(e) => Err(e.into()),
                    Ok(_) => {
                        println!("{n}");
                        Ok(())
                    }
                }
            })
            .await
        }
        NetworkCmd::Prune(a) => crate::cmd::volume::prune_kind(c, a, "networks").await,
        NetworkCmd::Connect(a) => {
            let mut ep = json!({"Aliases": a.alias});
            if let Some(ip) = &a.ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            let body = json!({"Container": a.container, "EndpointConfig": ep});
            c.post(&format!("/networks/{}/connect", a.network), Some(&body))
                .await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            c.post(&format!("/networks/{}/disconnect", a.network), Some(&body))
                .await?;
            Ok(0)
        }
    }
}

async fn ls(c: &Client, a: LsArgs) -> CmdResult {
    let mut q = Vec::new();
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)));
    }
    let list = c.get(&format!("/networks?{}", query(&q))).await?;
    let mut items = list.as_array().cloned().unwrap_or_default();
    items.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let rows: Vec<Value> = items
        .iter()
        .map(|n| {
            let id = n["Id"].as_str().unwrap_or("");
            json!({
                "ID": if a.no_trunc { id.to_owned() } else { short_id(id) },
                "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                "CreatedAt": n["Created"],
                "Labels": n["Labels"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")).unwrap_or_default(),
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let fmt = a
        .format
        .unwrap_or_else(|| "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".into());
    let header = |f: &str| {
        if f == "ID" {
            "NETWORK ID".to_owned()
        } else {
            output::default_header(f)
        }
    };
    print!("{}", output::render_rows(&fmt, &rows, &header)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    #[test]
    fn create_flags() {
        let t = T::try_parse_from([
            "x",
            "--subnet",
            "10.5.0.0/24",
            "--gateway",
            "10.5.0.1",
            "--internal",
            "-o",
            "a=b",
            "n1",
        ])
        .unwrap();
        let b = create_body(&t.a);
        assert_eq!(b["Name"], "n1");
        assert_eq!(
            b["IPAM"]["Config"][0],
            json!({"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"})
        );
        assert_eq!(b["Internal"], true);
        assert_eq!(b["Options"]["a"], "b");
    }
}
