//! Image archive and cleanup commands: `save`, `load`, `image prune`.

use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};

use crate::client::{query, Client};
use crate::cmd::image::stream_progress;
use crate::error::{CliError, CmdResult};
use crate::output::{self, ago, created_at, ellipsis, human_size, short_id};
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

/// `history` flags.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Image
    pub image: String,
}

/// Display rows of an image history answer (docker's history context).
pub fn history_rows(items: &[Value], no_trunc: bool, human: bool) -> Vec<Value> {
    items
        .iter()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("<missing>");
            let id = if no_trunc || id == "<missing>" {
                id.to_owned()
            } else {
                short_id(id)
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            let by = if no_trunc { by } else { ellipsis(&by, 45) };
            let size = h["Size"].as_f64().unwrap_or(0.0);
            json!({
                "ID": id,
                "CreatedSince": if human { ago(created) } else { created_at(created) },
                "CreatedAt": created_at(created),
                "CreatedBy": by,
                "Size": if human { human_size(size) } else { size.to_string() },
                "Comment": h["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect()
}

/// `berth history`.
pub async fn history(c: &Client, a: HistoryArgs) -> CmdResult {
    let v = c.get(&format!("/images/{}/history", a.image)).await?;
    let items = v.as_array().cloned().unwrap_or_default();
    let rows = history_rows(&items, a.no_trunc, a.human);
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let fmt = a.format.unwrap_or_else(|| {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into()
    });
    let header = |f: &str| match f {
        "ID" => "IMAGE".to_owned(),
        "CreatedSince" => "CREATED".to_owned(),
        other => output::default_header(other),
    };
    print!("{}", output::render_rows(&fmt, &rows, &header)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_row_fields() {
        let items = vec![
            json!({"Id": "sha256:0123456789abcdef", "Created": 0, "CreatedBy": "/bin/sh -c #(nop) COPY dir:abc in /app with a long tail", "Size": 1500, "Comment": ""}),
        ];
        let r = &history_rows(&items, false, true)[0];
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Size"], "1.5kB");
        assert_eq!(r["CreatedBy"].as_str().unwrap().chars().count(), 45);
        let missing = vec![json!({"Id": "<missing>", "Created": 0, "Size": 0})];
        assert_eq!(history_rows(&missing, false, true)[0]["ID"], "<missing>");
    }
}
