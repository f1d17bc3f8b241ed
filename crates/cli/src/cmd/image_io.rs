//! Image archive and cleanup commands: `save`, `load`, `image prune`.

use bytes::Bytes;
use clap::Args;

use crate::client::{query, Client};
use crate::cmd::image::stream_progress;
use crate::error::{CliError, CmdResult};
use crate::output::human_size;
use crate::parse::filters_json;
use crate::stdio::is_tty;

/// `image prune` flags.
#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `berth image prune`.
pub async fn prune(c: &Client, a: ImagePruneArgs) -> CmdResult {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !crate::output::confirm(warning) {
        return Ok(0);
    }
    let mut f = a.filter.clone();
    f.push(format!("dangling={}", !a.all));
    let r = c
        .post(
            &format!("/images/prune?{}", query(&[("filters", filters_json(&f))])),
            None,
        )
        .await?;
    if r["ImagesDeleted"].as_array().is_some_and(|a| !a.is_empty()) {
        println!("Deleted Images:");
        for item in r["ImagesDeleted"].as_array().into_iter().flatten() {
            if let Some(u) = item["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = item["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

/// `save` flags.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Images
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth save`.
pub async fn save(c: &Client, a: SaveArgs) -> CmdResult {
    if a.output.is_none() && is_tty(1) {
        return Err(CliError::Usage(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        ));
    }
    let q: Vec<(&str, String)> = a.images.iter().map(|i| ("names", i.clone())).collect();
    let resp = c
        .send(
            "GET",
            &format!("/images/get?{}", query(&q)),
            &[],
            None,
            false,
        )
        .await?;
    let mut reader = crate::stdio::body_reader(resp);
    match &a.output {
        Some(path) => {
            let mut f = tokio::fs::File::create(path)
                .await
                .map_err(CliError::io(format!("creating {path}")))?;
            tokio::io::copy(&mut reader, &mut f)
                .await
                .map_err(CliError::io(format!("writing {path}")))?;
        }
        None => {
            let mut out = tokio::io::stdout();
            tokio::io::copy(&mut reader, &mut out)
                .await
                .map_err(CliError::io("writing stdout"))?;
        }
    }
    Ok(0)
}

/// `load` flags.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `berth load`.
pub async fn load(c: &Client, a: LoadArgs) -> CmdResult {
    let data = match &a.input {
        Some(p) => tokio::fs::read(p)
            .await
            .map_err(CliError::io(format!("reading {p}")))?,
        None => {
            if is_tty(0) {
                return Err(CliError::Usage(
                    "requested load from stdin, but stdin is empty".into(),
                ));
            }
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                .map_err(CliError::io("reading stdin"))?;
            v
        }
    };
    let path = format!("/images/load?{}", query(&[("quiet", a.quiet.to_string())]));
    stream_progress(c, "POST", &path, &[], Some(Bytes::from(data)), false, false).await?;
    Ok(0)
}
