//! A container's network at start and stop: which namespace it joins, its endpoints on
//! Berth networks, and the hostname, hosts and resolv.conf files written for it.

use berth_runtime::NetnsMode;

use crate::error::{EngineError, Result, ResultExt};
use crate::model::ContainerRecord;
use crate::Engine;

const HOSTS_HEADER: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

impl Engine {
    /// Decides the container's network namespace, connects it to its networks and writes
    /// its /etc files. Undone by [`Engine::teardown_network`].
    pub(crate) async fn prepare_network(&self, c: &mut ContainerRecord) -> Result<NetnsMode> {
        let mode = c.host_config.network_mode.clone();
        let dir = self.container_dir(&c.id);
        let hostname = c.config.hostname.clone();
        let mut hosts = String::new();
        self.check_remap_network(c)?;
        let ns = if mode == "host" {
            hosts =
                std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| HOSTS_HEADER.to_string());
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            std::fs::write(dir.join("resolv.conf"), resolv).ctx("write resolv.conf")?;
            NetnsMode::Host
        } else if let Some(other) = mode.strip_prefix("container:") {
            let o = self.find_container(other)?;
            if !o.state.running {
                return Err(EngineError::conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    o.name
                )));
            }
            for f in ["hosts", "resolv.conf"] {
                let _ = std::fs::copy(self.container_dir(&o.id).join(f), dir.join(f));
            }
            return Ok(NetnsMode::New(
                format!("/proc/{}/ns/net", o.state.pid).into(),
            ));
        } else if mode == "none" {
            hosts.push_str(HOSTS_HEADER);
            std::fs::write(dir.join("resolv.conf"), "").ctx("write resolv.conf")?;
            NetnsMode::None
        } else {
            let (ns, ip) = self.connect_networks(c).await?;
            hosts.push_str(HOSTS_HEADER);
            if let Some(ip) = ip {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            }
            ns
        };
        for h in c.host_config.extra_hosts.clone().unwrap_or_default() {
            let (name, ip) = h
                .split_once(':')
                .ok_or_else(|| EngineError::invalid(format!("invalid add-host: {h}")))?;
            let ip = if ip == "host-gateway" {
                self.host_gateway()
            } else {
                ip.to_string()
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        std::fs::write(dir.join("hostname"), format!("{hostname}\n")).ctx("write hostname")?;
        std::fs::write(dir.join("hosts"), hosts).ctx("write hosts")?;
        Ok(ns)
    }
}
