//! `docker top`: the container's pids come from its shim (the cgroup's members); the host's
//! `ps` formats them, and only the rows of those pids are kept, as Docker does.

use berth_runtime::ShimClient;
use serde::Serialize;

use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::Engine;

/// The answer of `GET /containers/{id}/top`, in Docker's shape.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TopResult {
    /// Column headers of `ps`.
    pub titles: Vec<String>,
    /// One row per process of the container.
    pub processes: Vec<Vec<String>>,
}

impl Engine {
    /// Lists the processes of a running container with `ps ps_args` (default `-ef`).
    /// 409 when the container is not running; 500 when `ps` fails or prints no PID column.
    pub async fn top_container(&self, name: &str, ps_args: &str) -> Result<TopResult> {
        let c = self.find_container(name)?;
        if !c.state.running || c.state.restarting {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let client = ShimClient::connect(&self.state_dir(&c.id)).await.kind_ctx(
            ErrorKind::Conflict,
            format!("container {} is not running", c.id),
        )?;
        let pids = client.pids().await.ctx(format!("pids of {}", c.name))?;
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .ctx(format!("run ps {}", args.join(" ")))?;
        if !out.status.success() {
            return Err(EngineError::internal(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// Keeps the rows of `ps` output whose PID column is one of `pids`. The last column may
/// hold spaces (the command line), so each row is split into at most as many fields as
/// there are titles.
pub fn parse_ps(output: &str, pids: &[u32]) -> Result<TopResult> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::internal("couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line, titles.len());
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pids.contains(&pid) {
            processes.push(fields);
        }
    }
    Ok(TopResult { titles, processes })
}

/// Splits on whitespace into at most `n` fields; the last keeps the rest of the line.
fn split_fields(line: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if out.len() + 1 == n {
            out.push(rest.trim_end().to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_container_pids_and_whole_command() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init splash\n\
                   root 42 1 0 10:01 ? 00:00:00 sleep 1000 --x\n";
        let r = parse_ps(out, &[42]).unwrap();
        assert_eq!(r.titles.len(), 8);
        assert_eq!(r.processes.len(), 1);
        assert_eq!(r.processes[0][1], "42");
        assert_eq!(r.processes[0][7], "sleep 1000 --x");
    }

    #[test]
    fn no_pid_column_is_an_error() {
        assert!(parse_ps("USER CMD\nroot x\n", &[1]).is_err());
    }
}
