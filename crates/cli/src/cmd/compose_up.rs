//! `compose up` and `compose scale`: checks everything that can be checked before acting,
//! makes the project network and volumes, builds or pulls images, then converges each
//! service to its replica count. When a step fails, the containers made by this run are
//! removed again so nothing half-started is left running.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::compose::{self, LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};
use super::compose_file::{self, ComposeFileError, PortSpec, Project};
use crate::client::{query, Client};
use crate::cmd::build::{self, BuildArgs};
use crate::cmd::image::pull_image;
use crate::error::CliError;

/// The project's network: `<project>_default`.
pub fn network_name(project: &str) -> String {
    format!("{project}_default")
}

/// The image a service runs: its `image:`, else `<project>_<service>` (built).
pub fn image_name(project: &Project, svc: &str) -> String {
    project.file.services[svc]
        .image
        .clone()
        .unwrap_or_else(|| format!("{}_{svc}", project.name))
}

/// What was checked about one service before anything is changed.
struct Plan {
    svc: String,
    replicas: u32,
    ports: Vec<PortSpec>,
    mounts: Vec<Value>,
}

fn plan(
    project: &Project,
    order: &[String],
    scales: &BTreeMap<String, u32>,
) -> Result<Vec<Plan>, ComposeFileError> {
    let mut plans = Vec::new();
    for svc in order {
        let s = &project.file.services[svc];
        let replicas = match scales.get(svc) {
            Some(n) => *n,
            None => {
                let n = s.scale.unwrap_or(1);
                u32::try_from(n).map_err(|_| ComposeFileError::BadScale(format!("{svc}={n}")))?
            }
        };
        let ports = compose_file::ports(s, svc)?;
        if replicas > 1 {
            if let Some(p) = ports.iter().find(|p| !p.host_port.is_empty()) {
                return Err(ComposeFileError::Invalid {
                    service: svc.clone(),
                    reason: format!(
                        "cannot run {replicas} replicas: host port {} (for {}) is fixed, so the replicas would conflict; publish the container port alone (\"{}\") to get one ephemeral host port each",
                        p.host_port,
                        p.container,
                        p.container.trim_end_matches("/tcp")
                    ),
                });
            }
            if s.container_name.is_some() {
                return Err(ComposeFileError::Invalid {
                    service: svc.clone(),
                    reason: format!("cannot run {replicas} replicas with a fixed container_name"),
                });
            }
        }
        let mounts = compose_file::mounts(project, s, svc)?;
        plans.push(Plan {
            svc: svc.clone(),
            replicas,
            ports,
            mounts,
        });
    }
    Ok(plans)
}

/// Brings `order` (services in start order) to their replica counts: `scales`, else the
/// file's `scale:`, else 1. Builds images that are missing (or all buildable ones with
/// `rebuild`), pulls missing images, and on failure removes what this run created.
pub async fn up(
    c: &Client,
    project: &Project,
    order: &[String],
    scales: &BTreeMap<String, u32>,
    rebuild: bool,
) -> Result<(), CliError> {
    let plans = plan(project, order, scales)?;
    ensure_network(c, &project.name).await?;
    ensure_volumes(c, project).await?;
    for p in &plans {
        ensure_image(c, project, &p.svc, rebuild).await?;
    }
    let mut created = Vec::new();
    let mut result = Ok(());
    for p in &plans {
        result = converge(c, project, p, &mut created).await;
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = result {
        for id in created.iter().rev() {
            eprintln!("Removing {id} (rolling back)");
            let _ = c.delete(&format!("/containers/{id}?force=1&v=1")).await;
        }
        return Err(e);
    }
    Ok(())
}

async fn converge(
    c: &Client,
    project: &Project,
    p: &Plan,
    created: &mut Vec<String>,
) -> Result<(), CliError> {
    let existing = compose::containers(c, &project.name, Some(&p.svc)).await?;
    let keep = p.replicas as usize;
    for v in existing.iter().skip(keep).rev() {
        let name = compose::name(v);
        eprintln!("Stopping and removing {name}");
        c.delete(&format!("/containers/{name}?force=1")).await?;
    }
    let mut next = existing
        .iter()
        .take(keep)
        .map(compose::number)
        .max()
        .unwrap_or(0)
        + 1;
    for v in existing.iter().take(keep) {
        if v["State"].as_str() != Some("running") {
            let name = compose::name(v);
            eprintln!("Starting {name}");
            c.post(&format!("/containers/{name}/start"), None).await?;
        }
    }
    for _ in existing.len().min(keep)..keep {
        let s = &project.file.services[&p.svc];
        let name = s
            .container_name
            .clone()
            .unwrap_or_else(|| format!("{}_{}_{next}", project.name, p.svc));
        eprintln!("Creating {name}");
        let body = container_body(project, p, next)?;
        let resp = c
            .post(
                &format!("/containers/create?{}", query(&[("name", name.clone())])),
                Some(&body),
            )
            .await?;
        created.push(resp["Id"].as_str().unwrap_or(&name).to_owned());
        c.post(&format!("/containers/{name}/start"), None).await?;
        next += 1;
    }
    Ok(())
}

/// The `POST /containers/create` body for replica `number` of a planned service.
fn container_body(project: &Project, p: &Plan, number: u32) -> Result<Value, CliError> {
    let s = &project.file.services[&p.svc];
    let mut labels: Map<String, Value> = compose_file::kv_list(&s.labels)
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), json!(v)),
            None => (kv, json!("")),
        })
        .collect();
    labels.insert(LABEL_PROJECT.into(), json!(project.name));
    labels.insert(LABEL_SERVICE.into(), json!(p.svc));
    labels.insert(LABEL_NUMBER.into(), json!(number.to_string()));
    labels.insert(LABEL_ONEOFF.into(), json!("False"));
    labels.insert(
        "com.docker.compose.project.working_dir".into(),
        json!(project.dir.display().to_string()),
    );
    let mut exposed = Map::new();
    let mut bindings: Map<String, Value> = Map::new();
    for port in &p.ports {
        exposed.insert(port.container.clone(), json!({}));
        let entry = bindings.entry(port.container.clone()).or_insert(json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": port.host_ip, "HostPort": port.host_port}));
        }
    }
    let net = network_name(&project.name);
    let mut body = json!({
        "Image": image_name(project, &p.svc),
        "Env": compose_file::kv_list(&s.environment),
        "Labels": labels,
        "ExposedPorts": exposed,
        "Tty": s.tty,
        "OpenStdin": s.stdin_open,
        "HostConfig": {
            "PortBindings": bindings,
            "Mounts": p.mounts,
            "NetworkMode": net.clone(),
            "RestartPolicy": {"Name": s.restart.clone().unwrap_or_default()},
        },
    });
    let mut endpoints = Map::new();
    endpoints.insert(net, json!({"Aliases": [p.svc]}));
    body["NetworkingConfig"] = json!({ "EndpointsConfig": endpoints });
    if let Some(cmd) = compose_file::argv(&s.command, &p.svc)? {
        body["Cmd"] = json!(cmd);
    }
    if let Some(ep) = compose_file::argv(&s.entrypoint, &p.svc)? {
        body["Entrypoint"] = json!(ep);
    }
    if let Some(w) = &s.working_dir {
        body["WorkingDir"] = json!(w);
    }
    if let Some(u) = &s.user {
        body["User"] = json!(u);
    }
    Ok(body)
}

async fn ensure_network(c: &Client, project: &str) -> Result<(), CliError> {
    let net = network_name(project);
    match c.get(&format!("/networks/{net}")).await {
        Ok(_) => return Ok(()),
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e.into()),
    }
    eprintln!("Creating network {net}");
    let body = json!({
        "Name": net,
        "Driver": "bridge",
        "CheckDuplicate": true,
        "Labels": {LABEL_PROJECT: project, "com.docker.compose.network": "default"},
    });
    c.post("/networks/create", Some(&body)).await?;
    Ok(())
}

async fn ensure_volumes(c: &Client, project: &Project) -> Result<(), CliError> {
    for (vol, spec) in &project.file.volumes {
        let name = compose_file::volume_name(project, vol);
        match c.get(&format!("/volumes/{name}")).await {
            Ok(_) => continue,
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        if spec.as_ref().is_some_and(|s| s.external) {
            return Err(CliError::Usage(format!(
                "external volume {name:?} not found"
            )));
        }
        eprintln!("Creating volume {name}");
        let body = json!({
            "Name": name,
            "Labels": {LABEL_PROJECT: project.name, "com.docker.compose.volume": vol},
        });
        c.post("/volumes/create", Some(&body)).await?;
    }
    Ok(())
}

async fn ensure_image(
    c: &Client,
    project: &Project,
    svc: &str,
    rebuild: bool,
) -> Result<(), CliError> {
    let image = image_name(project, svc);
    let has_build = project.file.services[svc].build.is_some();
    if has_build && rebuild {
        return build_service(c, project, svc).await;
    }
    match c.get(&format!("/images/{image}/json")).await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(404) => {
            if has_build {
                build_service(c, project, svc).await
            } else {
                eprintln!("Pulling {svc} ({image})");
                pull_image(c, &image, None, true, false).await
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Builds a service's image from its `build:` section through `POST /build`, tagged with
/// [`image_name`].
pub async fn build_service(c: &Client, project: &Project, svc: &str) -> Result<(), CliError> {
    let s = &project.file.services[svc];
    let (context, dockerfile, args, target) = match &s.build {
        None => return Ok(()),
        Some(compose_file::BuildSpec::Context(ctx)) => (ctx.clone(), None, Vec::new(), None),
        Some(compose_file::BuildSpec::Long {
            context,
            dockerfile,
            args,
            target,
        }) => (
            context.clone().unwrap_or_else(|| ".".into()),
            dockerfile.clone(),
            compose_file::kv_list(args),
            target.clone(),
        ),
    };
    let dir = project.dir.join(&context);
    eprintln!("Building {svc}");
    let a = BuildArgs {
        tag: vec![image_name(project, svc)],
        file: dockerfile.map(|f| dir.join(f).display().to_string()),
        build_arg: args,
        no_cache: false,
        pull: false,
        quiet: false,
        target,
        label: Vec::new(),
        network: None,
        platform: None,
        rm: true,
        force_rm: false,
        context: dir.display().to_string(),
    };
    build::build(c, a).await?;
    Ok(())
}
