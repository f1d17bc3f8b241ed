//! Container networking for Berth: network namespaces, IPAM, Linux bridges with
//! veth pairs, NAT and published ports (nftables), the `/etc/resolv.conf` and
//! `/etc/hosts` contents, and the embedded DNS server of user networks.
//!
//! # How the kernel is driven, and why
//!
//! * Links, addresses and routes go through **rtnetlink** (the `rtnetlink`
//!   crate): one netlink round trip per change instead of one `ip` process per
//!   change, which keeps `connect` in the low milliseconds. To configure the
//!   inside of a container's namespace, a netlink socket is opened from a
//!   short-lived thread that first joins that namespace (a socket stays bound
//!   to the namespace it was created in), so the multi-threaded daemon itself
//!   never changes namespace.
//! * Packet filtering and NAT go through **`nft -f -`** with whole scripts,
//!   because an nft script is applied as one kernel transaction (atomic), and
//!   the nftables netlink protocol is large and poorly served by crates. The
//!   rules live in one table of family `ip` whose name is chosen by the caller
//!   ([`Networking::new`]); per-network facts are elements of named sets, so
//!   adding or removing a network never rewrites the rules of another one.
//!
//! This crate keeps no state on disk: everything it creates is a kernel object
//! (bridge, veth, nft table), created idempotently and removable with
//! [`cleanup_all`]. Published-port reservations (listening sockets) are the
//! only in-memory state, owned by a [`Networking`] value.

mod conntrack;
pub mod dns;
pub mod files;
pub mod ipam;
mod netlink;
pub mod netns;
mod netns_userns;
mod nft;
pub mod ports;
mod setup;

pub use dns::{DnsError, DnsServer};
pub use files::{
    container_resolv_conf, host_nameservers, hosts_file, resolv_conf, FilesError, ResolvConf,
};
pub use ipam::{default_subnet_for, free_subnet, host_routes, overlaps, Ipam, IpamError, Ipv4Net};
pub use netns::{create_netns, in_netns, remove_netns, NetnsError};
pub use netns_userns::create_netns_in_userns;
pub use nft::NftError;
pub use ports::{allocate_host_port, PortError, PortMapping, Proto};
pub use setup::{cleanup_all, mac_for, Endpoint, NetworkError, NetworkSpec, Networking};

/// What kind of failure an error of this crate is, for the engine to map to
/// its own kinds (and the API to HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: a malformed name, subnet or address.
    InvalidArgument,
    /// Something is already taken: a host port, an address, an interface name.
    Conflict,
    /// A needed object is missing (e.g. the network's bridge).
    NotFound,
    /// The system refused or failed (netlink, nft, sysctl, sockets).
    System,
}

impl NetworkError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::InvalidName { .. } => ErrorKind::InvalidArgument,
            NetworkError::NoBridge(_) => ErrorKind::NotFound,
            NetworkError::Netlink { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
                ErrorKind::Conflict
            }
            _ => ErrorKind::System,
        }
    }
}

impl PortError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PortError::InvalidOwner(_) => ErrorKind::InvalidArgument,
            PortError::InUse { .. } => ErrorKind::Conflict,
            PortError::Bind { source, .. }
                if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
            {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::System,
        }
    }
}

impl IpamError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IpamError::InvalidSubnet(_) | IpamError::OutOfRange { .. } => {
                ErrorKind::InvalidArgument
            }
            IpamError::InUse { .. } | IpamError::Exhausted(_) => ErrorKind::Conflict,
        }
    }
}
