//! `POST /containers/create`: merge the request with the image's config as Docker does,
//! prepare the writable snapshot, and record the container.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{now_rfc3339, ZERO_TIME};
use crate::error::{EngineError, Result};
use crate::model::{
    ContainerConfig, ContainerRecord, ContainerState, CreateRequest, EndpointSettings,
};
use crate::names;
use crate::Engine;

/// Merges a create request's config over the image's, with Docker's rules: the request's
/// Entrypoint replaces the image's and then the image's Cmd is dropped; Env is merged by
/// key; Labels, ExposedPorts and Volumes are unions; everything else falls back to the image.
pub fn merge_config(req: &ContainerConfig, image: &ContainerConfig) -> ContainerConfig {
    let mut out = req.clone();
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for e in req.env.clone().unwrap_or_default() {
        let key = e.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    out.env = Some(env);
    match &req.entrypoint {
        Some(ep) => {
            out.entrypoint = if ep.len() == 1 && ep[0].is_empty() {
                None
            } else {
                Some(ep.clone())
            };
            out.cmd = req.cmd.clone();
        }
        None => {
            out.entrypoint = image.entrypoint.clone();
            out.cmd = match &req.cmd {
                Some(c) if !c.is_empty() => Some(c.clone()),
                _ => image.cmd.clone(),
            };
        }
    }
    if out.working_dir.is_empty() {
        out.working_dir = image.working_dir.clone();
    }
    if out.user.is_empty() {
        out.user = image.user.clone();
    }
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(req.labels.clone().unwrap_or_default());
    out.labels = Some(labels);
    let mut ports = image.exposed_ports.clone().unwrap_or_default();
    ports.extend(req.exposed_ports.clone().unwrap_or_default());
    out.exposed_ports = (!ports.is_empty()).then_some(ports);
    let mut vols = image.volumes.clone().unwrap_or_default();
    vols.extend(req.volumes.clone().unwrap_or_default());
    out.volumes = (!vols.is_empty()).then_some(vols);
    if out.stop_signal.is_none() {
        out.stop_signal = image.stop_signal.clone();
    }
    if out.healthcheck.is_none() {
        out.healthcheck = image.healthcheck.clone();
    }
    if out.shell.is_none() {
        out.shell = image.shell.clone();
    }
    out.on_build = None;
    out
}

impl Engine {
    /// Creates a container from `req`, named `name` or a generated name. Returns its id.
    /// Fails with 404 if the image is not here (the client then pulls), 409 if the name is
    /// taken, 400 for invalid options; nothing is left behind on failure.
    pub async fn create_container(
        self: &Arc<Self>,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<String> {
        if req.config.image.is_empty() {
            return Err(EngineError::invalid("config.Image is required"));
        }
        let image = self.find_image(&req.config.image)?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.trim_start_matches('/');
                if !names::valid_name(n) {
                    return Err(EngineError::invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => names::generate_name(),
        };
        if self
            .db
            .get::<ContainerRecord>("containers", "name", &name)?
            .is_some()
        {
            let owner = self.find_container(&name)?;
            return Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                owner.id
            )));
        }
        self.validate_host_config(&req)?;
        let id = names::new_id();
        let mut config = merge_config(&req.config, &image.container_config());
        config.image = req.config.image.clone();
        if config.hostname.is_empty() {
            config.hostname = if req.host_config.network_mode == "host" {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default()
            } else {
                id[..12].to_string()
            };
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty())
            && config.entrypoint.as_ref().is_none_or(|e| e.is_empty())
        {
            return Err(EngineError::invalid("no command specified"));
        }
        let mut host_config = req.host_config.clone();
        if host_config.network_mode.is_empty() {
            host_config.network_mode = "default".into();
        }
        // Like dockerd, record the default log driver so inspect shows it.
        let log = host_config.log_config.get_or_insert_with(Default::default);
        if log.kind.is_empty() {
            log.kind = "json-file".into();
        }
        log.config.get_or_insert_with(Default::default);
        let runtime = if host_config.runtime.is_empty() {
            self.cfg.default_runtime.clone()
        } else {
            host_config.runtime.clone()
        };
        if runtime != "berth" && runtime != "runc" {
            return Err(EngineError::invalid(format!(
                "unknown or invalid runtime name: {runtime}"
            )));
        }
        let networks = self.initial_endpoints(&req, &host_config.network_mode)?;
        let layers = self.db.image_layers(&image.id)?;
        let parent = layers.last().map(|l| l.chain_id.clone());
        self.snaps
            .prepare(&id, parent.as_deref())
            .map_err(|e| EngineError::internal(format!("prepare rootfs of {name}: {e}")))?;
        let dir = self.container_dir(&id);
        if let Err(e) = std::fs::create_dir_all(dir.join("rootfs")) {
            let _ = self.snaps.remove(&id);
            return Err(EngineError::internal(format!(
                "create {}: {e}",
                dir.display()
            )));
        }
        let remapped_root = self
            .remap_of(&host_config)
            .map(|ns| (ns.root_uid(), ns.root_gid()));
        let record = ContainerRecord {
            remapped_root,
            id: id.clone(),
            name: name.clone(),
            created: now_rfc3339(),
            image_id: image.id.clone(),
            config,
            host_config,
            state: ContainerState {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            runtime,
            networks,
            ..Default::default()
        };
        if let Err(e) = self.save_container(&record) {
            let _ = self.snaps.remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.container_event(&record, "create");
        Ok(id)
    }

    /// The endpoints a new container asks for: its network mode's network plus
    /// `NetworkingConfig.EndpointsConfig`, each checked to exist.
    fn initial_endpoints(
        &self,
        req: &CreateRequest,
        mode: &str,
    ) -> Result<BTreeMap<String, EndpointSettings>> {
        let mut out = BTreeMap::new();
        let special = ["default", "host", "none"].contains(&mode) || mode.starts_with("container:");
        if !special {
            let n = self.find_network(mode)?;
            out.insert(
                n.name.clone(),
                EndpointSettings {
                    network_id: n.id.clone(),
                    ..Default::default()
                },
            );
        }
        let eps = req
            .networking_config
            .as_ref()
            .and_then(|n| n.get("EndpointsConfig"))
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (name, v) in eps {
            if special && name == mode {
                continue;
            }
            let n = self.find_network(&name)?;
            let e = out
                .entry(n.name.clone())
                .or_insert_with(|| EndpointSettings {
                    network_id: n.id.clone(),
                    ..Default::default()
                });
            e.aliases = v
                .get("Aliases")
                .and_then(|a| serde_json::from_value(a.clone()).ok());
            e.ipam_config = v.get("IPAMConfig").cloned().filter(|x| !x.is_null());
        }
        Ok(out)
    }

    /// Checks the options that can be checked before anything is made.
    fn validate_host_config(&self, req: &CreateRequest) -> Result<()> {
        let hc = &req.host_config;
        if let Some(p) = &hc.restart_policy {
            match p.name.as_str() {
                "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
                other => {
                    return Err(EngineError::invalid(format!(
                        "invalid restart policy: {other}"
                    )))
                }
            }
            if hc.auto_remove && !matches!(p.name.as_str(), "" | "no") {
                return Err(EngineError::invalid(
                    "Conflicting options: --restart and --rm",
                ));
            }
        }
        for m in hc.mounts.clone().unwrap_or_default() {
            if m.kind == "bind" && !std::path::Path::new(&m.source).exists() {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                )));
            }
            if m.target.is_empty() || !m.target.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid mount config: target must be an absolute path: {:?}",
                    m.target
                )));
            }
        }
        if hc.memory < 0 || hc.nano_cpus < 0 {
            return Err(EngineError::invalid("resource limits must not be negative"));
        }
        if hc.memory > 0 && hc.memory < 6 * 1024 * 1024 {
            return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
        }
        Ok(())
    }

    /// Publishes a container event with Docker's attributes (name, image, labels).
    pub(crate) fn container_event(&self, c: &ContainerRecord, action: &str) {
        self.container_event_with(c, action, BTreeMap::new());
    }

    /// Like [`Engine::container_event`] with extra attributes (exitCode, signal, ...).
    pub(crate) fn container_event_with(
        &self,
        c: &ContainerRecord,
        action: &str,
        extra: BTreeMap<String, String>,
    ) {
        let mut attrs: BTreeMap<String, String> = c.config.labels.clone().unwrap_or_default();
        attrs.insert("name".into(), c.name.clone());
        attrs.insert("image".into(), c.config.image.clone());
        attrs.extend(extra);
        self.events.publish("container", action, &c.id, attrs);
    }
}

impl Engine {
    /// `POST /containers/{id}/rename`.
    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let mut c = self.find_container(name)?;
        let new_name = new_name.trim_start_matches('/');
        if !names::valid_name(new_name) {
            return Err(EngineError::invalid(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = std::mem::replace(&mut c.name, new_name.to_string());
        self.save_container(&c)?;
        self.container_event_with(
            &c,
            "rename",
            BTreeMap::from([("oldName".to_string(), format!("/{old}"))]),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cmd: Option<&[&str]>, ep: Option<&[&str]>) -> ContainerConfig {
        ContainerConfig {
            cmd: cmd.map(|c| c.iter().map(|s| s.to_string()).collect()),
            entrypoint: ep.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_in_request_drops_image_cmd() {
        let image = cfg(Some(&["sh"]), Some(&["/init"]));
        let merged = merge_config(&cfg(None, Some(&["echo"])), &image);
        assert_eq!(merged.entrypoint, Some(vec!["echo".to_string()]));
        assert_eq!(merged.cmd, None);
        let merged = merge_config(&cfg(Some(&["ls"]), None), &image);
        assert_eq!(merged.entrypoint, Some(vec!["/init".to_string()]));
        assert_eq!(merged.cmd, Some(vec!["ls".to_string()]));
    }

    #[test]
    fn env_merges_by_key() {
        let mut image = cfg(None, None);
        image.env = Some(vec!["PATH=/bin".into(), "A=1".into()]);
        let mut req = cfg(None, None);
        req.env = Some(vec!["A=2".into(), "B=3".into()]);
        let merged = merge_config(&req, &image);
        assert_eq!(
            merged.env,
            Some(vec!["PATH=/bin".into(), "A=2".into(), "B=3".into()])
        );
    }
}
