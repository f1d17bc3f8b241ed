//! Stage selection, global ARGs, FROM and ONBUILD triggers.

use std::collections::{BTreeMap, BTreeSet};

use super::image::ImageConfig;
use super::{dispatch, BuildError, Run, StageState};
use crate::parser::{CopyInstr, Dockerfile, Instruction, MountSpec};

/// Names (raw) of stages/images a stage refers to through `--from`.
fn from_refs(ins: &Instruction) -> Vec<String> {
    match ins {
        Instruction::Copy(CopyInstr { from: Some(f), .. }) => vec![f.clone()],
        Instruction::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountSpec::Bind { from: Some(f), .. } => Some(f.clone()),
                _ => None,
            })
            .collect(),
        Instruction::OnBuild(_, inner) => from_refs(inner),
        _ => vec![],
    }
}

/// The stage a name refers to, if it is an earlier stage (by alias or index).
pub(crate) fn stage_ref(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    df.stage_by_name(name)
        .map(|s| s.index)
        .filter(|&i| i < before)
}

/// Indices of the stages the target needs, in build order. `--from` and `FROM` values are
/// expanded with the global ARGs (build args over defaults) so `COPY --from=$STAGE` works.
pub(crate) fn needed(
    df: &Dockerfile,
    target: usize,
    build_args: &std::collections::HashMap<String, String>,
) -> Vec<usize> {
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    for a in &df.global_args {
        let lookup = |k: &str| globals.get(k).cloned();
        let v = match build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => a.default.as_deref().and_then(|d| {
                crate::parser::expand::expand_word(d, df.directives.escape, &lookup).ok()
            }),
        };
        if let Some(v) = v {
            globals.insert(a.name.clone(), v);
        }
    }
    let lookup = |k: &str| globals.get(k).cloned();
    let expand = |r: &str| {
        crate::parser::expand::expand_word(r, df.directives.escape, &lookup)
            .unwrap_or_else(|_| r.to_string())
    };
    let mut set = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !set.insert(i) {
            continue;
        }
        let stage = &df.stages[i];
        let mut refs = vec![stage.from.image.clone()];
        refs.extend(
            stage
                .instructions
                .iter()
                .flat_map(|l| from_refs(&l.instruction)),
        );
        for r in refs {
            if let Some(j) = stage_ref(df, &expand(&r), i) {
                todo.push(j);
            }
        }
    }
    set.into_iter().collect()
}

/// Arguments Docker predefines (usable in RUN without an ARG, never in the cache key).
const AUTO_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

fn auto_arg(run: &Run<'_>, name: &str) -> Option<String> {
    let arch = super::image::host_arch().to_string();
    let build_platform = format!("linux/{arch}");
    let target_platform = run
        .opts
        .platform
        .clone()
        .unwrap_or_else(|| build_platform.clone());
    let mut t = target_platform.split('/');
    let (tos, tarch, tvar) = (
        t.next().unwrap_or("linux").to_string(),
        t.next().unwrap_or(&arch).to_string(),
        t.next().unwrap_or("").to_string(),
    );
    Some(match name {
        "TARGETPLATFORM" => target_platform,
        "TARGETOS" => tos,
        "TARGETARCH" => tarch,
        "TARGETVARIANT" => tvar,
        "BUILDPLATFORM" => build_platform,
        "BUILDOS" => "linux".into(),
        "BUILDARCH" => arch,
        "BUILDVARIANT" => String::new(),
        _ => return None,
    })
}

/// Resolves the value of a declared ARG: build arg, else the default expanded with `lookup`.
pub(crate) fn arg_value(
    run: &mut Run<'_>,
    name: &str,
    default: Option<&str>,
    inherited: Option<Option<String>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    line: usize,
) -> Result<Option<String>, BuildError> {
    if let Some(v) = run.opts.build_args.get(name) {
        run.used_args.insert(name.to_string());
        return Ok(Some(v.clone()));
    }
    if let Some(d) = default {
        let v = crate::parser::expand::expand_word(d, run.escape, lookup)
            .map_err(|source| BuildError::Expand { line, source })?;
        return Ok(Some(v));
    }
    if let Some(v) = inherited {
        return Ok(v);
    }
    Ok(AUTO_ARGS
        .contains(&name)
        .then(|| auto_arg(run, name))
        .flatten())
}

/// Declares the ARGs before the first FROM (each is a step, like Docker prints them).
pub(crate) fn declare_global_args(run: &mut Run<'_>) -> Result<(), BuildError> {
    let df = run.df;
    let line = df.stages[0].line;
    for a in &df.global_args {
        run.next_step(&format!(
            "ARG {}",
            match &a.default {
                Some(d) => format!("{}={}", a.name, d),
                None => a.name.clone(),
            }
        ));
        let globals = run.global_args.clone();
        let lookup = move |k: &str| globals.get(k).cloned().flatten();
        let v = arg_value(run, &a.name, a.default.as_deref(), None, &lookup, line)?;
        run.global_args.insert(a.name.clone(), v);
    }
    Ok(())
}

/// Builds one stage and returns its final state.
pub(crate) async fn build_stage(run: &mut Run<'_>, index: usize) -> Result<StageState, BuildError> {
    let df = run.df;
    let stage = &df.stages[index];
    run.next_step(&stage.original);
    let mut globals = run.global_args.clone();
    for name in AUTO_ARGS {
        if !globals.contains_key(*name) {
            globals.insert(name.to_string(), auto_arg(run, name));
        }
    }
    let lookup = move |k: &str| globals.get(k).cloned().flatten();
    let expand = |raw: &str| {
        crate::parser::expand::expand_word(raw, run.escape, &lookup).map_err(|source| {
            BuildError::Expand {
                line: stage.line,
                source,
            }
        })
    };
    let image_name = expand(&stage.from.image)?;
    let platform = match &stage.from.platform {
        Some(p) => Some(expand(p)?),
        None => run.opts.platform.clone(),
    };
    if image_name.is_empty() {
        return Err(BuildError::Invalid {
            line: stage.line,
            message: "base name should not be blank".into(),
        });
    }
    let mut state = if let Some(prev) =
        stage_ref(df, &image_name, index).and_then(|i| run.stage_results.get(&i))
    {
        let mut s = prev.clone();
        s.args = BTreeMap::new();
        s.cmd_set = false;
        s
    } else if image_name.eq_ignore_ascii_case("scratch") {
        let image = ImageConfig::scratch(platform.as_deref());
        StageState {
            image,
            top_layer: None,
            state_id: "scratch".into(),
            cmd_set: false,
            args: BTreeMap::new(),
        }
    } else {
        let base = run
            .host
            .resolve_base(&image_name, platform.as_deref(), run.opts.pull)
            .await
            .map_err(|source| BuildError::Host {
                line: stage.line,
                source,
            })?;
        let image: ImageConfig =
            serde_json::from_value(base.image).map_err(|e| BuildError::Invalid {
                line: stage.line,
                message: format!("base image {image_name} has an invalid config: {e}"),
            })?;
        StageState {
            image,
            top_layer: base.top_layer,
            state_id: base.image_id,
            cmd_set: false,
            args: BTreeMap::new(),
        }
    };
    // Docker gives every stage a PATH when its base image has none.
    if state.image.env_get("PATH").is_none() {
        state.image.env_set("PATH", super::DEFAULT_PATH);
    }
    if state.state_id != "scratch" {
        run.emit(super::BuildEvent::Id(super::short_id(&state.state_id)));
    }

    // ONBUILD triggers of the base run first, then are cleared.
    let triggers = state.image.config.on_build.take().unwrap_or_default();
    if !triggers.is_empty() {
        run.emit(super::BuildEvent::Output(format!(
            "# Executing {} build trigger{}\n",
            triggers.len(),
            if triggers.len() == 1 { "" } else { "s" }
        )));
        for t in &triggers {
            let ins =
                crate::parser::parse_line(t, run.escape).map_err(|e| BuildError::Invalid {
                    line: stage.line,
                    message: format!("ONBUILD trigger {t:?}: {e}"),
                })?;
            dispatch::dispatch(run, &mut state, index, stage.line, t, &ins).await?;
        }
    }
    for l in &stage.instructions {
        run.next_step(&l.original);
        dispatch::dispatch(run, &mut state, index, l.line, &l.original, &l.instruction).await?;
    }
    Ok(state)
}
