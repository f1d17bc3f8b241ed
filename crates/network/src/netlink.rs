//! Small helpers over `rtnetlink`: connections in the host or in a pinned
//! namespace, errno extraction and link look-ups.

use std::io;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::Handle;

use crate::netns::{in_netns, NetnsError};

/// Converts an rtnetlink error into an `io::Error` that keeps the errno.
pub(crate) fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// The errno of an rtnetlink error, if it is a kernel NACK.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// A netlink connection in the calling thread's namespace; its driver task is
/// spawned on the current tokio runtime and ends when the handle is dropped.
/// Fails (instead of panicking) outside a tokio runtime.
pub(crate) fn host_handle() -> io::Result<Handle> {
    let rt = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let _guard = rt.enter();
    let (conn, handle, _) = rtnetlink::new_connection()?;
    rt.spawn(conn);
    Ok(handle)
}

/// A netlink connection inside the namespace pinned at `path`.
pub(crate) fn netns_handle(path: &Path) -> Result<io::Result<Handle>, NetnsError> {
    let rt = match tokio::runtime::Handle::try_current() {
        Ok(rt) => rt,
        Err(e) => return Ok(Err(io::Error::other(e))),
    };
    in_netns(path, move || {
        let _guard = rt.enter();
        host_handle()
    })
}

/// The index of link `name`, or `None` if there is no such link.
pub(crate) async fn link_index(h: &Handle, name: &str) -> io::Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(to_io(e)),
    }
}

/// Names and indexes of the links whose controller (bridge) is `controller`.
pub(crate) async fn ports_of(h: &Handle, controller: u32) -> io::Result<Vec<(u32, String)>> {
    let mut links = h.link().get().execute();
    let mut out = Vec::new();
    while let Some(link) = links.try_next().await.map_err(to_io)? {
        let attached = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == controller));
        if attached {
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            out.push((link.header.index, name.unwrap_or_default()));
        }
    }
    Ok(out)
}

/// Deletes link `name`; a missing link is not an error.
pub(crate) async fn delete_link(h: &Handle, name: &str) -> io::Result<()> {
    let Some(index) = link_index(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(to_io(e)),
    }
}
