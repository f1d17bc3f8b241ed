//! Image commands: `pull`, `push`, `images`, `image inspect`, `tag`, `rmi`,
//! `image prune`, `save`, `load`.

use std::io::Write;

use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::auth;
use crate::client::{self, query, Client};
use crate::cmd::image_io;
use crate::error::{for_each, CliError, CmdResult};
use crate::output::{self, ago, created_at, human_size, short_id};
use crate::parse::filters_json;
use crate::progress::Progress;
use crate::stdio::is_tty;

/// Splits a reference into (repository, tag-or-digest, is_digest); tag defaults to `latest`.
pub fn split_ref(r: &str) -> (String, String, bool) {
    if let Some((repo, digest)) = r.split_once('@') {
        return (repo.to_owned(), digest.to_owned(), true);
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].rfind(':') {
        Some(i) => (
            r[..slash + i].to_owned(),
            r[slash + i + 1..].to_owned(),
            false,
        ),
        None => (r.to_owned(), "latest".to_owned(), false),
    }
}

/// The fully qualified form docker prints after a pull (`docker.io/library/busybox:latest`).
pub fn full_ref(r: &str) -> String {
    let (repo, tag, digest) = split_ref(r);
    let repo = if auth::registry_of(&repo) == "docker.io" {
        let bare = repo.trim_start_matches("docker.io/");
        if bare.contains('/') {
            format!("docker.io/{bare}")
        } else {
            format!("docker.io/library/{bare}")
        }
    } else {
        repo
    };
    if digest {
        format!("{repo}@{tag}")
    } else {
        format!("{repo}:{tag}")
    }
}

/// Runs a JSON message stream request, rendering progress to stdout or stderr.
pub async fn stream_progress(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Bytes>,
    to_stderr: bool,
    quiet: bool,
) -> Result<Vec<Value>, CliError> {
    let resp = c.send(method, path, headers, body, false).await?;
    let tty = if to_stderr { is_tty(2) } else { is_tty(1) };
    let sink: Box<dyn Write> = if quiet {
        Box::new(std::io::sink())
    } else if to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut p = Progress::new(sink, tty);
    client::for_each_json(path, resp, |m| {
        p.show(&m);
        Ok(())
    })
    .await?;
    match p.error {
        Some(e) => Err(CliError::Stream(e)),
        None => Ok(p.aux),
    }
}

/// `pull` flags.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Image name
    pub image: String,
}

/// Pulls an image, printing progress (to stderr when `to_stderr`, as `run` does).
pub async fn pull_image(
    c: &Client,
    image: &str,
    platform: Option<&str>,
    to_stderr: bool,
    quiet: bool,
) -> Result<(), CliError> {
    let (repo, tag, digest) = split_ref(image);
    let mut q = vec![("fromImage", repo)];
    q.push(("tag", tag));
    let _ = digest;
    if let Some(p) = platform {
        q.push(("platform", p.to_owned()));
    }
    let path = format!("/images/create?{}", query(&q));
    let headers = [("X-Registry-Auth", auth::registry_auth_header(image))];
    stream_progress(c, "POST", &path, &headers, None, to_stderr, quiet).await?;
    Ok(())
}

/// `berth pull`.
pub async fn pull(c: &Client, a: PullArgs) -> CmdResult {
    if a.all_tags {
        let path = format!(
            "/images/create?{}",
            query(&[("fromImage", a.image.clone())])
        );
        let headers = [("X-Registry-Auth", auth::registry_auth_header(&a.image))];
        stream_progress(c, "POST", &path, &headers, None, false, a.quiet).await?;
    } else {
        pull_image(c, &a.image, a.platform.as_deref(), false, a.quiet).await?;
    }
    println!("{}", full_ref(&a.image));
    Ok(0)
}

/// `push` flags.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image name
    pub image: String,
}

/// `berth push`.
pub async fn push(c: &Client, a: PushArgs) -> CmdResult {
    let (repo, tag, _) = split_ref(&a.image);
    let q = if a.all_tags {
        if repo != a.image {
            return Err(CliError::Usage(format!(
                "tag can't be used with --all-tags/-a: {}",
                a.image
            )));
        }
        String::new()
    } else {
        query(&[("tag", tag)])
    };
    let path = format!("/images/{repo}/push?{q}");
    let headers = [("X-Registry-Auth", auth::registry_auth_header(&a.image))];
    stream_progress(c, "POST", &path, &headers, None, false, a.quiet).await?;
    Ok(0)
}

/// `images` flags.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Repository to list
    pub repository: Option<String>,
}

/// One display row per tag of each image (docker's image formatter context).
pub fn image_rows(images: &[Value], no_trunc: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for img in images {
        let id = img["Id"].as_str().unwrap_or("");
        let id = if no_trunc {
            id.to_owned()
        } else {
            short_id(id)
        };
        let created = img["Created"].as_i64().unwrap_or(0);
        let size = img["Size"].as_f64().unwrap_or(0.0);
        let shared = img["SharedSize"].as_f64().filter(|s| *s >= 0.0);
        let digests: Vec<String> = img["RepoDigests"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut tags: Vec<String> = img["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .filter(|t| t != "<none>:<none>")
                    .collect()
            })
            .unwrap_or_default();
        if tags.is_empty() {
            tags.push(match digests.first() {
                Some(d) => format!("{}:<none>", d.split('@').next().unwrap_or("<none>")),
                None => "<none>:<none>".to_owned(),
            });
        }
        for t in tags {
            let (repo, tag, _) = split_ref(&t);
            let digest = digests
                .iter()
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split_once('@').map(|(_, x)| x.to_owned()))
                .unwrap_or_else(|| "<none>".to_owned());
            rows.push(json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": ago(created),
                "CreatedAt": created_at(created),
                "Size": human_size(size),
                "Containers": img["Containers"].as_i64().filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "N/A".into()),
                "SharedSize": shared.map(human_size).unwrap_or_else(|| "N/A".into()),
                "UniqueSize": shared.map(|s| human_size((size - s).max(0.0))).unwrap_or_else(|| "N/A".into()),
                "VirtualSize": output::human_size_prec(size, 4),
            }));
        }
    }
    rows
}

/// Column header for an image field.
pub fn image_header(f: &str) -> String {
    match f {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        other => output::default_header(other),
    }
}

/// `berth images`.
pub async fn images(c: &Client, a: ImagesArgs) -> CmdResult {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![("all", a.all.to_string())];
    if !filters.is_empty() {
        q.push(("filters", filters_json(&filters)));
    }
    let list = c.get(&format!("/images/json?{}", query(&q))).await?;
    let mut imgs = list.as_array().cloned().unwrap_or_default();
    imgs.sort_by_key(|i| std::cmp::Reverse(i["Created"].as_i64().unwrap_or(0)));
    if a.quiet {
        let mut seen = Vec::new();
        for i in &imgs {
            let id = i["Id"].as_str().unwrap_or("");
            let id = if a.no_trunc {
                id.to_owned()
            } else {
                short_id(id)
            };
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(0);
    }
    let rows = image_rows(&imgs, a.no_trunc);
    let fmt = a.format.unwrap_or_else(|| {
        if a.digests {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .into()
        } else {
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into()
        }
    });
    let fmt = if fmt == "json" {
        "{{json .}}".to_owned()
    } else {
        fmt
    };
    print!("{}", output::render_rows(&fmt, &rows, &image_header)?);
    Ok(0)
}

/// `tag` arguments.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// Source image
    pub source: String,
    /// Target image
    pub target: String,
}

/// `berth tag`.
pub async fn tag(c: &Client, a: TagArgs) -> CmdResult {
    let (repo, tag, _) = split_ref(&a.target);
    c.post(
        &format!(
            "/images/{}/tag?{}",
            a.source,
            query(&[("repo", repo), ("tag", tag)])
        ),
        None,
    )
    .await?;
    Ok(0)
}

/// `rmi` flags.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Images
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Prints `Untagged:`/`Deleted:` lines of an image delete response.
pub fn print_image_deleted(list: &Value) {
    for item in list.as_array().into_iter().flatten() {
        if let Some(u) = item["Untagged"].as_str() {
            println!("Untagged: {u}");
        }
        if let Some(d) = item["Deleted"].as_str() {
            println!("Deleted: {d}");
        }
    }
}

/// `berth rmi`.
pub async fn rmi(c: &Client, a: RmiArgs) -> CmdResult {
    for_each(&a.images, |img| async move {
        let q = query(&[
            ("force", a.force.to_string()),
            ("noprune", a.no_prune.to_string()),
        ]);
        let r = c.delete(&format!("/images/{img}?{q}")).await?;
        print_image_deleted(&r);
        Ok(())
    })
    .await
}

/// `image` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(crate::cmd::inspect::InspectArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(image_io::ImagePruneArgs),
    /// Save one or more images to a tar archive
    Save(image_io::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image_io::LoadArgs),
    /// Build an image from a Dockerfile
    Build(crate::cmd::build::BuildArgs),
    /// Show the history of an image
    History(image_io::HistoryArgs),
}

/// Dispatches `berth image ...`.
pub async fn image(c: &Client, cmd: ImageCmd) -> CmdResult {
    match cmd {
        ImageCmd::Ls(a) => images(c, a).await,
        ImageCmd::Inspect(a) => crate::cmd::inspect::inspect_kind(c, a, Some("image")).await,
        ImageCmd::Pull(a) => pull(c, a).await,
        ImageCmd::Push(a) => push(c, a).await,
        ImageCmd::Tag(a) => tag(c, a).await,
        ImageCmd::Rm(a) => rmi(c, a).await,
        ImageCmd::Prune(a) => image_io::prune(c, a).await,
        ImageCmd::Save(a) => image_io::save(c, a).await,
        ImageCmd::Load(a) => image_io::load(c, a).await,
        ImageCmd::Build(a) => crate::cmd::build::build(c, a).await,
        ImageCmd::History(a) => image_io::history(c, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(
            split_ref("busybox"),
            ("busybox".into(), "latest".into(), false)
        );
        assert_eq!(
            split_ref("127.0.0.1:5000/a/b:1.0"),
            ("127.0.0.1:5000/a/b".into(), "1.0".into(), false)
        );
        assert_eq!(
            split_ref("127.0.0.1:5000/a"),
            ("127.0.0.1:5000/a".into(), "latest".into(), false)
        );
        assert_eq!(
            split_ref("a@sha256:00"),
            ("a".into(), "sha256:00".into(), true)
        );
        assert_eq!(full_ref("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full_ref("me/app:1"), "docker.io/me/app:1");
        assert_eq!(full_ref("localhost:5000/app"), "localhost:5000/app:latest");
    }

    #[test]
    fn rows_per_tag_and_untagged() {
        let imgs = vec![
            json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["a:1", "b:2"], "RepoDigests": ["a@sha256:dd"], "Created": 0, "Size": 4264446}),
            json!({"Id": "sha256:fedcba9876543210", "RepoTags": [], "Created": 0, "Size": 10}),
        ];
        let rows = image_rows(&imgs, false);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["Repository"], "a");
        assert_eq!(rows[0]["Digest"], "sha256:dd");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[2]["Repository"], "<none>");
        assert_eq!(rows[2]["Tag"], "<none>");
        let out = output::render_rows(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}",
            &rows[..1],
            &image_header,
        )
        .unwrap();
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID\na            1         0123456789ab\n"
        );
    }
}
