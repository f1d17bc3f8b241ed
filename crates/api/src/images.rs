//! `/images/...`: pull, list, inspect, history, tag, push, remove; save, load and import
//! live in [`crate::image_io`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_engine::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::params::{self, Query as Q};
use crate::system;

/// Decodes `X-Registry-Auth` (base64url JSON) into credentials, if any.
pub fn registry_auth(headers: &HeaderMap) -> Option<berth_registry::Credentials> {
    let raw = headers.get("X-Registry-Auth")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim()))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw.trim()))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (username, password) = (s("username"), s("password"));
    if username.is_empty() && password.is_empty() && s("identitytoken").is_empty() {
        return None;
    }
    Some(berth_registry::Credentials {
        username,
        password,
        ..Default::default()
    })
}

/// `POST /images/create?fromImage=&tag=`: streams pull progress; with `fromSrc=-` the
/// body is a root filesystem tar to import instead.
pub async fn create(
    State(engine): State<Arc<Engine>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let q: Q = pairs.iter().cloned().collect();
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return crate::image_io::import(engine, &pairs, body).await;
    }
    let from = q.get("fromImage").cloned().unwrap_or_default();
    if from.is_empty() {
        return Err(ApiError::bad_request("fromImage or fromSrc is required"));
    }
    let tag = q.get("tag").cloned().unwrap_or_default();
    let reference = if tag.is_empty() {
        from.clone()
    } else if tag.contains(':') {
        format!("{from}@{tag}")
    } else {
        format!("{from}:{tag}")
    };
    // Fail fast (with a status) on a malformed reference.
    berth_engine::images::parse_reference(&reference)?;
    let creds = registry_auth(&headers);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Image GC waits for (refuses to run during) pulls in flight.
        let _lease = engine.pull_lease().await;
        if let Err(e) = engine.pull_image(&reference, creds, tx.clone()).await {
            let msg = e.to_string();
            let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
        }
    });
    Ok(crate::stream::json_lines(rx))
}

/// `GET /images/json`.
pub async fn list(State(engine): State<Arc<Engine>>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let filters = params::filters(&q)?;
    let dangling = filters
        .get("dangling")
        .and_then(|v| v.first())
        .map(|v| v == "true" || v == "1");
    let reference = filters
        .get("reference")
        .and_then(|v| v.first())
        .map(String::as_str);
    Ok(Json(json!(engine.list_images(dangling, reference)?)))
}

/// Splits `/images/<name>/<verb>` where the name itself may contain slashes.
fn split_name(rest: &str, verbs: &[&str]) -> (String, String) {
    for v in verbs {
        if let Some(name) = rest.strip_suffix(&format!("/{v}")) {
            return (name.to_string(), v.to_string());
        }
    }
    (rest.to_string(), String::new())
}

/// Whether an image name carries a tag or digest (a `:` after the last `/`, or `@`).
fn has_tag(name: &str) -> bool {
    name.contains('@')
        || name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(engine): State<Arc<Engine>>,
    Path(rest): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let (name, verb) = split_name(&rest, &["json", "history", "get"]);
    match verb.as_str() {
        "json" => Ok(Json(engine.inspect_image(&name)?).into_response()),
        "history" => Ok(Json(json!(engine.image_history(&name)?)).into_response()),
        "get" => crate::image_io::save(engine, vec![name]),
        _ => {
            let _ = q;
            Ok(system::unknown().await)
        }
    }
}

/// `POST /images/{name}/tag|push`.
pub async fn post_dispatch(
    State(engine): State<Arc<Engine>>,
    Path(rest): Path<String>,
    Query(q): Query<Q>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (name, verb) = split_name(&rest, &["tag", "push"]);
    match verb.as_str() {
        "tag" => {
            let repo = q.get("repo").cloned().unwrap_or_default();
            if repo.is_empty() {
                return Err(ApiError::bad_request("repo is required"));
            }
            engine.tag_image(&name, &repo, q.get("tag").map(String::as_str))?;
            Ok(axum::http::StatusCode::CREATED.into_response())
        }
        "push" => {
            // No tag (`docker push --all-tags`) pushes every local tag of the repository,
            // unless the name carries its own tag.
            let tag = q.get("tag").cloned().unwrap_or_default();
            let all_tags = tag.is_empty() && !has_tag(&name);
            let reference = if tag.is_empty() {
                name
            } else {
                format!("{name}:{tag}")
            };
            let creds = registry_auth(&headers);
            if all_tags {
                engine.repository_tags(&reference)?;
            } else {
                engine.find_image(&reference)?;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let result = if all_tags {
                    engine
                        .push_all_tags(&reference, creds, tx.clone())
                        .await
                        .map(|_| ())
                } else {
                    engine
                        .push_image(&reference, creds, tx.clone())
                        .await
                        .map(|_| ())
                };
                if let Err(e) = result {
                    let msg = e.to_string();
                    let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
                }
            });
            Ok(crate::stream::json_lines(rx))
        }
        _ => Ok(system::unknown().await),
    }
}

/// `DELETE /images/{name}?force=`.
pub async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let force = params::flag(&q, "force", false);
    Ok(Json(json!(engine.remove_image(&name, force)?)))
}
