//! The compose file: parsing the docker-compose format (the subset `berth compose`
//! understands), `${VAR}` interpolation, normalisation of the short and long syntaxes,
//! and the checks made before anything is started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Errors in a compose file or in what is asked of it.
#[derive(Debug, thiserror::Error)]
pub enum ComposeFileError {
    /// No file given and none of the default names exists.
    #[error("no compose file found in {dir}: looked for {names}")]
    NotFound {
        /// directory searched
        dir: String,
        /// names tried
        names: String,
    },
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// file path
        path: String,
        /// underlying error
        source: std::io::Error,
    },
    /// The file is not valid YAML or not the compose format.
    #[error("invalid compose file {path}: {source}")]
    Yaml {
        /// file path
        path: String,
        /// underlying error
        source: serde_yaml_ng::Error,
    },
    /// A service name that the file does not define.
    #[error("no such service: {0}")]
    UnknownService(String),
    /// A malformed `--scale` or `scale` argument.
    #[error("invalid scale {0:?}: expected SERVICE=N with N >= 0")]
    BadScale(String),
    /// A service value that cannot be used.
    #[error("service {service:?}: {reason}")]
    Invalid {
        /// service name
        service: String,
        /// what is wrong
        reason: String,
    },
}

type Result<T> = std::result::Result<T, ComposeFileError>;

/// A string or a list of strings (`command`, `entrypoint`, `depends_on` short form).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    /// one string (split by the shell rules for commands)
    Str(String),
    /// a list
    List(Vec<String>),
}

/// A map or a `KEY=VALUE` list (`environment`, `labels`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MapOrList {
    /// `KEY: value` (values may be numbers, booleans or null)
    Map(BTreeMap<String, Option<serde_yaml_ng::Value>>),
    /// `KEY=value` entries
    List(Vec<String>),
}

/// `build:` as a context path or the long form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BuildSpec {
    /// context directory
    Context(String),
    /// long form
    Long {
        /// context directory
        context: Option<String>,
        /// Dockerfile path relative to the context
        dockerfile: Option<String>,
        /// build arguments
        args: Option<MapOrList>,
        /// target stage
        target: Option<String>,
    },
}

/// `depends_on:` as a list or the long form map.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DependsOn {
    /// service names
    List(Vec<String>),
    /// service name -> condition
    Map(BTreeMap<String, serde_yaml_ng::Value>),
}

/// One service as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    /// image to run (and the tag given to a built image)
    pub image: Option<String>,
    /// how to build the image
    pub build: Option<BuildSpec>,
    /// command
    pub command: Option<StrOrList>,
    /// entrypoint
    pub entrypoint: Option<StrOrList>,
    /// environment variables
    pub environment: Option<MapOrList>,
    /// labels
    pub labels: Option<MapOrList>,
    /// published ports (short `"[IP:][HOST:]CONTAINER[/proto]"` or long syntax)
    #[serde(default)]
    pub ports: Vec<serde_yaml_ng::Value>,
    /// volumes (short `"SRC:DST[:ro]"` or long syntax)
    #[serde(default)]
    pub volumes: Vec<serde_yaml_ng::Value>,
    /// services started before this one
    pub depends_on: Option<DependsOn>,
    /// working directory
    pub working_dir: Option<String>,
    /// user
    pub user: Option<String>,
    /// restart policy name
    pub restart: Option<String>,
    /// fixed container name (only allowed with one replica)
    pub container_name: Option<String>,
    /// allocate a tty
    #[serde(default)]
    pub tty: bool,
    /// keep stdin open
    #[serde(default)]
    pub stdin_open: bool,
    /// default replica count (compose 2.x `scale:`)
    pub scale: Option<i64>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeSpec {
    /// the volume is made outside compose and used by its own name
    #[serde(default)]
    pub external: bool,
    /// explicit volume name
    pub name: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ComposeFile {
    /// services by name
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// named volumes
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeSpec>>,
}

/// A loaded project: the file, its directory and the project name.
#[derive(Debug, Clone)]
pub struct Project {
    /// project name (container, network and volume name prefix)
    pub name: String,
    /// directory of the compose file (relative paths resolve against it)
    pub dir: PathBuf,
    /// the parsed file
    pub file: ComposeFile,
}

/// File names looked for when `-f` is not given, in docker-compose's order.
pub const DEFAULT_FILES: &[&str] = &[
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.yaml",
    "compose.yml",
];

/// Replaces `$$` with `$` and `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`
/// with values from `env` (unset variables become empty strings, as compose warns and does).
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '$' {
            out.push(ch);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let mut inner = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    inner.push(c);
                }
                let (name, default, empty_too) = if let Some((n, d)) = inner.split_once(":-") {
                    (n, Some(d), true)
                } else if let Some((n, d)) = inner.split_once('-') {
                    (n, Some(d), false)
                } else {
                    (inner.as_str(), None, false)
                };
                let v = env(name).filter(|v| !(empty_too && v.is_empty()));
                out.push_str(&v.or(default.map(str::to_owned)).unwrap_or_default());
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut name = String::new();
                while let Some(c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || *c == '_' {
                        name.push(*c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(&env(&name).unwrap_or_default());
            }
            _ => out.push('$'),
        }
    }
    out
}

fn interpolate_value(v: &mut serde_yaml_ng::Value, env: &dyn Fn(&str) -> Option<String>) {
    match v {
        serde_yaml_ng::Value::String(s) => *s = interpolate(s, env),
        serde_yaml_ng::Value::Sequence(seq) => {
            seq.iter_mut().for_each(|x| interpolate_value(x, env))
        }
        serde_yaml_ng::Value::Mapping(m) => {
            m.iter_mut().for_each(|(_, x)| interpolate_value(x, env))
        }
        _ => {}
    }
}

/// Docker-compose v1's project name: the directory's base name, lowercased, keeping only
/// `[a-z0-9]`.
pub fn project_name_from_dir(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = base.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if name.is_empty() {
        "default".to_owned()
    } else {
        name
    }
}

/// Parses compose YAML text (after interpolation from the process environment).
pub fn parse(text: &str, path: &str) -> Result<ComposeFile> {
    let yaml = |source| ComposeFileError::Yaml {
        path: path.to_owned(),
        source,
    };
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(yaml)?;
    interpolate_value(&mut v, &|k| std::env::var(k).ok());
    let file: ComposeFile = serde_yaml_ng::from_value(v).map_err(yaml)?;
    for (name, s) in &file.services {
        if s.image.is_none() && s.build.is_none() {
            return Err(ComposeFileError::Invalid {
                service: name.clone(),
                reason: "has neither an image nor a build section".into(),
            });
        }
        for dep in depends_on(s) {
            if !file.services.contains_key(&dep) {
                return Err(ComposeFileError::Invalid {
                    service: name.clone(),
                    reason: format!("depends on undefined service {dep:?}"),
                });
            }
        }
    }
    Ok(file)
}

/// Finds and loads the project: `file` or the first default name in the current directory;
/// `name` overrides the project name (else `COMPOSE_PROJECT_NAME`, else the directory).
pub fn load(file: Option<&str>, name: Option<&str>) -> Result<Project> {
    let cwd = std::env::current_dir().map_err(|source| ComposeFileError::Read {
        path: ".".into(),
        source,
    })?;
    let path = match file {
        Some(f) => cwd.join(f),
        None => DEFAULT_FILES
            .iter()
            .map(|n| cwd.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| ComposeFileError::NotFound {
                dir: cwd.display().to_string(),
                names: DEFAULT_FILES.join(", "),
            })?,
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ComposeFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let file = parse(&text, &shown)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or(cwd);
    let name = name
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("COMPOSE_PROJECT_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .map(|n| {
            n.to_lowercase()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect()
        })
        .unwrap_or_else(|| project_name_from_dir(&dir));
    Ok(Project { name, dir, file })
}

/// The services a service depends on.
pub fn depends_on(s: &Service) -> Vec<String> {
    match &s.depends_on {
        None => Vec::new(),
        Some(DependsOn::List(l)) => l.clone(),
        Some(DependsOn::Map(m)) => m.keys().cloned().collect(),
    }
}

/// Parses `SERVICE=N` scale arguments, checking every service exists and N >= 0.
pub fn parse_scales(project: &Project, args: &[String]) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for a in args {
        let (svc, n) = a
            .split_once('=')
            .ok_or_else(|| ComposeFileError::BadScale(a.clone()))?;
        let n: i64 = n
            .trim()
            .parse()
            .map_err(|_| ComposeFileError::BadScale(a.clone()))?;
        let n = u32::try_from(n).map_err(|_| ComposeFileError::BadScale(a.clone()))?;
        if !project.file.services.contains_key(svc) {
            return Err(ComposeFileError::UnknownService(svc.to_owned()));
        }
        out.insert(svc.to_owned(), n);
    }
    Ok(out)
}

/// The named services (all when empty) plus everything they depend on, in start order
/// (dependencies first, then by name). Errors on unknown names and dependency cycles.
pub fn start_order(project: &Project, wanted: &[String]) -> Result<Vec<String>> {
    let services = &project.file.services;
    for w in wanted {
        if !services.contains_key(w) {
            return Err(ComposeFileError::UnknownService(w.clone()));
        }
    }
    let roots: Vec<String> = if wanted.is_empty() {
        services.keys().cloned().collect()
    } else {
        wanted.to_vec()
    };
    let mut order = Vec::new();
    let mut visiting = Vec::new();
    fn visit(
        name: &str,
        services: &BTreeMap<String, Service>,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) -> Result<()> {
        if order.iter().any(|o| o == name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(ComposeFileError::Invalid {
                service: name.to_owned(),
                reason: format!("dependency cycle: {} -> {name}", visiting.join(" -> ")),
            });
        }
        visiting.push(name.to_owned());
        if let Some(s) = services.get(name) {
            for d in depends_on(s) {
                visit(&d, services, order, visiting)?;
            }
        }
        visiting.pop();
        order.push(name.to_owned());
        Ok(())
    }
    for r in &roots {
        visit(r, services, &mut order, &mut visiting)?;
    }
    Ok(order)
}

/// `KEY=VALUE` strings of a map-or-list (a null map value keeps just the key).
pub fn kv_list(m: &Option<MapOrList>) -> Vec<String> {
    match m {
        None => Vec::new(),
        Some(MapOrList::List(l)) => l.clone(),
        Some(MapOrList::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                None => k.clone(),
                Some(v) => format!("{k}={}", scalar(v)),
            })
            .collect(),
    }
}

/// A YAML scalar as compose renders it into a string.
pub fn scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// A command or entrypoint as an argv (a string is split like a shell would).
pub fn argv(v: &Option<StrOrList>, service: &str) -> Result<Option<Vec<String>>> {
    match v {
        None => Ok(None),
        Some(StrOrList::List(l)) => Ok(Some(l.clone())),
        Some(StrOrList::Str(s)) => {
            shlex::split(s)
                .map(Some)
                .ok_or_else(|| ComposeFileError::Invalid {
                    service: service.to_owned(),
                    reason: format!("cannot split command {s:?}"),
                })
        }
    }
}

/// One published port: container port key (`80/tcp`) and its host binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `PORT/PROTO`
    pub container: String,
    /// host IP ("" for all)
    pub host_ip: String,
    /// host port ("" for an ephemeral one)
    pub host_port: String,
}

/// Parses a service's `ports:` entries.
pub fn ports(s: &Service, service: &str) -> Result<Vec<PortSpec>> {
    let bad = |reason: String| ComposeFileError::Invalid {
        service: service.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for p in &s.ports {
        if let serde_yaml_ng::Value::Mapping(m) = p {
            let get = |k: &str| m.get(k).map(scalar).unwrap_or_default();
            let target = get("target");
            if target.is_empty() {
                return Err(bad("port without target".into()));
            }
            let proto = Some(get("protocol"))
                .filter(|p| !p.is_empty())
                .unwrap_or("tcp".into());
            out.push(PortSpec {
                container: format!("{target}/{proto}"),
                host_ip: get("host_ip"),
                host_port: get("published"),
            });
            continue;
        }
        let text = scalar(p);
        let (spec, proto) = text.split_once('/').unwrap_or((&text, "tcp"));
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => ("", "", *c),
            [c, h] => ("", *h, *c),
            [c, h, ip] => (*ip, *h, *c),
            _ => return Err(bad(format!("invalid port {text:?}"))),
        };
        if container.parse::<u16>().is_err() || !(host.is_empty() || host.parse::<u16>().is_ok()) {
            return Err(bad(format!(
                "invalid port {text:?} (port ranges are not supported)"
            )));
        }
        out.push(PortSpec {
            container: format!("{container}/{proto}"),
            host_ip: ip.to_owned(),
            host_port: host.to_owned(),
        });
    }
    Ok(out)
}

/// Host config `Mounts` for a service's `volumes:` entries: named volumes get the
/// project prefix, relative host paths resolve against the project directory.
pub fn mounts(project: &Project, s: &Service, service: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for v in &s.volumes {
        let (source, target, ro) = match v {
            serde_yaml_ng::Value::Mapping(m) => {
                let get = |k: &str| m.get(k).map(scalar).unwrap_or_default();
                (get("source"), get("target"), get("read_only") == "true")
            }
            other => {
                let text = scalar(other);
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [t] => (String::new(), t.to_string(), false),
                    [s, t] => (s.to_string(), t.to_string(), false),
                    [s, t, mode] => (
                        s.to_string(),
                        t.to_string(),
                        mode.split(',').any(|m| m == "ro"),
                    ),
                    _ => {
                        return Err(ComposeFileError::Invalid {
                            service: service.to_owned(),
                            reason: format!("invalid volume {text:?}"),
                        })
                    }
                }
            }
        };
        let mut m = Map::new();
        m.insert("Target".into(), json!(target));
        m.insert("ReadOnly".into(), json!(ro));
        if source.is_empty() {
            m.insert("Type".into(), json!("volume"));
        } else if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
            let path = if let Some(rest) = source.strip_prefix("~/") {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
            } else {
                project.dir.join(&source)
            };
            m.insert("Type".into(), json!("bind"));
            m.insert("Source".into(), json!(path.display().to_string()));
        } else {
            m.insert("Type".into(), json!("volume"));
            m.insert("Source".into(), json!(volume_name(project, &source)));
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// The engine name of a file-level volume: `<project>_<name>` unless external or named.
pub fn volume_name(project: &Project, name: &str) -> String {
    match project.file.volumes.get(name) {
        Some(Some(VolumeSpec {
            external: true,
            name: n,
        })) => n.clone().unwrap_or(name.to_owned()),
        Some(Some(VolumeSpec { name: Some(n), .. })) => n.clone(),
        _ => format!("{}_{name}", project.name),
    }
}

#[cfg(test)]
#[path = "compose_file_tests.rs"]
mod tests;
