//! Typed view of the Docker image config JSON the builder evolves. Unknown fields are kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `config` object of an image (Docker's container config subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `user[:group]` processes run as.
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Ports as `port/proto` keys with empty objects.
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `KEY=value` environment.
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Default command (arguments to the entrypoint).
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Health check.
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Volume paths as keys with empty objects.
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Working directory.
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// ONBUILD triggers, as instruction text.
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Signal that stops the container.
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Shell for shell-form commands.
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    /// Fields this builder does not interpret, kept as they were.
    pub other: Map<String, Value>,
}

/// Docker's health check config (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Time between checks.
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Time a check may take.
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Grace period after start.
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Check interval during the start period.
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Failures before unhealthy.
    pub retries: Option<i64>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    /// Always `layers`.
    pub kind: String,
    #[serde(default)]
    /// `sha256:` digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<String>,
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// RFC 3339 time of the step.
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The command that made the step.
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Author of the step.
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Free comment.
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    /// True when the step added no layer.
    pub empty_layer: bool,
}

/// A whole image config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// RFC 3339 creation time.
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `MAINTAINER` value.
    pub author: Option<String>,
    /// GOARCH-style architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// CPU variant (`v8`...).
    pub variant: Option<String>,
    #[serde(default)]
    /// The runtime defaults.
    pub config: RunConfig,
    /// The layers.
    pub rootfs: RootFs,
    #[serde(default)]
    /// One entry per step, layers or not.
    pub history: Vec<History>,
    #[serde(flatten)]
    /// Fields this builder does not interpret, kept as they were.
    pub other: Map<String, Value>,
}

/// The default PATH Docker gives Linux containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The GOARCH-style name of this machine's architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl ImageConfig {
    /// The empty image `FROM scratch` starts from (with Docker's default PATH).
    pub fn scratch(platform: Option<&str>) -> Self {
        let mut parts = platform.unwrap_or("").split('/');
        let os = parts
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("linux")
            .to_string();
        let arch = parts
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(host_arch())
            .to_string();
        let variant = parts.next().map(str::to_string);
        ImageConfig {
            created: None,
            author: None,
            architecture: arch,
            os,
            variant,
            config: RunConfig {
                env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
                ..Default::default()
            },
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![],
            },
            history: vec![],
            other: Map::new(),
        }
    }

    /// Looks up a variable of `Env`.
    pub fn env_get(&self, key: &str) -> Option<String> {
        self.config
            .env
            .as_ref()?
            .iter()
            .find_map(|e| match e.split_once('=') {
                Some((k, v)) if k == key => Some(v.to_string()),
                None if e == key => Some(String::new()),
                _ => None,
            })
    }

    /// Sets (replacing) a variable of `Env`, keeping the order of first definition.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    /// The SHELL for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}
