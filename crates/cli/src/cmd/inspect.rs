//! `inspect`: containers, images, networks and volumes, as JSON or through `--format`.

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::error::{CliError, CmdResult};
use crate::template::Template;

/// `inspect` flags.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Only inspect objects of the given type
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Names or IDs
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Pretty-prints JSON with docker's 4-space indentation.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    match v.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => v.to_string(),
    }
}

async fn fetch(c: &Client, kind: &str, name: &str, size: bool) -> Result<Value, ClientError> {
    match kind {
        "container" => c.get(&format!("/containers/{name}/json?size={size}")).await,
        "image" => c.get(&format!("/images/{name}/json")).await,
        "network" => c.get(&format!("/networks/{name}")).await,
        "volume" => c.get(&format!("/volumes/{name}")).await,
        other => Err(ClientError::Daemon {
            status: 400,
            message: format!("\"{other}\" is not a valid value for --type"),
        }),
    }
}

async fn find(c: &Client, kind: Option<&str>, name: &str, size: bool) -> Result<Value, CliError> {
    if let Some(k) = kind {
        return Ok(fetch(c, k, name, size).await?);
    }
    for k in ["container", "image", "network", "volume"] {
        match fetch(c, k, name, size).await {
            Ok(v) => return Ok(v),
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::Stream(format!("Error: No such object: {name}")))
}

/// `berth inspect` (and `image inspect`, etc. via `kind`).
pub async fn inspect_kind(c: &Client, a: InspectArgs, kind: Option<&str>) -> CmdResult {
    let kind = kind.map(str::to_owned).or(a.kind.clone());
    let format = a
        .format
        .as_deref()
        .map(|f| if f == "json" { "{{json .}}" } else { f });
    let tpl = format.map(Template::parse).transpose()?;
    let mut found = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match find(c, kind.as_deref(), n, a.size).await {
            Ok(v) => found.push(v),
            Err(e) => {
                failed = true;
                let msg = match (&e, kind.as_deref()) {
                    (CliError::Client(ClientError::Daemon { status: 404, .. }), Some(k)) => {
                        format!("Error: No such {k}: {n}")
                    }
                    _ => e.render(),
                };
                eprintln!("{msg}");
            }
        }
    }
    match tpl {
        Some(t) => {
            for v in &found {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", pretty(&Value::Array(found))),
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(0)
    }
}

/// `berth inspect`.
pub async fn inspect(c: &Client, a: InspectArgs) -> CmdResult {
    inspect_kind(c, a, None).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn four_space_indent() {
        let v = serde_json::json!([{"Id": "x"}]);
        assert_eq!(
            super::pretty(&v),
            "[\n    {\n        \"Id\": \"x\"\n    }\n]"
        );
    }
}
