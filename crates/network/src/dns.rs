//! The embedded DNS server of user networks.
//!
//! One [`DnsServer`] per user network listens on the network's gateway
//! address, port 53 (UDP and TCP). It answers A queries for the names the engine sets
//! (container names, aliases, service names: every address of a name, in a
//! random order) and forwards every other query, as is, to the host's
//! upstream resolvers, answering SERVFAIL when none of them answers.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::files::ResolvConf;

/// How long one upstream may take to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// TTL of the answers for container names (Docker uses 600 s).
const TTL: u32 = 600;

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listening socket could not be bound.
    #[error("binding dns server on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

/// Forward records and the reverse (PTR) map derived from them.
#[derive(Default)]
struct Records {
    forward: HashMap<String, Vec<Ipv4Addr>>,
    reverse: HashMap<Ipv4Addr, String>,
}

struct Shared {
    local: SocketAddr,
    records: RwLock<Records>,
    upstreams: RwLock<Vec<SocketAddr>>,
}

/// A running DNS responder; it stops when dropped.
pub struct DnsServer {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

/// Lower-case, without the trailing dot: the key records are stored under.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Binds `addr` (UDP and TCP) and serves, forwarding unknown names to the host's
    /// resolvers from `/etc/resolv.conf` (port 53). Must be called inside a
    /// tokio runtime.
    pub async fn bind(addr: SocketAddr) -> Result<Self, DnsError> {
        let upstreams = ResolvConf::host()
            .map(|rc| {
                rc.nameservers
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 53))
                    .collect()
            })
            .unwrap_or_default();
        Self::bind_with_upstreams(addr, upstreams).await
    }

    /// Like [`DnsServer::bind`] with explicit upstream resolvers (tried in
    /// order; an empty list makes unknown names fail with SERVFAIL).
    pub async fn bind_with_upstreams(
        addr: SocketAddr,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Self, DnsError> {
        let (sock, tcp, local) = bind_pair(addr).await?;
        let shared = Arc::new(Shared {
            local,
            records: RwLock::new(Records::default()),
            upstreams: RwLock::new(upstreams),
        });
        let udp_task = tokio::spawn(serve_udp(Arc::new(sock), shared.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, shared.clone()));
        Ok(Self {
            shared,
            tasks: [udp_task, tcp_task],
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Replaces every record: name (case-insensitive, trailing dot optional)
    /// to its addresses. Several containers under one name give all theirs.
    /// PTR queries for these addresses are answered from the same table.
    pub fn set_records(&self, records: HashMap<String, Vec<Ipv4Addr>>) {
        let mut table = Records::default();
        for (name, ips) in records {
            let name = normalize(&name);
            for ip in &ips {
                // Reverse lookups give the shortest name of an address
                // (ties: alphabetical), so the answer is stable.
                let slot = table.reverse.entry(*ip).or_insert_with(|| name.clone());
                if (name.len(), &name) < (slot.len(), &*slot) {
                    *slot = name.clone();
                }
            }
            table.forward.entry(name).or_default().extend(ips);
        }
        *self
            .shared
            .records
            .write()
            .unwrap_or_else(|p| p.into_inner()) = table;
    }

    /// Replaces the upstream resolvers.
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        *self
            .shared
            .upstreams
            .write()
            .unwrap_or_else(|p| p.into_inner()) = upstreams;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds UDP and TCP on the same address. With port 0 the UDP port is picked
/// by the kernel and TCP follows it; a few attempts cover the rare case of
/// that TCP port being taken.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let mut attempts = if addr.port() == 0 { 8 } else { 1 };
    loop {
        attempts -= 1;
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind { addr, source })?;
        let local = sock
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((sock, tcp, local)),
            Err(e) if attempts > 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: local,
                    source,
                })
            }
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("dns {}: receive failed: {e}", shared.local);
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let (sock, shared) = (sock.clone(), shared.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&shared, &query, true).await {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!("dns {}: reply to {peer} failed: {e}", shared.local);
                }
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_conn(stream, shared.clone()));
            }
            Err(e) => tracing::debug!("dns {}: accept failed: {e}", shared.local),
        }
    }
}

/// Serves length-prefixed queries on one TCP connection until it closes.
async fn serve_tcp_conn(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = answer(&shared, &query, false).await else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The reply to one query packet, or `None` for packets that are not queries.
/// Over UDP (`udp`), a local answer larger than the client accepts (512
/// bytes, or its EDNS payload size) is replaced by an empty truncated one so
/// the client retries over TCP.
async fn answer(shared: &Shared, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let limit = if udp {
        req.edns
            .as_ref()
            .map_or(512, |e| usize::from(e.max_payload()).max(512))
    } else {
        usize::MAX
    };
    let reply = |code: ResponseCode, answers: Vec<Record>| {
        let mut m = Message::error_msg(req.metadata.id, req.metadata.op_code, code);
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.queries = req.queries.clone();
        m.answers = answers;
        let bytes = m.to_vec().ok()?;
        if bytes.len() > limit {
            return m.truncate().to_vec().ok();
        }
        Some(bytes)
    };
    if req.metadata.op_code != OpCode::Query {
        return reply(ResponseCode::NotImp, Vec::new());
    }
    let [q] = req.queries.as_slice() else {
        return reply(ResponseCode::FormErr, Vec::new());
    };
    match lookup(shared, q) {
        Some(answers) => reply(ResponseCode::NoError, answers),
        None => match forward(shared, packet, req.metadata.id).await {
            Some(raw) => Some(raw),
            None => reply(ResponseCode::ServFail, Vec::new()),
        },
    }
}

/// The local answer to `q`, or `None` if the name is not ours. A known name
/// asked for another type than A gets an empty answer (like Docker's).
fn lookup(shared: &Shared, q: &Query) -> Option<Vec<Record>> {
    let name = normalize(&q.name.to_ascii());
    let records = shared.records.read().unwrap_or_else(|p| p.into_inner());
    if let Some(ips) = records.forward.get(&name) {
        if q.query_type != RecordType::A {
            return Some(Vec::new());
        }
        let mut ips = ips.clone();
        ips.shuffle(&mut rand::thread_rng());
        return Some(
            ips.into_iter()
                .map(|ip| Record::from_rdata(q.name.clone(), TTL, RData::A(A(ip))))
                .collect(),
        );
    }
    if q.query_type == RecordType::PTR {
        let target = records.reverse.get(&parse_arpa(&name)?)?;
        let target = Name::from_ascii(format!("{target}.")).ok()?;
        return Some(vec![Record::from_rdata(
            q.name.clone(),
            TTL,
            RData::PTR(PTR(target)),
        )]);
    }
    None
}

/// `d.c.b.a.in-addr.arpa` to `a.b.c.d`.
fn parse_arpa(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let octets: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match octets.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// Sends the query to each upstream in turn; the first matching answer wins.
async fn forward(shared: &Shared, packet: &[u8], id: u16) -> Option<Vec<u8>> {
    let upstreams = shared
        .upstreams
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for up in upstreams.into_iter().filter(|u| *u != shared.local) {
        match tokio::time::timeout(UPSTREAM_TIMEOUT, ask(up, packet, id)).await {
            Ok(Ok(raw)) => return Some(raw),
            Ok(Err(e)) => tracing::debug!("dns {}: upstream {up}: {e}", shared.local),
            Err(_) => tracing::debug!("dns {}: upstream {up} timed out", shared.local),
        }
    }
    None
}

async fn ask(up: SocketAddr, packet: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    // A connected socket reports ICMP "port unreachable" at once.
    sock.connect(up).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await?;
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}
