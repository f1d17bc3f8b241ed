//! `GET /containers/json` and `GET /containers/{id}/json` in Docker's shapes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::Result;
use crate::model::ContainerRecord;
use crate::Engine;

/// `ps` filters: each key lists accepted values (any may match; all keys must match).
pub type Filters = BTreeMap<String, Vec<String>>;

/// A duration as Docker's "human" form: "3 seconds", "About a minute", "2 hours".
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn since(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| (chrono::Utc::now().timestamp() - t.timestamp()).max(0))
        .unwrap_or(0)
}

/// The `Status` column of `ps`.
pub fn status_text(c: &ContainerRecord) -> String {
    let st = &c.state;
    if st.restarting {
        return format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            human_duration(since(&st.finished_at))
        );
    }
    if st.running {
        let mut s = format!("Up {}", human_duration(since(&st.started_at)));
        if st.paused {
            s.push_str(" (Paused)");
        } else if let Some(h) = &st.health {
            let hs = if h.status == "starting" {
                "health: starting"
            } else {
                h.status.as_str()
            };
            s.push_str(&format!(" ({hs})"));
        }
        return s;
    }
    if st.status == "created" {
        return "Created".into();
    }
    format!(
        "Exited ({}) {} ago",
        st.exit_code,
        human_duration(since(&st.finished_at))
    )
}

/// The `State` word of `ps`.
pub fn state_word(c: &ContainerRecord) -> &'static str {
    let st = &c.state;
    if st.restarting {
        "restarting"
    } else if st.paused {
        "paused"
    } else if st.running {
        "running"
    } else if st.status == "created" {
        "created"
    } else if st.dead {
        "dead"
    } else {
        "exited"
    }
}

fn command_line(c: &ContainerRecord) -> String {
    let mut args = c.config.entrypoint.clone().unwrap_or_default();
    args.extend(c.config.cmd.clone().unwrap_or_default());
    args.join(" ")
}

fn ports_summary(c: &ContainerRecord) -> Vec<Value> {
    let mut out = Vec::new();
    for (port, binds) in &c.ports {
        let (num, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
        let private: i64 = num.parse().unwrap_or(0);
        for b in binds {
            out.push(json!({"IP": if b.host_ip.is_empty() { "0.0.0.0" } else { &b.host_ip }, "PrivatePort": private, "PublicPort": b.host_port.parse::<i64>().unwrap_or(0), "Type": proto}));
        }
        if binds.is_empty() {
            out.push(json!({"PrivatePort": private, "Type": proto}));
        }
    }
    for port in c.config.exposed_ports.clone().unwrap_or_default().keys() {
        if !c.ports.contains_key(port) {
            let (num, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
            out.push(json!({"PrivatePort": num.parse::<i64>().unwrap_or(0), "Type": proto}));
        }
    }
    out
}

impl Engine {
    fn matches(&self, c: &ContainerRecord, filters: &Filters) -> bool {
        filters.iter().all(|(key, values)| {
            // Docker ANDs label filters (docker-compose selects project AND service) and
            // ORs the values of every other key.
            if key == "label" {
                let labels = c.config.labels.clone().unwrap_or_default();
                return values.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => labels.get(k).map(String::as_str) == Some(val),
                    None => labels.contains_key(v.as_str()),
                });
            }
            values.iter().any(|v| match key.as_str() {
                "id" => c.id.starts_with(v.as_str()),
                "name" => c.name.contains(v.trim_start_matches('/')),
                "status" => state_word(c) == v,
                "ancestor" => {
                    c.config.image == *v
                        || c.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                        || self
                            .find_image(v)
                            .map(|i| i.id == c.image_id)
                            .unwrap_or(false)
                }
                "exited" => {
                    !c.state.running
                        && c.state.status == "exited"
                        && c.state.exit_code.to_string() == *v
                }
                "network" => {
                    c.networks.contains_key(v.as_str()) || c.host_config.network_mode == *v
                }
                "health" => {
                    c.state
                        .health
                        .as_ref()
                        .map(|h| h.status.as_str())
                        .unwrap_or("none")
                        == v
                }
                "volume" => c.mounts.iter().any(|m| m.name == *v || m.destination == *v),
                _ => true,
            })
        })
    }

    /// `GET /containers/json`: newest first; only running ones unless `all`.
    pub fn list_containers(
        &self,
        all: bool,
        limit: Option<usize>,
        filters: &Filters,
    ) -> Result<Vec<Value>> {
        let mut cs: Vec<ContainerRecord> = self.db.all("containers")?;
        cs.sort_by(|a, b| b.created.cmp(&a.created));
        let show_all = all
            || limit.is_some()
            || filters.contains_key("status")
            || filters.contains_key("exited");
        let mut out = Vec::new();
        for c in cs {
            if !show_all && !c.state.running {
                continue;
            }
            if !self.matches(&c, filters) {
                continue;
            }
            let created = chrono::DateTime::parse_from_rfc3339(&c.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            out.push(json!({
                "Id": c.id,
                "Names": [format!("/{}", c.name)],
                "Image": c.config.image,
                "ImageID": c.image_id,
                "Command": command_line(&c),
                "Created": created,
                "Ports": ports_summary(&c),
                "Labels": c.config.labels.clone().unwrap_or_default(),
                "State": state_word(&c),
                "Status": status_text(&c),
                "HostConfig": {"NetworkMode": c.host_config.network_mode},
                "NetworkSettings": {"Networks": c.networks},
                "Mounts": c.mounts,
            }));
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect_container(&self, name: &str) -> Result<Value> {
        let c = self.find_container(name)?;
        let dir = self.container_dir(&c.id);
        let mut args = c.config.entrypoint.clone().unwrap_or_default();
        args.extend(c.config.cmd.clone().unwrap_or_default());
        let path = if args.is_empty() {
            String::new()
        } else {
            args.remove(0)
        };
        let exec_ids: Vec<String> = match self.execs.lock() {
            Ok(m) => m
                .values()
                .filter(|e| e.container_id == c.id)
                .map(|e| e.id.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut ports: BTreeMap<String, Value> = BTreeMap::new();
        for p in c.config.exposed_ports.clone().unwrap_or_default().keys() {
            ports.insert(p.clone(), Value::Null);
        }
        if c.state.running {
            for (p, b) in &c.ports {
                ports.insert(
                    p.clone(),
                    json!(b
                        .iter()
                        .map(|b| json!({"HostIp": b.host_ip, "HostPort": b.host_port}))
                        .collect::<Vec<_>>()),
                );
            }
        }
        let primary = c.networks.values().next().cloned().unwrap_or_default();
        let snapshot_upper = self
            .snaps
            .upper_dir(&c.id)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Ok(json!({
            "Id": c.id,
            "Created": c.created,
            "Path": path,
            "Args": args,
            "State": c.state,
            "Image": c.image_id,
            "ResolvConfPath": dir.join("resolv.conf"),
            "HostnamePath": dir.join("hostname"),
            "HostsPath": dir.join("hosts"),
            "LogPath": c.log_path,
            "Name": format!("/{}", c.name),
            "RestartCount": c.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": if exec_ids.is_empty() { Value::Null } else { json!(exec_ids) },
            "HostConfig": c.host_config,
            "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": snapshot_upper, "MergedDir": dir.join("rootfs")}},
            "Mounts": c.mounts,
            "Config": c.config,
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": if c.state.running { c.id.clone() } else { String::new() },
                "SandboxKey": if c.state.running { self.netns_path(&c.id).display().to_string() } else { String::new() },
                "Ports": ports,
                "HairpinMode": false,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "Gateway": primary.gateway,
                "IPAddress": primary.ip_address,
                "IPPrefixLen": primary.ip_prefix_len,
                "MacAddress": primary.mac_address,
                "Networks": c.networks,
            },
        }))
    }
}
