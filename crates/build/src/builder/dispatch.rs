//! Per-instruction evaluation: how each instruction changes the image config and history.

use std::collections::BTreeMap;

use super::image::{Healthcheck, History, ImageConfig};
use super::{copy, run, stages, BuildError, Run, StageState};
use crate::host::WorkRoot;
use crate::parser::expand::expand_words;
use crate::parser::{CommandLine, HealthcheckInstr, Instruction};

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Formats a list like Go's `%q` of a string slice: `["a" "b"]`.
fn quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", items.join(" "))
}

/// A step that only changes metadata: cached like any other step, recorded with an empty
/// history entry `<shell> #(nop)  <desc>`.
async fn meta(
    run: &Run<'_>,
    state: &mut StageState,
    line: usize,
    desc: &str,
    apply: impl FnOnce(&mut ImageConfig),
) -> Result<(), BuildError> {
    let key = Run::cache_key(&state.state_id, desc);
    if run.try_cache(state, &key, line).await? {
        return Ok(());
    }
    apply(&mut state.image);
    let shell = state.image.shell().join(" ");
    state.image.history.push(History {
        created: Some(now()),
        created_by: Some(format!("{shell} #(nop)  {desc}")),
        empty_layer: true,
        ..Default::default()
    });
    run.record(state, &key, line).await
}

/// Commits `work` as the step's layer and adds the history entry.
pub(crate) async fn commit_layer(
    run: &Run<'_>,
    state: &mut StageState,
    work: WorkRoot,
    line: usize,
    created_by: String,
) -> Result<(), BuildError> {
    let layer = run
        .host
        .commit(work)
        .await
        .map_err(|source| BuildError::Host { line, source })?;
    if !layer.empty {
        state.image.rootfs.diff_ids.push(layer.diff_id);
        state.top_layer = Some(layer.layer_id);
    }
    state.image.history.push(History {
        created: Some(now()),
        created_by: Some(created_by),
        empty_layer: layer.empty,
        ..Default::default()
    });
    Ok(())
}

fn words(
    run: &Run<'_>,
    state: &StageState,
    raw: &[String],
    line: usize,
) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for w in raw {
        out.extend(
            expand_words(w, run.escape, &state.lookup())
                .map_err(|source| BuildError::Expand { line, source })?,
        );
    }
    Ok(out)
}

/// Expands an `EXPOSE` word (`80`, `80/udp`, `8000-8002/tcp`) into port keys.
pub(crate) fn port_keys(word: &str, line: usize) -> Result<Vec<String>, BuildError> {
    let bad = || BuildError::Invalid {
        line,
        message: format!("invalid port specification: {word:?}"),
    };
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Lexically cleans an absolute path.
pub(crate) fn clean_abs(p: &str) -> String {
    match crate::context::ignore::clean(p).as_str() {
        "." => "/".to_string(),
        c => format!("/{c}"),
    }
}

/// Joins `p` to the working directory unless it is absolute.
pub(crate) fn abs_in_workdir(state: &StageState, p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        let wd = state
            .image
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into());
        format!("{}/{}", wd.trim_end_matches('/'), p)
    }
}

fn command_vec(state: &StageState, c: &CommandLine) -> Option<Vec<String>> {
    match c {
        CommandLine::Exec(v) if v.is_empty() => None,
        CommandLine::Exec(v) => Some(v.clone()),
        CommandLine::Shell(s) if s.is_empty() => None,
        CommandLine::Shell(s) => {
            let mut v = state.image.shell();
            v.push(s.clone());
            Some(v)
        }
    }
}

/// Executes one instruction of stage `stage` against `state`.
pub(crate) async fn dispatch(
    run: &mut Run<'_>,
    state: &mut StageState,
    stage: usize,
    line: usize,
    original: &str,
    ins: &Instruction,
) -> Result<(), BuildError> {
    match ins {
        Instruction::From(_) => Err(BuildError::Invalid {
            line,
            message: "FROM is not allowed here".into(),
        }),
        Instruction::Env(pairs) => {
            let mut kv = Vec::new();
            for (k, v) in pairs {
                kv.push((run.expand(state, k, line)?, run.expand(state, v, line)?));
            }
            let desc = format!(
                "ENV {}",
                kv.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            meta(run, state, line, &desc, |img| {
                kv.iter().for_each(|(k, v)| img.env_set(k, v))
            })
            .await
        }
        Instruction::Label(pairs) => {
            let mut kv = Vec::new();
            for (k, v) in pairs {
                kv.push((run.expand(state, k, line)?, run.expand(state, v, line)?));
            }
            let desc = format!(
                "LABEL {}",
                kv.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            meta(run, state, line, &desc, |img| {
                let labels = img.config.labels.get_or_insert_with(BTreeMap::new);
                kv.into_iter().for_each(|(k, v)| {
                    labels.insert(k, v);
                })
            })
            .await
        }
        Instruction::Arg(decls) => {
            let mut parts = Vec::new();
            for d in decls {
                let inherited = run.global_args.get(&d.name).cloned();
                let snapshot = state.clone();
                let lookup = snapshot.lookup();
                let v = stages::arg_value(
                    run,
                    &d.name,
                    d.default.as_deref(),
                    inherited,
                    &lookup,
                    line,
                )?;
                parts.push(match &v {
                    Some(v) => format!("{}={}", d.name, v),
                    None => d.name.clone(),
                });
                state.args.insert(d.name.clone(), v);
            }
            meta(
                run,
                state,
                line,
                &format!("ARG {}", parts.join(" ")),
                |_| {},
            )
            .await
        }
        Instruction::Expose(raw) => {
            let mut keys = Vec::new();
            for w in words(run, state, raw, line)? {
                keys.extend(port_keys(&w, line)?);
            }
            let desc = format!("EXPOSE {}", keys.join(" "));
            meta(run, state, line, &desc, |img| {
                let ports = img.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                keys.into_iter().for_each(|k| {
                    ports.insert(k, serde_json::json!({}));
                })
            })
            .await
        }
        Instruction::User(raw) => {
            let user = run.expand(state, raw, line)?;
            meta(run, state, line, &format!("USER {user}"), |img| {
                img.config.user = Some(user.clone())
            })
            .await
        }
        Instruction::Volume(raw) => {
            let paths = words(run, state, raw, line)?;
            if paths.iter().any(|p| p.is_empty()) {
                return Err(BuildError::Invalid {
                    line,
                    message: "VOLUME specified can not be an empty string".into(),
                });
            }
            let desc = format!("VOLUME {}", quoted_list(&paths));
            meta(run, state, line, &desc, |img| {
                let vols = img.config.volumes.get_or_insert_with(BTreeMap::new);
                paths.into_iter().for_each(|p| {
                    vols.insert(p, serde_json::json!({}));
                })
            })
            .await
        }
        Instruction::StopSignal(raw) => {
            let sig = run.expand(state, raw, line)?;
            let valid = sig.parse::<u32>().is_ok()
                || sig
                    .trim_start_matches("SIG")
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
            if sig.is_empty() || !valid {
                return Err(BuildError::Invalid {
                    line,
                    message: format!("invalid signal: {sig}"),
                });
            }
            meta(run, state, line, &format!("STOPSIGNAL {sig}"), |img| {
                img.config.stop_signal = Some(sig.clone())
            })
            .await
        }
        Instruction::Healthcheck(h) => {
            let hc = match h {
                HealthcheckInstr::None => Healthcheck {
                    test: Some(vec!["NONE".into()]),
                    ..Default::default()
                },
                HealthcheckInstr::Cmd {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let test = match test {
                        CommandLine::Exec(v) => std::iter::once("CMD".to_string())
                            .chain(v.iter().cloned())
                            .collect(),
                        CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    };
                    Healthcheck {
                        test: Some(test),
                        interval: *interval,
                        timeout: *timeout,
                        start_period: *start_period,
                        start_interval: *start_interval,
                        retries: *retries,
                    }
                }
            };
            let desc = format!(
                "HEALTHCHECK {}",
                serde_json::to_string(&hc).unwrap_or_default()
            );
            meta(run, state, line, &desc, |img| {
                img.config.healthcheck = Some(hc)
            })
            .await
        }
        Instruction::OnBuild(trigger, _) => {
            let desc = format!("ONBUILD {trigger}");
            let t = trigger.clone();
            meta(run, state, line, &desc, |img| {
                img.config.on_build.get_or_insert_with(Vec::new).push(t)
            })
            .await
        }
        Instruction::Shell(v) => {
            let desc = format!("SHELL {}", quoted_list(v));
            let v = v.clone();
            meta(run, state, line, &desc, |img| img.config.shell = Some(v)).await
        }
        Instruction::Maintainer(raw) => {
            let who = run.expand(state, raw, line)?;
            meta(run, state, line, &format!("MAINTAINER {who}"), |img| {
                img.author = Some(who.clone())
            })
            .await
        }
        Instruction::Cmd(c) => {
            let cmd = command_vec(state, c);
            state.cmd_set = true;
            let desc = format!("CMD {}", quoted_list(cmd.as_deref().unwrap_or(&[])));
            meta(run, state, line, &desc, |img| img.config.cmd = cmd).await
        }
        Instruction::Entrypoint(c) => {
            let ep = command_vec(state, c);
            let reset_cmd = !state.cmd_set;
            let desc = format!("ENTRYPOINT {}", quoted_list(ep.as_deref().unwrap_or(&[])));
            meta(run, state, line, &desc, |img| {
                img.config.entrypoint = ep;
                if reset_cmd {
                    img.config.cmd = None;
                }
            })
            .await
        }
        Instruction::Workdir(raw) => {
            let p = run.expand(state, raw, line)?;
            let dir = clean_abs(&abs_in_workdir(state, &p));
            let desc = format!("WORKDIR {dir}");
            let key = Run::cache_key(&state.state_id, &desc);
            if run.try_cache(state, &key, line).await? {
                return Ok(());
            }
            state.image.config.working_dir = Some(dir.clone());
            let work = run
                .host
                .prepare_rootfs(state.top_layer.as_deref())
                .await
                .map_err(|source| BuildError::Host { line, source })?;
            if let Err(e) = copy::mkdir_in_root(&work.rootfs, &dir) {
                let _ = run.host.discard(work).await;
                return Err(BuildError::Copy {
                    line,
                    message: format!("creating WORKDIR {dir}: {e}"),
                });
            }
            let shell = state.image.shell().join(" ");
            commit_layer(run, state, work, line, format!("{shell} #(nop) {desc}")).await?;
            run.record(state, &key, line).await
        }
        Instruction::Run(r) => run::run_step(run, state, stage, line, r).await,
        Instruction::Copy(c) => copy::copy_step(run, state, stage, line, original, c, false).await,
        Instruction::Add(c) => copy::copy_step(run, state, stage, line, original, c, true).await,
    }
}
