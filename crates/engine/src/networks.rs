//! Networks: the built-in `bridge`, `host` and `none`, user-defined bridge networks, and
//! each container's endpoints and published ports on them. The kernel side (bridges,
//! veths, nftables) is the network crate's; this module owns the records and addresses.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use berth_network::{Ipam, Ipv4Net, NetworkSpec, PortMapping, Proto};
use berth_runtime::NetnsMode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::containers::now_rfc3339;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::{ContainerRecord, EndpointSettings, PortBinding};
use crate::Engine;

/// What the engine stores for each network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// "bridge", "host" or "null".
    pub driver: String,
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl NetworkRecord {
    fn spec(&self) -> Result<NetworkSpec> {
        Ok(NetworkSpec {
            id: self.id.clone(),
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            subnet: self
                .subnet
                .parse()
                .kind_ctx(ErrorKind::Internal, format!("subnet of {}", self.name))?,
            gateway: self
                .gateway
                .parse()
                .kind_ctx(ErrorKind::Internal, format!("gateway of {}", self.name))?,
            internal: self.internal,
            masquerade: !self.internal,
            mtu: 0,
        })
    }

    /// Whether containers on it resolve each other by name (user networks only).
    pub fn has_dns(&self) -> bool {
        self.driver == "bridge" && self.name != "bridge"
    }
}

/// Docker's `-p` target for `0.0.0.0`/empty host IPs.
fn host_ip(s: &str) -> Result<Option<Ipv4Addr>> {
    if s.is_empty() || s == "0.0.0.0" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| EngineError::invalid(format!("invalid host IP for a published port: {s}")))
}

/// Addresses handed out but possibly not yet recorded: network id -> container id -> address.
static RESERVED_IPS: std::sync::Mutex<
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Ipv4Addr>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

impl Engine {
    /// Makes sure the built-in networks exist in the DB.
    pub(crate) fn ensure_builtin_networks(&self) -> Result<()> {
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if self
                .db
                .get::<NetworkRecord>("networks", "name", name)?
                .is_some()
            {
                continue;
            }
            let (subnet, gateway, bridge) = if name == "bridge" {
                let net: Ipv4Net = self
                    .cfg
                    .bridge_subnet
                    .parse()
                    .kind_ctx(ErrorKind::InvalidArgument, "--bip/default subnet")?;
                (
                    net.trunc().to_string(),
                    net.first_host().to_string(),
                    self.cfg.bridge_name.clone(),
                )
            } else {
                Default::default()
            };
            let rec = NetworkRecord {
                id: crate::names::new_id(),
                name: name.into(),
                created: now_rfc3339(),
                driver: driver.into(),
                subnet,
                gateway,
                bridge,
                ..Default::default()
            };
            self.db.put_named("networks", &rec.id, &rec.name, &rec)?;
        }
        Ok(())
    }

    /// Finds a network by name, full id or unique id prefix.
    pub fn find_network(&self, name: &str) -> Result<NetworkRecord> {
        if let Some(n) = self.db.get::<NetworkRecord>("networks", "name", name)? {
            return Ok(n);
        }
        let all: Vec<NetworkRecord> = self.db.all("networks")?;
        let mut m = all
            .into_iter()
            .filter(|n| !name.is_empty() && n.id.starts_with(name));
        match (m.next(), m.next()) {
            (Some(n), None) => Ok(n),
            _ => Err(EngineError::not_found(format!("network {name} not found"))),
        }
    }

    /// The networks a container joins at start, from its network mode and endpoints.
    pub(crate) fn container_network_names(&self, c: &ContainerRecord) -> Vec<String> {
        let mode = c.host_config.network_mode.as_str();
        let mut names: Vec<String> = Vec::new();
        let primary = if mode == "default" || mode.is_empty() {
            "bridge"
        } else {
            mode
        };
        names.push(primary.to_string());
        for n in c.networks.keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }

    fn used_ips(&self, net: &NetworkRecord, except: &str) -> Result<HashSet<Ipv4Addr>> {
        let mut used = HashSet::new();
        for c in self.db.all::<ContainerRecord>("containers")? {
            if c.id == except || !c.state.running {
                continue;
            }
            if let Some(ep) = c.networks.get(&net.name) {
                if let Ok(ip) = ep.ip_address.parse() {
                    used.insert(ip);
                }
            }
        }
        Ok(used)
    }

    /// Creates the container's network namespace, connects it to its networks and
    /// publishes its ports. Returns the namespace and the primary address.
    pub(crate) async fn connect_networks(
        &self,
        c: &mut ContainerRecord,
    ) -> Result<(NetnsMode, Option<Ipv4Addr>)> {
        let ns = self.netns_path(&c.id);
        berth_network::remove_netns(&ns).ok();
        berth_network::create_netns(&ns).ctx(format!("create network namespace of {}", c.name))?;
        let names = self.container_network_names(c);
        let mut primary = None;
        for (i, name) in names.iter().enumerate() {
            let net = self.find_network(name)?;
            if net.driver != "bridge" {
                return Err(EngineError::invalid(format!(
                    "container cannot be connected to network \"{name}\" with another network"
                )));
            }
            let ip = self
                .attach_endpoint(c, &net, &ns, &format!("eth{i}"))
                .await?;
            if primary.is_none() {
                primary = Some(ip);
            }
        }
        if let Some(ip) = primary {
            self.publish_ports(c, ip).await?;
        }
        let first = self.find_network(&names[0])?;
        self.write_resolv_conf(c, &first)?;
        self.refresh_dns().await;
        Ok((NetnsMode::New(ns), primary))
    }

    async fn attach_endpoint(
        &self,
        c: &mut ContainerRecord,
        net: &NetworkRecord,
        ns: &std::path::Path,
        ifname: &str,
    ) -> Result<Ipv4Addr> {
        let spec = net.spec()?;
        self.net
            .ensure_network(&spec)
            .await
            .ctx(format!("set up network {}", net.name))?;
        let ep = c.networks.entry(net.name.clone()).or_default();
        let requested = ep
            .ipam_config
            .as_ref()
            .and_then(|v| v.get("IPv4Address"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| EngineError::invalid(format!("invalid IPv4 address: {s}")))
            })
            .transpose()?;
        let ip = {
            // Containers started concurrently (docker-compose starts replicas in parallel)
            // are not yet recorded as running: reserve each address until teardown.
            let mut reserved = RESERVED_IPS.lock().unwrap_or_else(|e| e.into_inner());
            let mine = reserved.entry(net.id.clone()).or_default();
            let mut used = self.used_ips(net, &c.id)?;
            used.extend(
                mine.iter()
                    .filter(|(id, _)| **id != c.id)
                    .map(|(_, ip)| *ip),
            );
            let ip = Ipam::allocate(&spec.subnet, spec.gateway, &used, requested).kind_ctx(
                ErrorKind::InvalidArgument,
                format!("address on network {}", net.name),
            )?;
            mine.insert(c.id.clone(), ip);
            ip
        };
        let endpoint = self
            .net
            .connect(&spec, ns, ifname, ip, None)
            .await
            .ctx(format!("connect {} to network {}", c.name, net.name))?;
        let ep = c.networks.entry(net.name.clone()).or_default();
        ep.network_id = net.id.clone();
        ep.endpoint_id = crate::names::new_id();
        ep.gateway = net.gateway.clone();
        ep.ip_address = ip.to_string();
        ep.ip_prefix_len = i64::from(spec.subnet.prefix);
        ep.mac_address = endpoint
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ep.host_veth = endpoint.host_veth.clone();
        let mut dns_names = vec![c.name.clone(), c.id[..12].to_string()];
        dns_names.extend(ep.aliases.clone().unwrap_or_default());
        ep.dns_names = Some(dns_names);
        Ok(ip)
    }

    async fn publish_ports(&self, c: &mut ContainerRecord, ip: Ipv4Addr) -> Result<()> {
        let mut wanted: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for (port, binds) in c.host_config.port_bindings.clone().unwrap_or_default() {
            wanted.insert(port, binds.unwrap_or_default());
        }
        if c.host_config.publish_all_ports {
            for port in c.config.exposed_ports.clone().unwrap_or_default().keys() {
                wanted
                    .entry(port.clone())
                    .or_insert_with(|| vec![PortBinding::default()]);
            }
        }
        let mut mappings = Vec::new();
        for (port, binds) in &wanted {
            let (num, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
            let container_port: u16 = num
                .parse()
                .map_err(|_| EngineError::invalid(format!("invalid port: {port}")))?;
            let proto = match proto {
                "udp" => Proto::Udp,
                "tcp" => Proto::Tcp,
                other => {
                    return Err(EngineError::invalid(format!(
                        "unsupported protocol {other}"
                    )))
                }
            };
            for b in binds {
                let host_port: u16 = if b.host_port.is_empty() {
                    0
                } else {
                    b.host_port
                        .split('-')
                        .next()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| {
                            EngineError::invalid(format!("invalid host port: {}", b.host_port))
                        })?
                };
                mappings.push(PortMapping {
                    host_ip: host_ip(&b.host_ip)?,
                    host_port,
                    container_ip: ip,
                    container_port,
                    proto,
                });
            }
        }
        if mappings.is_empty() {
            return Ok(());
        }
        let made = self.net.publish(&mappings, &c.id).await.map_err(|e| {
            EngineError::conflict(format!(
                "driver failed programming external connectivity on endpoint {}: {e}",
                c.name
            ))
        })?;
        c.ports.clear();
        for m in made {
            let proto = if m.proto == Proto::Udp { "udp" } else { "tcp" };
            c.ports
                .entry(format!("{}/{proto}", m.container_port))
                .or_default()
                .push(PortBinding {
                    host_ip: m
                        .host_ip
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    host_port: m.host_port.to_string(),
                });
        }
        Ok(())
    }

    fn write_resolv_conf(&self, c: &ContainerRecord, net: &NetworkRecord) -> Result<()> {
        let hc = &c.host_config;
        let mut servers: Vec<String> = hc.dns.clone().unwrap_or_default();
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut search: Vec<String> = hc.dns_search.clone().unwrap_or_default();
        let mut options: Vec<String> = hc.dns_options.clone().unwrap_or_default();
        if servers.is_empty() {
            if net.has_dns() {
                servers.push(net.gateway.clone());
            } else {
                servers = host
                    .lines()
                    .filter_map(|l| l.strip_prefix("nameserver"))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.starts_with("127.") && s != "::1")
                    .collect();
                if servers.is_empty() {
                    servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
                }
            }
        }
        if search.is_empty() {
            search = host
                .lines()
                .filter_map(|l| l.strip_prefix("search"))
                .flat_map(|s| s.split_whitespace().map(str::to_string))
                .collect();
        }
        if options.is_empty() && net.has_dns() {
            options.push("ndots:0".into());
        }
        let mut out = String::new();
        for s in &servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !options.is_empty() {
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        std::fs::write(self.container_dir(&c.id).join("resolv.conf"), out)
            .ctx("write resolv.conf")?;
        Ok(())
    }

    /// Undoes [`Engine::connect_networks`]; errors are logged, never returned.
    pub(crate) async fn teardown_network(&self, c: &mut ContainerRecord) {
        {
            let mut reserved = RESERVED_IPS.lock().unwrap_or_else(|e| e.into_inner());
            for per_net in reserved.values_mut() {
                per_net.remove(&c.id);
            }
        }
        if let Err(e) = self.net.unpublish(&c.id).await {
            tracing::warn!("unpublish ports of {}: {e}", c.id);
        }
        for ep in c.networks.values_mut() {
            if !ep.host_veth.is_empty() {
                let endpoint = berth_network::Endpoint {
                    host_veth: ep.host_veth.clone(),
                    mac: [0; 6],
                };
                let _ = self.net.disconnect(&endpoint).await;
            }
            ep.host_veth.clear();
            ep.ip_address.clear();
            ep.ip_prefix_len = 0;
            ep.gateway.clear();
            ep.mac_address.clear();
            ep.endpoint_id.clear();
        }
        c.ports.clear();
        let ns = self.netns_path(&c.id);
        if ns.exists() {
            if let Err(e) = berth_network::remove_netns(&ns) {
                tracing::warn!("remove netns of {}: {e}", c.id);
            }
        }
        self.refresh_dns().await;
    }

    /// Publishes again the ports of a container that kept running while no daemon was up
    /// (port reservations live in the daemon's memory).
    pub(crate) async fn republish_ports(&self, c: &ContainerRecord) {
        let Some(ip) = c
            .networks
            .values()
            .find_map(|e| e.ip_address.parse::<Ipv4Addr>().ok())
        else {
            return;
        };
        let mut mappings = Vec::new();
        for (port, binds) in &c.ports {
            let (num, proto) = port.split_once('/').unwrap_or((port.as_str(), "tcp"));
            let Ok(container_port) = num.parse::<u16>() else {
                continue;
            };
            let proto = if proto == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            };
            for b in binds {
                let Ok(host_port) = b.host_port.parse::<u16>() else {
                    continue;
                };
                let host_ip = host_ip(&b.host_ip).ok().flatten();
                mappings.push(PortMapping {
                    host_ip,
                    host_port,
                    container_ip: ip,
                    container_port,
                    proto,
                });
            }
        }
        if !mappings.is_empty() {
            if let Err(e) = self.net.publish(&mappings, &c.id).await {
                tracing::warn!("publish ports of {} again: {e}", c.name);
            }
        }
    }

    /// The address containers reach the host at (`host-gateway`).
    pub(crate) fn host_gateway(&self) -> String {
        self.find_network("bridge")
            .map(|n| n.gateway)
            .unwrap_or_else(|_| "172.17.0.1".into())
    }

    /// Re-creates the kernel side of every network after a daemon start.
    pub(crate) async fn restore_networks(&self) {
        if let Ok(nets) = self.db.all::<NetworkRecord>("networks") {
            for n in nets.into_iter().filter(|n| n.driver == "bridge") {
                if let Ok(spec) = n.spec() {
                    if let Err(e) = self.net.ensure_network(&spec).await {
                        tracing::warn!("restore network {}: {e}", n.name);
                    }
                }
            }
        }
        self.refresh_dns().await;
    }

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
