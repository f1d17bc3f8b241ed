//! The builder: runs a parsed Dockerfile through a [`BuildHost`], evolving the image config
//! the way Docker's classic builder does, with a step cache.

mod archive;
mod copy;
mod dispatch;
mod image;
mod run;
mod stages;
mod users;

#[cfg(test)]
mod unit_tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;

use crate::context::ContextError;
use crate::host::{BuildHost, CachedStep, HostError};
use crate::parser::expand::ExpandError;
use crate::parser::{Dockerfile, ParseError};

pub use image::{Healthcheck, History, ImageConfig, RootFs, RunConfig, DEFAULT_PATH};

/// Options of one build (the query parameters of `POST /build`).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Path of the Dockerfile inside the context directory (empty: `Dockerfile`).
    pub dockerfile: String,
    /// References to tag the result with.
    pub tags: Vec<String>,
    /// `--build-arg` values.
    pub build_args: HashMap<String, String>,
    /// `--label` values, set on the final image.
    pub labels: HashMap<String, String>,
    /// Stage to build (default: the last one).
    pub target: Option<String>,
    /// Do not read the step cache (results are still recorded).
    pub no_cache: bool,
    /// Always ask the host to pull base images.
    pub pull: bool,
    /// Send no progress events (the caller reports only the final id).
    pub quiet: bool,
    /// `os/arch[/variant]` for base images and `FROM scratch`.
    pub platform: Option<String>,
    /// Network mode for RUN steps that give none (default: `default`).
    pub network_mode: Option<String>,
}

/// Progress of a build, in Docker's classic wording. Strings carry no trailing newline
/// except [`BuildEvent::Output`], which is raw process output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// `Step 1/5 : FROM x`
    Step(String),
    /// Output of a RUN step or builder notes (`Successfully built ...`).
    Output(String),
    /// The step was taken from the cache (` ---> Using cache`).
    Cached,
    /// Short (12 hex) id of the state after a step (` ---> abc123def456`).
    Id(String),
    /// A warning such as unused build args, without Docker's `[Warning] ` prefix.
    Warning(String),
}

/// The outcome of a successful build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// `sha256:<hex>` id of the built image.
    pub image_id: String,
}

/// Errors of a build; each names the Dockerfile line or object involved.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The context is unusable (a path escapes it, the Dockerfile is missing...).
    #[error(transparent)]
    Context(#[from] ContextError),
    /// Reading the Dockerfile failed.
    #[error("reading dockerfile {path}: {source}")]
    Dockerfile {
        /// Where the Dockerfile was looked for.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Variable expansion failed on a line.
    #[error("line {line}: {source}")]
    Expand {
        /// 1-based Dockerfile line.
        line: usize,
        /// The cause.
        source: ExpandError,
    },
    /// `--target` names no stage.
    #[error("failed to reach build target {0} in Dockerfile")]
    UnknownTarget(String),
    /// A host call failed during a step.
    #[error("line {line}: {source}")]
    Host {
        /// 1-based Dockerfile line.
        line: usize,
        /// What the host reported.
        source: HostError,
    },
    /// A RUN step exited non-zero.
    #[error("the command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The argv, joined with spaces.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// Invalid instruction argument detected while building.
    #[error("line {line}: {message}")]
    Invalid {
        /// 1-based Dockerfile line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// COPY/ADD failed on a source or destination.
    #[error("line {line}: {message}")]
    Copy {
        /// 1-based Dockerfile line.
        line: usize,
        /// What failed, naming the source or destination.
        message: String,
    },
}

/// Builds images from Dockerfiles through a [`BuildHost`].
pub struct Builder {
    host: Arc<dyn BuildHost>,
}

/// The evolving state of a stage.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    pub image: ImageConfig,
    pub top_layer: Option<String>,
    pub state_id: String,
    pub cmd_set: bool,
    /// Declared ARGs and their values (`None`: declared without a value).
    pub args: BTreeMap<String, Option<String>>,
}

impl StageState {
    /// Variable lookup for expansion: Env first, then declared args.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |k: &str| {
            self.image
                .env_get(k)
                .or_else(|| self.args.get(k).cloned().flatten())
        }
    }
}

/// Shared state of one build run.
pub(crate) struct Run<'a> {
    pub host: &'a dyn BuildHost,
    pub context: &'a Path,
    pub opts: &'a BuildOptions,
    pub progress: &'a UnboundedSender<BuildEvent>,
    pub df: &'a Dockerfile,
    pub escape: char,
    pub global_args: BTreeMap<String, Option<String>>,
    pub used_args: HashSet<String>,
    pub stage_results: HashMap<usize, StageState>,
    pub step: usize,
    pub total: usize,
}

/// `sha256:` digest of a byte string.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// First 12 hex digits of an id.
pub(crate) fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

impl Run<'_> {
    pub fn emit(&self, ev: BuildEvent) {
        if !self.opts.quiet || matches!(ev, BuildEvent::Warning(_)) {
            let _ = self.progress.send(ev);
        }
    }

    /// The cache key of a step: parent state + the step's (expanded) description.
    pub fn cache_key(parent: &str, description: &str) -> String {
        digest(format!("{parent}\n{description}").as_bytes())
    }

    /// Looks `key` up unless `--no-cache`; on a hit, restores the state and reports it.
    pub async fn try_cache(
        &self,
        state: &mut StageState,
        key: &str,
        line: usize,
    ) -> Result<bool, BuildError> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let hit = self
            .host
            .cache_get(key)
            .await
            .map_err(|source| BuildError::Host { line, source })?;
        let Some(hit) = hit else { return Ok(false) };
        let Ok(image) = serde_json::from_value::<ImageConfig>(hit.image) else {
            return Ok(false);
        };
        state.image = image;
        state.top_layer = hit.top_layer;
        state.state_id = hit.state_id;
        self.emit(BuildEvent::Cached);
        self.emit(BuildEvent::Id(short_id(&state.state_id)));
        Ok(true)
    }

    /// Records the state after a step under `key` and reports its id.
    pub async fn record(
        &self,
        state: &mut StageState,
        key: &str,
        line: usize,
    ) -> Result<(), BuildError> {
        let image = serde_json::to_value(&state.image).map_err(|e| BuildError::Invalid {
            line,
            message: format!("serializing image config: {e}"),
        })?;
        state.state_id = digest(image.to_string().as_bytes());
        let entry = CachedStep {
            state_id: state.state_id.clone(),
            image,
            top_layer: state.top_layer.clone(),
        };
        self.host
            .cache_put(key, &entry)
            .await
            .map_err(|source| BuildError::Host { line, source })?;
        self.emit(BuildEvent::Id(short_id(&state.state_id)));
        Ok(())
    }

    pub fn next_step(&mut self, original: &str) {
        self.step += 1;
        let text = format!("Step {}/{} : {}", self.step, self.total, original);
        self.emit(BuildEvent::Step(text));
    }

    pub fn expand(&self, state: &StageState, raw: &str, line: usize) -> Result<String, BuildError> {
        crate::parser::expand::expand_word(raw, self.escape, &state.lookup())
            .map_err(|source| BuildError::Expand { line, source })
    }
}

impl Builder {
    /// A builder driving `host`.
    pub fn new(host: Arc<dyn BuildHost>) -> Self {
        Builder { host }
    }

    /// Builds the Dockerfile `opts.dockerfile` of the unpacked context in `context_dir`,
    /// reporting progress through `progress` (closed receivers are ignored), tags the result
    /// with `opts.tags` and returns its id.
    pub async fn build(
        &self,
        context_dir: &Path,
        opts: BuildOptions,
        progress: UnboundedSender<BuildEvent>,
    ) -> Result<BuildResult, BuildError> {
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            opts.dockerfile.as_str()
        };
        let path = crate::context::resolve(context_dir, name)?;
        let path = if !path.exists() && name == "Dockerfile" {
            context_dir.join("dockerfile")
        } else {
            path
        };
        let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Dockerfile {
            path: path.clone(),
            source,
        })?;
        let df = crate::parser::parse(&text)?;
        let target = match &opts.target {
            Some(t) if !t.is_empty() => {
                df.stage_by_name(t)
                    .ok_or_else(|| BuildError::UnknownTarget(t.clone()))?
                    .index
            }
            _ => df.stages.len() - 1,
        };
        let needed = stages::needed(&df, target, &opts.build_args);
        let total = df.global_args.len()
            + needed
                .iter()
                .map(|&i| 1 + df.stages[i].instructions.len())
                .sum::<usize>();
        let mut run = Run {
            host: self.host.as_ref(),
            context: context_dir,
            opts: &opts,
            progress: &progress,
            df: &df,
            escape: df.directives.escape,
            global_args: BTreeMap::new(),
            used_args: HashSet::new(),
            stage_results: HashMap::new(),
            step: 0,
            total,
        };
        stages::declare_global_args(&mut run)?;
        let mut last = None;
        for &i in &needed {
            let state = stages::build_stage(&mut run, i).await?;
            run.stage_results.insert(i, state.clone());
            last = Some(state);
        }
        let Some(mut state) = last else {
            return Err(BuildError::UnknownTarget(String::from("(none)")));
        };
        finish(&mut run, &mut state).await
    }
}

/// A tag as Docker prints it: `name` becomes `name:latest`.
pub(crate) fn display_tag(tag: &str) -> String {
    let last = tag.rsplit('/').next().unwrap_or(tag);
    if last.contains(':') || tag.contains('@') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    }
}

async fn finish(run: &mut Run<'_>, state: &mut StageState) -> Result<BuildResult, BuildError> {
    if !run.opts.labels.is_empty() {
        let labels = state.image.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &run.opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let mut unused: Vec<&String> = run
        .opts
        .build_args
        .keys()
        .filter(|k| !run.used_args.contains(*k) && !run::is_proxy_arg(k))
        .collect();
    if !unused.is_empty() {
        unused.sort();
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        run.emit(BuildEvent::Warning(format!(
            "One or more build-args [{}] were not consumed",
            names.join(" ")
        )));
    }
    // Like Docker's classic builder the image is the last step's state, so a fully cached
    // rebuild gives the same id: its creation time is the last history entry's.
    state.image.created = state
        .image
        .history
        .last()
        .and_then(|h| h.created.clone())
        .or_else(|| Some(dispatch::now()));
    let line = run.df.stages.last().map(|s| s.line).unwrap_or(0);
    let image = serde_json::to_value(&state.image).map_err(|e| BuildError::Invalid {
        line,
        message: format!("serializing image config: {e}"),
    })?;
    let image_id = run
        .host
        .create_image(image, state.top_layer.as_deref())
        .await
        .map_err(|source| BuildError::Host { line, source })?;
    run.emit(BuildEvent::Output(format!(
        "Successfully built {}\n",
        short_id(&image_id)
    )));
    for tag in &run.opts.tags {
        run.host
            .tag(&image_id, tag)
            .await
            .map_err(|source| BuildError::Host { line, source })?;
        run.emit(BuildEvent::Output(format!(
            "Successfully tagged {}\n",
            display_tag(tag)
        )));
    }
    Ok(BuildResult { image_id })
}
