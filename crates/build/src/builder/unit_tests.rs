use super::dispatch::{clean_abs, port_keys};
use super::display_tag;
use super::image::ImageConfig;

#[test]
fn ports() {
    assert_eq!(port_keys("80", 1).unwrap(), vec!["80/tcp"]);
    assert_eq!(port_keys("53/UDP", 1).unwrap(), vec!["53/udp"]);
    assert_eq!(
        port_keys("1-3/sctp", 1).unwrap(),
        vec!["1/sctp", "2/sctp", "3/sctp"]
    );
    for bad in ["x", "80/icmp", "3-1", "70000", ""] {
        assert!(
            port_keys(bad, 7)
                .unwrap_err()
                .to_string()
                .contains("line 7"),
            "{bad}"
        );
    }
}

#[test]
fn paths_and_tags() {
    assert_eq!(clean_abs("/"), "/");
    assert_eq!(clean_abs("/a/./b/../.hidden"), "/a/.hidden");
    assert_eq!(clean_abs("/../x"), "/x");
    assert_eq!(display_tag("app"), "app:latest");
    assert_eq!(
        display_tag("localhost:5000/app"),
        "localhost:5000/app:latest"
    );
    assert_eq!(display_tag("app:1"), "app:1");
    assert_eq!(display_tag("app@sha256:ab"), "app@sha256:ab");
}

#[test]
fn env_helpers_and_scratch() {
    let mut img = ImageConfig::scratch(Some("linux/arm64/v8"));
    assert_eq!(
        (
            img.os.as_str(),
            img.architecture.as_str(),
            img.variant.as_deref()
        ),
        ("linux", "arm64", Some("v8"))
    );
    img.env_set("A", "1");
    img.env_set("A", "2");
    img.env_set("B", "");
    assert_eq!(img.env_get("A").as_deref(), Some("2"));
    assert_eq!(img.env_get("B").as_deref(), Some(""));
    assert_eq!(img.env_get("C"), None);
    assert_eq!(img.config.env.as_ref().unwrap().len(), 3);
    let v = serde_json::to_value(&img).unwrap();
    assert_eq!(
        v["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": []})
    );
    // Unknown fields survive a round trip.
    let mut raw = v.clone();
    raw["config"]["Foo"] = serde_json::json!(1);
    raw["extra"] = serde_json::json!("x");
    let back: ImageConfig = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), raw);
}
