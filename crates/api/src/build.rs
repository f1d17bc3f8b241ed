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
    // The body feeds the context unpacker as it arrives (no spool file).
    let (chunks, reader) = berth_engine::build_host::ChannelReader::new();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut open = true;
        while let Some(chunk) = stream.next().await {
            let item =
                chunk.map_err(|e| std::io::Error::other(format!("reading build context: {e}")));
            let failed = item.is_err();
            // Once the unpacker is done (the tar's end blocks), the rest is read and
            // dropped so the client can finish sending.
            if open && chunks.send(item).await.is_err() {
                open = false;
            }
            if failed {
                break;
            }
        }
    });
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        if let Err(e) = engine.build_image(reader, opts, tx.clone()).await {
            let msg = e.to_string();
            let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
        }
    });
    Ok(crate::stream::json_lines(rx))
}

/// `POST /build/prune`: drops the build cache records; answers the ids removed (Docker's
/// `CachesDeleted` is a list) and the space reclaimed.
pub async fn prune(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    let (ids, space) = engine.prune_build_cache()?;
    Ok(Json(json!({"CachesDeleted": ids, "SpaceReclaimed": space})))
}
