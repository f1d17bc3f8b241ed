//! `version`, `info`, `system df`, `system prune`, `events`, `login`, `logout`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{self, query, Client};
use crate::error::{CliError, CmdResult};
use crate::output::{self, human_size};
use crate::parse::filters_json;
use crate::template::{go_string, Template};

/// `version` flags.
#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).map(go_string).unwrap_or_default()
}

fn client_version() -> Value {
    json!({
        "Platform": {"Name": "Berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": client::API_PREFIX.trim_start_matches("/v"),
        "DefaultAPIVersion": client::API_PREFIX.trim_start_matches("/v"),
        "Os": std::env::consts::OS,
        "Arch": std::env::consts::ARCH,
        "Context": "default",
    })
}

/// `berth version`.
pub async fn version(c: &Client, a: VersionArgs) -> CmdResult {
    let cli = client_version();
    let server = c.get("/version").await;
    if let Some(f) = a.format {
        let data = json!({"Client": cli, "Server": server.as_ref().ok()});
        println!("{}", Template::parse(&f)?.render(&data)?);
        return server.map(|_| 0).map_err(CliError::from);
    }
    println!("Client:");
    println!(" Version:           {}", s(&cli, "Version"));
    println!(" API version:       {}", s(&cli, "ApiVersion"));
    println!(" OS/Arch:           {}/{}", s(&cli, "Os"), s(&cli, "Arch"));
    println!(" Context:           default");
    let sv = server?;
    println!();
    let platform = sv["Platform"]["Name"].as_str().unwrap_or("");
    println!("{}", format!("Server: {platform}").trim_end());
    println!(" Engine:");
    println!("  Version:          {}", s(&sv, "Version"));
    println!(
        "  API version:      {} (minimum version {})",
        s(&sv, "ApiVersion"),
        s(&sv, "MinAPIVersion")
    );
    println!("  Git commit:       {}", s(&sv, "GitCommit"));
    println!("  Built:            {}", s(&sv, "BuildTime"));
    println!("  OS/Arch:          {}/{}", s(&sv, "Os"), s(&sv, "Arch"));
    println!(
        "  Experimental:     {}",
        sv["Experimental"].as_bool().unwrap_or(false)
    );
    if let Some(comps) = sv["Components"].as_array() {
        for comp in comps {
            let name = s(comp, "Name");
            if name == "Engine" {
                continue;
            }
            println!(" {name}:");
            println!("  Version:          {}", s(comp, "Version"));
            if let Some(commit) = comp["Details"]["GitCommit"].as_str() {
                println!("  GitCommit:        {commit}");
            }
        }
    }
    Ok(0)
}

/// `info` flags.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `berth info`.
pub async fn info(c: &Client, a: InfoArgs) -> CmdResult {
    let info = c.get("/info").await?;
    if let Some(f) = a.format {
        println!("{}", Template::parse(&f)?.render(&info)?);
        return Ok(0);
    }
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Context:    default");
    println!(" Debug Mode: false");
    println!();
    println!("Server:");
    println!(" Containers: {}", s(&info, "Containers"));
    println!("  Running: {}", s(&info, "ContainersRunning"));
    println!("  Paused: {}", s(&info, "ContainersPaused"));
    println!("  Stopped: {}", s(&info, "ContainersStopped"));
    println!(" Images: {}", s(&info, "Images"));
    let lines = [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
    ];
    for (label, key) in lines {
        println!(" {label}: {}", s(&info, key));
    }
    if let Some(rt) = info["Runtimes"].as_object() {
        let names: Vec<&str> = rt.keys().map(String::as_str).collect();
        println!(" Runtimes: {}", names.join(" "));
    }
    let rest = [
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ];
    for (label, key) in rest {
        println!(" {label}: {}", s(&info, key));
    }
    let mem = info["MemTotal"].as_f64().unwrap_or(0.0);
    println!(" Total Memory: {}", output::bytes_size(mem));
    println!(" Name: {}", s(&info, "Name"));
    println!(" ID: {}", s(&info, "ID"));
    println!(" Docker Root Dir: {}", s(&info, "DockerRootDir"));
    println!(" Debug Mode: {}", info["Debug"].as_bool().unwrap_or(false));
    println!(
        " Experimental: {}",
        info["ExperimentalBuild"].as_bool().unwrap_or(false)
    );
    if let Some(regs) = info["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .filter(|r| !r.is_empty())
    {
        println!(" Insecure Registries:");
        for r in regs {
            println!("  {}", go_string(r));
        }
    }
    println!(
        " Live Restore Enabled: {}",
        info["LiveRestoreEnabled"].as_bool().unwrap_or(false)
    );
    Ok(0)
}

/// `system` subcommands.
#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
    /// Display system-wide information
    Info(InfoArgs),
    /// Get real time events from the server
    Events(EventsArgs),
}

/// `system df` flags.
#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
}

/// `system prune` flags.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Provide filter values
    #[arg(long)]
    pub filter: Vec<String>,
}

/// Dispatches `berth system ...`.
pub async fn system(c: &Client, cmd: SystemCmd) -> CmdResult {
    match cmd {
        SystemCmd::Df(a) => df(c, a).await,
        SystemCmd::Prune(a) => prune(c, a).await,
        SystemCmd::Info(a) => info(c, a).await,
        SystemCmd::Events(a) => events(c, a).await,
    }
}

fn sum_size(items: &Value, key: &str) -> f64 {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i[key].as_f64().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .unwrap_or(0.0)
}

async fn df(c: &Client, a: DfArgs) -> CmdResult {
    let d = c.get("/system/df").await?;
    let empty = json!([]);
    let images = d.get("Images").unwrap_or(&empty);
    let containers = d.get("Containers").unwrap_or(&empty);
    let volumes = d.get("Volumes").unwrap_or(&empty);
    let cache = d
        .get("BuildCache")
        .filter(|v| v.is_array())
        .unwrap_or(&empty);
    let count = |v: &Value| v.as_array().map(Vec::len).unwrap_or(0);
    let active_images = images
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
                .count()
        })
        .unwrap_or(0);
    let running = containers
        .as_array()
        .map(|a| a.iter().filter(|i| i["State"] == "running").count())
        .unwrap_or(0);
    let active_vols = volumes
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
                .count()
        })
        .unwrap_or(0);
    let vol_size = volumes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .unwrap_or(0.0);
    let img_size = d["LayersSize"]
        .as_f64()
        .unwrap_or_else(|| sum_size(images, "Size"));
    let rows = vec![
        json!({"Type": "Images", "TotalCount": count(images), "Active": active_images, "Size": human_size(img_size), "Reclaimable": human_size(0.0)}),
        json!({"Type": "Containers", "TotalCount": count(containers), "Active": running, "Size": human_size(sum_size(containers, "SizeRw")), "Reclaimable": human_size(0.0)}),
        json!({"Type": "Local Volumes", "TotalCount": count(volumes), "Active": active_vols, "Size": human_size(vol_size), "Reclaimable": human_size(0.0)}),
        json!({"Type": "Build Cache", "TotalCount": count(cache), "Active": 0, "Size": human_size(sum_size(cache, "Size")), "Reclaimable": human_size(0.0)}),
    ];
    if a.verbose {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
        return Ok(0);
    }
    let fmt = a.format.unwrap_or_else(|| {
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into()
    });
    let header = |f: &str| match f {
        "TotalCount" => "TOTAL".to_owned(),
        other => output::default_header(other),
    };
    print!("{}", output::render_rows(&fmt, &rows, &header)?);
    Ok(0)
}

async fn prune(c: &Client, a: PruneArgs) -> CmdResult {
    let mut warning = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
    );
    if a.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warning.push_str(if a.all {
        "  - all images without at least one container associated to them\n  - all build cache\n"
    } else {
        "  - all dangling images\n  - unused build cache\n"
    });
    if !a.force && !output::confirm(&warning) {
        return Ok(0);
    }
    let filters = filters_json(&a.filter);
    let mut reclaimed = 0.0;
    let r = c
        .post(
            &format!(
                "/containers/prune?{}",
                query(&[("filters", filters.clone())])
            ),
            None,
        )
        .await?;
    print_deleted("Deleted Containers:", &r["ContainersDeleted"]);
    reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    let r = c
        .post(
            &format!("/networks/prune?{}", query(&[("filters", filters.clone())])),
            None,
        )
        .await?;
    print_deleted("Deleted Networks:", &r["NetworksDeleted"]);
    if a.volumes {
        let r = c
            .post(
                &format!("/volumes/prune?{}", query(&[("filters", filters.clone())])),
                None,
            )
            .await?;
        print_deleted("Deleted Volumes:", &r["VolumesDeleted"]);
        reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    }
    let mut f = a.filter.clone();
    f.push(format!("dangling={}", !a.all));
    let r = c
        .post(
            &format!("/images/prune?{}", query(&[("filters", filters_json(&f))])),
            None,
        )
        .await?;
    crate::cmd::image::print_image_deleted(&r["ImagesDeleted"]);
    reclaimed += r["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// Prints a "Deleted X:" block for a non-empty list.
pub fn print_deleted(title: &str, list: &Value) {
    if let Some(items) = list.as_array().filter(|a| !a.is_empty()) {
        println!("{title}");
        for i in items {
            println!("{}", go_string(i));
        }
        println!();
    }
}

/// `events` flags.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
}

/// Formats one event like docker's default events output.
pub fn format_event(e: &Value) -> String {
    let nanos = e["timeNano"]
        .as_i64()
        .unwrap_or_else(|| e["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
        .unwrap_or_default();
    let kind = e["Type"].as_str().unwrap_or("");
    let action = e["Action"].as_str().unwrap_or("");
    let id = e["Actor"]["ID"].as_str().unwrap_or("");
    let mut attrs: Vec<(String, String)> = e["Actor"]["Attributes"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), go_string(v))).collect())
        .unwrap_or_default();
    attrs.sort();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if attrs.is_empty() {
        format!("{t} {kind} {action} {id}")
    } else {
        format!("{t} {kind} {action} {id} ({})", attrs.join(", "))
    }
}

/// `berth events`.
pub async fn events(c: &Client, a: EventsArgs) -> CmdResult {
    let mut q = Vec::new();
    let now = chrono::Utc::now().timestamp();
    if let Some(s) = a.since {
        q.push(("since", crate::cmd::logs::time_arg(&s, now)));
    }
    if let Some(u) = a.until {
        q.push(("until", crate::cmd::logs::time_arg(&u, now)));
    }
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)));
    }
    let path = format!("/events?{}", query(&q));
    let tpl = a.format.as_deref().map(Template::parse).transpose()?;
    let resp = c.send("GET", &path, &[], None, false).await?;
    client::for_each_json(&path, resp, |e| {
        match &tpl {
            Some(t) => match t.render(&e) {
                Ok(s) => println!("{s}"),
                Err(err) => eprintln!("Error: {err}"),
            },
            None => println!("{}", format_event(&e)),
        }
        Ok(())
    })
    .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_line() {
        let e = json!({"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "x", "image": "busybox"}}, "timeNano": 1_700_000_000_000_000_001i64});
        assert_eq!(
            format_event(&e),
            "2023-11-14T22:13:20.000000001Z container start abc (image=busybox, name=x)"
        );
    }
}
