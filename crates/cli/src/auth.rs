//! Registry credentials in `~/.docker/config.json` (docker's `auths` layout) and the
//! `X-Registry-Auth` header built from them.

use std::path::PathBuf;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde_json::{json, Value};

/// The key docker uses for Docker Hub credentials.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// Errors reading or writing the credentials file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// file path
        path: String,
        /// underlying error
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("invalid config file {path}: {source}")]
    Json {
        /// file path
        path: String,
        /// underlying error
        source: serde_json::Error,
    },
}

/// Path of the docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
pub fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker").join("config.json")
}

fn load(path: &PathBuf) -> Result<Value, AuthError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| AuthError::Json {
            path: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(source) => Err(AuthError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn save(path: &PathBuf, v: &Value) -> Result<(), AuthError> {
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The config key for a registry host (`docker.io` and empty map to Docker Hub's key).
pub fn server_key(host: &str) -> String {
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        h => h
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    }
}

/// The registry host of an image reference (`docker.io` when it has none).
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

/// Stores credentials for `server` in the config file.
pub fn store(path: &PathBuf, server: &str, user: &str, password: &str) -> Result<(), AuthError> {
    let mut cfg = load(path)?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let auth = STANDARD.encode(format!("{user}:{password}"));
    cfg["auths"][server_key(server)] = json!({"auth": auth});
    save(path, &cfg)
}

/// Removes credentials for `server`; returns whether any were stored.
pub fn erase(path: &PathBuf, server: &str) -> Result<bool, AuthError> {
    let mut cfg = load(path)?;
    let removed = cfg
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(&server_key(server)))
        .is_some();
    if removed {
        save(path, &cfg)?;
    }
    Ok(removed)
}

/// Looks up stored (user, password) for a registry host.
pub fn lookup(path: &PathBuf, host: &str) -> Result<Option<(String, String)>, AuthError> {
    let cfg = load(path)?;
    let key = server_key(host);
    let Some(auths) = cfg.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let entry = auths.get(&key).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| server_key(k) == key)
            .map(|(_, v)| v)
    });
    let Some(b64) = entry.and_then(|e| e.get("auth")).and_then(Value::as_str) else {
        return Ok(None);
    };
    let Ok(raw) = STANDARD.decode(b64) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned())))
}

/// The `X-Registry-Auth` header value for an image reference (empty-credential JSON if none).
pub fn registry_auth_header(reference: &str) -> String {
    registry_auth_header_from(&config_path(), reference)
}

/// [`registry_auth_header`] with credentials read from `path`: base64url of
/// `{"username","password","serveraddress"}`, or of `{}` without stored credentials.
pub fn registry_auth_header_from(path: &PathBuf, reference: &str) -> String {
    let host = registry_of(reference);
    let creds = lookup(path, &host).ok().flatten();
    let v = match creds {
        Some((u, p)) => json!({"username": u, "password": p, "serveraddress": server_key(&host)}),
        None => json!({}),
    };
    URL_SAFE.encode(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/x/y:t"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(server_key("docker.io"), DOCKER_HUB);
    }

    #[test]
    fn store_lookup_erase_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore":"x","auths":{}}"#).unwrap();
        store(&path, "127.0.0.1:5000", "u", "p:w").unwrap();
        let cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(cfg["credsStore"], "x");
        assert_eq!(
            cfg["auths"]["127.0.0.1:5000"]["auth"],
            STANDARD.encode("u:p:w")
        );
        assert_eq!(
            lookup(&path, "127.0.0.1:5000").unwrap(),
            Some(("u".into(), "p:w".into()))
        );
        let header = registry_auth_header_from(&path, "127.0.0.1:5000/app:1");
        let v: Value = serde_json::from_slice(&URL_SAFE.decode(header).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"username": "u", "password": "p:w", "serveraddress": "127.0.0.1:5000"})
        );
        let other = registry_auth_header_from(&path, "busybox");
        assert_eq!(URL_SAFE.decode(other).unwrap(), b"{}");
        assert!(erase(&path, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&path, "127.0.0.1:5000").unwrap(), None);
    }
}
