//! Networks: the built-in `bridge`, `host` and `none`, user-defined bridge networks, and
//! each container's endpoints and published ports on them. The kernel side (bridges,
//! veths, nftables) is the network crate's; this module owns the records and addresses.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use berth_network::{Ipam, Ipv4Net, NetworkSpec, PortMapping, Proto};
use berth_runtime::NetnsMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::containers::now_rfc3339;
use crate::error::{EngineError, ErrorKind, Result, ResultExt};
use crate::model::{ContainerRecord, PortBinding};
use crate::Engine;

mod admin;

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
        self.create_netns_for(c, &ns)?;
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
        // Rules exist only for a container that asked for ports (listing them costs an nft
        // run, on the path of every exit and removal).
        let hc = &c.host_config;
        let may_publish = hc.publish_all_ports
            || hc.port_bindings.as_ref().is_some_and(|b| !b.is_empty())
            || !c.ports.is_empty();
        if may_publish {
            if let Err(e) = self.net.unpublish(&c.id).await {
                tracing::warn!("unpublish ports of {}: {e}", c.id);
            }
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
        for ns in [self.netns_path(&c.id), self.userns_path(&c.id)] {
            if ns.exists() {
                if let Err(e) = berth_network::remove_netns(&ns) {
                    tracing::warn!("remove {} of {}: {e}", ns.display(), c.id);
                }
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
}
