//! The event bus behind `GET /events`: every state change is published here in Docker's
//! event schema, kept in a bounded history for `--since`, and fanned out to subscribers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::{ContainerRecord, MountPoint};
use crate::Engine;

const HISTORY: usize = 1024;

/// One event as Docker's API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    // Legacy fields the docker CLI still reads for containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The object an event is about.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Publishes events and remembers the recent ones.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        Self {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes one event of `kind` ("container", "image", ...) about `id`.
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let legacy = kind == "container" || kind == "image";
        let ev = Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes: attributes.clone(),
            },
            scope: "local".into(),
            time: now.timestamp(),
            time_nano: nanos,
            status: legacy.then(|| action.to_string()),
            id: legacy.then(|| id.to_string()),
            from: if kind == "container" {
                attributes.get("image").cloned()
            } else {
                None
            },
        };
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// The remembered events (oldest first) and a receiver for the ones after them.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = match self.history.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        let rx = self.tx.subscribe();
        (h.iter().cloned().collect(), rx)
    }
}

/// The networks a running container is joined to, as (id, name, driver) for their events:
/// the `host` or `none` network for those modes, none for `container:X`, else each network
/// on which it holds an endpoint.
fn joined_networks(engine: &Engine, c: &ContainerRecord) -> Vec<(String, String, String)> {
    let mode = c.host_config.network_mode.as_str();
    let names: Vec<String> = match mode {
        "host" | "none" => vec![mode.to_string()],
        m if m.starts_with("container:") => Vec::new(),
        _ => c
            .networks
            .iter()
            .filter(|(_, ep)| !ep.endpoint_id.is_empty())
            .map(|(name, _)| name.clone())
            .collect(),
    };
    names
        .iter()
        .filter_map(|n| engine.find_network(n).ok())
        .map(|n| (n.id, n.name, n.driver))
        .collect()
}

/// The network and volume events of one container joining (`true`, at start) or leaving
/// (`false`, after it died).
pub(crate) struct JoinEvents {
    networks: Vec<(String, String, String)>,
    volumes: Vec<MountPoint>,
    container: String,
}

impl JoinEvents {
    /// What `c` is joined to now (call before its endpoints are torn down).
    pub(crate) fn of(engine: &Engine, c: &ContainerRecord) -> Self {
        Self {
            networks: joined_networks(engine, c),
            volumes: c
                .mounts
                .iter()
                .filter(|m| m.kind == "volume")
                .cloned()
                .collect(),
            container: c.id.clone(),
        }
    }

    /// Publishes Docker's `network connect` + `volume mount` events (`joined`), or
    /// `network disconnect` + `volume unmount`.
    pub(crate) fn publish(&self, bus: &EventBus, joined: bool) {
        let action = if joined { "connect" } else { "disconnect" };
        for (id, name, driver) in &self.networks {
            let attrs = BTreeMap::from([
                ("container".to_string(), self.container.clone()),
                ("name".to_string(), name.clone()),
                ("type".to_string(), driver.clone()),
            ]);
            bus.publish("network", action, id, attrs);
        }
        for m in &self.volumes {
            let driver = if m.driver.is_empty() {
                "local".to_string()
            } else {
                m.driver.clone()
            };
            let mut attrs = BTreeMap::from([
                ("container".to_string(), self.container.clone()),
                ("driver".to_string(), driver),
            ]);
            if joined {
                attrs.insert("destination".into(), m.destination.clone());
                attrs.insert("propagation".into(), m.propagation.clone());
                attrs.insert("read/write".into(), m.rw.to_string());
            }
            let action = if joined { "mount" } else { "unmount" };
            bus.publish("volume", action, &m.name, attrs);
        }
    }
}
