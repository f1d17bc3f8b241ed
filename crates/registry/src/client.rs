//! The HTTP client: URLs, authentication round trips, error mapping and
//! manifest fetching.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_content::Digest;
use berth_image::manifest::MANIFEST_MEDIA_TYPES;
use berth_image::Reference;
use futures::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::auth::{parse_challenge, Challenge, Credentials, Token, TokenResponse};
use crate::error::RegistryError;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries (host[:port]) reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once per pull (Docker's default is 3).
    pub max_concurrent_downloads: usize,
    /// Layers uploaded at once per push (Docker's default is 5).
    pub max_concurrent_uploads: usize,
    /// The User-Agent header sent.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A manifest (or index) as fetched from a registry.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes served (their sha256 is `digest`).
    pub bytes: Vec<u8>,
    /// The media type (from Content-Type, else the document).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

/// A registry client; cheap to share (`Arc`) between pulls. It caches auth
/// challenges per registry and bearer tokens per repository scope.
#[derive(Debug)]
pub struct RegistryClient {
    pub(crate) http: reqwest::Client,
    pub(crate) cfg: ClientConfig,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
}

/// The registry's JSON error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl RegistryClient {
    /// Builds a client (rustls, system-independent roots).
    pub fn new(cfg: ClientConfig) -> Result<RegistryClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .build()?;
        Ok(RegistryClient {
            http,
            cfg,
            challenges: Mutex::default(),
            tokens: Mutex::default(),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// `http://` for loopback and insecure registries, else `https://`.
    pub fn base_url(&self, r: &Reference) -> String {
        let host = r.registry_host();
        let insecure = r.is_loopback()
            || self
                .cfg
                .insecure_registries
                .iter()
                .any(|i| i == host || i == &r.registry);
        format!("{}://{}", if insecure { "http" } else { "https" }, host)
    }

    pub(crate) fn repo_url(&self, r: &Reference, tail: &str) -> String {
        format!("{}/v2/{}/{}", self.base_url(r), r.repository, tail)
    }

    pub(crate) fn transport_err(&self, r: &Reference, e: reqwest::Error) -> RegistryError {
        if e.is_connect() {
            RegistryError::Unreachable {
                registry: r.registry.clone(),
                image: r.familiar(),
                source: e,
            }
        } else {
            RegistryError::Http {
                image: r.familiar(),
                source: e,
            }
        }
    }

    /// Sends the request built by `make`, answering one auth challenge
    /// (basic or bearer for `scopes`) if the registry asks.
    pub(crate) async fn send(
        &self,
        r: &Reference,
        scopes: &[String],
        creds: Option<&Credentials>,
        mut make: impl FnMut(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let host = r.registry_host().to_string();
        let mut answered = false;
        loop {
            let mut req = make(&self.http);
            if let Some(h) = self.auth_header(r, &host, scopes, creds).await? {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| self.transport_err(r, e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let Some(challenge) = challenge else {
                return Ok(resp);
            };
            self.lock_challenges().insert(host.clone(), challenge);
            self.lock_tokens()
                .retain(|k, _| !k.starts_with(&format!("{host}|")));
            answered = true;
        }
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Challenge>> {
        self.challenges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn auth_header(
        &self,
        r: &Reference,
        host: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self.lock_challenges().get(host).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(creds.map(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                // Tokens belong to the credentials that got them: a pull without
                // credentials (after `docker logout`) must not reuse one.
                let who = creds
                    .map(|c| {
                        let secret = format!(
                            "{}\0{}\0{}",
                            c.username,
                            c.password,
                            c.identity_token.as_deref().unwrap_or("")
                        );
                        Digest::sha256_of(secret.as_bytes()).to_string()
                    })
                    .unwrap_or_default();
                let key = format!("{host}|{who}|{}", scopes.join(" "));
                if let Some(t) = self.lock_tokens().get(&key).filter(|t| t.valid()) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self
                    .fetch_token(r, &realm, service.as_deref(), scopes, creds)
                    .await?;
                let header = format!("Bearer {}", token.value);
                self.lock_tokens().insert(key, token);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<Token, RegistryError> {
        let image = r.familiar();
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            params.push(("service", s));
        }
        for s in scopes {
            params.push(("scope", s));
        }
        let req = match creds.and_then(|c| c.identity_token.as_deref()) {
            Some(refresh) => {
                params.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "berth"),
                ]);
                self.http.post(realm).form(&params)
            }
            None => {
                let mut req = self.http.get(realm).query(&params);
                if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                req
            }
        };
        let resp = req.send().await.map_err(|e| self.transport_err(r, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                image,
                detail: format!("token server refused: {}", body.trim()),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                image,
                status: status.as_u16(),
                message: "token request failed".into(),
            });
        }
        let body: TokenResponse = resp.json().await.map_err(|e| RegistryError::Http {
            image: image.clone(),
            source: e,
        })?;
        Token::from_response(body).ok_or(RegistryError::BadResponse {
            image,
            detail: "token server returned no token".into(),
        })
    }

    /// Turns a non-success response into the matching error.
    pub(crate) async fn error_from(
        &self,
        r: &Reference,
        resp: Response,
        what: Option<&Digest>,
    ) -> RegistryError {
        let status = resp.status();
        let image = r.familiar();
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        let first = body.errors.first();
        let code = first.map(|e| e.code.as_str()).unwrap_or("");
        let message = first.map(|e| e.message.clone()).unwrap_or_default();
        match (status, code) {
            (StatusCode::UNAUTHORIZED, _) | (_, "UNAUTHORIZED") | (_, "DENIED") => {
                RegistryError::Unauthorized {
                    image,
                    detail: if message.is_empty() {
                        "authentication required".into()
                    } else {
                        message
                    },
                }
            }
            (_, "NAME_UNKNOWN") => RegistryError::NameUnknown { image: r.name() },
            (_, "MANIFEST_UNKNOWN") => RegistryError::ManifestUnknown { image },
            (_, "BLOB_UNKNOWN") => match what {
                Some(d) => RegistryError::BlobUnknown {
                    image,
                    digest: d.clone(),
                },
                None => RegistryError::Status {
                    image,
                    status: status.as_u16(),
                    message,
                },
            },
            (StatusCode::NOT_FOUND, _) => match what {
                Some(d) => RegistryError::BlobUnknown {
                    image,
                    digest: d.clone(),
                },
                None => RegistryError::ManifestUnknown { image },
            },
            _ => RegistryError::Status {
                image,
                status: status.as_u16(),
                message,
            },
        }
    }

    /// `repository:<repo>:pull`.
    pub(crate) fn pull_scope(r: &Reference) -> Vec<String> {
        vec![format!("repository:{}:pull", r.repository)]
    }

    /// Whether the registry says the repository itself does not exist
    /// (some registries answer MANIFEST_UNKNOWN for both cases).
    async fn repo_missing(&self, r: &Reference, creds: Option<&Credentials>) -> bool {
        let url = self.repo_url(r, "tags/list");
        match self
            .send(r, &Self::pull_scope(r), creds, |c| c.get(&url))
            .await
        {
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                matches!(
                    self.error_from(r, resp, None).await,
                    RegistryError::NameUnknown { .. }
                )
            }
            _ => false,
        }
    }

    /// Fetches the manifest or index `r` names (by digest if it has one,
    /// else by tag), accepting all four manifest media types. When pulling
    /// by digest the bytes are verified against it. Transient failures
    /// (5xx, broken connections) are tried 3 times.
    pub async fn get_manifest(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.get_manifest_once(r, creds).await {
                Err(e) if e.is_transient() && attempt < 3 => {
                    tracing::warn!(image = %r.familiar(), attempt, error = %e, "manifest fetch failed, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(300 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn get_manifest_once(
        &self,
        r: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<FetchedManifest, RegistryError> {
        let target = match &r.digest {
            Some(d) => d.to_string(),
            None => r.tag_or_latest().to_string(),
        };
        let url = self.repo_url(r, &format!("manifests/{target}"));
        let accept = HeaderValue::from_str(&MANIFEST_MEDIA_TYPES.join(", ")).map_err(|e| {
            RegistryError::BadResponse {
                image: r.familiar(),
                detail: e.to_string(),
            }
        })?;
        let resp = self
            .send(r, &Self::pull_scope(r), creds, |c| {
                c.get(&url).header(ACCEPT, accept.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(match self.error_from(r, resp, None).await {
                RegistryError::ManifestUnknown { image } if self.repo_missing(r, creds).await => {
                    let _ = image;
                    RegistryError::NameUnknown { image: r.name() }
                }
                other => other,
            });
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = self.read_capped(r, resp).await?;
        let digest = Digest::sha256_of(&bytes);
        if let Some(want) = &r.digest {
            if want != &digest {
                return Err(RegistryError::DigestMismatch {
                    image: r.familiar(),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let (manifest, media_type) = berth_image::parse_manifest(&bytes, header_type.as_deref())
            .map_err(|source| RegistryError::Manifest {
                image: r.familiar(),
                source,
            })?;
        if let berth_image::Manifest::Image(m) = &manifest {
            if let Some(l) = m.layers.iter().find(|l| !is_layer_type(&l.media_type)) {
                return Err(RegistryError::UnsupportedLayer {
                    image: r.familiar(),
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                });
            }
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Reads a manifest body, refusing it as soon as it passes
    /// [`MAX_MANIFEST_SIZE`](berth_image::manifest::MAX_MANIFEST_SIZE): by its
    /// Content-Length before reading anything, else while it streams in, so a
    /// hostile registry cannot make us hold more than the limit.
    async fn read_capped(&self, r: &Reference, resp: Response) -> Result<Vec<u8>, RegistryError> {
        let limit = berth_image::manifest::MAX_MANIFEST_SIZE;
        let too_large = |size: Option<u64>| RegistryError::ManifestTooLarge {
            image: r.familiar(),
            limit,
            size,
        };
        if let Some(len) = resp.content_length().filter(|l| *l > limit as u64) {
            return Err(too_large(Some(len)));
        }
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_err(r, e))?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(None));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// Whether a layer media type is one this engine can unpack: the OCI and Docker layer
/// families (plain, gzip, zstd, foreign/non-distributable), as dockerd accepts them.
pub(crate) fn is_layer_type(media_type: &str) -> bool {
    let mt = media_type.to_ascii_lowercase();
    [
        "application/vnd.oci.image.layer.",
        "application/vnd.docker.image.rootfs.",
    ]
    .iter()
    .any(|p| mt.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::is_layer_type;

    #[test]
    fn layer_media_types() {
        assert!(is_layer_type("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert!(is_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(is_layer_type("application/vnd.oci.image.layer.v1.tar"));
        assert!(is_layer_type(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(is_layer_type(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        ));
        assert!(!is_layer_type("application/vnd.example.unknown.layer"));
        assert!(!is_layer_type("application/vnd.oci.image.config.v1+json"));
        assert!(!is_layer_type(""));
    }
}
