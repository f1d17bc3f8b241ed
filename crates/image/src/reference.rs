//! Image references, parsed the way Docker normalizes them.

use std::fmt;
use std::str::FromStr;

use berth_content::Digest;

/// The registry a reference has when it names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The host actually contacted for [`DEFAULT_REGISTRY`].
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;

/// Errors from parsing a reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// The repository part has uppercase letters.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    NotLowercase(String),
    /// The repository part is malformed.
    #[error("invalid reference format: repository name {0:?} is not valid")]
    BadRepository(String),
    /// A 64-hex string was used as a repository name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexRepository(String),
    /// The registry host is malformed.
    #[error("invalid reference format: registry {0:?} is not a valid host[:port]")]
    BadRegistry(String),
    /// The tag is malformed.
    #[error("invalid reference format: tag {0:?} is not valid")]
    BadTag(String),
    /// The digest is malformed.
    #[error("invalid reference format: {0}")]
    BadDigest(#[from] berth_content::DigestError),
    /// The full name is longer than 255 characters.
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    TooLong(String),
}

/// A parsed, normalized image reference.
///
/// `registry` is `docker.io` for Docker Hub (whose official images live under
/// `library/`). When neither a tag nor a digest is given, the tag is
/// `latest`, as `docker pull` does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host[:port], e.g. "docker.io" or "127.0.0.1:5000".
    pub registry: String,
    /// Repository path, e.g. "library/busybox".
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` like Docker's `ParseNormalizedNamed` plus a default tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        s.parse()
    }

    /// Builds the same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag(tag.to_string()));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// Builds the same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The name without tag or digest, as Docker shows it: "busybox",
    /// "user/app", "127.0.0.1:5000/busybox".
    pub fn name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The familiar form with tag and/or digest: "busybox:1",
    /// "127.0.0.1:5000/busybox:1", "busybox@sha256:...".
    pub fn familiar(&self) -> String {
        self.with_suffix(self.name())
    }

    /// "registry/repository", e.g. "docker.io/library/busybox".
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host[:port] to contact ("registry-1.docker.io" for docker.io).
    pub fn registry_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_HOST
        } else {
            &self.registry
        }
    }

    /// Whether the registry is a loopback address (127.0.0.0/8, ::1, localhost).
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }

    /// The tag, or "latest" if none is set.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

/// Whether a registry `host[:port]` is a loopback address.
pub fn host_is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

impl fmt::Display for Reference {
    /// The fully qualified form: "docker.io/library/busybox:latest".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.full_name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::BadTag(t.to_string()));
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::BadRepository(s.to_string()));
        }
        let (registry, repository) = split_registry(name);
        if !valid_registry(&registry) {
            return Err(ReferenceError::BadRegistry(registry));
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::NotLowercase(repository));
        }
        if !repository.split('/').all(valid_component) {
            return Err(ReferenceError::BadRepository(repository));
        }
        if registry == DEFAULT_REGISTRY
            && Digest::from_hex(&repository.replace("library/", "")).is_ok()
        {
            return Err(ReferenceError::HexRepository(repository));
        }
        let full = format!("{registry}/{repository}");
        if full.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(full));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Splits "host/path" into registry and repository, applying Docker Hub's
/// defaults ("docker.io", "library/").
fn split_registry(name: &str) -> (String, String) {
    let (mut registry, mut repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    if registry == "index.docker.io" {
        registry = DEFAULT_REGISTRY.to_string();
    }
    if registry == DEFAULT_REGISTRY && !repo.contains('/') {
        repo = format!("library/{repo}");
    }
    (registry, repo)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or one or more "-"
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// host labels (alnum and inner '-') joined by '.', or [ipv6], then :port.
fn valid_registry(r: &str) -> bool {
    let valid_port = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = r.strip_prefix('[') {
        let Some((h, p)) = rest.split_once(']') else {
            return false;
        };
        return h.parse::<std::net::Ipv6Addr>().is_ok()
            && (p.is_empty() || p.strip_prefix(':').is_some_and(valid_port));
    }
    let host = match r.split_once(':') {
        Some((h, p)) if valid_port(p) => h,
        Some(_) => return false,
        None => r,
    };
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = p("busybox");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.name(), "busybox");
        assert_eq!(r.full_name(), "docker.io/library/busybox");
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert!(!r.is_loopback());
        assert_eq!(p("user/app:v1").full_name(), "docker.io/user/app");
        assert_eq!(p("user/app:v1").familiar(), "user/app:v1");
        assert_eq!(p("docker.io/library/busybox:1").familiar(), "busybox:1");
        assert_eq!(
            p("index.docker.io/busybox").full_name(),
            "docker.io/library/busybox"
        );
    }

    #[test]
    fn private_registries() {
        let r = p("127.0.0.1:5000/busybox:1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.familiar(), "127.0.0.1:5000/busybox:1");
        assert_eq!(r.name(), "127.0.0.1:5000/busybox");
        assert_eq!(r.registry_host(), "127.0.0.1:5000");
        assert!(r.is_loopback());
        let l = p("localhost/x");
        assert_eq!(
            (l.registry.as_str(), l.repository.as_str()),
            ("localhost", "x")
        );
        assert!(l.is_loopback());
        assert!(p("[::1]:5000/a/b").is_loopback());
        assert!(!p("example.com/a").is_loopback());
        assert_eq!(p("localhost:5000/a/b/c:t").repository, "a/b/c");
    }

    #[test]
    fn digests() {
        let d = Digest::sha256_of(b"x");
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref(), Some(&d));
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        assert_eq!(r.tag_or_latest(), "latest");
        let r = p(&format!("127.0.0.1:5000/busybox:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert!("busybox@sha256:abc".parse::<Reference>().is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("BusyBox"),
            Err(ReferenceError::NotLowercase(_))
        ));
        assert!(matches!(
            Reference::parse("busybox:"),
            Err(ReferenceError::BadTag(_))
        ));
        assert!(matches!(
            Reference::parse("busybox:-x"),
            Err(ReferenceError::BadTag(_))
        ));
        assert!(Reference::parse("a//b").is_err());
        assert!(Reference::parse("-a").is_err());
        assert!(Reference::parse("a..b").is_err());
        assert!(Reference::parse("host:port/x").is_err());
        assert!(Reference::parse(":tag").is_err());
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            Reference::parse(hex),
            Err(ReferenceError::HexRepository(_))
        ));
        assert!(Reference::parse(&"a".repeat(300)).is_err());
        assert!(Reference::parse("a__b-c---d.e").is_ok());
        assert!(Reference::parse("a___b").is_err());
    }
}
