//! Published ports: DNAT rules in the instance's nft table plus a bound
//! socket per host port that reserves it, as docker-proxy does.
//!
//! Connections to a published port, from outside, from the host itself
//! (including 127.0.0.1, thanks to `route_localnet` on the bridge and a
//! masquerade of loopback sources) and from containers via a host address,
//! are rewritten in the kernel; the reserving socket never sees them.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::nft::{self, NftError};
use crate::setup::Networking;

/// Errors of port publishing.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The owner id cannot be used as an nft comment.
    #[error("invalid port owner id {0:?}")]
    InvalidOwner(String),
    /// Something else already uses the host port.
    #[error("bind for {addr}/{proto} failed: port is already allocated")]
    InUse {
        /// The host address and port.
        addr: SocketAddrV4,
        /// The protocol.
        proto: Proto,
    },
    /// Binding failed for another reason.
    #[error("bind for {addr}/{proto}: {source}")]
    Bind {
        /// The host address and port.
        addr: SocketAddrV4,
        /// The protocol.
        proto: Proto,
        /// The error.
        source: io::Error,
    },
    /// nft failed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Stale UDP conntrack entries could not be flushed.
    #[error("flushing udp conntrack entries for ports {ports:?}: {source}")]
    Conntrack {
        /// The host ports.
        ports: Vec<u16>,
        /// The error.
        source: io::Error,
    },
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One published port: `host_ip:host_port` → `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; `None` (or 0.0.0.0) means every address.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port; 0 asks for an ephemeral one.
    pub host_port: u16,
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The container's port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

/// A socket bound to a published host port, keeping it reserved.
#[derive(Debug)]
pub(crate) enum Reservation {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

fn bind(addr: SocketAddrV4, proto: Proto) -> Result<(Reservation, u16), PortError> {
    let err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            PortError::InUse { addr, proto }
        } else {
            PortError::Bind {
                addr,
                proto,
                source,
            }
        }
    };
    match proto {
        Proto::Tcp => {
            let l = TcpListener::bind(addr).map_err(err)?;
            let port = l.local_addr().map_err(err)?.port();
            Ok((Reservation::Tcp(l), port))
        }
        Proto::Udp => {
            let s = UdpSocket::bind(addr).map_err(err)?;
            let port = s.local_addr().map_err(err)?.port();
            Ok((Reservation::Udp(s), port))
        }
    }
}

/// Picks a currently free host port from the kernel's ephemeral range (for
/// `-P`). The port is not reserved: pass it to [`Networking::publish`].
pub fn allocate_host_port(proto: Proto) -> Result<u16, PortError> {
    bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), proto).map(|(_, port)| port)
}

impl Networking {
    /// Publishes `mappings` for `owner` (a container id: letters, digits,
    /// `_.-`). Each host port is first reserved by binding it, so a port
    /// already in use, by anything, fails with [`PortError::InUse`] and
    /// nothing is published. Returns the mappings with ephemeral host ports
    /// filled in.
    pub async fn publish(
        &self,
        mappings: &[PortMapping],
        owner: &str,
    ) -> Result<Vec<PortMapping>, PortError> {
        if !nft::is_safe_word(owner) {
            return Err(PortError::InvalidOwner(owner.to_string()));
        }
        let mut held = Vec::with_capacity(mappings.len());
        let mut done = Vec::with_capacity(mappings.len());
        let mut comments = Vec::with_capacity(mappings.len());
        let t = &self.table;
        let mut rules = String::new();
        for m in mappings {
            let host_ip = m.host_ip.filter(|ip| !ip.is_unspecified());
            let (sock, port) = bind(
                SocketAddrV4::new(host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), m.host_port),
                m.proto,
            )?;
            held.push(sock);
            let daddr = host_ip
                .map(|ip| format!("ip daddr {ip} "))
                .unwrap_or_default();
            let comment = nft::publish_comment(owner, &m.proto.to_string(), host_ip, port);
            rules += &format!(
                "add rule ip {t} publish meta l4proto {p} {daddr}th dport {port} dnat ip to {cip}:{cport} comment \"{comment}\"\n",
                p = m.proto,
                cip = m.container_ip,
                cport = m.container_port,
            );
            comments.push(comment);
            done.push(PortMapping {
                host_port: port,
                ..*m
            });
        }
        // Rules left for the same host ports by an earlier daemon run (whose
        // reservations died with it) are replaced, not duplicated.
        let stale = nft::publish_rules(t, |c| comments.iter().any(|x| x == c)).await?;
        let mut script = nft::base_script(t);
        for (h, _) in stale {
            script += &format!("delete rule ip {t} publish handle {h}\n");
        }
        script += &rules;
        nft::run(t, &script).await?;
        // UDP flows to these ports may still be tracked with an old target.
        let udp: Vec<u16> = comments
            .iter()
            .filter_map(|c| nft::udp_port_of(c))
            .collect();
        flush_udp(udp).await?;
        let mut all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(owner.to_string()).or_default().extend(held);
        Ok(done)
    }

    /// Removes every port published for `owner` and releases its host ports.
    /// Rules left by an earlier process with the same table are found and
    /// removed too. Idempotent.
    pub async fn unpublish(&self, owner: &str) -> Result<(), PortError> {
        if !nft::is_safe_word(owner) {
            return Err(PortError::InvalidOwner(owner.to_string()));
        }
        let prefix = format!("{owner} ");
        let handles =
            nft::publish_rules(&self.table, |c| c == owner || c.starts_with(&prefix)).await?;
        if !handles.is_empty() {
            let t = &self.table;
            let script: String = handles
                .iter()
                .map(|(h, _)| format!("delete rule ip {t} publish handle {h}\n"))
                .collect();
            nft::run(t, &script).await?;
        }
        self.reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
        flush_udp(
            handles
                .iter()
                .filter_map(|(_, c)| nft::udp_port_of(c))
                .collect(),
        )
        .await
    }
}

/// Deletes conntrack entries of UDP flows to `ports` (over ctnetlink).
async fn flush_udp(ports: Vec<u16>) -> Result<(), PortError> {
    if ports.is_empty() {
        return Ok(());
    }
    let joined = ports.clone();
    tokio::task::spawn_blocking(move || crate::conntrack::flush_udp_ports(&joined))
        .await
        .map_err(|e| PortError::Conntrack {
            ports: ports.clone(),
            source: std::io::Error::other(e),
        })?
        .map(|_| ())
        .map_err(|source| PortError::Conntrack { ports, source })
}
