use super::*;

fn d(n: u8) -> String {
    Digest::sha256_of(&[n]).to_string()
}

#[test]
fn parses_docker_manifest_and_keeps_unknown_fields() {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_V2}",
        "config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":10}},
        "layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{}","size":20}}],
        "x-extra":{{"a":1}}}}"#,
        d(1),
        d(2)
    );
    let (m, mt) = parse_manifest(body.as_bytes(), None).unwrap();
    assert_eq!(mt, DOCKER_MANIFEST_V2);
    let Manifest::Image(m) = m else {
        panic!("not an image manifest")
    };
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.layers[0].size, 20);
    assert!(m.extra.contains_key("x-extra"));
    let again: serde_json::Value = serde_json::to_value(&m).unwrap();
    assert_eq!(
        again,
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    );
    // the header wins over the field; a generic header is ignored
    let (_, mt) = parse_manifest(body.as_bytes(), Some("application/json; charset=utf-8")).unwrap();
    assert_eq!(mt, DOCKER_MANIFEST_V2);
}

#[test]
fn oci_manifest_without_media_type_field() {
    let body = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},"layers":[]}}"#,
        d(1)
    );
    let (m, mt) = parse_manifest(body.as_bytes(), Some(OCI_MANIFEST)).unwrap();
    assert_eq!(mt, OCI_MANIFEST);
    assert!(matches!(m, Manifest::Image(_)));
    let (_, mt) = parse_manifest(body.as_bytes(), None).unwrap();
    assert_eq!(mt, OCI_MANIFEST);
}

fn index() -> ImageIndex {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}
        ]}}"#,
        d(1),
        d(2),
        d(3),
        d(4),
        d(5)
    );
    match parse_manifest(body.as_bytes(), None).unwrap() {
        (Manifest::Index(i), mt) => {
            assert_eq!(mt, OCI_INDEX);
            i
        }
        _ => panic!("not an index"),
    }
}

#[test]
fn chooses_platform() {
    let i = index();
    let pick = |os, arch, v| choose_platform(&i, os, arch, v).map(|x| x.digest.to_string());
    assert_eq!(pick("linux", "amd64", None), Some(d(5)));
    assert_eq!(pick("linux", "arm", Some("v7")), Some(d(2)));
    assert_eq!(pick("linux", "arm64", Some("v8")), Some(d(3)));
    assert_eq!(pick("linux", "s390x", None), None);
    assert_eq!(pick("windows", "amd64", None), None);
    let h = host_platform();
    assert_eq!(h.os, "linux");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(h.architecture, "amd64");
        assert_eq!(
            pick(&h.os, &h.architecture, h.variant.as_deref()),
            Some(d(5))
        );
    }
}

#[test]
fn rejects_bad_manifests() {
    let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
    assert!(matches!(
        parse_manifest(&big, None),
        Err(ManifestError::TooLarge(_))
    ));
    assert!(matches!(
        parse_manifest(b"not json", None),
        Err(ManifestError::Json { .. })
    ));
    assert!(matches!(
        parse_manifest(b"{}", Some("application/x-foo")),
        Err(ManifestError::UnsupportedMediaType(_))
    ));
    assert!(matches!(
        parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, None),
        Err(ManifestError::SchemaV1)
    ));
    assert!(matches!(
        parse_manifest(b"{}", Some(OCI_MANIFEST)),
        Err(ManifestError::Json { .. })
    ));
    let bad_digest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:zz","size":1}}}}"#
    );
    assert!(parse_manifest(bad_digest.as_bytes(), Some(OCI_MANIFEST)).is_err());
}
