//! Named and anonymous volumes with the `local` driver: a directory under
//! `<data-root>/volumes/<name>/_data`, or a filesystem mounted there from `type/device/o`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::containers::now_rfc3339;
use crate::error::{EngineError, Result, ResultExt};
use crate::model::ContainerRecord;
use crate::Engine;

/// A volume as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub scope: String,
    /// Whether it was made for one container (`-v /path`, VOLUME); `rm -v` removes those.
    #[serde(skip_serializing)]
    pub anonymous: bool,
}

impl Engine {
    /// Creates a volume (a random name when empty); creating an existing name returns it.
    pub fn create_volume(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeRecord> {
        let name = if name.is_empty() {
            crate::names::new_id()
        } else {
            name.to_string()
        };
        if !crate::names::valid_name(&name) {
            return Err(EngineError::invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        if !driver.is_empty() && driver != "local" {
            return Err(EngineError::not_found(format!(
                "plugin \"{driver}\" not found"
            )));
        }
        if let Some(v) = self.db.get::<VolumeRecord>("volumes", "name", &name)? {
            return Ok(v);
        }
        let data = self.cfg.data_root.join("volumes").join(&name).join("_data");
        std::fs::create_dir_all(&data).ctx(format!("create volume {name}"))?;
        if let Some(kind) = options.get("type") {
            let device = options
                .get("device")
                .cloned()
                .unwrap_or_else(|| kind.clone());
            let o = options.get("o").cloned().unwrap_or_default();
            let status = std::process::Command::new("mount")
                .args([
                    "-t",
                    kind,
                    "-o",
                    if o.is_empty() { "defaults" } else { &o },
                    &device,
                ])
                .arg(&data)
                .status()
                .ctx("run mount")?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(data.parent().unwrap_or(&data));
                return Err(EngineError::invalid(format!(
                    "error while mounting volume '{name}': mount -t {kind} {device} failed"
                )));
            }
        }
        let v = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: data.display().to_string(),
            created_at: now_rfc3339(),
            labels,
            options,
            scope: "local".into(),
            anonymous,
        };
        self.db.put_keyed("volumes", "name", &name, &v)?;
        self.events.publish(
            "volume",
            "create",
            &name,
            BTreeMap::from([("driver".into(), "local".into())]),
        );
        Ok(v)
    }

    /// Looks a volume up by name.
    pub fn get_volume(&self, name: &str) -> Result<VolumeRecord> {
        self.db
            .get("volumes", "name", name)?
            .ok_or_else(|| EngineError::not_found(format!("get {name}: no such volume")))
    }

    /// All volumes, optionally only those no container uses (`dangling=true`).
    pub fn list_volumes(&self, dangling: Option<bool>) -> Result<Vec<VolumeRecord>> {
        let mut all: Vec<VolumeRecord> = self.db.all("volumes")?;
        if let Some(d) = dangling {
            let used = self.volumes_in_use()?;
            all.retain(|v| used.contains_key(&v.name) != d);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Volume name -> ids of the containers that mount it.
    pub fn volumes_in_use(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.db.all::<ContainerRecord>("containers")? {
            for m in &c.mounts {
                if m.kind == "volume" {
                    used.entry(m.name.clone()).or_default().push(c.id.clone());
                }
            }
        }
        Ok(used)
    }

    /// Removes a volume; refused while a container uses it unless `force` is for a
    /// missing volume (as Docker: force only silences "not found").
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let v = match self.get_volume(name) {
            Ok(v) => v,
            Err(_) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(users) = self.volumes_in_use()?.get(name) {
            return Err(EngineError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let data = std::path::Path::new(&v.mountpoint);
        if v.options.contains_key("type") {
            let _ = nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some(dir) = data.parent() {
            std::fs::remove_dir_all(dir).ctx(format!("remove volume {name}"))?;
        }
        self.db.delete("volumes", "name", name)?;
        self.events
            .publish("volume", "destroy", name, BTreeMap::new());
        Ok(())
    }

    /// Removes unused volumes (anonymous ones only, unless `all`); returns names and bytes.
    pub fn prune_volumes(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut space = 0;
        for v in self.list_volumes(Some(true))? {
            if !all && !v.anonymous {
                continue;
            }
            space += dir_size(std::path::Path::new(&v.mountpoint));
            self.remove_volume(&v.name, false)?;
            removed.push(v.name);
        }
        Ok((removed, space))
    }
}

/// Bytes used by the files under `p`.
pub fn dir_size(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            total += dir_size(&e.path());
        }
    }
    total
}
