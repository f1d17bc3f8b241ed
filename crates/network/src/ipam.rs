//! IPv4 subnets and address allocation.
//!
//! The engine records which addresses are in use (in its DB); this module only
//! picks addresses and subnets, so it holds no state.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors of subnet parsing and address allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The text is not `a.b.c.d/len` with `len <= 32`.
    #[error("invalid subnet {0:?}: expected a.b.c.d/len")]
    InvalidSubnet(String),
    /// A requested address lies outside the subnet or is reserved.
    #[error("address {ip} is not a usable address of {subnet}")]
    OutOfRange {
        /// The requested address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// A requested address is already used.
    #[error("address {ip} is already in use in {subnet}")]
    InUse {
        /// The requested address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// No free address is left.
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
}

/// An IPv4 network: an address and a prefix length. The address is kept as
/// given; [`Ipv4Net::network`] gives the masked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv4Net {
    /// The address as written (normally the network address).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// Builds a network; `None` if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// This network with host bits cleared.
    pub fn trunc(&self) -> Self {
        Self {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    /// The first usable host address (network + 1), Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).saturating_add(1))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = IpamError;

    /// Parses `a.b.c.d/len`; a bare address means `/32`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpamError::InvalidSubnet(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| bad())?;
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

/// Whether two networks share at least one address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    let prefix = a.prefix.min(b.prefix);
    let shorter = Ipv4Net {
        addr: a.addr,
        prefix,
    };
    shorter.contains(b.addr)
}

/// Address allocation inside a subnet (stateless: the caller passes what is used).
pub struct Ipam;

impl Ipam {
    /// Returns `requested` if it is a usable, free address of `subnet`, or else
    /// the lowest free one. Never returns the network address, the broadcast
    /// address (for prefixes below /31), the gateway or an address in `used`.
    pub fn allocate(
        subnet: &Ipv4Net,
        gateway: Ipv4Addr,
        used: &HashSet<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let (first, last) = if subnet.prefix >= 31 {
            (u32::from(subnet.network()), u32::from(subnet.broadcast()))
        } else {
            (
                u32::from(subnet.network()) + 1,
                u32::from(subnet.broadcast()) - 1,
            )
        };
        let free = |ip: Ipv4Addr| ip != gateway && !used.contains(&ip);
        if let Some(ip) = requested {
            let n = u32::from(ip);
            if n < first || n > last {
                return Err(IpamError::OutOfRange {
                    ip,
                    subnet: *subnet,
                });
            }
            if !free(ip) {
                return Err(IpamError::InUse {
                    ip,
                    subnet: *subnet,
                });
            }
            return Ok(ip);
        }
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| free(*ip))
            .ok_or(IpamError::Exhausted(*subnet))
    }
}

/// Docker-like default pools: 172.17.0.0/16 ..= 172.31.0.0/16, then the /20s
/// of 192.168.0.0/16.
fn candidates() -> impl Iterator<Item = Ipv4Net> {
    let a = (17u8..=31).map(|b| Ipv4Net {
        addr: Ipv4Addr::new(172, b, 0, 0),
        prefix: 16,
    });
    let b = (0u8..16).map(|i| Ipv4Net {
        addr: Ipv4Addr::new(192, 168, i * 16, 0),
        prefix: 20,
    });
    a.chain(b)
}

/// The host's IPv4 routes from `/proc/net/route`, excluding default routes. Routes of
/// Berth bridges count too: they may belong to another daemon on this host.
pub fn host_routes() -> Vec<Ipv4Net> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    parse_proc_route(&text)
}

fn parse_proc_route(text: &str) -> Vec<Ipv4Net> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, mask) = (f.get(1)?, f.get(7)?);
            let dst = u32::from_str_radix(dst, 16).ok()?;
            let mask = u32::from_str_radix(mask, 16).ok()?;
            // /proc/net/route prints addresses in host (little-endian) order.
            let (dst, mask) = (u32::from_be(dst.to_le()), u32::from_be(mask.to_le()));
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            (prefix > 0).then(|| Ipv4Net {
                addr: Ipv4Addr::from(dst),
                prefix,
            })
        })
        .collect()
}

/// The `index`-th default pool (counting from 0) that does not overlap a host
/// route, or `None` when the pools are exhausted.
pub fn default_subnet_for(index: usize) -> Option<Ipv4Net> {
    let routes = host_routes();
    candidates()
        .filter(|c| !routes.iter().any(|r| overlaps(c, r)))
        .nth(index)
}

/// The first default pool that overlaps neither a host route nor `taken`.
pub fn free_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let routes = host_routes();
    candidates().find(|c| !routes.iter().chain(taken).any(|r| overlaps(c, r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_print() {
        assert_eq!(net("172.17.0.0/16").to_string(), "172.17.0.0/16");
        assert_eq!(net("10.0.0.1").prefix, 32);
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0/8".parse::<Ipv4Net>().is_err());
        assert!("bogus".parse::<Ipv4Net>().is_err());
        assert_eq!(net("10.1.2.3/8").network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(
            net("10.1.2.3/8").broadcast(),
            Ipv4Addr::new(10, 255, 255, 255)
        );
        assert_eq!(net("0.0.0.0/0").mask(), 0);
    }

    #[test]
    fn overlap() {
        assert!(overlaps(&net("172.17.0.0/16"), &net("172.17.5.0/24")));
        assert!(overlaps(&net("172.17.5.0/24"), &net("172.17.0.0/16")));
        assert!(!overlaps(&net("172.17.0.0/16"), &net("172.18.0.0/16")));
        assert!(overlaps(&net("0.0.0.0/0"), &net("1.2.3.4/32")));
    }

    #[test]
    fn allocate_skips_reserved_and_used() {
        let s = net("10.9.0.0/29");
        let gw = s.first_host();
        let mut used = HashSet::new();
        let a = Ipam::allocate(&s, gw, &used, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        used.insert(a);
        assert_eq!(
            Ipam::allocate(&s, gw, &used, None).unwrap(),
            Ipv4Addr::new(10, 9, 0, 3)
        );
        for i in 3..=6 {
            used.insert(Ipv4Addr::new(10, 9, 0, i));
        }
        assert_eq!(
            Ipam::allocate(&s, gw, &used, None),
            Err(IpamError::Exhausted(s))
        );
    }

    #[test]
    fn allocate_requested() {
        let s = net("10.9.0.0/24");
        let gw = s.first_host();
        let used: HashSet<_> = [Ipv4Addr::new(10, 9, 0, 7)].into();
        let want = Ipv4Addr::new(10, 9, 0, 9);
        assert_eq!(Ipam::allocate(&s, gw, &used, Some(want)).unwrap(), want);
        assert!(matches!(
            Ipam::allocate(&s, gw, &used, Some(Ipv4Addr::new(10, 9, 0, 7))),
            Err(IpamError::InUse { .. })
        ));
        assert!(matches!(
            Ipam::allocate(&s, gw, &used, Some(gw)),
            Err(IpamError::InUse { .. })
        ));
        for bad in [
            Ipv4Addr::new(10, 9, 0, 0),
            Ipv4Addr::new(10, 9, 0, 255),
            Ipv4Addr::new(10, 8, 0, 5),
        ] {
            assert!(matches!(
                Ipam::allocate(&s, gw, &used, Some(bad)),
                Err(IpamError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn proc_route_parsing() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    berth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        // Every bridge counts, ours included: another daemon's networks (a second berthd,
        // leftovers) must not be handed out again.
        assert_eq!(
            parse_proc_route(text),
            vec![net("192.0.2.0/24"), net("172.17.0.0/16")]
        );
    }

    #[test]
    fn default_subnets_avoid_routes() {
        let first = default_subnet_for(0).unwrap();
        let routes = host_routes();
        assert!(!routes.iter().any(|r| overlaps(&first, r)));
        let next = free_subnet(&[first]).unwrap();
        assert_ne!(first, next);
        assert!(!overlaps(&first, &next));
    }
}
