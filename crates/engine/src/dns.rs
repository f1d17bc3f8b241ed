//! The embedded DNS of user networks: one responder per network on its gateway address,
//! answering container names, aliases and short ids of the running containers on it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::ContainerRecord;
use crate::networks::NetworkRecord;
use crate::Engine;

impl Engine {
    /// Starts the DNS responder of a user network (idempotent).
    pub(crate) async fn start_dns(&self, net: &NetworkRecord) {
        if !net.has_dns() {
            return;
        }
        let Ok(gw) = net.gateway.parse::<Ipv4Addr>() else {
            return;
        };
        let mut servers = self.dns.lock().await;
        if servers.contains_key(&net.id) {
            return;
        }
        match berth_network::dns::DnsServer::bind(std::net::SocketAddr::from((gw, 53))).await {
            Ok(server) => {
                servers.insert(net.id.clone(), server);
            }
            Err(e) => tracing::warn!("dns for network {}: {e}", net.name),
        }
    }

    /// Stops the DNS responder of a network.
    pub(crate) async fn stop_dns(&self, network_id: &str) {
        self.dns.lock().await.remove(network_id);
    }

    /// Recomputes every user network's records from the running containers.
    pub(crate) async fn refresh_dns(&self) {
        let Ok(nets) = self.db.all::<NetworkRecord>("networks") else {
            return;
        };
        let Ok(containers) = self.db.all::<ContainerRecord>("containers") else {
            return;
        };
        for net in nets.iter().filter(|n| n.has_dns()) {
            self.start_dns(net).await;
            let mut records: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
            for c in containers.iter().filter(|c| c.state.running) {
                let Some(ep) = c.networks.get(&net.name) else {
                    continue;
                };
                let Ok(ip) = ep.ip_address.parse::<Ipv4Addr>() else {
                    continue;
                };
                let mut names = vec![c.name.clone(), c.id[..12].to_string()];
                names.extend(ep.aliases.clone().unwrap_or_default());
                if let Some(svc) = c
                    .config
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("com.docker.compose.service"))
                {
                    names.push(svc.clone());
                }
                for n in names {
                    let v = records.entry(n.to_ascii_lowercase()).or_default();
                    if !v.contains(&ip) {
                        v.push(ip);
                    }
                }
            }
            if let Some(server) = self.dns.lock().await.get(&net.id) {
                server.set_records(records.into_iter().collect());
            }
        }
    }
}
