//! `/_ping`, `/version`, `/info`, `/events`, `/auth` and the fallback.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiResult;
use crate::params::{self, Query as Q};
use crate::{API_VERSION, MIN_API_VERSION};

/// `GET|HEAD /_ping`: "OK" with the API version headers the clients negotiate with.
pub async fn ping() -> Response {
    let mut resp = "OK".into_response();
    let h = resp.headers_mut();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let v = berth_engine::system::VERSION;
    Json(json!({
        "Platform": {"Name": "Berth Engine"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": go_arch()}}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "berth",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel.trim(),
        "BuildTime": "",
    }))
}

/// This machine's architecture in Go's naming.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /info`.
pub async fn info(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    Ok(Json(engine.info()?))
}

/// `POST /auth`: checks credentials against the registry.
pub async fn auth(
    State(engine): State<Arc<Engine>>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let s = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    engine
        .login(&s("serveraddress"), &s("username"), &s("password"))
        .await?;
    Ok(Json(
        json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}

/// `GET /events`: the remembered events since `since`, then live ones until `until`.
pub async fn events(State(engine): State<Arc<Engine>>, Query(q): Query<Q>) -> ApiResult<Response> {
    let since = params::unix_time(&q, "since");
    let until = params::unix_time(&q, "until");
    let filters = params::filters(&q)?;
    let (history, mut live) = engine.events.subscribe();
    let (tx, rx) = mpsc::unbounded_channel();
    let matches = move |ev: &berth_engine::events::Event| -> bool {
        let t = ev.time_nano as f64 / 1e9;
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t > u) {
            return false;
        }
        filters.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => ev.kind == *v,
                "event" | "action" => {
                    ev.action == *v || ev.action.split(':').next() == Some(v.as_str())
                }
                "container" => {
                    ev.kind == "container"
                        && (ev.actor.id.starts_with(v.as_str())
                            || ev.actor.attributes.get("name") == Some(v))
                }
                "image" => {
                    ev.actor.attributes.get("image") == Some(v)
                        || ev.actor.id == *v
                        || ev.actor.attributes.get("name") == Some(v)
                }
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => ev.actor.attributes.get(lk).map(String::as_str) == Some(lv),
                    None => ev.actor.attributes.contains_key(v.as_str()),
                },
                "network" => {
                    ev.kind == "network"
                        && (ev.actor.id.starts_with(v.as_str())
                            || ev.actor.attributes.get("name") == Some(v))
                }
                "volume" => ev.kind == "volume" && ev.actor.id == *v,
                _ => true,
            })
        })
    };
    let replay = since.is_some();
    tokio::spawn(async move {
        if replay {
            for ev in history.iter().filter(|e| matches(e)) {
                if tx
                    .send(serde_json::to_value(ev).unwrap_or_default())
                    .is_err()
                {
                    return;
                }
            }
        }
        let now = chrono::Utc::now().timestamp() as f64;
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline = until.map(|u| std::time::Duration::from_secs_f64((u - now).max(0.0)));
        let recv_loop = async {
            loop {
                match live.recv().await {
                    Ok(ev) => {
                        if matches(&ev)
                            && tx
                                .send(serde_json::to_value(&ev).unwrap_or_default())
                                .is_err()
                        {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        };
        match deadline {
            Some(d) => {
                let _ = tokio::time::timeout(d, recv_loop).await;
            }
            None => recv_loop.await,
        }
    });
    Ok(crate::stream::json_lines(rx))
}

/// Endpoints Berth does not offer.
pub async fn not_implemented() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(json!({"message": "not implemented by berth"})),
    )
        .into_response()
}

/// Unknown paths: Docker's 404 body.
pub async fn unknown() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "page not found"})),
    )
        .into_response()
}
