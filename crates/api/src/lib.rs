//! The Docker Engine API server: routing, version prefixes, parsing into engine calls,
//! streaming and hijacked connections, and error kinds mapped to statuses. No state and no
//! logic lives here: every handler parses, calls the [`Engine`], and shapes the answer.

mod build;
mod container_extras;
mod containers;
mod error;
mod exec;
mod image_io;
mod images;
mod networks;
mod params;
mod stream;
mod system;
mod system_df;

use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::{delete, get, head, post};
use axum::Router;
use berth_engine::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tower_service_shim::strip_version;

/// The API version Berth speaks (and the highest it advertises).
pub const API_VERSION: &str = "1.47";
/// The lowest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// Builds the router for all endpoints.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/auth", post(system::auth))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/system/df", get(system_df::df))
        .route("/containers/prune", post(system_df::prune_containers))
        .route("/images/prune", post(system_df::prune_images))
        .route("/images/create", post(images::create))
        .route("/images/json", get(images::list))
        // Images in depth (brief G): save, load (import rides on /images/create).
        .route("/images/get", get(image_io::save_many))
        .route("/images/load", post(image_io::load))
        .route(
            "/images/*rest",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/:id/json", get(containers::inspect))
        .route("/containers/:id/start", post(containers::start))
        .route("/containers/:id/stop", post(containers::stop))
        .route("/containers/:id/restart", post(containers::restart))
        .route("/containers/:id/kill", post(containers::kill))
        .route("/containers/:id/wait", post(containers::wait))
        .route("/containers/:id/attach", post(containers::attach))
        .route("/containers/:id/resize", post(containers::resize))
        .route("/containers/:id/logs", get(containers::logs))
        .route("/containers/:id/rename", post(containers::rename))
        .route("/containers/:id", delete(containers::remove))
        // Container extras (brief F): pause, top, stats, diff, cp, export, commit, update.
        .route("/containers/:id/pause", post(container_extras::pause))
        .route("/containers/:id/unpause", post(container_extras::unpause))
        .route("/containers/:id/top", get(container_extras::top))
        .route("/containers/:id/stats", get(container_extras::stats))
        .route("/containers/:id/changes", get(container_extras::changes))
        .route(
            "/containers/:id/archive",
            get(container_extras::archive_get)
                .head(container_extras::archive_head)
                .put(container_extras::archive_put),
        )
        .route("/containers/:id/export", get(container_extras::export))
        .route("/containers/:id/update", post(container_extras::update))
        .route("/commit", post(container_extras::commit))
        .route("/containers/:id/exec", post(exec::create))
        .route("/exec/:id/start", post(exec::start))
        .route("/exec/:id/resize", post(exec::resize))
        .route("/exec/:id/json", get(exec::inspect))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/:id",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/:id/connect", post(networks::connect))
        .route("/networks/:id/disconnect", post(networks::disconnect))
        .route("/volumes", get(networks::volume_list))
        .route("/volumes/create", post(networks::volume_create))
        .route("/volumes/prune", post(networks::volume_prune))
        .route(
            "/volumes/:name",
            get(networks::volume_inspect).delete(networks::volume_remove),
        )
        .route("/session", post(system::not_implemented))
        .route("/_ping_head_only", head(system::ping))
        .fallback(system::unknown)
        .with_state(engine)
}

/// Serves the API on a unix socket at `path` until the task is dropped.
pub async fn serve_unix(engine: Arc<Engine>, path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    let app = router(engine);
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let svc =
                TowerToHyperService::new(tower_service_shim::MapRequest::new(app, strip_version));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

/// Removes a `/v1.NN` prefix so versioned and unversioned paths route alike.
mod tower_service_shim {
    use std::task::{Context, Poll};

    use axum::http::Uri;

    use super::Request;

    pub fn strip_version(mut req: Request) -> Request {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix("/v") {
            if let Some(slash) = rest.find('/') {
                let ver = &rest[..slash];
                if ver
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                {
                    let new_path = rest[slash..].to_string();
                    let pq = match req.uri().query() {
                        Some(q) => format!("{new_path}?{q}"),
                        None => new_path,
                    };
                    if let Ok(uri) = pq.parse::<Uri>() {
                        *req.uri_mut() = uri;
                    }
                }
            }
        }
        req
    }

    /// A service that rewrites each request before the router sees it.
    #[derive(Clone)]
    pub struct MapRequest<S> {
        inner: S,
        f: fn(Request) -> Request,
    }

    impl<S> MapRequest<S> {
        pub fn new(inner: S, f: fn(Request) -> Request) -> Self {
            Self { inner, f }
        }
    }

    impl<S> tower_service::Service<hyper::Request<hyper::body::Incoming>> for MapRequest<S>
    where
        S: tower_service::Service<Request>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }
        fn call(&mut self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
            self.inner.call((self.f)(req.map(axum::body::Body::new)))
        }
    }
}
