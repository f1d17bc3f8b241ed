use super::*;

fn opts() -> SpecOptions {
    SpecOptions::new("abc123", "/tmp/rootfs", vec!["sh".into()])
}

fn to_json(o: &SpecOptions) -> Value {
    let spec = build_spec(o).unwrap();
    serde_json::to_value(&spec).unwrap()
}

#[test]
fn docker_defaults() {
    let v = to_json(&opts());
    let bounding = v["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(bounding.len(), 14);
    assert!(bounding.contains(&json!("CAP_NET_RAW")));
    assert!(!bounding.contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(v["linux"]["cgroupsPath"], "/berth/abc123");
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(dests.contains(&d), "missing mount {d}");
    }
    let shm = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert!(shm["options"]
        .as_array()
        .unwrap()
        .contains(&json!("size=67108864")));
    assert!(v["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/kcore")));
    assert!(v["linux"]["readonlyPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/proc/sys")));
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    assert!(v["process"].get("noNewPrivileges").is_none());
    assert!(v["process"]["env"][0]
        .as_str()
        .unwrap()
        .starts_with("PATH="));
    let rl = v["process"]["rlimits"].as_array().unwrap();
    assert!(rl.iter().any(|r| r["type"] == "RLIMIT_NOFILE"));
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
}

#[test]
fn seccomp_default_denies_unshare_and_mount() {
    let v = to_json(&opts());
    let allowed: Vec<&str> = v["linux"]["seccomp"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(allowed.contains(&"read"));
    assert!(allowed.contains(&"ptrace"));
    for denied in ["unshare", "mount", "keyctl", "setns", "reboot"] {
        assert!(!allowed.contains(&denied), "{denied} must not be allowed");
    }
    let mut o = opts();
    o.cap_add = vec!["SYS_ADMIN".into()];
    let v = to_json(&o);
    let text = v["linux"]["seccomp"].to_string();
    assert!(text.contains("\"unshare\""));
}

#[test]
fn caps_add_drop_and_privileged() {
    let mut o = opts();
    o.cap_add = vec!["net_admin".into()];
    o.cap_drop = vec!["CAP_NET_RAW".into(), "chown".into()];
    let v = to_json(&o);
    let caps = v["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap();
    assert!(caps.contains(&json!("CAP_NET_ADMIN")));
    assert!(!caps.contains(&json!("CAP_NET_RAW")));
    assert!(!caps.contains(&json!("CAP_CHOWN")));

    o.cap_add = vec!["BOGUS".into()];
    assert!(matches!(
        build_spec(&o),
        Err(SpecError::UnknownCapability(_))
    ));

    let mut p = opts();
    p.privileged = true;
    let v = to_json(&p);
    assert!(v["linux"].get("maskedPaths").is_none());
    assert!(v["linux"].get("seccomp").is_none());
    assert!(
        v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len()
            > 30
    );
}

#[test]
fn netns_modes_resources_and_mount_override() {
    let mut o = opts();
    o.netns = NetnsMode::Host;
    o.memory = Some(64 << 20);
    o.cpu_quota = Some(50_000);
    o.cpu_period = Some(100_000);
    o.pids_limit = Some(10);
    o.no_new_privileges = true;
    o.hostname = "box".into();
    o.mounts.push(MountSpec {
        destination: "/dev/shm".into(),
        source: "/tmp".into(),
        kind: "bind".into(),
        options: vec!["rbind".into()],
    });
    let v = to_json(&o);
    assert!(!v["linux"]["namespaces"].to_string().contains("network"));
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 10);
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["hostname"], "box");
    let shm: Vec<&Value> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/dev/shm")
        .collect();
    assert_eq!(shm.len(), 1);
    assert_eq!(shm[0]["type"], "bind");

    o.netns = NetnsMode::New("/run/netns/x".into());
    let v = to_json(&o);
    assert!(v["linux"]["namespaces"]
        .to_string()
        .contains("/run/netns/x"));
}

#[test]
fn ulimits_and_devices() {
    let mut o = opts();
    o.ulimits = vec![("nproc".into(), 100, 200)];
    let v = to_json(&o);
    assert!(v["process"]["rlimits"].to_string().contains("RLIMIT_NPROC"));
    o.ulimits = vec![("bogus".into(), 1, 1)];
    assert!(matches!(build_spec(&o), Err(SpecError::UnknownUlimit(_))));

    let mut o = opts();
    o.devices.push(DeviceSpec {
        path_on_host: "/dev/null".into(),
        path_in_container: "/dev/mynull".into(),
        permissions: "rw".into(),
    });
    let v = to_json(&o);
    assert_eq!(v["linux"]["devices"][0]["path"], "/dev/mynull");
    assert_eq!(v["linux"]["devices"][0]["major"], 1);
    o.devices[0].path_on_host = "/etc/hostname-does-not-exist".into();
    assert!(matches!(build_spec(&o), Err(SpecError::Device { .. })));
}

#[test]
fn userns_adds_namespace_first_with_mappings() {
    let maps = UsernsMaps {
        uid: IdMapping {
            host_id: 100000,
            size: 65536,
        },
        gid: IdMapping {
            host_id: 200000,
            size: 1000,
        },
        path: None,
    };
    let mut o = opts();
    o.userns = Some(maps.clone());
    o.netns = NetnsMode::New("/run/netns/x".into());
    let v = to_json(&o);
    assert_eq!(v["linux"]["namespaces"][0], json!({"type": "user"}));
    assert_eq!(
        v["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}])
    );
    assert_eq!(
        v["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": 200000, "size": 1000}])
    );
    // A user namespace made beforehand (owning the network namespace) is joined by path.
    o.userns = Some(UsernsMaps {
        path: Some("/run/berth/userns/x".into()),
        ..maps
    });
    let v = to_json(&o);
    assert_eq!(
        v["linux"]["namespaces"][0],
        json!({"type": "user", "path": "/run/berth/userns/x"})
    );
    // Without remapping nothing changes.
    o.userns = None;
    let v = to_json(&o);
    assert!(v["linux"].get("uidMappings").is_none());
    assert!(!v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "user"));
}

#[test]
fn userns_on_host_network_binds_host_sys() {
    let sys = |v: &Value| {
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .cloned()
            .unwrap()
    };
    let mut o = opts();
    o.userns = Some(UsernsMaps {
        uid: IdMapping {
            host_id: 100000,
            size: 65536,
        },
        gid: IdMapping {
            host_id: 100000,
            size: 65536,
        },
        path: None,
    });
    o.netns = NetnsMode::Host;
    let m = sys(&to_json(&o));
    assert_eq!(m["type"], "bind");
    assert_eq!(m["source"], "/sys");
    for opt in ["rbind", "ro", "nosuid", "nodev", "noexec"] {
        assert!(m["options"].as_array().unwrap().contains(&json!(opt)));
    }
    // /sys comes before /sys/fs/cgroup, which is still mounted over it.
    let dests: Vec<String> = to_json(&o)["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap().to_string())
        .collect();
    let at = |d: &str| dests.iter().position(|x| x == d).unwrap();
    assert!(at("/sys") < at("/sys/fs/cgroup"));
    // With a namespace of its own, or without remapping, /sys is sysfs.
    o.netns = NetnsMode::None;
    assert_eq!(sys(&to_json(&o))["type"], "sysfs");
    o.netns = NetnsMode::Host;
    o.userns = None;
    assert_eq!(sys(&to_json(&o))["type"], "sysfs");
}
