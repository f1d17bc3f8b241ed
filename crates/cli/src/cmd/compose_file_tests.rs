use super::*;

const FILE: &str = r#"
version: "3.7"
services:
  web:
    image: busybox
    command: httpd -f -p 80
    environment:
      A: 1
      B:
    ports: ["80", "8080:80", "127.0.0.1:9000:90/udp", {target: 81, published: 8181}]
    volumes: ["data:/data", "./site:/www:ro", "/anon"]
  client:
    image: busybox
    depends_on: [web]
    environment: ["X=$${literal}", "Y=${BERTH_TEST_UNSET:-dflt}"]
volumes:
  data:
"#;

fn project() -> Project {
    Project {
        name: "demo".into(),
        dir: PathBuf::from("/srv/demo"),
        file: parse(FILE, "test.yml").unwrap(),
    }
}

#[test]
fn interpolation() {
    let env = |k: &str| (k == "A").then(|| "1".to_owned());
    assert_eq!(
        interpolate("$$x ${A} $A ${B:-d} ${B-e} $", &env),
        "$x 1 1 d e $"
    );
}

#[test]
fn parses_services_ports_env_and_volumes() {
    let p = project();
    let web = &p.file.services["web"];
    assert_eq!(kv_list(&web.environment), vec!["A=1", "B"]);
    let client = &p.file.services["client"];
    assert_eq!(kv_list(&client.environment), vec!["X=${literal}", "Y=dflt"]);
    assert_eq!(
        argv(&web.command, "web").unwrap().unwrap(),
        vec!["httpd", "-f", "-p", "80"]
    );
    let ports = ports(web, "web").unwrap();
    assert_eq!(ports.len(), 4);
    assert_eq!(ports[1].host_port, "8080");
    assert_eq!(ports[2].container, "90/udp");
    assert_eq!(ports[2].host_ip, "127.0.0.1");
    assert_eq!(ports[3].host_port, "8181");
    let m = mounts(&p, web, "web").unwrap();
    assert_eq!(m[0]["Source"], "demo_data");
    assert_eq!(m[1]["Source"], "/srv/demo/./site");
    assert_eq!(m[1]["ReadOnly"], true);
    assert_eq!(m[2]["Type"], "volume");
}

#[test]
fn order_and_errors() {
    let p = project();
    assert_eq!(start_order(&p, &[]).unwrap(), vec!["web", "client"]);
    assert_eq!(
        start_order(&p, &["client".into()]).unwrap(),
        vec!["web", "client"]
    );
    assert!(matches!(
        start_order(&p, &["nope".into()]),
        Err(ComposeFileError::UnknownService(_))
    ));
    assert_eq!(parse_scales(&p, &["web=3".into()]).unwrap()["web"], 3);
    assert!(matches!(
        parse_scales(&p, &["web=-1".into()]),
        Err(ComposeFileError::BadScale(_))
    ));
    assert!(matches!(
        parse_scales(&p, &["db=1".into()]),
        Err(ComposeFileError::UnknownService(_))
    ));
    let bad = "services:\n  a: {image: x, depends_on: [b]}\n";
    assert!(parse(bad, "x").is_err());
    let cycle = "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n";
    let p2 = Project {
        name: "c".into(),
        dir: PathBuf::from("/"),
        file: parse(cycle, "x").unwrap(),
    };
    assert!(start_order(&p2, &[]).is_err());
}

#[test]
fn project_names() {
    assert_eq!(
        project_name_from_dir(Path::new("/x/Python-Web")),
        "pythonweb"
    );
}
