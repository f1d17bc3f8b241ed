//! Streaming helpers: JSON-lines progress responses and hijacked (upgraded) connections
//! for attach and exec.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

/// A 200 response whose body is each JSON value of `rx` on its own line, flushed as it
/// comes (pull, push, build progress, events).
pub fn json_lines(rx: mpsc::UnboundedReceiver<Value>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 response streaming raw byte chunks (logs).
pub fn bytes_body(rx: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response {
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Content type of an attach/exec/logs stream.
pub fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Whether the client asked to upgrade the connection (attach, exec start).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// Answers a hijack request: 101 (or 200 for old clients) and then pipes the connection to
/// `shim`. Output from the shim is in multiplexed frames; with `tty` the frame headers are
/// stripped so the client gets the raw stream Docker sends. Client input goes raw to the
/// shim; the client's EOF closes the shim's write side (the container's stdin).
pub fn hijack(
    upgrade: hyper::upgrade::OnUpgrade,
    upgrade_requested: bool,
    tty: bool,
    shim: impl std::future::Future<Output = Option<UnixStream>> + Send + 'static,
    before_close: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let client = TokioIo::new(upgraded);
        let Some(shim) = shim.await else { return };
        pipe(client, shim, tty, before_close).await;
    });
    let mut resp = Response::new(Body::empty());
    if upgrade_requested {
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream_type(tty)),
    );
    if upgrade_requested {
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    }
    resp
}

async fn pipe<C>(
    client: C,
    shim: UnixStream,
    tty: bool,
    before_close: impl std::future::Future<Output = ()>,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut shim_r, mut shim_w) = shim.into_split();
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if shim_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = shim_w.shutdown().await;
    });
    let mut header = [0u8; 8];
    loop {
        if shim_r.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        if shim_r.read_exact(&mut payload).await.is_err() {
            break;
        }
        let res = if tty {
            client_w.write_all(&payload).await
        } else {
            match client_w.write_all(&header).await {
                Ok(()) => client_w.write_all(&payload).await,
                Err(e) => Err(e),
            }
        };
        if res.is_err() {
            break;
        }
        let _ = client_w.flush().await;
    }
    before_close.await;
    let _ = client_w.shutdown().await;
    input.abort();
}

/// Minimal adapter from an mpsc receiver to a stream (avoids a tokio-stream dependency).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    pub struct ReceiverStream<T>(mpsc::Receiver<T>);

    impl<T> ReceiverStream<T> {
        pub fn new(rx: mpsc::Receiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
