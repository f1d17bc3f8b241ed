//! `docker events` with `--since/--until` and `--filter`, for containers, images, networks
//! and volumes, in the schema the CLI's `--format '{{json .}}'` shows.
#[macro_use]
mod common;

use common::*;
use serde_json::Value;

both_runtimes!(
    container_events_carry_dockers_schema_and_filter,
    a_container_connects_to_its_networks_and_mounts_its_volumes,
);

/// The events between `since` and now matching `filters`, as JSON objects.
fn events(d: &Daemon, since: &str, filters: &[&str]) -> Vec<Value> {
    let until = format!("{:.3}", now() + 0.5);
    let mut args = vec![
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ];
    for f in filters {
        args.extend_from_slice(&["--filter", f]);
    }
    d.docker_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["Action"].as_str().unwrap().to_string())
        .collect()
}

fn container_events_carry_dockers_schema_and_filter(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let since = format!("{:.3}", now() - 0.5);
    d.docker(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "ev1",
        "--label",
        "team=blue",
        &img,
        "sh",
        "-c",
        "exit 3",
    ]);
    d.docker_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--name",
        "ev2",
        &img,
        "true",
    ]);
    let evs = events(&d, &since, &["container=ev1"]);
    let acts = actions(&evs);
    for a in ["create", "start", "die"] {
        assert!(acts.contains(&a.to_string()), "{acts:?}");
    }
    let die = evs.iter().find(|e| e["Action"] == "die").unwrap();
    assert_eq!(die["Type"], "container");
    assert_eq!(die["status"], "die");
    assert_eq!(die["scope"], "local");
    assert_eq!(die["from"], img.as_str());
    let id = die["Actor"]["ID"].as_str().unwrap();
    assert_eq!(die["id"], id);
    assert_eq!(id.len(), 64);
    let attrs = &die["Actor"]["Attributes"];
    assert_eq!(attrs["name"], "ev1");
    assert_eq!(attrs["image"], img.as_str());
    assert_eq!(attrs["exitCode"], "3");
    assert_eq!(attrs["team"], "blue");
    let t = die["time"].as_i64().unwrap();
    let tn = die["timeNano"].as_i64().unwrap();
    assert_eq!(tn / 1_000_000_000, t);
    // Filters combine: OR within a key, AND across keys.
    let evs = events(&d, &since, &["type=container", "event=die"]);
    assert_eq!(actions(&evs), ["die", "die"]);
    let evs = events(&d, &since, &["label=team=blue", "event=die"]);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["Actor"]["Attributes"]["name"], "ev1");
    let evs = events(&d, &since, &["container=ev2", "event=destroy"]);
    assert_eq!(evs.len(), 1);
    let evs = events(&d, &since, &[&format!("image={img}"), "event=start"]);
    assert_eq!(evs.len(), 2);
    // --until before anything happened: nothing.
    let out = d.docker_ok(&[
        "events",
        "--since",
        "1",
        "--until",
        &since,
        "--format",
        "{{json .}}",
    ]);
    assert_eq!(out, "");
}

#[test]
fn image_network_and_volume_events() {
    let d = Daemon::start();
    let since = format!("{:.3}", now() - 0.5);
    let img = d.pull("busybox:1");
    d.docker_ok(&["tag", &img, "evtest:1"]);
    d.docker_ok(&["rmi", "evtest:1"]);
    let evs = events(&d, &since, &["type=image"]);
    let acts = actions(&evs);
    assert_eq!(acts, ["pull", "tag", "untag"], "{evs:?}");
    assert!(evs
        .iter()
        .all(|e| e["Type"] == "image" && e["scope"] == "local"));
    let tag = &evs[1];
    assert_eq!(tag["Actor"]["Attributes"]["name"], "evtest:1");

    let net = format!("evnet{}", unique());
    d.docker_ok(&["network", "create", &net]);
    d.docker_ok(&["run", "--rm", "--network", &net, &img, "true"]);
    d.docker_ok(&["network", "rm", &net]);
    let evs = events(&d, &since, &["type=network", &format!("network={net}")]);
    // connect/disconnect come between; see a_container_connects_to_its_networks_...
    let acts = actions(&evs);
    assert_eq!(acts.first().map(String::as_str), Some("create"), "{evs:?}");
    assert_eq!(acts.last().map(String::as_str), Some("destroy"), "{evs:?}");
    assert!(evs
        .iter()
        .all(|e| e["Actor"]["Attributes"]["name"] == net.as_str()));

    let vol = format!("evvol{}", unique());
    d.docker_ok(&["volume", "create", &vol]);
    d.docker_ok(&["volume", "rm", &vol]);
    let evs = events(&d, &since, &["type=volume", &format!("volume={vol}")]);
    assert_eq!(actions(&evs), ["create", "destroy"], "{evs:?}");
    assert_eq!(evs[0]["Actor"]["ID"], vol.as_str());
    assert_eq!(evs[0]["Actor"]["Attributes"]["driver"], "local");
}

fn a_container_connects_to_its_networks_and_mounts_its_volumes(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let since = format!("{:.3}", now() - 0.5);
    let net = format!("jnet{}", unique());
    let vol = format!("jvol{}", unique());
    let net_id = d.docker_ok(&["network", "create", &net]);
    d.docker_ok(&["volume", "create", &vol]);
    let mount = format!("{vol}:/data");
    d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        "joiner",
        "--network",
        &net,
        "-v",
        &mount,
        "-v",
        "/anon",
        &img,
        "true",
    ]);
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "joiner"]);
    let anon = d.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/anon\"}}{{.Name}}{{end}}{{end}}",
        "joiner",
    ]);
    // Network events: Actor.ID the network, attributes container, name, type (the driver).
    let evs = events(&d, &since, &["type=network", &format!("network={net}")]);
    assert_eq!(
        actions(&evs),
        ["create", "connect", "disconnect"],
        "{evs:?}"
    );
    for e in &evs[1..] {
        assert_eq!(e["Actor"]["ID"], net_id.as_str());
        let a = &e["Actor"]["Attributes"];
        assert_eq!(a["container"], id.as_str());
        assert_eq!(a["name"], net.as_str());
        assert_eq!(a["type"], "bridge");
    }
    // Volume events: mount (with destination, propagation, read/write) and unmount.
    let evs = events(&d, &since, &["type=volume", &format!("volume={vol}")]);
    assert_eq!(actions(&evs), ["create", "mount", "unmount"], "{evs:?}");
    let m = &evs[1]["Actor"]["Attributes"];
    assert_eq!(m["container"], id.as_str());
    assert_eq!(m["destination"], "/data");
    assert_eq!(m["driver"], "local");
    assert_eq!(m["read/write"], "true");
    assert_eq!(m["propagation"], "");
    let u = &evs[2]["Actor"]["Attributes"];
    assert_eq!(u["container"], id.as_str());
    assert_eq!(u["driver"], "local");
    let evs = events(&d, &since, &["type=volume", &format!("volume={anon}")]);
    assert_eq!(actions(&evs), ["create", "mount", "unmount"], "{evs:?}");
    // The order around the container's own events is Docker's: connect and mount before
    // start, disconnect and unmount after die.
    let evs = events(&d, &since, &[]);
    let seq: Vec<String> = evs
        .iter()
        .filter(|e| {
            e["Actor"]["ID"] == id.as_str() || e["Actor"]["Attributes"]["container"] == id.as_str()
        })
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect();
    let pos = |s: &str| {
        seq.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {seq:?}"))
    };
    assert!(pos("network connect") < pos("container start"), "{seq:?}");
    assert!(pos("volume mount") < pos("container start"), "{seq:?}");
    assert!(pos("container die") < pos("network disconnect"), "{seq:?}");
    assert!(pos("container die") < pos("volume unmount"), "{seq:?}");
    // The built-in networks: `none` has type null, `host` type host.
    for (mode, kind) in [("none", "null"), ("host", "host")] {
        let since = format!("{:.3}", now() - 0.5);
        d.docker_ok(&[
            "run",
            "--rm",
            "--runtime",
            rt,
            "--network",
            mode,
            &img,
            "true",
        ]);
        let evs = events(&d, &since, &["type=network", &format!("network={mode}")]);
        assert_eq!(actions(&evs), ["connect", "disconnect"], "{evs:?}");
        assert_eq!(evs[0]["Actor"]["Attributes"]["type"], kind);
    }
    d.docker_ok(&["rm", "joiner"]);
    d.docker_ok(&["network", "rm", &net]);
}
