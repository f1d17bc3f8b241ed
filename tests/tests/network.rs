//! Issue 5: bridge networking, published ports, user networks with DNS, volumes.

mod common;

use common::{text, Daemon};

fn http_get(port: &str) -> String {
    for _ in 0..50 {
        let out = std::process::Command::new("curl")
            .args([
                "-fsS",
                "-m",
                "2",
                &format!("http://127.0.0.1:{port}/index.html"),
            ])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port}");
}

/// Interfaces enslaved to this daemon's default bridge (one veth per running container).
fn count_veths(bridge: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn default_bridge_gives_address_route_and_etc_files() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let out = d.docker_ok(&["run", "--rm", "--hostname", "boxy", "--add-host", "db:10.1.2.3", "--dns", "9.9.9.9", &img, "sh", "-c",
        "ip -4 -o addr show eth0 | awk '{print $4}'; ip route | grep default; cat /etc/hostname; grep db /etc/hosts; cat /etc/resolv.conf"]);
    let prefix = d.subnet.rsplit_once('.').unwrap().0;
    assert!(out.lines().next().unwrap().starts_with(prefix), "{out}");
    assert!(out.contains("default via"), "{out}");
    assert!(out.contains("boxy"), "{out}");
    assert!(out.contains("10.1.2.3\tdb"), "{out}");
    assert!(out.contains("nameserver 9.9.9.9"), "{out}");
    let none = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "ip -o link | wc -l",
    ]);
    assert_eq!(none, "1", "only lo in --network none");
    let host = d.docker_ok(&["run", "--rm", "--network", "host", &img, "hostname"]);
    assert_eq!(
        host,
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
}

#[test]
fn published_ports_reach_the_container_and_are_released() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let veths = count_veths(&d.bridge);
    let port = common::free_port().to_string();
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-p",
        "8080",
        &img,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    assert_eq!(http_get(&port), "hello-from-image");
    let mapped = d.docker_ok(&["port", "web", "80/tcp"]);
    assert_eq!(mapped, format!("127.0.0.1:{port}"));
    // A second container cannot take the same host port.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        &img,
        "sleep",
        "100",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains(&port), "{:?}", text(&out));
    // From another container through the host's address on the bridge.
    let gw = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        "bridge",
    ]);
    let _ = gw;
    d.docker_ok(&["rm", "-f", "web"]);
    let _ = d.docker(&["rm", "-f", "clash"]);
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-m", "1", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "port still answers after removal");
    // The kernel deletes a veth asynchronously once its namespace is gone.
    for _ in 0..50 {
        if count_veths(&d.bridge) == veths {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(count_veths(&d.bridge), veths, "a veth was left behind");
    let rules = std::process::Command::new("nft")
        .args(["list", "table", "ip", &d.table])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains(&format!("dport {port}")),
        "a NAT rule was left behind"
    );
}

#[test]
fn user_networks_resolve_names_and_aliases() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let net = format!("n{}", common::unique());
    d.docker_ok(&["network", "create", "--subnet", "10.251.7.0/24", &net]);
    let out = d.docker(&[
        "network",
        "create",
        "--subnet",
        "10.251.7.0/25",
        "overlapping",
    ]);
    assert!(!out.status.success(), "an overlapping subnet was accepted");
    let out = d.docker(&["network", "create", &net]);
    assert!(!out.status.success(), "a duplicate name was accepted");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "server",
        "--network",
        &net,
        "--network-alias",
        "api",
        &img,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    let by_name = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        &img,
        "wget",
        "-qO-",
        "http://server/index.html",
    ]);
    assert_eq!(by_name, "hello-from-image");
    let by_alias = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        &img,
        "wget",
        "-qO-",
        "http://api/index.html",
    ]);
    assert_eq!(by_alias, "hello-from-image");
    let ip = d.docker_ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        "server",
    ]);
    assert!(ip.starts_with("10.251.7."), "{ip}");
    // The default bridge does not resolve names.
    let out = d.docker(&["run", "--rm", &img, "nslookup", "server"]);
    assert!(!out.status.success() || !text(&out).0.contains(&ip));
    let out = d.docker(&["network", "rm", &net]);
    assert!(!out.status.success(), "a network in use was removed");
    d.docker_ok(&["rm", "-f", "server"]);
    d.docker_ok(&["network", "rm", &net]);
    let out = d.docker(&["network", "inspect", &net]);
    assert!(!out.status.success());
}

#[test]
fn volumes_persist_and_copy_up() {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    d.docker_ok(&["volume", "create", "data"]);
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        &img,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "data:/data", &img, "cat", "/data/f"]),
        "kept"
    );
    // Copy-up: a new volume over an image directory starts with the image's files.
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "www:/var/www",
            &img,
            "cat",
            "/var/www/index.html"
        ]),
        "hello-from-image"
    );
    // Bind mounts, read-only.
    let host = d.dir.path().join("bind");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("x"), "from-host").unwrap();
    let spec = format!("{}:/mnt:ro", host.display());
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", &spec, &img, "cat", "/mnt/x"]),
        "from-host"
    );
    let out = d.docker(&["run", "--rm", "-v", &spec, &img, "touch", "/mnt/y"]);
    assert!(!out.status.success(), "a read-only bind was writable");
    // --mount refuses a missing bind source.
    let out = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/does/not/exist,target=/x",
        &img,
        "true",
    ]);
    assert!(!out.status.success());
    // In-use volumes cannot be removed.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "data:/data",
        &img,
        "sleep",
        "100",
    ]);
    let out = d.docker(&["volume", "rm", "data"]);
    assert!(
        !out.status.success() && text(&out).1.contains("in use"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&["rm", "-f", "holder"]);
    d.docker_ok(&["volume", "rm", "data"]);
    let mounts = d.docker_ok(&["volume", "ls", "-q"]);
    assert!(!mounts.contains("data"));
}
