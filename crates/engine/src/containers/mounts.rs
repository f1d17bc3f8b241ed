//! A container's extra mounts: `-v` binds and volumes, `--mount`, `--tmpfs`, and anonymous
//! volumes for the image's VOLUMEs, copied up from the image on first use as Docker does.

use std::collections::BTreeMap;
use std::path::Path;

use berth_runtime::MountSpec;

use super::start::berth_image_safe_join;
use crate::error::{EngineError, Result, ResultExt};
use crate::model::{ContainerRecord, MountPoint};
use crate::Engine;

impl Engine {
    /// The runtime mounts and the inspect `Mounts` of a container about to start.
    pub(crate) fn user_mounts(
        &self,
        c: &ContainerRecord,
    ) -> Result<(Vec<MountSpec>, Vec<MountPoint>)> {
        let rootfs = self.container_dir(&c.id).join("rootfs");
        let previous: BTreeMap<String, MountPoint> = c
            .mounts
            .iter()
            .map(|m| (m.destination.clone(), m.clone()))
            .collect();
        let mut points: Vec<MountPoint> = Vec::new();
        for bind in c.host_config.binds.clone().unwrap_or_default() {
            let parts: Vec<&str> = bind.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [s, d] => (*s, *d, ""),
                [s, d, m] => (*s, *d, *m),
                _ => {
                    return Err(EngineError::invalid(format!(
                        "invalid volume specification: '{bind}'"
                    )))
                }
            };
            if !dst.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid volume specification: '{bind}': mount path must be absolute"
                )));
            }
            let rw = !mode.split(',').any(|m| m == "ro");
            if src.starts_with('/') {
                // Docker creates a missing bind source for -v.
                std::fs::create_dir_all(src).ok();
                points.push(bind_point(src, dst, rw, mode));
            } else {
                let v =
                    self.create_volume(src, "local", BTreeMap::new(), BTreeMap::new(), false)?;
                points.push(volume_point(&v.name, &v.mountpoint, dst, rw, mode));
            }
        }
        for m in c.host_config.mounts.clone().unwrap_or_default() {
            let rw = !m.read_only;
            match m.kind.as_str() {
                "bind" => {
                    if !Path::new(&m.source).exists() {
                        return Err(EngineError::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source
                        )));
                    }
                    points.push(bind_point(&m.source, &m.target, rw, ""));
                }
                "volume" | "" => {
                    let name = if m.source.is_empty() {
                        previous
                            .get(&m.target)
                            .map(|p| p.name.clone())
                            .unwrap_or_default()
                    } else {
                        m.source.clone()
                    };
                    let v = self.create_volume(
                        &name,
                        "local",
                        BTreeMap::new(),
                        BTreeMap::new(),
                        m.source.is_empty(),
                    )?;
                    points.push(volume_point(&v.name, &v.mountpoint, &m.target, rw, ""));
                }
                "tmpfs" => points.push(MountPoint {
                    kind: "tmpfs".into(),
                    destination: m.target.clone(),
                    rw,
                    ..Default::default()
                }),
                other => {
                    return Err(EngineError::invalid(format!(
                        "mount type {other} is not supported"
                    )))
                }
            }
        }
        for (dst, opts) in c.host_config.tmpfs.clone().unwrap_or_default() {
            points.push(MountPoint {
                kind: "tmpfs".into(),
                destination: dst,
                mode: opts,
                rw: true,
                ..Default::default()
            });
        }
        let image_volumes: Vec<String> = c
            .config
            .volumes
            .clone()
            .unwrap_or_default()
            .into_keys()
            .collect();
        for dst in image_volumes {
            if points.iter().any(|p| p.destination == dst) {
                continue;
            }
            let name = previous
                .get(&dst)
                .filter(|p| p.kind == "volume")
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let v = self.create_volume(&name, "local", BTreeMap::new(), BTreeMap::new(), true)?;
            points.push(volume_point(&v.name, &v.mountpoint, &dst, true, ""));
        }
        let mut specs = Vec::new();
        for p in &points {
            let target = berth_image_safe_join(&rootfs, &p.destination)?;
            if p.kind == "volume" {
                copy_up(&target, Path::new(&p.source))?;
            }
            match p.kind.as_str() {
                "tmpfs" => {
                    let mut options = vec![
                        "nosuid".to_string(),
                        "nodev".to_string(),
                        "noexec".to_string(),
                    ];
                    options.extend(
                        p.mode
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    );
                    specs.push(MountSpec {
                        destination: p.destination.clone(),
                        source: "tmpfs".into(),
                        kind: "tmpfs".into(),
                        options,
                    });
                }
                _ => {
                    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
                    options.push(if p.rw { "rw".into() } else { "ro".into() });
                    specs.push(MountSpec {
                        destination: p.destination.clone(),
                        source: p.source.clone(),
                        kind: "bind".into(),
                        options,
                    });
                }
            }
        }
        Ok((specs, points))
    }
}

fn bind_point(src: &str, dst: &str, rw: bool, mode: &str) -> MountPoint {
    MountPoint {
        kind: "bind".into(),
        source: src.into(),
        destination: dst.into(),
        mode: mode.into(),
        rw,
        propagation: "rprivate".into(),
        ..Default::default()
    }
}

fn volume_point(name: &str, mountpoint: &str, dst: &str, rw: bool, mode: &str) -> MountPoint {
    MountPoint {
        kind: "volume".into(),
        name: name.into(),
        source: mountpoint.into(),
        destination: dst.into(),
        driver: "local".into(),
        mode: if mode.is_empty() {
            "z".into()
        } else {
            mode.into()
        },
        rw,
        propagation: String::new(),
    }
}

/// Copies the image's files at `image_dir` into an empty volume, as Docker does on first use.
fn copy_up(image_dir: &Path, volume: &Path) -> Result<()> {
    let empty = std::fs::read_dir(volume)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty || !image_dir.is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", image_dir.display()))
        .arg(volume)
        .status()
        .ctx("copy image content into volume")?;
    if !status.success() {
        return Err(EngineError::internal(format!(
            "copy {} into volume {} failed",
            image_dir.display(),
            volume.display()
        )));
    }
    Ok(())
}
