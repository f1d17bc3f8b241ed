//! `POST /build` (the classic builder API) and `POST /build/prune`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use berth_engine::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::params::flag;

fn json_map(raw: Option<&String>, what: &str) -> ApiResult<HashMap<String, String>> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(HashMap::new()),
        Some(s) => {
            let v: HashMap<String, Option<String>> = serde_json::from_str(s)
                .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))?;
            Ok(v.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect())
        }
    }
}

/// `POST /build`: the body is the context tar; progress streams back as JSON lines.
pub async fn build(
    State(engine): State<Arc<Engine>>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Body,
) -> ApiResult<Response> {
    let q: HashMap<String, String> = pairs.iter().cloned().collect();
    let tags: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .collect();
    let opts = berth_build::BuildOptions {
        dockerfile: q.get("dockerfile").cloned().unwrap_or_default(),
        tags,
        build_args: json_map(q.get("buildargs"), "buildargs")?,
        labels: json_map(q.get("labels"), "labels")?,
        target: q.get("target").filter(|s| !s.is_empty()).cloned(),
        no_cache: flag(&q, "nocache", false),
        pull: flag(&q, "pull", false),
        quiet: flag(&q, "q", false),
        platform: q.get("platform").filter(|s| !s.is_empty()).cloned(),
        network_mode: q.get("networkmode").filter(|s| !s.is_empty()).cloned(),
    };
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "remote build contexts are not supported",
        ));
    }
    let dir = engine.config().data_root.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::bad_request(format!("tmp dir: {e}")))?;
    let path = dir.join(format!("context-{}.tar", berth_engine::names::new_id()));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::bad_request(format!("context file: {e}")))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading build context: {e}")))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::bad_request(format!("writing build context: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::bad_request(format!("writing build context: {e}")))?;
    drop(file);
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        if let Err(e) = engine.build_image(path.clone(), opts, tx.clone()).await {
            let msg = e.to_string();
            let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(crate::stream::json_lines(rx))
}

/// `POST /build/prune`: drops the build cache records; answers the ids removed (Docker's
/// `CachesDeleted` is a list) and the space reclaimed.
pub async fn prune(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    let (ids, space) = engine.prune_build_cache_ids()?;
    Ok(Json(json!({"CachesDeleted": ids, "SpaceReclaimed": space})))
}
