//! RUN steps.

use sha2::Digest;

use super::dispatch::commit_layer;
use super::{stages, BuildError, BuildEvent, Run, StageState};
use crate::host::{CacheSharing, RunMount, RunSpec, WorkRoot};
use crate::parser::{CommandLine, MountSpec, RunInstr, Sharing};

/// Build args Docker passes to RUN without an ARG declaration (and keeps out of history).
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `k` is one of Docker's predefined proxy build args.
pub(crate) fn is_proxy_arg(k: &str) -> bool {
    PROXY_ARGS.contains(&k)
}

/// Up to 12 characters of the end of a host key (`build-0123abcd...` → `0123abcd...`).
fn short_key(key: &str) -> String {
    key.rsplit(['-', ':'])
        .next()
        .unwrap_or(key)
        .chars()
        .take(12)
        .collect()
}

/// Mounts resolved for the host, plus the views to release afterwards.
struct Mounts {
    mounts: Vec<RunMount>,
    views: Vec<WorkRoot>,
    desc: Vec<String>,
    /// Private copies of context paths mounted read-write (dropped after the step).
    scratch: Vec<tempfile::TempDir>,
}

async fn release(run: &Run<'_>, views: Vec<WorkRoot>) {
    for v in views {
        let _ = run.host.discard(v).await;
    }
}

/// Prepares a read-only look at another stage or an image; returns its work root.
pub(crate) async fn view_of(
    run: &Run<'_>,
    stage: usize,
    name: &str,
    line: usize,
) -> Result<(WorkRoot, Option<String>), BuildError> {
    let layer = match stages::stage_ref(run.df, name, stage).and_then(|i| run.stage_results.get(&i))
    {
        Some(s) => s.top_layer.clone(),
        None => {
            let base = run
                .host
                .resolve_base(name, run.opts.platform.as_deref(), false)
                .await
                .map_err(|source| BuildError::Host { line, source })?;
            base.top_layer
        }
    };
    let work = run
        .host
        .prepare_rootfs(layer.as_deref())
        .await
        .map_err(|source| BuildError::Host { line, source })?;
    Ok((work, layer))
}

async fn resolve_mounts(
    run: &Run<'_>,
    state: &StageState,
    stage: usize,
    line: usize,
    specs: &[MountSpec],
) -> Result<Mounts, BuildError> {
    let mut m = Mounts {
        mounts: vec![],
        views: vec![],
        desc: vec![],
        scratch: vec![],
    };
    for spec in specs {
        let r = resolve_one(run, state, stage, line, spec, &mut m).await;
        if let Err(e) = r {
            release(run, std::mem::take(&mut m.views)).await;
            return Err(e);
        }
    }
    Ok(m)
}

async fn resolve_one(
    run: &Run<'_>,
    state: &StageState,
    stage: usize,
    line: usize,
    spec: &MountSpec,
    m: &mut Mounts,
) -> Result<(), BuildError> {
    match spec {
        MountSpec::Cache {
            id,
            target,
            sharing,
            readonly,
        } => {
            let target = super::dispatch::clean_abs(&super::dispatch::abs_in_workdir(
                state,
                &run.expand(state, target, line)?,
            ));
            let id = match id {
                Some(i) => run.expand(state, i, line)?,
                None => target.clone(),
            };
            let sharing = match sharing {
                Sharing::Shared => CacheSharing::Shared,
                Sharing::Private => CacheSharing::Private,
                Sharing::Locked => CacheSharing::Locked,
            };
            m.desc
                .push(format!("cache:{id}:{target}:{sharing:?}:{readonly}"));
            m.mounts.push(RunMount::Cache {
                id,
                target,
                sharing,
                readonly: *readonly,
            });
        }
        MountSpec::Tmpfs { target } => {
            let target = super::dispatch::clean_abs(&super::dispatch::abs_in_workdir(
                state,
                &run.expand(state, target, line)?,
            ));
            m.desc.push(format!("tmpfs:{target}"));
            m.mounts.push(RunMount::Tmpfs { target });
        }
        MountSpec::Bind {
            source,
            target,
            from,
            readwrite,
        } => {
            let target = super::dispatch::clean_abs(&super::dispatch::abs_in_workdir(
                state,
                &run.expand(state, target, line)?,
            ));
            let src = match source {
                Some(s) => run.expand(state, s, line)?,
                None => "/".into(),
            };
            let (path, readonly, label) = match from {
                Some(f) => {
                    let f = run.expand(state, f, line)?;
                    let (view, layer) = view_of(run, stage, &f, line).await?;
                    let path = safe_path::scoped_join(&view.rootfs, &src).map_err(|e| {
                        BuildError::Copy {
                            line,
                            message: format!("bind source {src} in {f}: {e}"),
                        }
                    })?;
                    m.views.push(view);
                    (
                        path,
                        !readwrite,
                        format!("{f}@{}:{src}", layer.unwrap_or_default()),
                    )
                }
                None => {
                    let path = crate::context::resolve(run.context, &src).map_err(|e| {
                        BuildError::Copy {
                            line,
                            message: e.to_string(),
                        }
                    })?;
                    let mut h = sha2::Sha256::new();
                    super::copy::hash_tree(&mut h, &path, "").map_err(|e| BuildError::Copy {
                        line,
                        message: format!("hashing bind source {src}: {e}"),
                    })?;
                    let label = format!("context:{src}@{}", hex::encode(h.finalize()));
                    // The context is shared by later steps: a writable bind gets a private
                    // copy whose changes are thrown away, like BuildKit does.
                    if *readwrite {
                        let copy_err = |e: std::io::Error| BuildError::Copy {
                            line,
                            message: format!("copying bind source {src}: {e}"),
                        };
                        let tmp = tempfile::tempdir().map_err(copy_err)?;
                        super::copy::copy_tree(&path, tmp.path(), "/src").map_err(copy_err)?;
                        let copied = tmp.path().join("src");
                        m.scratch.push(tmp);
                        (copied, false, label)
                    } else {
                        (path, true, label)
                    }
                }
            };
            if !path.exists() {
                return Err(BuildError::Copy {
                    line,
                    message: format!("bind source {src} not found"),
                });
            }
            m.desc.push(format!("bind:{label}:{target}:{readwrite}"));
            m.mounts.push(RunMount::Bind {
                source: path,
                target,
                readonly,
            });
        }
    }
    Ok(())
}

/// Executes a RUN instruction.
pub(crate) async fn run_step(
    run: &mut Run<'_>,
    state: &mut StageState,
    stage: usize,
    line: usize,
    r: &RunInstr,
) -> Result<(), BuildError> {
    let run: &Run<'_> = run;
    let argv = match &r.command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = state.image.shell();
            v.push(s.clone());
            v
        }
    };
    if argv.is_empty() {
        return Err(BuildError::Invalid {
            line,
            message: "RUN needs a command".into(),
        });
    }
    let arg_env: Vec<String> = state
        .args
        .iter()
        .filter(|(k, _)| state.image.env_get(k).is_none())
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let mut created_by = argv.join(" ");
    if !arg_env.is_empty() {
        created_by = format!("|{} {} {}", arg_env.len(), arg_env.join(" "), created_by);
    }
    let network = r
        .network
        .clone()
        .or_else(|| run.opts.network_mode.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let mounts = resolve_mounts(run, state, stage, line, &r.mounts).await?;
    let desc = format!(
        "RUN {created_by}\nmounts={:?}\nnetwork={network}",
        mounts.desc
    );
    let key = Run::cache_key(&state.state_id, &desc);
    if run.try_cache(state, &key, line).await? {
        release(run, mounts.views).await;
        return Ok(());
    }
    let work = match run.host.prepare_rootfs(state.top_layer.as_deref()).await {
        Ok(w) => w,
        Err(source) => {
            release(run, mounts.views).await;
            return Err(BuildError::Host { line, source });
        }
    };
    let mut env = state.image.config.env.clone().unwrap_or_default();
    if state.image.env_get("PATH").is_none() {
        env.push(format!("PATH={}", super::DEFAULT_PATH));
    }
    env.extend(arg_env);
    for (k, v) in &run.opts.build_args {
        if is_proxy_arg(k) && !state.args.contains_key(k) {
            env.push(format!("{k}={v}"));
        }
    }
    let spec = RunSpec {
        args: argv.clone(),
        env,
        cwd: state
            .image
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: state.image.config.user.clone().unwrap_or_default(),
        mounts: mounts.mounts,
        network,
    };
    run.emit(BuildEvent::Output(format!(
        " ---> Running in {}\n",
        short_key(&work.key)
    )));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forward = async {
        while let Some(s) = rx.recv().await {
            run.emit(BuildEvent::Output(s));
        }
    };
    let (code, ()) = tokio::join!(run.host.run(&work, spec, tx), forward);
    release(run, mounts.views).await;
    let code = match code {
        Ok(c) => c,
        Err(source) => {
            let _ = run.host.discard(work).await;
            return Err(BuildError::Host { line, source });
        }
    };
    if code != 0 {
        let _ = run.host.discard(work).await;
        return Err(BuildError::RunFailed {
            command: argv.join(" "),
            code,
        });
    }
    commit_layer(run, state, work, line, created_by).await?;
    run.record(state, &key, line).await
}
