//! `/containers/{id}/exec` and `/exec/{id}/...`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::containers::exec::ExecRequest;
use berth_engine::Engine;
use serde_json::{json, Value};

use crate::containers::parse_json;
use crate::error::{ApiError, ApiResult};
use crate::params::Query as Q;
use crate::stream;

/// `POST /containers/{id}/exec`.
pub async fn create(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ExecRequest = parse_json(&body)?;
    let exec_id = engine.create_exec(&id, req)?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

/// `POST /exec/{id}/start`: detached (200 at once) or hijacked.
pub async fn start(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade_requested = stream::wants_upgrade(req.headers());
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("read body: {e}")))?;
    let v: Value = parse_json(&body)?;
    let detach = v.get("Detach").and_then(Value::as_bool).unwrap_or(false);
    let rec = engine.exec(&id)?;
    let tty = v.get("Tty").and_then(Value::as_bool).unwrap_or(rec.req.tty);
    let shim = engine.start_exec(&id).await?;
    if detach {
        // Drain the stream so the process never blocks on a full pipe.
        tokio::spawn(async move {
            let mut s = shim;
            let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    let on_upgrade = on_upgrade
        .ok_or_else(|| ApiError::bad_request("exec start needs a hijackable connection"))?;
    let exec_id = id.clone();
    let done = async move {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            engine.wait_exec(&exec_id),
        )
        .await;
    };
    Ok(stream::hijack(
        on_upgrade,
        upgrade_requested,
        tty,
        async move { Some(shim) },
        done,
    ))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let (h, w) = crate::params::tty_size(&q)?;
    engine.resize_exec(&id, h, w).await?;
    Ok(StatusCode::OK)
}

/// `GET /exec/{id}/json`.
pub async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(engine.inspect_exec(&id)?))
}
