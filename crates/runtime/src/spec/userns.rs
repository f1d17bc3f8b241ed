//! The parts of a spec for a container in its own user namespace (`--userns-remap`).
//!
//! Root in the container is an unprivileged id on the host. The runtime joins the user
//! namespace first and then the other namespaces, so a network namespace made beforehand
//! must belong to that user namespace: the engine creates both together and the spec
//! names the user namespace's path. Without a path the runtime creates it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One id range of the mapping: container ids `0..size` are host ids `host_id..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// first host id (the container's 0)
    pub host_id: u32,
    /// number of ids mapped
    pub size: u32,
}

/// The uid and gid mappings of a remapped container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernsMaps {
    /// uid mapping
    pub uid: IdMapping,
    /// gid mapping
    pub gid: IdMapping,
    /// an existing user namespace with these mappings to join (None: create one)
    pub path: Option<PathBuf>,
}

fn mapping(m: &IdMapping) -> Value {
    json!([{"containerID": 0, "hostID": m.host_id, "size": m.size}])
}

/// Adds the user namespace (to join, or to create) and its mappings to `linux`. The
/// mappings are written in both cases: runtimes use them to find the container's root.
pub(super) fn apply(maps: &UsernsMaps, linux: &mut Value) {
    let ns = match &maps.path {
        Some(p) => json!({"type": "user", "path": p}),
        None => json!({"type": "user"}),
    };
    if let Some(list) = linux["namespaces"].as_array_mut() {
        list.insert(0, ns);
    }
    linux["uidMappings"] = mapping(&maps.uid);
    linux["gidMappings"] = mapping(&maps.gid);
}
