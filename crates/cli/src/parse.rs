//! Pure parsers for docker's flag value syntaxes: `-p`, `-v`, `--mount`, sizes,
//! durations, `--restart`, env files, key=value lists.

use serde_json::{json, Map, Value};

/// Errors from parsing a flag value.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A malformed `-p` value.
    #[error("invalid port specification {0:?}")]
    Port(String),
    /// A malformed `-v` value.
    #[error("invalid volume specification: {0:?}")]
    Volume(String),
    /// A malformed `--mount` value.
    #[error("invalid argument {value:?} for \"--mount\" flag: {reason}")]
    Mount {
        /// the flag value
        value: String,
        /// what is wrong
        reason: String,
    },
    /// A malformed size such as `512m`.
    #[error("invalid size: {0:?}")]
    Size(String),
    /// A malformed duration such as `30s`.
    #[error("invalid duration: {0:?}")]
    Duration(String),
    /// A malformed number.
    #[error("invalid value {value:?} for {flag}")]
    Number {
        /// flag name
        flag: &'static str,
        /// the flag value
        value: String,
    },
    /// A malformed restart policy.
    #[error("invalid restart policy {0:?}")]
    Restart(String),
    /// An env file could not be read.
    #[error("cannot read env file {path}: {source}")]
    EnvFile {
        /// file path
        path: String,
        /// underlying error
        source: std::io::Error,
    },
    /// A malformed `--add-host` value.
    #[error("invalid argument {0:?} for \"--add-host\" flag: invalid IP address")]
    Host(String),
}

type Result<T> = std::result::Result<T, ParseError>;

/// Published ports: (`ExposedPorts`, `PortBindings`) entries from one `-p` value.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, Value)>> {
    let bad = || ParseError::Port(spec.to_owned());
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) if ["tcp", "udp", "sctp"].contains(&p) => (r, p),
        Some(_) => return Err(bad()),
        None => (spec, "tcp"),
    };
    // split off an optional [ipv6] or ipv4 host address
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(bad)?;
        (ip.to_owned(), after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest),
            3 => (parts[0].to_owned(), &rest[parts[0].len() + 1..]),
            _ => return Err(bad()),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    let crange = port_range(container).ok_or_else(bad)?;
    let hrange = if host.is_empty() {
        None
    } else {
        Some(port_range(host).ok_or_else(bad)?)
    };
    let count = crange.1 - crange.0 + 1;
    let mut out = Vec::new();
    for i in 0..count {
        let host_port = match hrange {
            None => String::new(),
            Some((a, b)) if b - a + 1 == count => (a + i).to_string(),
            Some((a, b)) if count == 1 && a != b => format!("{a}-{b}"),
            Some((a, b)) if a == b => a.to_string(),
            Some(_) => return Err(bad()),
        };
        out.push((
            format!("{}/{proto}", crange.0 + i),
            json!({"HostIp": ip, "HostPort": host_port}),
        ));
    }
    Ok(out)
}

fn port_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p: u32 = s.parse().ok()?;
            (p, p)
        }
    };
    (a > 0 && b <= 65535 && a <= b).then_some((a, b))
}

/// What a `-v` value asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `-v /path`: an anonymous volume (goes to `Config.Volumes`).
    Anonymous(String),
    /// `-v src:dst[:opts]`: a bind or named volume (goes to `HostConfig.Binds` verbatim).
    Bind(String),
}

/// Parses a `-v` value.
pub fn parse_volume(spec: &str) -> Result<VolumeSpec> {
    let bad = || ParseError::Volume(spec.to_owned());
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [dst] if dst.starts_with('/') => Ok(VolumeSpec::Anonymous((*dst).to_owned())),
        [src, dst] | [src, dst, _] if !src.is_empty() && dst.starts_with('/') => {
            Ok(VolumeSpec::Bind(spec.to_owned()))
        }
        _ => Err(bad()),
    }
}

/// Parses a `--mount` value into an API `Mount` object.
pub fn parse_mount(spec: &str) -> Result<Value> {
    let err = |reason: &str| ParseError::Mount {
        value: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let mut m = Map::new();
    let mut kind = "volume".to_owned();
    let mut target = None;
    let mut opts = Map::new();
    let mut tmpfs = Map::new();
    let mut bind = Map::new();
    let mut labels = Map::new();
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_lowercase(), Some(v.to_owned())),
            None => (field.trim().to_lowercase(), None),
        };
        let flag = |v: &Option<String>| -> Result<bool> {
            match v.as_deref() {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(_) => Err(err(&format!("invalid value for {k}"))),
            }
        };
        let val = || {
            v.clone()
                .ok_or_else(|| err(&format!("invalid field '{field}' must be a key=value pair")))
        };
        match k.as_str() {
            "type" => kind = val()?,
            "source" | "src" => {
                m.insert("Source".into(), json!(val()?));
            }
            "target" | "destination" | "dst" => target = Some(val()?),
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(flag(&v)?));
            }
            "consistency" => {
                m.insert("Consistency".into(), json!(val()?));
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), json!(val()?));
            }
            "volume-nocopy" => {
                opts.insert("NoCopy".into(), json!(flag(&v)?));
            }
            "volume-driver" => {
                opts.insert("DriverConfig".into(), json!({"Name": val()?}));
            }
            "volume-label" => {
                let kv = val()?;
                let (a, b) = kv.split_once('=').unwrap_or((&kv, ""));
                labels.insert(a.into(), json!(b));
            }
            "volume-opt" => {
                let kv = val()?;
                let (a, b) = kv.split_once('=').unwrap_or((&kv, ""));
                let dc = opts.entry("DriverConfig").or_insert_with(|| json!({}));
                dc["Options"][a] = json!(b);
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(parse_bytes(&val()?)?));
            }
            "tmpfs-mode" => {
                let mode =
                    u32::from_str_radix(&val()?, 8).map_err(|_| err("invalid tmpfs-mode"))?;
                tmpfs.insert("Mode".into(), json!(mode));
            }
            _ => return Err(err(&format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    let target = target.ok_or_else(|| err("target is required"))?;
    if !["bind", "volume", "tmpfs", "npipe", "cluster", "image"].contains(&kind.as_str()) {
        return Err(err(&format!("invalid mount type {kind:?}")));
    }
    if kind == "bind" && !m.contains_key("Source") {
        return Err(err("source is required when specifying bind mounts"));
    }
    m.insert("Type".into(), json!(kind));
    m.insert("Target".into(), json!(target));
    if !labels.is_empty() {
        opts.insert("Labels".into(), Value::Object(labels));
    }
    if !opts.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(opts));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    Ok(Value::Object(m))
}

/// Parses a size with binary units (`512m`, `1g`, `100k`, `1024`, `2gb`) to bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let bad = || ParseError::Size(s.to_owned());
    let lower = s.trim().to_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((n * mult) as i64)
}

/// Parses a Go duration (`1m30s`, `500ms`, `2h`) to nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<i64> {
    let bad = || ParseError::Duration(s.to_owned());
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..end].parse().map_err(|_| bad())?;
        rest = &rest[end..];
        let uend = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..uend] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[uend..];
    }
    Ok(total as i64)
}

/// Parses `--restart` (`no`, `always`, `unless-stopped`, `on-failure[:N]`).
pub fn parse_restart(s: &str) -> Result<Value> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            c.parse::<i64>()
                .map_err(|_| ParseError::Restart(s.to_owned()))?,
        ),
        None => (s, 0),
    };
    match name {
        "no" | "always" | "unless-stopped" if count == 0 => {}
        "on-failure" => {}
        _ => return Err(ParseError::Restart(s.to_owned())),
    }
    let name = if name == "no" { "no" } else { name };
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// Expands `-e KEY` from the environment; `KEY=VAL` is kept as is.
pub fn expand_env(kv: &str) -> String {
    if kv.contains('=') {
        return kv.to_owned();
    }
    match std::env::var(kv) {
        Ok(v) => format!("{kv}={v}"),
        Err(_) => kv.to_owned(),
    }
}

/// Reads a docker env file: `KEY=VAL` lines, `#` comments and blank lines skipped.
pub fn read_env_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| ParseError::EnvFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_env_lines(&text))
}

/// Parses env file contents (see [`read_env_file`]).
pub fn parse_env_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            if l.contains('=') {
                l.to_owned()
            } else {
                expand_env(l.trim_end())
            }
        })
        .collect()
}

/// Turns `k=v` strings into a JSON map (`k` alone maps to "").
pub fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_owned(), json!(v)),
            None => (s.clone(), json!("")),
        })
        .collect()
}

/// Normalises `--add-host host:ip` / `host=ip` to the API's `host:ip` form.
pub fn parse_add_host(s: &str) -> Result<String> {
    let (h, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| ParseError::Host(s.to_owned()))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() || (ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(ParseError::Host(s.to_owned()));
    }
    Ok(format!("{h}:{ip}"))
}

/// Builds a docker `filters` query value from `key=value` flags.
pub fn filters_json(items: &[String]) -> String {
    let mut m: Map<String, Value> = Map::new();
    for it in items {
        let (k, v) = it.split_once('=').unwrap_or((it, ""));
        let e = m.entry(k.to_owned()).or_insert_with(|| json!({}));
        e[v] = json!(true);
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(p[0].0, "80/tcp");
        assert_eq!(p[0].1, json!({"HostIp": "", "HostPort": "8080"}));
        let p = parse_publish("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p[0].0, "53/udp");
        assert_eq!(p[0].1["HostIp"], "127.0.0.1");
        let p = parse_publish("80").unwrap();
        assert_eq!(p[0].1["HostPort"], "");
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p[0].1["HostIp"], "::1");
        let p = parse_publish("8000-8001:80-81").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1],
            ("81/tcp".into(), json!({"HostIp": "", "HostPort": "8001"}))
        );
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!(p[0].1["HostPort"], "");
        assert!(parse_publish("abc").is_err());
        assert!(parse_publish("80/xyz").is_err());
        assert!(parse_publish("70000").is_err());
    }

    #[test]
    fn volume_specs() {
        assert_eq!(
            parse_volume("/data").unwrap(),
            VolumeSpec::Anonymous("/data".into())
        );
        assert_eq!(
            parse_volume("v:/data:ro").unwrap(),
            VolumeSpec::Bind("v:/data:ro".into())
        );
        assert!(parse_volume("relative").is_err());
        assert!(parse_volume("a:relative").is_err());
    }

    #[test]
    fn mount_specs() {
        let m = parse_mount("type=bind,source=/src,target=/dst,readonly").unwrap();
        assert_eq!(
            m,
            json!({"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": true})
        );
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1777").unwrap();
        assert_eq!(
            m["TmpfsOptions"],
            json!({"SizeBytes": 67108864, "Mode": 1023})
        );
        let m = parse_mount("src=vol,dst=/v,volume-opt=type=nfs").unwrap();
        assert_eq!(m["Type"], "volume");
        assert_eq!(m["VolumeOptions"]["DriverConfig"]["Options"]["type"], "nfs");
        assert!(parse_mount("type=bind,target=/x").is_err());
        assert!(parse_mount("source=/x").is_err());
        assert!(parse_mount("type=bind,src=/a,dst=/b,bogus=1").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert!(parse_duration_ns("5").is_err());
        assert!(parse_duration_ns("5x").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap(),
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(parse_restart("always").unwrap()["Name"], "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn env_and_hosts() {
        let lines = parse_env_lines("# c\n\nA=1\n  B=two words\n");
        assert_eq!(lines, vec!["A=1", "B=two words"]);
        assert_eq!(parse_add_host("db:10.0.0.2").unwrap(), "db:10.0.0.2");
        assert_eq!(parse_add_host("db=::1").unwrap(), "db:::1");
        assert!(parse_add_host("db:notanip").is_err());
        assert_eq!(
            filters_json(&["dangling=true".into()]),
            r#"{"dangling":{"true":true}}"#
        );
    }
}
