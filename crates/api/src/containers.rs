//! `/containers/...`: create, list, inspect, start, stop, restart, kill, wait, attach,
//! resize, logs, rename, remove.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::containers::lifecycle::WaitCondition;
use berth_engine::containers::logs::LogsOptions;
use berth_engine::model::CreateRequest;
use berth_engine::Engine;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::params::{self, flag, int, Query as Q};
use crate::stream;

/// Parses a JSON body, answering 400 with the parse error.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError::bad_request(e.to_string()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// `POST /containers/create?name=`.
pub async fn create(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<Q>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CreateRequest = parse_json(&body)?;
    let id = engine
        .create_container(q.get("name").map(String::as_str), req)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id, "Warnings": []}))).into_response())
}

/// `GET /containers/json`.
pub async fn list(State(engine): State<Arc<Engine>>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let all = flag(&q, "all", false);
    let mut limit = int(&q, "limit")?.filter(|l| *l > 0).map(|l| l as usize);
    if flag(&q, "latest", false) {
        limit = Some(1);
    }
    let filters = params::filters(&q)?;
    Ok(Json(json!(engine.list_containers(all, limit, &filters)?)))
}

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(engine.inspect_container(&id)?))
}

/// `POST /containers/{id}/start`: 204, or 304 if already running.
pub async fn start(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    Ok(if engine.start_container(&id).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

/// `POST /containers/{id}/stop?t=&signal=`: 204, or 304 if not running.
pub async fn stop(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let t = int(&q, "t")?.or(int(&q, "timeout")?);
    let stopped = engine
        .stop_container(&id, t, q.get("signal").map(String::as_str))
        .await?;
    Ok(if stopped {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

/// `POST /containers/{id}/restart?t=`.
pub async fn restart(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let t = int(&q, "t")?.or(int(&q, "timeout")?);
    engine.restart_container(&id, t).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/kill?signal=`.
pub async fn kill(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    engine
        .kill_container(&id, q.get("signal").map(String::as_str))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/wait?condition=`: headers at once, the body at the exit.
pub async fn wait(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let condition = match q.get("condition").map(String::as_str) {
        None | Some("") | Some("not-running") => WaitCondition::NotRunning,
        Some("next-exit") => WaitCondition::NextExit,
        Some("removed") => WaitCondition::Removed,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )))
        }
    };
    let c = engine.find_container(&id)?;
    let body = futures::stream::once(async move {
        let v = match engine.wait_container(&c.id, condition).await {
            Ok(code) => json!({"StatusCode": code, "Error": null}),
            Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
        };
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `POST /containers/{id}/attach`: hijacks the connection.
pub async fn attach(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
    mut req: Request,
) -> ApiResult<Response> {
    let stdin = flag(&q, "stdin", false);
    let upgrade_requested = stream::wants_upgrade(req.headers());
    let on_upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("attach needs a hijackable connection"))?;
    let keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => detach_keys(k)?,
        None => vec![0x10, 0x11],
    };
    let (c, rx) = engine.attach_container(&id, stdin).await?;
    // As in Docker, the daemon watches a tty's input for the detach keys.
    let escapable = c.config.tty && stdin;
    Ok(stream::hijack(
        on_upgrade,
        upgrade_requested,
        c.config.tty,
        async move {
            let shim = rx.await.ok()?;
            if escapable {
                escape_relay(shim, keys).ok()
            } else {
                Some(shim)
            }
        },
        async {},
    ))
}

/// Parses Docker's `--detach-keys` ("ctrl-p,ctrl-q", "ctrl-@", single characters).
fn detach_keys(spec: &str) -> ApiResult<Vec<u8>> {
    let bad = || ApiError::bad_request(format!("Invalid escape keys ({spec}) provided"));
    spec.split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                b'@' => Ok(0),
                b @ b'['..=b'_' => Ok(b - b'[' + 27),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
            None if k.len() == 1 => Ok(k.as_bytes()[0]),
            None => Err(bad()),
        })
        .collect()
}

/// Puts a relay between a client and the shim stream that ends the session (leaving the
/// container and its stdin alone) once the client types `keys`; a partial match is passed
/// on as soon as the next byte breaks it. Returns the end the client side should use.
fn escape_relay(
    shim: tokio::net::UnixStream,
    keys: Vec<u8>,
) -> std::io::Result<tokio::net::UnixStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, theirs) = tokio::net::UnixStream::pair()?;
    tokio::spawn(async move {
        let (mut shim_r, mut shim_w) = shim.into_split();
        let (mut ours_r, mut ours_w) = ours.into_split();
        let output = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut shim_r, &mut ours_w).await;
            let _ = ours_w.shutdown().await;
        });
        let mut buf = vec![0u8; 16 * 1024];
        let mut matched = 0usize;
        let detached = loop {
            let n = match ours_r.read(&mut buf).await {
                Ok(0) | Err(_) => break false,
                Ok(n) => n,
            };
            let mut pass = Vec::with_capacity(n + matched);
            let mut hit = false;
            for &b in &buf[..n] {
                if b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        hit = true;
                        break;
                    }
                } else {
                    pass.extend_from_slice(&keys[..matched]);
                    matched = 0;
                    if b == keys[0] {
                        matched = 1;
                    } else {
                        pass.push(b);
                    }
                }
            }
            if !pass.is_empty() && shim_w.write_all(&pass).await.is_err() {
                break false;
            }
            if hit {
                break true;
            }
        };
        if detached {
            // Dropping both halves ends the client's session; the shim keeps the stdin.
            output.abort();
        } else {
            let _ = shim_w.shutdown().await;
            let _ = output.await;
        }
    });
    Ok(theirs)
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let (h, w) = crate::params::tty_size(&q)?;
    engine.resize_container(&id, h, w).await?;
    Ok(StatusCode::OK)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail: {n}")))?,
        ),
    };
    let neither = !q.contains_key("stdout") && !q.contains_key("stderr");
    let stdout = neither || flag(&q, "stdout", false);
    let stderr = neither || flag(&q, "stderr", false);
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let opts = LogsOptions {
        stdout,
        stderr,
        follow: flag(&q, "follow", false),
        timestamps: flag(&q, "timestamps", false),
        since: params::unix_time(&q, "since").filter(|s| *s > 0.0),
        until: params::unix_time(&q, "until").filter(|s| *s > 0.0),
        tail,
    };
    let c = engine.find_container(&id)?;
    let rx = engine.container_logs(&id, opts)?;
    Ok(stream::bytes_body(rx, stream::stream_type(c.config.tty)))
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let name = q.get("name").cloned().unwrap_or_default();
    engine.rename_container(&id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    engine
        .remove_container(&id, flag(&q, "force", false), flag(&q, "v", false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::detach_keys;

    #[test]
    fn detach_keys_parse_like_dockers() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(detach_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(), [0, 27, 31]);
        assert_eq!(detach_keys("a,ctrl-z").unwrap(), [b'a', 26]);
        for bad in ["ctrl-", "ctrl-pp", "ab", "ctrl-1", ""] {
            assert!(detach_keys(bad).is_err(), "{bad}");
        }
    }
}
