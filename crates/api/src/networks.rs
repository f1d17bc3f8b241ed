//! `/networks/...` and `/volumes/...`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::Engine;
use serde_json::{json, Value};

use crate::containers::parse_json;
use crate::error::ApiResult;
use crate::params::{self, flag, Query as Q};

/// `POST /networks/create`.
pub async fn create(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let v: Value = parse_json(&body)?;
    let id = engine.create_network(&v).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id, "Warning": ""}))).into_response())
}

/// `GET /networks`.
pub async fn list(State(engine): State<Arc<Engine>>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(engine.list_networks(&params::filters(&q)?)?)))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(engine.inspect_network(&id)?))
}

/// `DELETE /networks/{id}`.
pub async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    engine.remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /networks/prune`.
pub async fn prune(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"NetworksDeleted": engine.prune_networks().await?}),
    ))
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v: Value = parse_json(&body)?;
    let container = v
        .get("Container")
        .and_then(Value::as_str)
        .unwrap_or_default();
    engine
        .connect_container(&id, container, v.get("EndpointConfig"))
        .await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v: Value = parse_json(&body)?;
    let container = v
        .get("Container")
        .and_then(Value::as_str)
        .unwrap_or_default();
    engine.disconnect_container(&id, container).await?;
    Ok(StatusCode::OK)
}

fn str_map(v: &Value, key: &str) -> BTreeMap<String, String> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /volumes/create`.
pub async fn volume_create(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let v: Value = parse_json(&body)?;
    let name = v.get("Name").and_then(Value::as_str).unwrap_or_default();
    let driver = v.get("Driver").and_then(Value::as_str).unwrap_or_default();
    let vol = engine.create_volume(
        name,
        driver,
        str_map(&v, "Labels"),
        str_map(&v, "DriverOpts"),
        false,
    )?;
    Ok((StatusCode::CREATED, Json(json!(vol))).into_response())
}

/// `GET /volumes`.
pub async fn volume_list(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let f = params::filters(&q)?;
    let dangling = f
        .get("dangling")
        .and_then(|v| v.first())
        .map(|v| v == "true" || v == "1");
    let mut vols = engine.list_volumes(dangling)?;
    if let Some(names) = f.get("name") {
        vols.retain(|v| names.iter().any(|n| v.name.contains(n.as_str())));
    }
    if let Some(labels) = f.get("label") {
        vols.retain(|v| {
            labels.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).map(String::as_str) == Some(val),
                None => v.labels.contains_key(l.as_str()),
            })
        });
    }
    Ok(Json(json!({"Volumes": vols, "Warnings": []})))
}

/// `GET /volumes/{name}`.
pub async fn volume_inspect(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(engine.get_volume(&name)?)))
}

/// `DELETE /volumes/{name}?force=`.
pub async fn volume_remove(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    engine.remove_volume(&name, flag(&q, "force", false))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune` (anonymous volumes only unless `all=true` is in the filters).
pub async fn volume_prune(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let f = params::filters(&q)?;
    let all = f
        .get("all")
        .and_then(|v| v.first())
        .is_some_and(|v| v == "true" || v == "1");
    let (names, space) = engine.prune_volumes(all)?;
    Ok(Json(
        json!({"VolumesDeleted": names, "SpaceReclaimed": space}),
    ))
}
