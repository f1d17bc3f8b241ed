//! Bridges, veths, isolation and NAT with real kernel objects.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};

use berth_network::netns::in_netns;
use berth_network::ports::PortError;
use berth_network::{allocate_host_port, create_netns, Networking, PortMapping, Proto};
use common::{link_exists, ping_from, run, spec, table, Cleanup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_one_bridge_ping_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut guard = Cleanup {
        table: table(),
        netns: vec![a.clone(), b.clone()],
    };
    let net = spec("10.231.1.0/24");
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    nw.ensure_network(&net).await.unwrap(); // idempotent
    create_netns(&a).unwrap();
    create_netns(&b).unwrap();
    let ip_a = Ipv4Addr::new(10, 231, 1, 2);
    let ip_b = Ipv4Addr::new(10, 231, 1, 3);
    let ea = nw.connect(&net, &a, "eth0", ip_a, None).await.unwrap();
    let eb = nw
        .connect(&net, &b, "eth0", ip_b, Some([2, 0, 0, 0, 0, 9]))
        .await
        .unwrap();
    assert_eq!(ea.mac, [0x02, 0x42, 10, 231, 1, 2]);
    assert!(link_exists(&ea.host_veth) && link_exists(&eb.host_veth));

    assert!(ping_from(&a, ip_b), "a cannot ping b");
    assert!(ping_from(&b, ip_a), "b cannot ping a");
    assert!(ping_from(&a, net.gateway), "a cannot ping the gateway");
    let ns_arg = format!("--net={}", b.display());
    let (_, routes) = run(&["nsenter", &ns_arg, "ip", "route"]);
    assert!(
        routes.contains("default via 10.231.1.1 dev eth0"),
        "{routes}"
    );
    let (_, link) = run(&["nsenter", &ns_arg, "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("02:00:00:00:00:09"), "{link}");
    // A second interface of the same name in that namespace is a conflict.
    let err = nw
        .connect(&net, &b, "eth0", Ipv4Addr::new(10, 231, 1, 4), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), berth_network::ErrorKind::Conflict, "{err}");
    let (_, brlink) = run(&["ip", "-o", "link", "show", &net.bridge]);
    assert!(
        brlink.contains("02:42:0a:e7:01:01"),
        "bridge mac not fixed: {brlink}"
    );

    nw.disconnect(&ea).await.unwrap();
    nw.disconnect(&ea).await.unwrap(); // idempotent
    assert!(!link_exists(&ea.host_veth));
    let ns_arg = format!("--net={}", a.display());
    let (_, links) = run(&["nsenter", &ns_arg, "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "veth left in netns: {links}");

    nw.disconnect(&eb).await.unwrap();
    nw.remove_network(&net).await.unwrap();
    nw.remove_network(&net).await.unwrap(); // idempotent
    assert!(!link_exists(&net.bridge));
    let (_, listing) = run(&["nft", "list", "table", "ip", &guard.table]);
    assert!(!listing.contains(&net.bridge), "{listing}");
    assert!(!listing.contains("10.231.1.0/24"), "{listing}");
    guard.netns.clear();
    berth_network::remove_netns(&a).unwrap();
    berth_network::remove_netns(&b).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_isolated_and_internal_has_no_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let _guard = Cleanup {
        table: table(),
        netns: vec![a.clone(), b.clone(), c.clone()],
    };
    let n1 = spec("10.231.2.0/24");
    let n2 = spec("10.231.3.0/24");
    let mut n3 = spec("10.231.4.0/24");
    n3.internal = true;
    let nw = Networking::new(_guard.table.clone()).unwrap();
    for (net, ns) in [(&n1, &a), (&n2, &b), (&n3, &c)] {
        nw.ensure_network(net).await.unwrap();
        create_netns(ns).unwrap();
        nw.connect(
            net,
            ns,
            "eth0",
            Ipv4Addr::from(u32::from(net.gateway) + 1),
            None,
        )
        .await
        .unwrap();
    }
    // Reaching the own gateway works; crossing to another network does not.
    assert!(ping_from(&a, n1.gateway));
    assert!(
        !ping_from(&a, Ipv4Addr::new(10, 231, 3, 2)),
        "n1 reached a container of n2"
    );
    // The internal network has no default route.
    let ns_arg = format!("--net={}", c.display());
    let (_, routes) = run(&["nsenter", &ns_arg, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    // Forwarding is on and our table carries masquerade for n1 only.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let (_, masq) = run(&["nft", "list", "set", "ip", &_guard.table, "masq"]);
    assert!(
        masq.contains("10.231.2.0/24") && !masq.contains("10.231.4.0/24"),
        "{masq}"
    );
}

fn serve_once(listener: TcpListener) -> std::thread::JoinHandle<std::net::SocketAddr> {
    std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(b"hello").unwrap();
        peer
    })
}

fn read_all(addr: SocketAddrV4) -> String {
    // The timeout only turns a broken set-up into a failure instead of a hang.
    let mut s =
        TcpStream::connect_timeout(&addr.into(), std::time::Duration::from_secs(10)).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_reachable_on_loopback_and_conflicts_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let guard = Cleanup {
        table: table(),
        netns: vec![a.clone(), b.clone()],
    };
    let net = spec("10.231.5.0/24");
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    create_netns(&a).unwrap();
    create_netns(&b).unwrap();
    let ip_a = Ipv4Addr::new(10, 231, 5, 2);
    nw.connect(&net, &a, "eth0", ip_a, None).await.unwrap();
    nw.connect(&net, &b, "eth0", Ipv4Addr::new(10, 231, 5, 3), None)
        .await
        .unwrap();

    let owner = format!("c{}", common::rand_hex(12));
    let port = allocate_host_port(Proto::Tcp).unwrap();
    let map = PortMapping {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: port,
        container_ip: ip_a,
        container_port: 80,
        proto: Proto::Tcp,
    };
    let done = nw.publish(&[map], &owner).await.unwrap();
    assert_eq!(done, vec![map]);

    // From the host on 127.0.0.1.
    let listener = in_netns(&a, || TcpListener::bind("0.0.0.0:80").unwrap()).unwrap();
    let server = serve_once(listener.try_clone().unwrap());
    assert_eq!(
        read_all(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        "hello"
    );
    let peer = server.join().unwrap();
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(net.gateway),
        "loopback traffic not masqueraded"
    );

    // The port is reserved: another publish and a plain bind both fail.
    let err = nw.publish(&[map], "other").await.unwrap_err();
    assert!(matches!(err, PortError::InUse { .. }), "{err}");
    assert_eq!(err.kind(), berth_network::ErrorKind::Conflict);
    assert!(err.to_string().contains("already allocated"), "{err}");
    assert!(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_err());

    // All addresses, with an ephemeral port, reachable from another container
    // through a host address (the gateway).
    let any = PortMapping {
        host_ip: None,
        host_port: 0,
        ..map
    };
    let got = nw.publish(&[any], &owner).await.unwrap();
    let any_port = got[0].host_port;
    assert_ne!(any_port, 0);
    let server = serve_once(listener.try_clone().unwrap());
    let text = in_netns(&b, || read_all(SocketAddrV4::new(net.gateway, any_port))).unwrap();
    assert_eq!(text, "hello");
    server.join().unwrap();
    // And from the publishing container itself (hairpin).
    let server = serve_once(listener.try_clone().unwrap());
    let text = in_netns(&a, || read_all(SocketAddrV4::new(net.gateway, any_port))).unwrap();
    assert_eq!(text, "hello");
    assert_eq!(
        server.join().unwrap().ip(),
        std::net::IpAddr::V4(net.gateway)
    );

    // Unpublish removes the rules and frees the ports.
    nw.unpublish(&owner).await.unwrap();
    nw.unpublish(&owner).await.unwrap();
    let (_, chain) = run(&["nft", "list", "chain", "ip", &guard.table, "publish"]);
    assert!(!chain.contains(&owner), "{chain}");
    drop(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).unwrap());
    drop(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, any_port)).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_all_removes_bridges_veths_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let t = table();
    let net = spec("10.231.6.0/24");
    let nw = Networking::new(t.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    create_netns(&a).unwrap();
    let ep = nw
        .connect(&net, &a, "eth0", Ipv4Addr::new(10, 231, 6, 2), None)
        .await
        .unwrap();
    berth_network::cleanup_all(&t).await.unwrap();
    assert!(!link_exists(&ep.host_veth));
    assert!(!link_exists(&net.bridge));
    assert!(!run(&["nft", "list", "table", "ip", &t]).0);
    berth_network::cleanup_all(&t).await.unwrap();
    berth_network::remove_netns(&a).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_after_restart_replaces_rules_and_udp_works() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let guard = Cleanup {
        table: table(),
        netns: vec![a.clone()],
    };
    let net = spec("10.231.8.0/24");
    let ip_a = Ipv4Addr::new(10, 231, 8, 2);
    let owner = format!("c{}", common::rand_hex(12));
    let port = allocate_host_port(Proto::Udp).unwrap();
    let map = PortMapping {
        host_ip: None,
        host_port: port,
        container_ip: ip_a,
        container_port: 53,
        proto: Proto::Udp,
    };
    {
        let first = Networking::new(guard.table.clone()).unwrap();
        first.ensure_network(&net).await.unwrap();
        create_netns(&a).unwrap();
        first.connect(&net, &a, "eth0", ip_a, None).await.unwrap();
        first.publish(&[map], &owner).await.unwrap();
    } // the "daemon" goes away: reservations are released, rules stay
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    nw.publish(&[map], &owner).await.unwrap();
    let (_, chain) = run(&["nft", "list", "chain", "ip", &guard.table, "publish"]);
    assert_eq!(chain.matches(&owner).count(), 1, "{chain}");

    // UDP through the published port, from the host's loopback.
    let sock = in_netns(&a, || std::net::UdpSocket::bind("0.0.0.0:53").unwrap()).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"ping", SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    sock.send_to(b"pong", from).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");

    nw.unpublish(&owner).await.unwrap();
    let (_, chain) = run(&["nft", "list", "chain", "ip", &guard.table, "publish"]);
    assert!(!chain.contains(&owner), "{chain}");
}

/// A namespace reachable from the host through a plain veth (not a berth
/// bridge) that has no route back to container subnets: replies reach a
/// container only if its traffic was masqueraded.
struct Outside {
    host_if: String,
}

impl Outside {
    fn new(ns: &std::path::Path, host_cidr: &str, peer_cidr: &str) -> Self {
        create_netns(ns).unwrap();
        let host_if = format!("vo{}", common::rand_hex(8));
        let peer_tmp = format!("vp{}", common::rand_hex(8));
        let ns_s = ns.display().to_string();
        let net = format!("--net={ns_s}");
        for cmd in [
            vec![
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_tmp,
            ],
            vec!["ip", "link", "set", &peer_tmp, "netns", &ns_s],
            vec!["ip", "addr", "add", host_cidr, "dev", &host_if],
            vec!["ip", "link", "set", &host_if, "up"],
            vec![
                "nsenter", &net, "ip", "addr", "add", peer_cidr, "dev", &peer_tmp,
            ],
            vec!["nsenter", &net, "ip", "link", "set", &peer_tmp, "up"],
        ] {
            let (ok, out) = run(&cmd);
            assert!(ok, "{cmd:?}: {out}");
        }
        Self { host_if }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.host_if]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_traffic_is_masqueraded_and_internal_stays_in() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c, o) = (
        dir.path().join("a"),
        dir.path().join("c"),
        dir.path().join("o"),
    );
    let guard = Cleanup {
        table: table(),
        netns: vec![a.clone(), c.clone(), o.clone()],
    };
    let _outside = Outside::new(&o, "10.232.9.1/30", "10.232.9.2/30");
    let net = spec("10.231.9.0/24");
    let mut internal = spec("10.231.10.0/24");
    internal.internal = true;
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    nw.ensure_network(&internal).await.unwrap();
    create_netns(&a).unwrap();
    create_netns(&c).unwrap();
    nw.connect(&net, &a, "eth0", Ipv4Addr::new(10, 231, 9, 2), None)
        .await
        .unwrap();
    nw.connect(&internal, &c, "eth0", Ipv4Addr::new(10, 231, 10, 2), None)
        .await
        .unwrap();

    let listener = in_netns(&o, || TcpListener::bind("10.232.9.2:8000").unwrap()).unwrap();
    let server = serve_once(listener.try_clone().unwrap());
    let text = in_netns(&a, || {
        read_all(SocketAddrV4::new(Ipv4Addr::new(10, 232, 9, 2), 8000))
    })
    .unwrap();
    assert_eq!(text, "hello");
    let peer = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), "10.232.9.1", "not masqueraded");

    // The internal network has no route out at all.
    let err = in_netns(&c, || {
        TcpStream::connect(SocketAddrV4::new(Ipv4Addr::new(10, 232, 9, 2), 8000)).unwrap_err()
    })
    .unwrap();
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_follows_a_republished_port() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let guard = Cleanup {
        table: table(),
        netns: vec![a.clone(), b.clone()],
    };
    let net = spec("10.231.12.0/24");
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 231, 12, 2), Ipv4Addr::new(10, 231, 12, 3));
    let nw = Networking::new(guard.table.clone()).unwrap();
    nw.ensure_network(&net).await.unwrap();
    create_netns(&a).unwrap();
    create_netns(&b).unwrap();
    nw.connect(&net, &a, "eth0", ip_a, None).await.unwrap();
    nw.connect(&net, &b, "eth0", ip_b, None).await.unwrap();
    let sock_a = in_netns(&a, || std::net::UdpSocket::bind("0.0.0.0:53").unwrap()).unwrap();
    let sock_b = in_netns(&b, || std::net::UdpSocket::bind("0.0.0.0:53").unwrap()).unwrap();
    // The timeout only turns a failure into an error instead of a hang.
    sock_b
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let port = allocate_host_port(Proto::Udp).unwrap();
    let to = |ip| PortMapping {
        host_ip: None,
        host_port: port,
        container_ip: ip,
        container_port: 53,
        proto: Proto::Udp,
    };
    let (oa, ob) = (
        format!("a{}", common::rand_hex(8)),
        format!("b{}", common::rand_hex(8)),
    );

    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    nw.publish(&[to(ip_a)], &oa).await.unwrap();
    client.send_to(b"one", target).unwrap();
    let mut buf = [0u8; 8];
    let (n, _) = sock_a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");

    // Same client socket, same 5-tuple: after the port moves to b, the
    // tracked flow must not keep going to a.
    nw.unpublish(&oa).await.unwrap();
    nw.publish(&[to(ip_b)], &ob).await.unwrap();
    client.send_to(b"two", target).unwrap();
    let (n, _) = sock_b
        .recv_from(&mut buf)
        .expect("the flow still goes to the old container");
    assert_eq!(&buf[..n], b"two");
    sock_a.set_nonblocking(true).unwrap();
    assert!(sock_a.recv_from(&mut buf).is_err());
    nw.unpublish(&ob).await.unwrap();
}
