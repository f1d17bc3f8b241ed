//! The network objects of the API: `network create/ls/inspect/rm/prune/connect/disconnect`.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use berth_network::Ipv4Net;
use serde_json::{json, Value};

use super::NetworkRecord;
use crate::containers::now_rfc3339;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::{ContainerRecord, EndpointSettings};
use crate::Engine;

impl Engine {
    /// `POST /networks/create`.
    pub async fn create_network(&self, body: &Value) -> Result<String> {
        let name = body
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(EngineError::invalid("network name is required"));
        }
        if self
            .db
            .get::<NetworkRecord>("networks", "name", &name)?
            .is_some()
        {
            return Err(EngineError::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let driver = body
            .get("Driver")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("bridge");
        if driver != "bridge" {
            return Err(EngineError::not_found(format!(
                "plugin \"{driver}\" not found"
            )));
        }
        let cfg = body.pointer("/IPAM/Config/0");
        let subnet_s = cfg
            .and_then(|c| c.get("Subnet"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let taken: Vec<Ipv4Net> = self
            .db
            .all::<NetworkRecord>("networks")?
            .iter()
            .filter_map(|n| n.subnet.parse().ok())
            .collect();
        let subnet: Ipv4Net = if subnet_s.is_empty() {
            let mut all_taken = taken.clone();
            all_taken.extend(berth_network::ipam::host_routes());
            berth_network::ipam::free_subnet(&all_taken).ok_or_else(|| {
                EngineError::invalid(
                    "could not find an available, non-overlapping IPv4 address pool",
                )
            })?
        } else {
            let s: Ipv4Net = subnet_s
                .parse()
                .map_err(|_| EngineError::invalid(format!("invalid subnet {subnet_s}")))?;
            if let Some(t) = taken.iter().find(|t| berth_network::overlaps(t, &s)) {
                return Err(EngineError::conflict(format!(
                    "Pool overlaps with other one on this address space: {s} overlaps {t}"
                )));
            }
            s.trunc()
        };
        let gateway: Ipv4Addr = match cfg
            .and_then(|c| c.get("Gateway"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| EngineError::invalid(format!("invalid gateway {g}")))?;
                if !subnet.contains(g) {
                    return Err(EngineError::invalid(format!(
                        "gateway {g} is not in subnet {subnet}"
                    )));
                }
                g
            }
            None => subnet.first_host(),
        };
        let id = crate::names::new_id();
        let str_map = |k: &str| -> BTreeMap<String, String> {
            body.get(k)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let rec = NetworkRecord {
            id: id.clone(),
            name: name.clone(),
            created: now_rfc3339(),
            driver: "bridge".into(),
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            bridge: format!("br-{}", &id[..12]),
            internal: body
                .get("Internal")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attachable: body
                .get("Attachable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            labels: str_map("Labels"),
            options: str_map("Options"),
        };
        self.net
            .ensure_network(&rec.spec()?)
            .await
            .ctx(format!("create network {name}"))?;
        self.db.put_named("networks", &id, &name, &rec)?;
        self.start_dns(&rec).await;
        self.events.publish(
            "network",
            "create",
            &id,
            BTreeMap::from([("name".into(), name), ("type".into(), "bridge".into())]),
        );
        Ok(id)
    }

    /// `GET /networks/{id}` in Docker's shape, with the containers attached.
    pub fn inspect_network(&self, name: &str) -> Result<Value> {
        let n = self.find_network(name)?;
        self.network_json(&n)
    }

    fn network_json(&self, n: &NetworkRecord) -> Result<Value> {
        let mut containers = BTreeMap::new();
        for c in self.db.all::<ContainerRecord>("containers")? {
            if let Some(ep) = c.networks.get(&n.name) {
                if c.state.running {
                    containers.insert(
                        c.id.clone(),
                        json!({
                            "Name": c.name,
                            "EndpointID": ep.endpoint_id,
                            "MacAddress": ep.mac_address,
                            "IPv4Address": format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
                            "IPv6Address": "",
                        }),
                    );
                }
            }
        }
        let ipam_cfg = if n.subnet.is_empty() {
            json!([])
        } else {
            json!([{"Subnet": n.subnet, "Gateway": n.gateway}])
        };
        let mut options = n.options.clone();
        // Like dockerd, only the default network reports its bridge name; user networks show
        // the options they were created with (docker-compose recreates a network whose
        // options differ from its file).
        if !n.bridge.is_empty() && n.name == "bridge" {
            options.insert("com.docker.network.bridge.name".into(), n.bridge.clone());
        }
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": ipam_cfg},
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": n.labels,
        }))
    }

    /// `GET /networks` with `name`, `id`, `driver`, `label` filters.
    pub fn list_networks(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<Value>> {
        let mut all: Vec<NetworkRecord> = self.db.all("networks")?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for n in all {
            let ok = filters.iter().all(|(k, vals)| {
                vals.iter().any(|v| match k.as_str() {
                    "name" => n.name.contains(v.as_str()),
                    "id" => n.id.starts_with(v.as_str()),
                    "driver" => n.driver == *v,
                    "label" => match v.split_once('=') {
                        Some((lk, lv)) => n.labels.get(lk).map(String::as_str) == Some(lv),
                        None => n.labels.contains_key(v.as_str()),
                    },
                    "type" => {
                        (v == "builtin") == ["bridge", "host", "none"].contains(&n.name.as_str())
                    }
                    _ => true,
                })
            });
            if ok {
                out.push(self.network_json(&n)?);
            }
        }
        Ok(out)
    }

    /// `DELETE /networks/{id}`: refused for built-in networks and while containers use it.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        let n = self.find_network(name)?;
        if ["bridge", "host", "none"].contains(&n.name.as_str()) {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                format!("{} is a pre-defined network and cannot be removed", n.name),
            ));
        }
        let users: Vec<String> = self
            .db
            .all::<ContainerRecord>("containers")?
            .into_iter()
            .filter(|c| c.state.running && c.networks.contains_key(&n.name))
            .map(|c| c.name)
            .collect();
        if !users.is_empty() {
            return Err(EngineError::conflict(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                n.name,
                n.id,
                users.join(", ")
            )));
        }
        self.stop_dns(&n.id).await;
        self.net
            .remove_network(&n.spec()?)
            .await
            .ctx(format!("remove network {}", n.name))?;
        self.db.delete("networks", "id", &n.id)?;
        self.events.publish(
            "network",
            "destroy",
            &n.id,
            BTreeMap::from([
                ("name".into(), n.name.clone()),
                ("type".into(), "bridge".into()),
            ]),
        );
        Ok(())
    }

    /// `POST /networks/prune`: removes user networks no container uses.
    pub async fn prune_networks(&self) -> Result<Vec<String>> {
        let used: HashSet<String> = self
            .db
            .all::<ContainerRecord>("containers")?
            .into_iter()
            .flat_map(|c| {
                let mut v: Vec<String> = c.networks.keys().cloned().collect();
                v.push(c.host_config.network_mode.clone());
                v
            })
            .collect();
        let mut removed = Vec::new();
        for n in self.db.all::<NetworkRecord>("networks")? {
            if ["bridge", "host", "none"].contains(&n.name.as_str()) || used.contains(&n.name) {
                continue;
            }
            self.remove_network(&n.id).await?;
            removed.push(n.name);
        }
        Ok(removed)
    }

    /// `POST /networks/{id}/connect`: records the endpoint; a running container is
    /// connected at once.
    pub async fn connect_container(
        &self,
        network: &str,
        container: &str,
        endpoint: Option<&Value>,
    ) -> Result<()> {
        let n = self.find_network(network)?;
        let mut c = self.find_container(container)?;
        if c.networks.contains_key(&n.name) && c.state.running {
            return Err(EngineError::conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        let settings = EndpointSettings {
            aliases: endpoint
                .and_then(|e| e.get("Aliases"))
                .and_then(|a| serde_json::from_value(a.clone()).ok()),
            ipam_config: endpoint
                .and_then(|e| e.get("IPAMConfig"))
                .cloned()
                .filter(|v| !v.is_null()),
            network_id: n.id.clone(),
            ..Default::default()
        };
        c.networks.insert(n.name.clone(), settings);
        if c.state.running {
            let ns = self.netns_path(&c.id);
            let idx = c.networks.len() - 1;
            self.attach_endpoint(&mut c, &n, &ns, &format!("eth{idx}"))
                .await?;
            self.refresh_dns().await;
        }
        self.save_container(&c)?;
        self.events.publish(
            "network",
            "connect",
            &n.id,
            BTreeMap::from([
                ("container".into(), c.id.clone()),
                ("name".into(), n.name.clone()),
                ("type".into(), "bridge".into()),
            ]),
        );
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect_container(&self, network: &str, container: &str) -> Result<()> {
        let n = self.find_network(network)?;
        let mut c = self.find_container(container)?;
        let Some(ep) = c.networks.remove(&n.name) else {
            return Err(EngineError::not_found(format!(
                "container {} is not connected to network {}",
                c.name, n.name
            )));
        };
        if !ep.host_veth.is_empty() {
            let _ = self
                .net
                .disconnect(&berth_network::Endpoint {
                    host_veth: ep.host_veth.clone(),
                    mac: [0; 6],
                })
                .await;
        }
        self.save_container(&c)?;
        self.refresh_dns().await;
        self.events.publish(
            "network",
            "disconnect",
            &n.id,
            BTreeMap::from([
                ("container".into(), c.id.clone()),
                ("name".into(), n.name.clone()),
                ("type".into(), "bridge".into()),
            ]),
        );
        Ok(())
    }
}
