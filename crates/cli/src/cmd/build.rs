//! `build`: sends the context tarball to `POST /build` and prints the stream.

use std::path::Path;

use base64::Engine;
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::client::{query, Client};
use crate::cmd::image::stream_progress;
use crate::dockerignore::context_tar;
use crate::error::{CliError, CmdResult};
use crate::parse::{expand_env, kv_map};

/// `build` flags.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set metadata for an image
    #[arg(long)]
    pub label: Vec<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Build context directory, or "-" to read a tar from stdin
    pub context: String,
}

/// The `/build` query for the flags; `dockerfile` is relative to the context.
pub fn build_query(a: &BuildArgs, dockerfile: &str) -> String {
    let mut q: Vec<(&str, String)> = a.tag.iter().map(|t| ("t", t.clone())).collect();
    q.push(("dockerfile", dockerfile.to_owned()));
    let args: Map<String, Value> = a
        .build_arg
        .iter()
        .map(|kv| {
            let full = expand_env(kv);
            match full.split_once('=') {
                Some((k, v)) => (k.to_owned(), json!(v)),
                None => (full.clone(), Value::Null),
            }
        })
        .collect();
    q.push(("buildargs", Value::Object(args).to_string()));
    q.push(("labels", Value::Object(kv_map(&a.label)).to_string()));
    q.push(("nocache", a.no_cache.to_string()));
    q.push(("pull", a.pull.to_string()));
    q.push(("q", a.quiet.to_string()));
    q.push(("rm", a.rm.to_string()));
    q.push(("forcerm", a.force_rm.to_string()));
    if let Some(t) = &a.target {
        q.push(("target", t.clone()));
    }
    if let Some(n) = &a.network {
        q.push(("networkmode", n.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    query(&q)
}

/// `berth build`.
pub async fn build(c: &Client, a: BuildArgs) -> CmdResult {
    let (body, dockerfile) = if a.context == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
            .map_err(CliError::io("reading stdin"))?;
        (v, a.file.clone().unwrap_or_else(|| "Dockerfile".into()))
    } else {
        let dir = Path::new(&a.context);
        if !dir.is_dir() {
            return Err(CliError::Usage(format!(
                "unable to prepare context: path {:?} not found",
                a.context
            )));
        }
        let dockerfile = match &a.file {
            None => "Dockerfile".to_owned(),
            Some(f) => {
                let fp = Path::new(f);
                let abs = if fp.is_absolute() {
                    fp.to_path_buf()
                } else {
                    std::env::current_dir()
                        .map_err(CliError::io("current dir"))?
                        .join(fp)
                };
                let ctx = dir
                    .canonicalize()
                    .map_err(CliError::io(format!("resolving {}", a.context)))?;
                let abs = abs
                    .canonicalize()
                    .map_err(CliError::io(format!("resolving {f}")))?;
                match abs.strip_prefix(&ctx) {
                    Ok(rel) => rel.to_string_lossy().into_owned(),
                    Err(_) => {
                        return Err(CliError::Usage(format!(
                            "the Dockerfile ({f}) must be within the build context"
                        )))
                    }
                }
            }
        };
        let tar = context_tar(dir, &dockerfile).map_err(|e| CliError::Usage(e.to_string()))?;
        (tar, dockerfile)
    };
    let path = format!("/build?{}", build_query(&a, &dockerfile));
    let reg = base64::engine::general_purpose::URL_SAFE.encode("{}");
    let headers = [("X-Registry-Config", reg)];
    // with q=true the daemon's stream carries only the image ID, which is what -q prints
    let body = Some(Bytes::from(body));
    stream_progress(c, "POST", &path, &headers, body, false, false).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BuildArgs,
    }

    #[test]
    fn query_from_flags() {
        let t = T::try_parse_from([
            "b",
            "-t",
            "a:1",
            "-t",
            "b",
            "--build-arg",
            "X=1",
            "--no-cache",
            ".",
        ])
        .unwrap();
        let q = build_query(&t.a, "Dockerfile");
        assert!(
            q.starts_with("t=a%3A1&t=b&dockerfile=Dockerfile&buildargs=%7B%22X%22%3A%221%22%7D")
        );
        assert!(q.contains("nocache=true"));
        assert!(q.contains("rm=true"));
    }
}
