//! The embedded DNS server, queried over real UDP sockets.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;

use berth_network::netns::in_netns;
use berth_network::{create_netns, DnsServer, Networking};
use common::{spec, table, Cleanup};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Sends one query from a blocking socket and returns the parsed reply.
fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    sock.send_to(&msg.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

fn addrs(m: &Message) -> HashSet<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_records_and_forwards_the_rest() {
    let upstream = DnsServer::bind_with_upstreams("127.0.0.1:0".parse().unwrap(), vec![])
        .await
        .unwrap();
    upstream.set_records(HashMap::from([(
        "example.test".to_string(),
        vec![Ipv4Addr::new(192, 0, 2, 77)],
    )]));
    let server =
        DnsServer::bind_with_upstreams("127.0.0.1:0".parse().unwrap(), vec![upstream.local_addr()])
            .await
            .unwrap();
    let web = vec![
        Ipv4Addr::new(10, 1, 0, 2),
        Ipv4Addr::new(10, 1, 0, 3),
        Ipv4Addr::new(10, 1, 0, 4),
    ];
    server.set_records(HashMap::from([
        ("web".to_string(), web.clone()),
        ("DB.".to_string(), vec![Ipv4Addr::new(10, 1, 0, 9)]),
    ]));
    let at = server.local_addr();

    let r = blocking(move || query(at, "web", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&r), web.iter().copied().collect());
    let r = blocking(move || query(at, "db.", RecordType::A)).await;
    assert_eq!(addrs(&r), HashSet::from([Ipv4Addr::new(10, 1, 0, 9)]));
    // A known name has no AAAA: an empty NOERROR, not a forward.
    let r = blocking(move || query(at, "web", RecordType::AAAA)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // Reverse lookups of known addresses: the shortest name wins.
    server.set_records(HashMap::from([
        ("web".to_string(), web.clone()),
        ("DB.".to_string(), vec![Ipv4Addr::new(10, 1, 0, 9)]),
        ("db-alias".to_string(), vec![Ipv4Addr::new(10, 1, 0, 9)]),
    ]));
    let r = blocking(move || query(at, "9.0.1.10.in-addr.arpa.", RecordType::PTR)).await;
    let ptr: Vec<String> = r.answers.iter().map(|a| a.data.to_string()).collect();
    assert_eq!(ptr, ["db."], "{r:?}");
    // Unknown names go upstream.
    let r = blocking(move || query(at, "Example.Test.", RecordType::A)).await;
    assert_eq!(addrs(&r), HashSet::from([Ipv4Addr::new(192, 0, 2, 77)]));
    // Unknown everywhere: upstream has no upstream of its own, so SERVFAIL.
    let r = blocking(move || query(at, "nowhere.test.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);

    // Records are replaced as a whole.
    server.set_records(HashMap::new());
    server.set_upstreams(vec![]);
    let r = blocking(move || query(at, "web", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

/// Sends one query over TCP (2-byte length prefix) and parses the reply.
fn query_tcp(server: SocketAddr, name: &str) -> Message {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server).unwrap();
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    let bytes = msg.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_replicas_truncate_over_udp_and_fit_over_tcp() {
    let server = DnsServer::bind_with_upstreams("127.0.0.1:0".parse().unwrap(), vec![])
        .await
        .unwrap();
    let many: Vec<Ipv4Addr> = (2..102).map(|i| Ipv4Addr::new(10, 2, 0, i)).collect();
    server.set_records(HashMap::from([("svc".to_string(), many.clone())]));
    let at = server.local_addr();
    let r = blocking(move || query(at, "svc", RecordType::A)).await;
    assert!(
        r.metadata.truncation,
        "a 100-address answer must not fit 512 bytes"
    );
    assert!(r.answers.is_empty());
    let r = blocking(move || query_tcp(at, "svc")).await;
    assert!(!r.metadata.truncation);
    assert_eq!(addrs(&r), many.iter().copied().collect());
    // Replicas come back shuffled: two answers of 100 addresses in the same
    // order would be a 1-in-100! event.
    let order = |m: &Message| {
        m.answers
            .iter()
            .map(|a| format!("{:?}", a.data))
            .collect::<Vec<_>>()
    };
    let again = blocking(move || query_tcp(at, "svc")).await;
    assert_ne!(order(&r), order(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gives_servfail() {
    // A bound-then-dropped port on loopback: nothing listens there, and the
    // connected forwarding socket gets "port unreachable" at once.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = DnsServer::bind_with_upstreams("127.0.0.1:0".parse().unwrap(), vec![dead])
        .await
        .unwrap();
    let at = server.local_addr();
    let r = blocking(move || query(at, "unknown.test.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_resolves_through_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let guard = Cleanup {
        table: table(),
        netns: vec![a.clone()],
    };
    let net = spec("10.231.7.0/24");
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    create_netns(&a).unwrap();
    nw.connect(&net, &a, "eth0", Ipv4Addr::new(10, 231, 7, 2), None)
        .await
        .unwrap();
    let server = DnsServer::bind_with_upstreams(SocketAddr::new(net.gateway.into(), 53), vec![])
        .await
        .unwrap();
    server.set_records(HashMap::from([(
        "peer".to_string(),
        vec![Ipv4Addr::new(10, 231, 7, 3)],
    )]));
    let gw = net.gateway;
    let r = blocking(move || {
        in_netns(&a, || {
            query(SocketAddr::new(gw.into(), 53), "peer", RecordType::A)
        })
        .unwrap()
    })
    .await;
    assert_eq!(addrs(&r), HashSet::from([Ipv4Addr::new(10, 231, 7, 3)]));
}
