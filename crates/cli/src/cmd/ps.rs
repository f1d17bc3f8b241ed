//! `ps`: the container list with docker's columns, filters and formats.

use clap::Args;
use serde_json::{json, Value};

use crate::client::{query, Client};
use crate::error::CmdResult;
use crate::output::{self, ago, created_at, ellipsis, human_size, short_id};
use crate::parse::filters_json;
use crate::template::go_string;

/// `ps` flags.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
}

/// Docker's port summary: `0.0.0.0:8080->80/tcp, 443/tcp`.
pub fn format_ports(ports: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in ports.as_array().into_iter().flatten() {
        let private = p["PrivatePort"].as_i64().unwrap_or(0);
        let kind = p["Type"].as_str().unwrap_or("tcp");
        let s = match p["PublicPort"].as_i64() {
            Some(public) if public > 0 => {
                let ip = p["IP"].as_str().unwrap_or("");
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                };
                format!("{ip}:{public}->{private}/{kind}")
            }
            _ => format!("{private}/{kind}"),
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(", ")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One display row (docker's container formatter context) per container.
pub fn container_row(c: &Value, trunc: bool) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_owned())
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let command = c["Command"].as_str().unwrap_or("");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_owned()
    };
    let image = c["Image"].as_str().unwrap_or("");
    let image = if trunc && image.starts_with("sha256:") {
        short_id(image)
    } else {
        image.to_owned()
    };
    let created = c["Created"].as_i64().unwrap_or(0);
    let mut labels: Vec<String> = c["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", go_string(v)))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let n = m["Name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(m["Source"].as_str())
                .unwrap_or("");
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_owned()
            }
        })
        .collect();
    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let size = match c.get("SizeRw") {
        Some(rw) if !rw.is_null() => format!(
            "{} (virtual {})",
            human_size(rw.as_f64().unwrap_or(0.0)),
            human_size(c["SizeRootFs"].as_f64().unwrap_or(0.0))
        ),
        _ => "0B".to_owned(),
    };
    json!({
        "ID": if trunc { short_id(id) } else { id.to_owned() },
        "Image": image,
        "Command": go_quote(&command),
        "CreatedAt": created_at(created),
        "RunningFor": ago(created),
        "Ports": format_ports(&c["Ports"]),
        "State": c["State"].as_str().unwrap_or(""),
        "Status": c["Status"].as_str().unwrap_or(""),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": c["Mounts"].as_array().map(|m| m.iter().filter(|x| x["Type"] == "volume").count()).unwrap_or(0).to_string(),
    })
}

/// Column header for a container field.
pub fn ps_header(f: &str) -> String {
    match f {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        other => output::default_header(other),
    }
}

/// `berth ps`.
pub async fn ps(c: &Client, a: PsArgs) -> CmdResult {
    let mut q = vec![("all", a.all.to_string()), ("size", a.size.to_string())];
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        q.push(("limit", limit.to_string()));
    }
    if !a.filter.is_empty() {
        q.push(("filters", filters_json(&a.filter)));
    }
    let list = c.get(&format!("/containers/json?{}", query(&q))).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for it in &items {
            let id = it["Id"].as_str().unwrap_or("");
            println!(
                "{}",
                if a.no_trunc {
                    id.to_owned()
                } else {
                    short_id(id)
                }
            );
        }
        return Ok(0);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|i| container_row(i, !a.no_trunc))
        .collect();
    let fmt = a.format.unwrap_or_else(|| {
        let mut f = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_owned();
        if a.size {
            f.push_str("\t{{.Size}}");
        }
        f
    });
    let fmt = if fmt == "json" {
        "{{json .}}".to_owned()
    } else {
        fmt
    };
    print!("{}", output::render_rows(&fmt, &rows, &ps_header)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_fields() {
        let c = json!({
            "Id": "0123456789abcdef0123", "Names": ["/web", "/other/link"], "Image": "busybox",
            "Command": "sh -c 'sleep 1000; echo done'", "Created": 0, "State": "running",
            "Status": "Up 2 minutes", "Labels": {"b": "2", "a": "1"},
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}, {"PrivatePort": 443, "Type": "tcp"}],
            "NetworkSettings": {"Networks": {"bridge": {}}}
        });
        let r = container_row(&c, true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Command"], "\"sh -c 'sleep 1000; …\"");
        assert_eq!(r["Ports"], "0.0.0.0:8080->80/tcp, 443/tcp");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Networks"], "bridge");
        let full = container_row(&c, false);
        assert_eq!(full["Names"], "web,other/link");
        assert_eq!(full["Command"], "\"sh -c 'sleep 1000; echo done'\"");
    }

    #[test]
    fn default_table() {
        let r = vec![
            json!({"ID": "abc", "Image": "busybox", "Command": "\"sh\"", "RunningFor": "1 second ago", "Status": "Up 1 second", "Ports": "", "Names": "x"}),
        ];
        let out = output::render_rows(
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            &r,
            &ps_header,
        )
        .unwrap();
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap(),
            "CONTAINER ID   IMAGE     COMMAND   CREATED        STATUS        PORTS     NAMES"
        );
        assert_eq!(
            lines.next().unwrap(),
            "abc            busybox   \"sh\"      1 second ago   Up 1 second             x"
        );
    }
}
