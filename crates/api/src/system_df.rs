//! `GET /system/df` and the prune endpoints of containers and images.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use berth_engine::Engine;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::params::{self, Query as Q};

/// `GET /system/df`.
pub async fn df(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    Ok(Json(engine.disk_usage()?))
}

/// `POST /containers/prune`.
pub async fn prune_containers(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    let (ids, space) = engine.prune_containers().await?;
    Ok(Json(
        json!({"ContainersDeleted": ids, "SpaceReclaimed": space}),
    ))
}

/// `POST /images/prune?filters={"dangling":["false"]}` (false means all unused).
pub async fn prune_images(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let f = params::filters(&q)?;
    let all = f
        .get("dangling")
        .and_then(|v| v.first())
        .is_some_and(|v| v == "false" || v == "0");
    let (deleted, space) = engine.prune_images(all)?;
    Ok(Json(
        json!({"ImagesDeleted": deleted, "SpaceReclaimed": space}),
    ))
}
