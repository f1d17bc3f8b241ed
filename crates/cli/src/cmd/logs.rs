//! `logs`: a container's log stream, raw or demultiplexed.

use clap::Args;

use crate::client::{query, Client};
use crate::error::CmdResult;
use crate::parse::parse_duration_ns;
use crate::stdio;

/// `logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub until: Option<String>,
    /// Container
    pub container: String,
}

/// Converts docker's `--since`/`--until` values (relative duration, RFC 3339, or unix
/// seconds) to the API's unix-seconds form.
pub fn time_arg(v: &str, now: i64) -> String {
    if let Ok(ns) = parse_duration_ns(v) {
        return (now - ns / 1_000_000_000).to_string();
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return t.and_utc().timestamp().to_string();
        }
    }
    v.to_owned()
}

/// `berth logs`.
pub async fn logs(c: &Client, a: LogsArgs) -> CmdResult {
    let info = c.get(&format!("/containers/{}/json", a.container)).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let now = chrono::Utc::now().timestamp();
    let mut q = vec![
        ("stdout", "1".to_owned()),
        ("stderr", "1".to_owned()),
        ("follow", a.follow.to_string()),
        ("tail", a.tail.clone()),
        ("timestamps", a.timestamps.to_string()),
        ("details", a.details.to_string()),
    ];
    if let Some(s) = &a.since {
        q.push(("since", time_arg(s, now)));
    }
    if let Some(u) = &a.until {
        q.push(("until", time_arg(u, now)));
    }
    let resp = c
        .send(
            "GET",
            &format!("/containers/{}/logs?{}", a.container, query(&q)),
            &[],
            None,
            false,
        )
        .await?;
    let raw = match resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.contains("multiplexed") => false,
        Some(ct) if ct.contains("raw-stream") => true,
        _ => tty,
    };
    let reader = stdio::body_reader(resp);
    if raw {
        stdio::copy_raw(reader).await?;
    } else {
        stdio::demux(reader).await?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_values() {
        assert_eq!(time_arg("10m", 1000), "400");
        assert_eq!(time_arg("2024-01-01T00:00:00Z", 0), "1704067200.000000000");
        assert_eq!(time_arg("1700000000", 0), "1700000000");
    }
}
