//! Bridges, veth endpoints and the nft table of one Berth instance.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use serde::{Deserialize, Serialize};

use crate::ipam::Ipv4Net;
use crate::netlink::{delete_link, errno, host_handle, link_index, netns_handle, ports_of, to_io};
use crate::netns::NetnsError;
use crate::nft::{self, NftError};
use crate::ports::Reservation;

/// Errors of network set-up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A name that must be a short identifier is not one.
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A netlink operation failed.
    #[error("{op} {object}: {source}")]
    Netlink {
        /// What was being done.
        op: &'static str,
        /// The link, bridge or namespace concerned.
        object: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// A sysctl or sysfs setting could not be written.
    #[error("writing {path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The network's bridge does not exist (call `ensure_network` first).
    #[error("bridge {0} of the network does not exist")]
    NoBridge(String),
    /// Entering a namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// nft failed.
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// A bridge network as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The engine's network id.
    pub id: String,
    /// The network's name.
    pub name: String,
    /// The bridge interface: at most 15 characters, e.g. `berth0` or `br-<id12>`.
    pub bridge: String,
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The bridge's address, the containers' default gateway.
    pub gateway: Ipv4Addr,
    /// Internal networks reach nothing outside their bridge.
    pub internal: bool,
    /// Masquerade traffic from the subnet leaving through other interfaces.
    pub masquerade: bool,
    /// MTU of the bridge and veths; 0 keeps the kernel's default.
    pub mtu: u32,
}

/// One container interface attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The host end of the veth pair (enslaved to the bridge).
    pub host_veth: String,
    /// The MAC address of the container end.
    pub mac: [u8; 6],
}

/// Sets up networks of one Berth instance. Owns the nft table named `table`
/// and the port reservations made by [`Networking::publish`]. Must be created
/// and used inside a tokio runtime.
pub struct Networking {
    pub(crate) table: String,
    pub(crate) handle: Handle,
    pub(crate) reservations: Mutex<HashMap<String, Vec<Reservation>>>,
    /// Networks fully set up by this instance, by bridge name.
    ensured: Mutex<HashMap<String, NetworkSpec>>,
}

fn nl<'a>(op: &'static str, object: &'a str) -> impl FnOnce(io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Netlink {
        op,
        object: object.to_string(),
        source,
    }
}

fn check_ifname(what: &'static str, name: &str) -> Result<(), NetworkError> {
    if name.len() > 15 || !nft::is_safe_word(name) {
        return Err(NetworkError::InvalidName {
            what,
            value: name.to_string(),
        });
    }
    Ok(())
}

fn sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(path, value).map_err(|source| NetworkError::Sysctl {
        path: path.into(),
        source,
    })
}

/// Docker's style of MAC derived from the IPv4 address: `02:42:a:b:c:d`.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

impl Networking {
    /// Opens a netlink connection and names the nft table to use (letters,
    /// digits, `_`, `.`, `-`). Nothing is created until a network is ensured.
    pub fn new(table: impl Into<String>) -> Result<Self, NetworkError> {
        let table = table.into();
        if !nft::is_safe_word(&table) {
            return Err(NetworkError::InvalidName {
                what: "nft table",
                value: table,
            });
        }
        let handle = host_handle().map_err(nl("netlink connect", "host"))?;
        Ok(Self {
            table,
            handle,
            reservations: Mutex::new(HashMap::new()),
            ensured: Mutex::new(HashMap::new()),
        })
    }

    /// The nft table this instance uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Makes sure the network's bridge exists, is up and has the gateway
    /// address, that IPv4 forwarding is on, and that the nft table isolates it
    /// and masquerades it as the spec says. Idempotent; a repeat call for a
    /// network this instance already set up only checks that the bridge
    /// still exists (about 0.2 ms instead of an nft transaction).
    pub async fn ensure_network(&self, net: &NetworkSpec) -> Result<(), NetworkError> {
        check_ifname("bridge name", &net.bridge)?;
        let br = net.bridge.as_str();
        let h = &self.handle;
        let existing = link_index(h, br).await.map_err(nl("look up", br))?;
        if existing.is_some() && self.lock_ensured().get(br) == Some(net) {
            // Set up earlier by this instance and the bridge is still there.
            return Ok(());
        }
        let index = match existing {
            Some(i) => i,
            None => {
                // A fixed MAC: otherwise the bridge takes the lowest MAC of
                // its ports and changes it as containers come and go.
                let mut msg = LinkBridge::new(br).address(mac_for(net.gateway).to_vec());
                if net.mtu > 0 {
                    msg = msg.mtu(net.mtu);
                }
                match h.link().add(msg.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(nl("create bridge", br)(to_io(e))),
                }
                link_index(h, br)
                    .await
                    .map_err(nl("look up", br))?
                    .ok_or_else(|| NetworkError::NoBridge(br.into()))?
            }
        };
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl("set up", br)(to_io(e)))?;
        match h
            .address()
            .add(index, IpAddr::V4(net.gateway), net.subnet.prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl("add address to", br)(to_io(e))),
        }
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/route_localnet"), "1")?;
        let t = &self.table;
        let script = nft::base_script(t)
            + &nft::network_add(t, br, &net.subnet, net.internal, net.masquerade);
        nft::run(t, &script).await?;
        self.lock_ensured().insert(net.bridge.clone(), net.clone());
        Ok(())
    }

    fn lock_ensured(&self) -> std::sync::MutexGuard<'_, HashMap<String, NetworkSpec>> {
        self.ensured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the network's nft elements and its bridge. Idempotent. Veths
    /// still attached to the bridge are only detached, not deleted: disconnect
    /// the endpoints first.
    pub async fn remove_network(&self, net: &NetworkSpec) -> Result<(), NetworkError> {
        check_ifname("bridge name", &net.bridge)?;
        self.lock_ensured().remove(&net.bridge);
        nft::run(
            &self.table,
            &(nft::base_script(&self.table)
                + &nft::network_del(&self.table, &net.bridge, &net.subnet)),
        )
        .await?;
        delete_link(&self.handle, &net.bridge)
            .await
            .map_err(nl("delete bridge", &net.bridge))
    }

    /// Creates a veth pair: the host end (a fresh `veth<hex>` name) joins the
    /// bridge, the other end appears in the namespace pinned at `netns` as
    /// `ifname` with `ip`/prefix and `mac` (default: derived from `ip`), and is
    /// brought up. Unless the network is internal, a default route via the
    /// gateway is added if the namespace has none yet (its first network).
    pub async fn connect(
        &self,
        net: &NetworkSpec,
        netns: &Path,
        ifname: &str,
        ip: Ipv4Addr,
        mac: Option<[u8; 6]>,
    ) -> Result<Endpoint, NetworkError> {
        check_ifname("interface name", ifname)?;
        let br = net.bridge.as_str();
        let bridge = link_index(&self.handle, br)
            .await
            .map_err(nl("look up", br))?
            .ok_or_else(|| NetworkError::NoBridge(br.into()))?;
        let mac = mac.unwrap_or_else(|| mac_for(ip));
        let host_veth = format!("veth{:07x}", rand::random::<u32>() & 0x0fff_ffff);
        let ns_name = netns.display().to_string();
        let ns_file = File::open(netns).map_err(nl("open netns", &ns_name))?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(ifname.to_string())
            .address(mac.to_vec())
            .setns_by_fd(ns_file.as_raw_fd());
        let mut veth = LinkVeth::new(&host_veth, ifname).controller(bridge).up();
        if net.mtu > 0 {
            peer = peer.mtu(net.mtu);
            veth = veth.mtu(net.mtu);
        }
        let msg = veth
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetworkError::Netlink {
                op: "create veth",
                object: format!("{host_veth} (peer {ifname} in {ns_name})"),
                source: to_io(e),
            })?;
        drop(ns_file);
        let endpoint = Endpoint { host_veth, mac };
        if let Err(e) = self.configure_inside(net, netns, ifname, ip).await {
            let _ = delete_link(&self.handle, &endpoint.host_veth).await;
            return Err(e);
        }
        // Hairpin: with br_netfilter loaded (Docker loads it), a container
        // reaching its own published port is DNATed inside the bridge and
        // sent back out of the port it came in on.
        // When /sys belongs to another network namespace (a daemon started with
        // `nsenter --net`), the port is not visible there: go on without hairpin.
        let hairpin = format!("/sys/class/net/{}/brport/hairpin_mode", endpoint.host_veth);
        if let Err(source) = std::fs::write(&hairpin, "1") {
            if source.kind() == io::ErrorKind::NotFound {
                tracing::warn!(
                    "hairpin mode not set on {}: {hairpin} not visible",
                    endpoint.host_veth
                );
            } else {
                let _ = delete_link(&self.handle, &endpoint.host_veth).await;
                return Err(NetworkError::Sysctl {
                    path: hairpin.into(),
                    source,
                });
            }
        }
        wait_forwarding(&endpoint.host_veth).await;
        Ok(endpoint)
    }

    async fn configure_inside(
        &self,
        net: &NetworkSpec,
        netns: &Path,
        ifname: &str,
        ip: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let ns_name = netns.display().to_string();
        let h = netns_handle(netns)?.map_err(nl("netlink connect", &ns_name))?;
        let index = link_index(&h, ifname)
            .await
            .map_err(nl("look up", ifname))?
            .ok_or_else(|| NetworkError::Netlink {
                op: "find moved veth",
                object: format!("{ifname} in {ns_name}"),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        h.address()
            .add(index, IpAddr::V4(ip), net.subnet.prefix)
            .execute()
            .await
            .map_err(|e| nl("add address to", ifname)(to_io(e)))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl("set up", ifname)(to_io(e)))?;
        if !net.internal {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(net.gateway)
                .output_interface(index)
                .build();
            match h.route().add(route).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl("add default route in", &ns_name)(to_io(e))),
            }
        }
        Ok(())
    }

    /// Deletes the endpoint's veth pair (both ends). Idempotent. This waits
    /// for the kernel (about 20 ms here); when a container's namespace is
    /// going away anyway, [`crate::remove_netns`] alone also removes its veths,
    /// asynchronously, once no process holds the namespace.
    pub async fn disconnect(&self, endpoint: &Endpoint) -> Result<(), NetworkError> {
        delete_link(&self.handle, &endpoint.host_veth)
            .await
            .map_err(nl("delete veth", &endpoint.host_veth))
    }
}

/// Waits until the bridge forwards through port `veth`. The kernel enables a
/// bridge port only after its link-state worker has seen the carrier come up,
/// which runs asynchronously; until then the container's first packets (a DNS
/// query, say) are dropped. Gives up silently after two seconds: the port
/// will still come up, just later.
async fn wait_forwarding(veth: &str) {
    const FORWARDING: &str = "3";
    let path = format!("/sys/class/net/{veth}/brport/state");
    for _ in 0..2000 {
        match std::fs::read_to_string(&path) {
            Ok(state) if state.trim() == FORWARDING => return,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            Err(_) => return,
        }
    }
    tracing::warn!("bridge port {veth} is not forwarding yet");
}

/// Removes everything the instance using nft table `table` made: every bridge
/// registered in the table (with the veths attached to it) and the table.
pub async fn cleanup_all(table: &str) -> Result<(), NetworkError> {
    if !nft::is_safe_word(table) {
        return Err(NetworkError::InvalidName {
            what: "nft table",
            value: table.to_string(),
        });
    }
    let h = host_handle().map_err(nl("netlink connect", "host"))?;
    for elem in nft::set_elements(table, "bridges").await? {
        let Some(br) = elem.as_str() else { continue };
        if let Some(index) = link_index(&h, br).await.map_err(nl("look up", br))? {
            for (_, port) in ports_of(&h, index).await.map_err(nl("list ports of", br))? {
                delete_link(&h, &port)
                    .await
                    .map_err(nl("delete veth", &port))?;
            }
            delete_link(&h, br).await.map_err(nl("delete bridge", br))?;
        }
    }
    nft::run(table, &nft::table_del(table)).await?;
    Ok(())
}
