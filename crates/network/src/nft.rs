//! nftables scripts, applied atomically with `nft -f -`.
//!
//! Layout of the table (family `ip`, name chosen by the caller):
//! * sets `bridges`, `internal` (ifname), `same` (ifname . ifname, one
//!   `"b" . "b"` pair per bridge), `masq` and `subnets` (ipv4 intervals);
//! * base chains `forward` (isolation), `prerouting`/`output` (jump to
//!   `publish` for local destinations), `postrouting` (masquerade);
//! * regular chain `publish`: one DNAT rule per published port, commented
//!   with its owner id and host port (see `publish_comment`) so
//!   [`crate::Networking::unpublish`] can find it.

use std::io;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ipam::Ipv4Net;

/// Errors of running `nft`.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started or talked to.
    #[error("running nft: {0}")]
    Spawn(#[source] io::Error),
    /// `nft` rejected the script.
    #[error("nft failed on table {table}: {stderr}")]
    Failed {
        /// The table the script was for.
        table: String,
        /// What nft printed.
        stderr: String,
    },
    /// `nft -j` printed something that is not the expected JSON.
    #[error("nft printed unexpected json for table {table}: {detail}")]
    Json {
        /// The table listed.
        table: String,
        /// What was wrong.
        detail: String,
    },
}

/// Whether `s` may be used as a table name, owner comment or interface name
/// inside a script without quoting problems.
pub(crate) fn is_safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Applies `script` as one transaction.
pub(crate) async fn run(table: &str, script: &str) -> Result<(), NftError> {
    let out = nft(&["-f", "-"], Some(script)).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NftError::Spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(NftError::Spawn)?;
        drop(pipe);
    }
    child.wait_with_output().await.map_err(NftError::Spawn)
}

/// Runs `nft -j -a list OBJECT...` and returns the `nftables` array, or `None`
/// if the object does not exist.
pub(crate) async fn list(
    table: &str,
    object: &[&str],
) -> Result<Option<Vec<serde_json::Value>>, NftError> {
    let mut args = vec!["-j", "-a", "list"];
    args.extend_from_slice(object);
    let out = nft(&args, None).await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Failed {
            table: table.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    let json_err = |detail: String| NftError::Json {
        table: table.to_string(),
        detail,
    };
    let mut v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| json_err(e.to_string()))?;
    match v.get_mut("nftables").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(items)) => Ok(Some(items)),
        _ => Err(json_err("no nftables array".into())),
    }
}

/// The idempotent script that (re)creates the table skeleton and its fixed
/// rules, keeping set elements and `publish` rules.
pub(crate) fn base_script(t: &str) -> String {
    format!(
        "add table ip {t}
add set ip {t} bridges {{ type ifname; }}
add set ip {t} internal {{ type ifname; }}
add set ip {t} same {{ type ifname . ifname; }}
add set ip {t} masq {{ type ipv4_addr; flags interval; }}
add set ip {t} subnets {{ type ipv4_addr; flags interval; }}
add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain ip {t} publish
flush chain ip {t} forward
flush chain ip {t} prerouting
flush chain ip {t} output
flush chain ip {t} postrouting
add rule ip {t} forward iifname . oifname @same accept
add rule ip {t} forward iifname @internal drop
add rule ip {t} forward oifname @internal drop
add rule ip {t} forward ct status dnat oifname @bridges accept
add rule ip {t} forward iifname @bridges oifname @bridges drop
add rule ip {t} forward oifname @bridges ct state established,related accept
add rule ip {t} forward oifname @bridges drop
add rule ip {t} prerouting fib daddr type local jump publish
add rule ip {t} output fib daddr type local jump publish
add rule ip {t} postrouting ip saddr @masq oifname != @bridges masquerade
add rule ip {t} postrouting ct status dnat ip saddr @subnets oifname @bridges masquerade
add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname @bridges masquerade
"
    )
}

/// Elements that register one network.
pub(crate) fn network_add(
    t: &str,
    bridge: &str,
    subnet: &Ipv4Net,
    internal: bool,
    masquerade: bool,
) -> String {
    let s = subnet.trunc();
    let mut out = format!(
        "add element ip {t} bridges {{ \"{bridge}\" }}
add element ip {t} same {{ \"{bridge}\" . \"{bridge}\" }}
add element ip {t} subnets {{ {s} }}
"
    );
    if internal {
        out += &format!("add element ip {t} internal {{ \"{bridge}\" }}\n");
    } else if masquerade {
        out += &format!("add element ip {t} masq {{ {s} }}\n");
    }
    out
}

/// Removes one network's elements; succeeds whether or not they exist (each
/// element is added, then deleted, in the same transaction).
pub(crate) fn network_del(t: &str, bridge: &str, subnet: &Ipv4Net) -> String {
    let s = subnet.trunc();
    let mut out = String::new();
    for (set, elem) in [
        ("bridges", format!("\"{bridge}\"")),
        ("internal", format!("\"{bridge}\"")),
        ("same", format!("\"{bridge}\" . \"{bridge}\"")),
        ("subnets", s.to_string()),
        ("masq", s.to_string()),
    ] {
        out += &format!(
            "add element ip {t} {set} {{ {elem} }}\ndelete element ip {t} {set} {{ {elem} }}\n"
        );
    }
    out
}

/// The elements of a set (strings for ifname sets).
pub(crate) async fn set_elements(t: &str, set: &str) -> Result<Vec<serde_json::Value>, NftError> {
    let Some(items) = list(t, &["set", "ip", t, set]).await? else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .filter_map(|i| i.get("set")?.get("elem")?.as_array().cloned())
        .flatten()
        .collect())
}

/// The comment that tags a `publish` rule: the owner, then the host side of
/// the mapping, so a re-publish of the same port can replace its old rule.
pub(crate) fn publish_comment(
    owner: &str,
    proto: &str,
    host_ip: Option<std::net::Ipv4Addr>,
    port: u16,
) -> String {
    match host_ip {
        Some(ip) => format!("{owner} {proto} {ip} {port}"),
        None => format!("{owner} {proto} * {port}"),
    }
}

/// Handles and comments of the `publish` rules whose comment satisfies `pred`.
pub(crate) async fn publish_rules(
    t: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<Vec<(u64, String)>, NftError> {
    let Some(items) = list(t, &["chain", "ip", t, "publish"]).await? else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter_map(|r| {
            let comment = r.get("comment")?.as_str()?;
            pred(comment).then_some((r.get("handle")?.as_u64()?, comment.to_string()))
        })
        .collect())
}

/// The UDP host port named by a comment made by [`publish_comment`].
pub(crate) fn udp_port_of(comment: &str) -> Option<u16> {
    let mut words = comment.rsplit(' ');
    let port = words.next()?.parse().ok()?;
    let _ip = words.next()?;
    (words.next()? == "udp").then_some(port)
}

/// Deletes the whole table; a missing table is not an error.
pub(crate) fn table_del(t: &str) -> String {
    format!("add table ip {t}\ndelete table ip {t}\n")
}
