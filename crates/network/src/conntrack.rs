//! Flushing conntrack entries of unpublished UDP ports, over ctnetlink.
//!
//! A UDP "connection" keeps its DNAT target for as long as packets flow, so
//! without this a client that keeps talking to a re-published port would
//! still reach the old container. (TCP needs nothing: a new connection gets a
//! new entry, and old ones die with the old container.)

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

fn request(msg: ConntrackMessage, flags: u16) -> Vec<u8> {
    let nf = NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0), msg);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(nf));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// Reads replies until the kernel's DONE (dump) or ACK/error (single
/// request); returns the conntrack messages received.
fn read_replies(sock: &Socket, dump: bool) -> io::Result<Vec<ConntrackMessage>> {
    let mut out = Vec::new();
    loop {
        let (buf, _) = sock.recv_from_full()?;
        let mut offset = 0;
        while offset < buf.len() {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) if e.code.is_none() => return Ok(out),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(m),
                    ..
                }) => out.push(m),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += (len + 3) & !3;
        }
        if !dump {
            return Ok(out);
        }
    }
}

/// The original-direction tuple of an entry if it is UDP to `port`.
fn udp_to_port(attrs: &[ConntrackAttribute], port: u16) -> Option<Vec<Tuple>> {
    attrs.iter().find_map(|a| match a {
        ConntrackAttribute::CtaTupleOrig(tuple) => {
            let matches = tuple.iter().any(|t| match t {
                Tuple::Proto(p) => {
                    p.contains(&ProtoTuple::Protocol(Protocol::Udp))
                        && p.contains(&ProtoTuple::DestinationPort(port))
                }
                _ => false,
            });
            matches.then(|| tuple.clone())
        }
        _ => None,
    })
}

/// Deletes every IPv4 UDP conntrack entry whose original destination port is
/// one of `ports`. Returns how many were deleted. Blocking: a few syscalls.
pub(crate) fn flush_udp_ports(ports: &[u16]) -> io::Result<usize> {
    if ports.is_empty() {
        return Ok(0);
    }
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    sock.send(
        &request(ConntrackMessage::Get(vec![]), NLM_F_REQUEST | NLM_F_DUMP),
        0,
    )?;
    let entries = read_replies(&sock, true)?;
    let mut deleted = 0;
    for entry in entries {
        let attrs = match &entry {
            ConntrackMessage::New(a) | ConntrackMessage::Get(a) => a,
            _ => continue,
        };
        let Some(tuple) = ports.iter().find_map(|p| udp_to_port(attrs, *p)) else {
            continue;
        };
        let del = ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(tuple)]);
        sock.send(&request(del, NLM_F_REQUEST | NLM_F_ACK), 0)?;
        match read_replies(&sock, false) {
            Ok(_) => deleted += 1,
            // Gone meanwhile (expired or deleted by someone else).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
