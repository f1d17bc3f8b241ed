//! `stats`: resource usage per container, computed from the daemon's stats JSON.

use clap::Args;
use serde_json::{json, Value};

use crate::client::{query, Client};
use crate::error::CmdResult;
use crate::output::{self, bytes_size, human_size, short_id};

/// `stats` flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Containers
    pub containers: Vec<String>,
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One display row (docker's stats context) from a stats sample.
pub fn stats_row(s: &Value, name: &str, id: &str) -> Value {
    let cpu_delta = f(&s["cpu_stats"]["cpu_usage"]["total_usage"])
        - f(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
    let sys_delta =
        f(&s["cpu_stats"]["system_cpu_usage"]) - f(&s["precpu_stats"]["system_cpu_usage"]);
    let cpus = s["cpu_stats"]["online_cpus"]
        .as_f64()
        .or_else(|| {
            s["cpu_stats"]["cpu_usage"]["percpu_usage"]
                .as_array()
                .map(|a| a.len() as f64)
        })
        .unwrap_or(1.0);
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let mem_stats = &s["memory_stats"]["stats"];
    let cache = mem_stats
        .get("total_inactive_file")
        .or_else(|| mem_stats.get("inactive_file"))
        .map(f)
        .unwrap_or(0.0);
    let usage = (f(&s["memory_stats"]["usage"]) - cache).max(0.0);
    let limit = f(&s["memory_stats"]["limit"]);
    let mem_pct = if limit > 0.0 {
        usage / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += f(&n["rx_bytes"]);
        tx += f(&n["tx_bytes"]);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_lowercase).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    json!({
        "Container": id,
        "ID": id,
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(usage), bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

fn header(f: &str) -> String {
    match f {
        "ID" | "Container" => "CONTAINER ID".into(),
        "CPUPerc" => "CPU %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        "PIDs" => "PIDS".into(),
        other => output::default_header(other),
    }
}

async fn sample(c: &Client, a: &StatsArgs) -> Result<String, crate::error::CliError> {
    let targets: Vec<(String, String)> = if a.containers.is_empty() {
        let list = c
            .get(&format!(
                "/containers/json?{}",
                query(&[("all", a.all.to_string())])
            ))
            .await?;
        list.as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let name = x["Names"][0]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_owned();
                (x["Id"].as_str().unwrap_or("").to_owned(), name)
            })
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| (n.clone(), n.clone()))
            .collect()
    };
    let mut rows = Vec::new();
    for (id, name) in targets {
        let s = c
            .get(&format!("/containers/{id}/stats?stream=false"))
            .await?;
        let name = s["name"]
            .as_str()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or(name);
        let full = s["id"].as_str().unwrap_or(&id).to_owned();
        let shown = if a.no_trunc { full } else { short_id(&full) };
        rows.push(stats_row(&s, &name, &shown));
    }
    let fmt = a.format.clone().unwrap_or_else(|| {
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}".into()
    });
    Ok(output::render_rows(&fmt, &rows, &header)?)
}

/// `berth stats`: one sample with `--no-stream`, else a screen refreshed every second.
pub async fn stats(c: &Client, a: StatsArgs) -> CmdResult {
    if a.no_stream {
        print!("{}", sample(c, &a).await?);
        return Ok(0);
    }
    loop {
        let text = sample(c, &a).await?;
        print!("\x1b[2J\x1b[H{text}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_cpu_and_memory() {
        let s = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 200}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2097152, "limit": 4194304, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 0}},
            "pids_stats": {"current": 3}
        });
        let r = stats_row(&s, "web", "abc");
        assert_eq!(r["CPUPerc"], "20.00%");
        assert_eq!(r["MemUsage"], "1MiB / 4MiB");
        assert_eq!(r["MemPerc"], "25.00%");
        assert_eq!(r["NetIO"], "1.5kB / 0B");
        assert_eq!(r["PIDs"], "3");
    }
}
