//! Container state commands: `stop`, `restart`, `kill`, `wait`, `rm`, `pause`, `unpause`,
//! `rename`, `top`, `port`, `diff`, `commit`.

use clap::Args;
use serde_json::Value;

use crate::client::{query, Client};
use crate::error::{for_each, CliError, CmdResult};
use crate::output::align;

/// `stop`/`restart` flags.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "timeout", visible_alias = "time")]
    pub timeout: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn stop_query(a: &StopArgs) -> String {
    let mut q = Vec::new();
    if let Some(t) = a.timeout {
        q.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        q.push(("signal", s.clone()));
    }
    query(&q)
}

/// `berth stop`.
pub async fn stop(c: &Client, a: StopArgs) -> CmdResult {
    let q = stop_query(&a);
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.post(&format!("/containers/{n}/stop?{q}"), None).await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// `berth restart`.
pub async fn restart(c: &Client, a: StopArgs) -> CmdResult {
    let q = stop_query(&a);
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.post(&format!("/containers/{n}/restart?{q}"), None)
                .await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// `kill` flags.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth kill`.
pub async fn kill(c: &Client, a: KillArgs) -> CmdResult {
    let q = query(&[("signal", a.signal.clone())]);
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.post(&format!("/containers/{n}/kill?{q}"), None).await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// Arguments of commands taking only container names.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth wait`: prints each container's exit code.
pub async fn wait(c: &Client, a: NamesArgs) -> CmdResult {
    for_each(&a.containers, |n| async move {
        let v = c.post(&format!("/containers/{n}/wait"), None).await?;
        println!("{}", v["StatusCode"].as_i64().unwrap_or(0));
        Ok(())
    })
    .await
}

/// `rm` flags.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth rm`.
pub async fn rm(c: &Client, a: RmArgs) -> CmdResult {
    let q = query(&[
        ("force", a.force.to_string()),
        ("v", a.volumes.to_string()),
        ("link", a.link.to_string()),
    ]);
    for_each(&a.containers, |n| {
        let q = q.clone();
        async move {
            c.delete(&format!("/containers/{n}?{q}")).await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// `berth pause`.
pub async fn pause(c: &Client, a: NamesArgs) -> CmdResult {
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/pause"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

/// `berth unpause`.
pub async fn unpause(c: &Client, a: NamesArgs) -> CmdResult {
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/unpause"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

/// `rename` arguments.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// Container
    pub container: String,
    /// New name
    pub new_name: String,
}

/// `berth rename`.
pub async fn rename(c: &Client, a: RenameArgs) -> CmdResult {
    c.post(
        &format!(
            "/containers/{}/rename?{}",
            a.container,
            query(&[("name", a.new_name)])
        ),
        None,
    )
    .await?;
    Ok(0)
}

/// `top` arguments.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Container
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// Renders a `/top` answer as an aligned table.
pub fn top_table(v: &Value) -> String {
    let strs = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| a.iter().map(crate::template::go_string).collect())
            .unwrap_or_default()
    };
    let mut lines = vec![strs(&v["Titles"]).join("\t")];
    for p in v["Processes"].as_array().into_iter().flatten() {
        lines.push(strs(p).join("\t"));
    }
    align(&lines)
}

/// `berth top`.
pub async fn top(c: &Client, a: TopArgs) -> CmdResult {
    let mut path = format!("/containers/{}/top", a.container);
    if !a.ps_args.is_empty() {
        path = format!("{path}?{}", query(&[("ps_args", a.ps_args.join(" "))]));
    }
    let v = c.get(&path).await?;
    print!("{}", top_table(&v));
    Ok(0)
}

/// `port` arguments.
#[derive(Args, Debug)]
pub struct PortArgs {
    /// Container
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// Lines of `berth port` output for a container's `NetworkSettings.Ports`.
pub fn port_lines(ports: &Value, want: Option<&str>) -> Vec<String> {
    let want = want.map(|p| {
        if p.contains('/') {
            p.to_owned()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut keys: Vec<(&String, &Value)> = ports
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    keys.sort_by_key(|(k, _)| {
        let (n, p) = k.split_once('/').unwrap_or((k, ""));
        (n.parse::<u32>().unwrap_or(0), p.to_owned())
    });
    let mut out = Vec::new();
    for (k, binds) in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in binds.as_array().into_iter().flatten() {
            let ip = b["HostIp"].as_str().unwrap_or("");
            let port = b["HostPort"].as_str().unwrap_or("");
            let host = if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            };
            if want.is_some() {
                out.push(host);
            } else {
                out.push(format!("{k} -> {host}"));
            }
        }
    }
    out
}

/// `berth port`.
pub async fn port(c: &Client, a: PortArgs) -> CmdResult {
    let info = c.get(&format!("/containers/{}/json", a.container)).await?;
    let lines = port_lines(&info["NetworkSettings"]["Ports"], a.port.as_deref());
    if lines.is_empty() {
        if let Some(p) = a.port {
            return Err(CliError::Stream(format!(
                "Error: No public port '{p}' published for {}",
                a.container
            )));
        }
    }
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}

/// `diff` arguments.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Container
    pub container: String,
}

/// `berth diff`: `C`/`A`/`D` lines for kinds 0/1/2.
pub async fn diff(c: &Client, a: DiffArgs) -> CmdResult {
    let v = c
        .get(&format!("/containers/{}/changes", a.container))
        .await?;
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_i64() {
            Some(1) => "A",
            Some(2) => "D",
            _ => "C",
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// `commit` flags.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long)]
    pub change: Vec<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    /// Container
    pub container: String,
    /// REPOSITORY[:TAG]
    pub repository: Option<String>,
}

/// `berth commit`: prints the new image ID.
pub async fn commit(c: &Client, a: CommitArgs) -> CmdResult {
    let mut q = vec![
        ("container", a.container.clone()),
        ("pause", a.pause.to_string()),
    ];
    if let Some(r) = &a.repository {
        let (repo, tag, _) = crate::cmd::image::split_ref(r);
        q.push(("repo", repo));
        q.push(("tag", tag));
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let v = c
        .post(
            &format!("/commit?{}", query(&q)),
            Some(&serde_json::json!({})),
        )
        .await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_output() {
        let p = json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}], "53/udp": null});
        assert_eq!(
            port_lines(&p, None),
            vec!["80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080"]
        );
        assert_eq!(
            port_lines(&p, Some("80")),
            vec!["0.0.0.0:8080", "[::]:8080"]
        );
    }

    #[test]
    fn top_output() {
        let v = json!({"Titles": ["UID", "PID", "CMD"], "Processes": [["root", "1", "sleep 100"]]});
        assert_eq!(
            top_table(&v),
            "UID       PID       CMD\nroot      1         sleep 100\n"
        );
    }
}
