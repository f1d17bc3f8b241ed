//! `run`/`create` flags and their translation into a `POST /containers/create` body.

use clap::Args;
use serde_json::{json, Map, Value};

use crate::create_extra::ExtraOpts;
use crate::parse::{self, ParseError, VolumeSpec};

/// Flags shared by `berth run` and `berth create`.
#[derive(Args, Debug, Default, Clone)]
pub struct CreateOpts {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    pub ip: Option<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Run an init inside the container
    #[arg(long)]
    pub init: bool,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Less common flags
    #[command(flatten)]
    pub extra: ExtraOpts,
}

/// Builds the create request body from flags, the image, and the command after it.
pub fn create_body(
    o: &CreateOpts,
    image: &str,
    cmd: &[String],
    attach: bool,
) -> Result<Value, ParseError> {
    let mut cfg = Map::new();
    let mut host = Map::new();

    let mut env: Vec<String> = Vec::new();
    for f in &o.env_file {
        env.extend(parse::read_env_file(f)?);
    }
    env.extend(o.env.iter().map(|e| parse::expand_env(e)));

    let mut exposed = Map::new();
    let mut bindings = Map::new();
    for p in &o.publish {
        for (port, b) in parse::parse_publish(p)? {
            exposed.insert(port.clone(), json!({}));
            let e = bindings.entry(port).or_insert_with(|| json!([]));
            if let Value::Array(a) = e {
                a.push(b);
            }
        }
    }
    for p in &o.expose {
        let port = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        exposed.insert(port, json!({}));
    }

    let mut volumes = Map::new();
    let mut binds = Vec::new();
    for v in &o.volume {
        match parse::parse_volume(v)? {
            VolumeSpec::Anonymous(d) => {
                volumes.insert(d, json!({}));
            }
            VolumeSpec::Bind(b) => binds.push(b),
        }
    }
    let mounts = o
        .mount
        .iter()
        .map(|m| parse::parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;

    cfg.insert(
        "Hostname".into(),
        json!(o.hostname.clone().unwrap_or_default()),
    );
    cfg.insert(
        "Domainname".into(),
        json!(o.domainname.clone().unwrap_or_default()),
    );
    cfg.insert("User".into(), json!(o.user.clone().unwrap_or_default()));
    cfg.insert("AttachStdin".into(), json!(attach && o.interactive));
    cfg.insert("AttachStdout".into(), json!(attach));
    cfg.insert("AttachStderr".into(), json!(attach));
    cfg.insert("Tty".into(), json!(o.tty));
    cfg.insert("OpenStdin".into(), json!(o.interactive));
    cfg.insert("StdinOnce".into(), json!(attach && o.interactive));
    cfg.insert("Env".into(), json!(env));
    if !cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(cmd));
    }
    cfg.insert("Image".into(), json!(image));
    if !volumes.is_empty() {
        cfg.insert("Volumes".into(), Value::Object(volumes));
    }
    if !exposed.is_empty() {
        cfg.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    cfg.insert(
        "WorkingDir".into(),
        json!(o.workdir.clone().unwrap_or_default()),
    );
    if let Some(ep) = &o.entrypoint {
        cfg.insert("Entrypoint".into(), json!([ep]));
    }
    cfg.insert("Labels".into(), Value::Object(parse::kv_map(&o.label)));
    if let Some(s) = &o.stop_signal {
        cfg.insert("StopSignal".into(), json!(s));
    }
    if let Some(t) = o.stop_timeout {
        cfg.insert("StopTimeout".into(), json!(t));
    }
    if let Some(hc) = healthcheck(o)? {
        cfg.insert("Healthcheck".into(), hc);
    }

    host.insert("Binds".into(), json!(binds));
    if !mounts.is_empty() {
        host.insert("Mounts".into(), json!(mounts));
    }
    host.insert(
        "NetworkMode".into(),
        json!(o.network.clone().unwrap_or_else(|| "default".into())),
    );
    host.insert("PortBindings".into(), Value::Object(bindings));
    host.insert("PublishAllPorts".into(), json!(o.publish_all));
    let restart = match &o.restart {
        Some(r) => parse::parse_restart(r)?,
        None => json!({"Name": "no", "MaximumRetryCount": 0}),
    };
    host.insert("RestartPolicy".into(), restart);
    host.insert("AutoRemove".into(), json!(o.rm));
    host.insert("Privileged".into(), json!(o.privileged));
    host.insert("ReadonlyRootfs".into(), json!(o.read_only));
    host.insert("CapAdd".into(), json!(o.cap_add));
    host.insert("CapDrop".into(), json!(o.cap_drop));
    host.insert("SecurityOpt".into(), json!(o.security_opt));
    host.insert("Dns".into(), json!(o.dns));
    host.insert("DnsOptions".into(), json!(o.dns_option));
    host.insert("DnsSearch".into(), json!(o.dns_search));
    let hosts = o
        .add_host
        .iter()
        .map(|h| parse::parse_add_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    host.insert("ExtraHosts".into(), json!(hosts));
    let tmpfs: Map<String, Value> = o
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, opts)) => (p.to_owned(), json!(opts)),
            None => (t.clone(), json!("")),
        })
        .collect();
    if !tmpfs.is_empty() {
        host.insert("Tmpfs".into(), Value::Object(tmpfs));
    }
    if o.init {
        host.insert("Init".into(), json!(true));
    }
    if o.log_driver.is_some() || !o.log_opt.is_empty() {
        host.insert(
            "LogConfig".into(),
            json!({"Type": o.log_driver.clone().unwrap_or_default(), "Config": parse::kv_map(&o.log_opt)}),
        );
    }
    if let Some(r) = &o.runtime {
        host.insert("Runtime".into(), json!(r));
    }
    if let Some(m) = &o.memory {
        host.insert("Memory".into(), json!(parse::parse_bytes(m)?));
    }
    if let Some(c) = &o.cpus {
        let n: f64 = c.parse().map_err(|_| ParseError::Number {
            flag: "--cpus",
            value: c.clone(),
        })?;
        host.insert("NanoCpus".into(), json!((n * 1e9) as i64));
    }
    if let Some(s) = o.cpu_shares {
        host.insert("CpuShares".into(), json!(s));
    }
    if let Some(p) = o.pids_limit {
        host.insert("PidsLimit".into(), json!(p));
    }
    if !o.ulimit.is_empty() {
        host.insert("Ulimits".into(), json!(ulimits(&o.ulimit)?));
    }
    o.extra.apply(&mut cfg, &mut host)?;
    cfg.insert("HostConfig".into(), Value::Object(host));

    if let Some(net) = &o.network {
        if !o.network_alias.is_empty() || o.ip.is_some() || o.extra.ip6.is_some() {
            let mut ep = json!({"Aliases": o.network_alias, "IPAMConfig": {}});
            if let Some(ip) = &o.ip {
                ep["IPAMConfig"]["IPv4Address"] = json!(ip);
            }
            if let Some(ip) = &o.extra.ip6 {
                ep["IPAMConfig"]["IPv6Address"] = json!(ip);
            }
            cfg.insert(
                "NetworkingConfig".into(),
                json!({"EndpointsConfig": {net: ep}}),
            );
        }
    }
    Ok(Value::Object(cfg))
}

fn healthcheck(o: &CreateOpts) -> Result<Option<Value>, ParseError> {
    if o.no_healthcheck {
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    let dur = |d: &Option<String>| -> Result<i64, ParseError> {
        d.as_deref()
            .map(parse::parse_duration_ns)
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    let any = o.health_cmd.is_some()
        || o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_retries.is_some()
        || o.health_start_period.is_some()
        || o.health_start_interval.is_some();
    if !any {
        return Ok(None);
    }
    let mut hc = json!({
        "Interval": dur(&o.health_interval)?,
        "Timeout": dur(&o.health_timeout)?,
        "StartPeriod": dur(&o.health_start_period)?,
        "StartInterval": dur(&o.health_start_interval)?,
        "Retries": o.health_retries.unwrap_or(0),
    });
    if let Some(c) = &o.health_cmd {
        hc["Test"] = json!(["CMD-SHELL", c]);
    }
    Ok(Some(hc))
}

fn ulimits(items: &[String]) -> Result<Vec<Value>, ParseError> {
    items
        .iter()
        .map(|u| {
            let bad = || ParseError::Number {
                flag: "--ulimit",
                value: u.clone(),
            };
            let (name, vals) = u.split_once('=').ok_or_else(bad)?;
            let (soft, hard) = match vals.split_once(':') {
                Some((s, h)) => (
                    s.parse::<i64>().map_err(|_| bad())?,
                    h.parse::<i64>().map_err(|_| bad())?,
                ),
                None => {
                    let v = vals.parse::<i64>().map_err(|_| bad())?;
                    (v, v)
                }
            };
            Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_flag_set_maps_to_api_json() {
        let o = CreateOpts {
            interactive: true,
            tty: true,
            env: vec!["A=1".into()],
            workdir: Some("/w".into()),
            user: Some("1000:1000".into()),
            entrypoint: Some("/bin/sh".into()),
            hostname: Some("box".into()),
            label: vec!["k=v".into()],
            publish: vec!["8080:80".into()],
            volume: vec!["/anon".into(), "/h:/c:ro".into()],
            mount: vec!["type=tmpfs,target=/t".into()],
            network: Some("net1".into()),
            network_alias: vec!["db".into()],
            dns: vec!["1.1.1.1".into()],
            add_host: vec!["x:10.0.0.1".into()],
            restart: Some("on-failure:2".into()),
            memory: Some("64m".into()),
            cpus: Some("1.5".into()),
            pids_limit: Some(100),
            privileged: true,
            cap_add: vec!["NET_ADMIN".into()],
            read_only: true,
            tmpfs: vec!["/run:size=1m".into()],
            init: true,
            health_cmd: Some("true".into()),
            health_interval: Some("5s".into()),
            log_driver: Some("json-file".into()),
            log_opt: vec!["max-size=1m".into()],
            runtime: Some("runc".into()),
            rm: true,
            ..Default::default()
        };
        let b = create_body(&o, "busybox", &["sh".into()], true).unwrap();
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["sh"]));
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!(b["Labels"], json!({"k": "v"}));
        assert_eq!(b["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(b["Healthcheck"]["Interval"], 5_000_000_000i64);
        let h = &b["HostConfig"];
        assert_eq!(h["Binds"], json!(["/h:/c:ro"]));
        assert_eq!(h["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(h["NetworkMode"], "net1");
        assert_eq!(h["RestartPolicy"]["MaximumRetryCount"], 2);
        assert_eq!(h["Memory"], 64 * 1024 * 1024);
        assert_eq!(h["NanoCpus"], 1_500_000_000i64);
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(h["Tmpfs"], json!({"/run": "size=1m"}));
        assert_eq!(h["Mounts"][0]["Type"], "tmpfs");
        assert_eq!(h["ExtraHosts"], json!(["x:10.0.0.1"]));
        assert_eq!(
            h["LogConfig"],
            json!({"Type": "json-file", "Config": {"max-size": "1m"}})
        );
        assert_eq!(h["Runtime"], "runc");
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Init"], true);
        assert_eq!(
            b["NetworkingConfig"]["EndpointsConfig"]["net1"]["Aliases"],
            json!(["db"])
        );
    }

    #[test]
    fn defaults_and_errors() {
        let b = create_body(&CreateOpts::default(), "img", &[], false).unwrap();
        assert!(b.get("Cmd").is_none());
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        assert_eq!(b["AttachStdout"], false);
        let bad = CreateOpts {
            memory: Some("lots".into()),
            ..Default::default()
        };
        assert!(create_body(&bad, "img", &[], false).is_err());
        let nohc = CreateOpts {
            no_healthcheck: true,
            ..Default::default()
        };
        assert_eq!(
            create_body(&nohc, "img", &[], false).unwrap()["Healthcheck"]["Test"],
            json!(["NONE"])
        );
    }
}
