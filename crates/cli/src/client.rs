//! HTTP client for the Docker Engine API over a unix socket.
//!
//! Every request opens its own connection (a CLI makes few requests), which also
//! keeps hijacked attach/exec streams simple: after a `101 Switching Protocols`
//! the connection's socket is handed back whole to the caller.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// API version prefix sent on every request.
pub const API_PREFIX: &str = "/v1.44";

/// Default daemon address when neither `-H`, `BERTH_HOST` nor `DOCKER_HOST` is set.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Errors raised while talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host string is not a `unix://` address.
    #[error("unsupported host {0:?}: only unix:// sockets are supported")]
    BadHost(String),
    /// The socket could not be reached.
    #[error(
        "cannot connect to the berth daemon at unix://{path}: {source}. Is the daemon running?"
    )]
    Connect {
        /// socket path
        path: String,
        /// underlying error
        source: std::io::Error,
    },
    /// HTTP protocol failure.
    #[error("http error on {path}: {source}")]
    Http {
        /// request path
        path: String,
        /// underlying error
        source: hyper::Error,
    },
    /// Request could not be built.
    #[error("invalid request {path}: {source}")]
    Request {
        /// request path
        path: String,
        /// underlying error
        source: hyper::http::Error,
    },
    /// The daemon answered with an error status; `message` is its `message` field.
    #[error("{message}")]
    Daemon {
        /// HTTP status code
        status: u16,
        /// daemon's error message
        message: String,
    },
    /// The daemon's answer was not the JSON expected.
    #[error("invalid json from daemon on {path}: {source}")]
    Json {
        /// request path
        path: String,
        /// underlying error
        source: serde_json::Error,
    },
    /// An upgrade to a raw stream was expected but not granted.
    #[error("daemon did not upgrade the connection on {path} (status {status})")]
    Upgrade {
        /// request path
        path: String,
        /// HTTP status received
        status: u16,
    },
}

impl ClientError {
    /// HTTP status of a daemon error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// A raw bidirectional stream obtained by hijacking an attach or exec request.
pub struct Hijacked {
    /// bytes the HTTP layer had already read past the response head
    pub leftover: Bytes,
    /// the socket itself
    pub stream: UnixStream,
}

/// A client bound to one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    prefix: String,
}

/// Picks the daemon address: `-H`, then `BERTH_HOST`, then `DOCKER_HOST`, then the default.
pub fn resolve_host(flag: Option<&str>) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    flag.map(str::to_owned)
        .or_else(|| env("BERTH_HOST"))
        .or_else(|| env("DOCKER_HOST"))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

/// Builds a query string (without `?`) from key/value pairs.
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish()
}

impl Client {
    /// Creates a client for a `unix:///path` host string. The API version prefix is
    /// [`API_PREFIX`] unless `BERTH_API_VERSION` or `DOCKER_API_VERSION` pins another.
    pub fn new(host: &str) -> Result<Self> {
        let path = host
            .strip_prefix("unix://")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ClientError::BadHost(host.to_owned()))?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let prefix = match env("BERTH_API_VERSION").or_else(|| env("DOCKER_API_VERSION")) {
            Some(v) => format!("/v{}", v.trim_start_matches('v')),
            None => API_PREFIX.to_owned(),
        };
        Ok(Client {
            socket: PathBuf::from(path),
            prefix,
        })
    }

    async fn connect(&self) -> Result<TokioIo<UnixStream>> {
        UnixStream::connect(&self.socket)
            .await
            .map(TokioIo::new)
            .map_err(|source| ClientError::Connect {
                path: self.socket.display().to_string(),
                source,
            })
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        json: bool,
    ) -> Result<Request<Full<Bytes>>> {
        let full = format!("{}{path}", self.prefix);
        let mut b = Request::builder()
            .method(method)
            .uri(&full)
            .header("Host", "berth")
            .header("User-Agent", "berth-cli/0.1");
        if body.is_some() {
            let ct = if json {
                "application/json"
            } else {
                "application/x-tar"
            };
            b = b.header("Content-Type", ct);
        }
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        b.body(Full::new(body.unwrap_or_default()))
            .map_err(|source| ClientError::Request {
                path: path.to_owned(),
                source,
            })
    }

    /// Sends a request and returns the response; error statuses become [`ClientError::Daemon`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Bytes>,
        json: bool,
    ) -> Result<Response<Incoming>> {
        let req = self.build(method, path, headers, body, json)?;
        let io = self.connect().await?;
        let http = |source| ClientError::Http {
            path: path.to_owned(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await.map_err(http)?;
        if resp.status().is_client_error() || resp.status().is_server_error() {
            let status = resp.status().as_u16();
            let bytes = read_body(path, resp).await?;
            return Err(ClientError::Daemon {
                status,
                message: error_message(&bytes),
            });
        }
        Ok(resp)
    }

    /// Sends a request with an optional JSON body and parses the JSON answer (`Null` if empty).
    pub async fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.json_with(method, path, &[], body).await
    }

    /// Like [`Client::json`], with extra headers.
    pub async fn json_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let body = body.map(|v| Bytes::from(v.to_string()));
        let resp = self.send(method, path, headers, body, true).await?;
        let bytes = read_body(path, resp).await?;
        parse_json(path, &bytes)
    }

    /// GET a path and parse its JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json("GET", path, None).await
    }

    /// POST a path (with an optional JSON body) and parse its JSON answer.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        self.json("POST", path, body).await
    }

    /// DELETE a path and parse its JSON answer.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.json("DELETE", path, None).await
    }

    /// POST with a hijack: sends `Connection: Upgrade`/`Upgrade: tcp`, expects `101`, and
    /// returns the raw socket.
    pub async fn hijack(&self, path: &str, body: Option<&Value>) -> Result<Hijacked> {
        let headers = [
            ("Connection", "Upgrade".to_owned()),
            ("Upgrade", "tcp".to_owned()),
        ];
        let body = body.map(|v| Bytes::from(v.to_string()));
        let req = self.build("POST", path, &headers, body, true)?;
        let io = self.connect().await?;
        let http = |source| ClientError::Http {
            path: path.to_owned(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            let bytes = read_body(path, resp).await?;
            return Err(ClientError::Daemon {
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ClientError::Upgrade {
                path: path.to_owned(),
                status: status.as_u16(),
            });
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(http)?;
        let parts =
            upgraded
                .downcast::<TokioIo<UnixStream>>()
                .map_err(|_| ClientError::Upgrade {
                    path: path.to_owned(),
                    status: status.as_u16(),
                })?;
        Ok(Hijacked {
            leftover: parts.read_buf,
            stream: parts.io.into_inner(),
        })
    }
}

/// Reads a whole response body.
pub async fn read_body(path: &str, resp: Response<Incoming>) -> Result<Bytes> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|source| ClientError::Http {
            path: path.to_owned(),
            source,
        })
}

fn parse_json(path: &str, bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|source| ClientError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Extracts the `message` of a Docker error body, or the body text itself.
pub fn error_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => match v.get("message").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(bytes).trim().to_owned(),
    }
}

/// Incrementally decodes a stream of concatenated JSON values (the Docker progress stream).
#[derive(Default)]
pub struct JsonStream {
    buf: BytesMut,
}

impl JsonStream {
    /// Feeds bytes and returns every complete value now available.
    pub fn feed(&mut self, data: &[u8]) -> std::result::Result<Vec<Value>, serde_json::Error> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let consumed = {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            loop {
                match it.next() {
                    Some(Ok(v)) => out.push(v),
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            it.byte_offset()
        };
        let _ = self.buf.split_to(consumed);
        Ok(out)
    }
}

/// Calls `f` on every JSON value of a streamed response body.
pub async fn for_each_json<F>(path: &str, resp: Response<Incoming>, mut f: F) -> Result<()>
where
    F: FnMut(Value) -> std::result::Result<(), ClientError>,
{
    let mut body = resp.into_body();
    let mut dec = JsonStream::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| ClientError::Http {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(data) = frame.into_data() {
            let values = dec.feed(&data).map_err(|source| ClientError::Json {
                path: path.to_owned(),
                source,
            })?;
            for v in values {
                f(v)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_stream_splits_partial_values() {
        let mut d = JsonStream::default();
        assert!(d.feed(b"{\"a\":1}\r\n{\"b\"").unwrap().len() == 1);
        let v = d.feed(b":2}\n").unwrap();
        assert_eq!(v[0]["b"], 2);
    }

    #[test]
    fn error_message_prefers_message_field() {
        assert_eq!(
            error_message(br#"{"message":"no such image"}"#),
            "no such image"
        );
        assert_eq!(error_message(b"plain text\n"), "plain text");
    }

    #[test]
    fn host_parsing() {
        assert!(Client::new("tcp://1.2.3.4:2375").is_err());
        assert!(Client::new("unix:///run/x.sock").is_ok());
        assert_eq!(resolve_host(Some("unix:///a")), "unix:///a");
    }

    #[test]
    fn query_encodes() {
        assert_eq!(
            query(&[("filters", "{\"a\":1}".into())]),
            "filters=%7B%22a%22%3A1%7D"
        );
    }
}
