//! The rest of the container API: pause/unpause, top, stats, changes (diff), archive (cp),
//! export, commit and update. Handlers only parse and shape; the engine does the work.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_engine::containers::archive::PathStat;
use berth_engine::containers::commit::CommitOptions;
use berth_engine::containers::update::UpdateRequest;
use berth_engine::model::ContainerConfig;
use berth_engine::Engine;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::containers::parse_json;
use crate::error::{ApiError, ApiResult};
use crate::params::{flag, Query as Q};

/// `POST /containers/{id}/pause`.
pub async fn pause(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    engine.pause_container(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    engine.unpause_container(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let args = q.get("ps_args").cloned().unwrap_or_default();
    Ok(Json(json!(engine.top_container(&id, &args).await?)))
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: JSON lines, one per second when
/// streaming.
pub async fn stats(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let stream = flag(&q, "stream", true);
    let one_shot = flag(&q, "one-shot", false);
    if one_shot && stream {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let rx = engine.container_stats(&id, stream, one_shot).await?;
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `GET /containers/{id}/changes`.
pub async fn changes(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let e = Arc::clone(&engine);
    let list = tokio::task::spawn_blocking(move || e.container_changes(&id))
        .await
        .map_err(|e| {
            ApiError(berth_engine::EngineError::internal(format!(
                "changes task: {e}"
            )))
        })??;
    Ok(Json(json!(list)))
}

fn stat_header(stat: &PathStat) -> ApiResult<HeaderValue> {
    let raw = serde_json::to_vec(stat)
        .map_err(|e| ApiError(berth_engine::EngineError::internal(format!("stat: {e}"))))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    HeaderValue::from_str(&b64).map_err(|e| {
        ApiError(berth_engine::EngineError::internal(format!(
            "stat header: {e}"
        )))
    })
}

fn path_param(q: &Q) -> ApiResult<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// `HEAD /containers/{id}/archive?path=`: only the stat header.
pub async fn archive_head(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let stat = engine.archive_stat(&id, &path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat_header(&stat)?);
    Ok(resp)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, with the stat header.
pub async fn archive_get(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let path = path_param(&q)?;
    let (stat, rx) = engine.archive_get(&id, &path).await?;
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(STAT_HEADER, stat_header(&stat)?);
    Ok(resp)
}

/// How long an archive upload's rest is read after the extraction ended.
const BODY_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=`: extracts the tar body.
pub async fn archive_put(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
    body: Body,
) -> ApiResult<StatusCode> {
    let path = path_param(&q)?;
    let no_overwrite = flag(&q, "noOverwriteDirNonDir", false);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    // The body is read to its end even after the extractor stopped (a tar's end-of-archive
    // blocks are followed by record padding): answering before the client finished writing
    // made its last write fail with a broken pipe instead of showing our answer.
    let mut forward = tokio::spawn(async move {
        let mut data = body.into_data_stream();
        let mut tx = Some(tx);
        while let Some(Ok(chunk)) = data.next().await {
            if let Some(t) = &tx {
                if t.send(chunk).await.is_err() {
                    tx = None;
                }
            }
        }
    });
    let result = engine.archive_put(&id, &path, no_overwrite, rx).await;
    if tokio::time::timeout(BODY_DRAIN_TIMEOUT, &mut forward)
        .await
        .is_err()
    {
        forward.abort();
        tracing::warn!(
            "archive upload to {id}: the client kept sending after the extraction ended"
        );
    }
    result?;
    Ok(StatusCode::OK)
}

/// `GET /containers/{id}/export`: a tar of the whole filesystem.
pub async fn export(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let rx = engine.export_container(&id).await?;
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`: 201 `{"Id"}`.
pub async fn commit(
    State(engine): State<Arc<Engine>>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Bytes,
) -> ApiResult<Response> {
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let container = get("container");
    if container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let trimmed = body.iter().filter(|b| !b.is_ascii_whitespace()).count();
    let config: Option<ContainerConfig> = if trimmed == 0 || &body[..] == b"null" {
        None
    } else {
        parse_json(&body)?
    };
    let pause = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "pause")
        .map(|(_, v)| matches!(v.as_str(), "1" | "true" | "True"))
        .unwrap_or(true);
    let opts = CommitOptions {
        repo: get("repo"),
        tag: get("tag"),
        comment: get("comment"),
        author: get("author"),
        changes: pairs
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .collect(),
        pause,
        config,
    };
    let id = engine.commit_container(&container, opts).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
}

/// `POST /containers/{id}/update`.
pub async fn update(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: UpdateRequest = parse_json(&body)?;
    let warnings = engine.update_container(&id, req).await?;
    Ok(Json(json!({ "Warnings": warnings })))
}
