//! Images in and out as archives: `GET /images/get`, `GET /images/{name}/get`,
//! `POST /images/load` and `POST /images/create?fromSrc=-` (import).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use berth_engine::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::params::{flag, Query as Q};

/// A `Write` that hands each chunk to the response body; fails once the client is gone.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /images/get?names=a&names=b`: one archive of every named image.
pub async fn save_many(
    State(engine): State<Arc<Engine>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(k, v)| k == "names" && !v.is_empty())
        .map(|(_, v)| v)
        .collect();
    save(engine, names)
}

/// Streams the archive of `names` (checked up front, so a missing image is a 404).
pub fn save(engine: Arc<Engine>, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    for n in &names {
        engine.find_image(n)?;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = engine.save_images(&names, ChannelWriter(tx)) {
            // The status is already sent; the client sees a truncated archive.
            tracing::warn!("save {}: {e}", names.join(", "));
        }
    });
    Ok(crate::stream::bytes_body(rx, "application/x-tar"))
}

/// Writes a request body to a new file under the data root's tmp dir.
async fn spool(engine: &Engine, body: Body, what: &str) -> ApiResult<PathBuf> {
    let dir = engine.config().data_root.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::bad_request(format!("tmp dir {}: {e}", dir.display())))?;
    let path = dir.join(format!("{what}-{}.tar", berth_engine::names::new_id()));
    let result = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading {what} body: {e}"))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        file.flush()
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
    .await;
    match result {
        Ok(()) => Ok(path),
        Err(msg) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(ApiError::bad_request(msg))
        }
    }
}

/// `POST /images/load?quiet=`: the body is an archive; answers Docker's JSON stream of
/// "Loaded image: ..." lines.
pub async fn load(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<Q>,
    body: Body,
) -> ApiResult<Response> {
    let _quiet = flag(&q, "quiet", false);
    let path = spool(&engine, body, "load").await?;
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::task::spawn_blocking(move || {
        let result = std::fs::File::open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))
            .and_then(|f| engine.load_images(f).map_err(|e| e.to_string()));
        let _ = std::fs::remove_file(&path);
        match result {
            Ok(lines) => {
                for l in lines {
                    let _ = tx.send(json!({ "stream": format!("{l}\n") }));
                }
            }
            Err(msg) => {
                let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
            }
        }
    });
    Ok(crate::stream::json_lines(rx))
}

/// `POST /images/create?fromSrc=-&repo=&tag=&changes=&message=`: imports the body as a
/// root filesystem; streams the new image id as the status.
pub async fn import(
    engine: Arc<Engine>,
    pairs: &[(String, String)],
    body: Body,
) -> ApiResult<Response> {
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if get("fromSrc").as_deref() != Some("-") {
        return Err(ApiError::bad_request(
            "importing from a URL is not supported; send the tar as the request body (fromSrc=-)",
        ));
    }
    let opts = berth_engine::images::ImportOptions {
        repo: get("repo"),
        tag: get("tag"),
        changes: pairs
            .iter()
            .filter(|(k, v)| k == "changes" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        message: get("message").unwrap_or_default(),
    };
    // Reject bad change lines before reading the body.
    berth_engine::images::import::apply_changes(&opts.changes)?;
    let path = spool(&engine, body, "import").await?;
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        match engine.import_image(&path, opts).await {
            Ok(id) => {
                let _ = tx.send(json!({ "status": id }));
            }
            Err(e) => {
                let msg = e.to_string();
                let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
            }
        }
        let _ = tokio::fs::remove_file(&path).await;
    });
    Ok(crate::stream::json_lines(rx))
}
