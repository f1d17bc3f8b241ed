//! Builder semantics against the in-memory TestHost (RUN executes in a chroot with the
//! static busybox), so these tests need root.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_build::{BuildError, BuildEvent, BuildOptions, Builder};
use common::{build, env, tagged, write, TestHost};
use serde_json::json;

#[tokio::test]
async fn config_evolves_like_docker() {
    let e = env();
    write(
        &e.ctx,
        &[(
            "Dockerfile",
            r#"FROM busybox
MAINTAINER me
ENV A=1 B="two words"
ENV A ${A}-again
LABEL "com.example.v"="${B}" other=x
EXPOSE 80 53/udp 8000-8001
USER 1000:1000
WORKDIR /app
WORKDIR sub
VOLUME /data /logs
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
CMD echo hi
ENTRYPOINT ["/bin/sh"]
"#,
        )],
    );
    let (r, evs) = build(&e, tagged("cfg:1")).await;
    r.unwrap();
    assert!(
        evs.contains(&BuildEvent::Step("Step 1/16 : FROM busybox".into())),
        "{evs:?}"
    );
    let (img, root) = e.host.image_by_tag("cfg:1");
    let c = &img["config"];
    assert_eq!(img["author"], "me");
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1-again",
            "B=two words"
        ])
    );
    assert_eq!(
        c["Labels"],
        json!({"com.example.v": "two words", "other": "x"})
    );
    assert_eq!(
        c["ExposedPorts"],
        json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
    );
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/app/sub");
    assert!(
        root.unwrap().join("app/sub").is_dir(),
        "WORKDIR creates the directory"
    );
    assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(c["OnBuild"], json!(["RUN echo triggered"]));
    // CMD set in this stage survives ENTRYPOINT; shell form uses the SHELL in force.
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-ec", "echo hi"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/sh"]));
    let hist = img["history"].as_array().unwrap();
    assert_eq!(hist.len(), 1 + 15);
    assert_eq!(
        hist[2]["created_by"],
        "/bin/sh -c #(nop)  ENV A=1 B=two words"
    );
    assert_eq!(hist[2]["empty_layer"], true);
    assert_eq!(hist[7]["created_by"], "/bin/sh -c #(nop) WORKDIR /app");
    assert_eq!(
        hist[15]["created_by"],
        "/bin/sh -ec #(nop)  ENTRYPOINT [\"/bin/sh\"]"
    );
    assert_eq!(
        img["rootfs"]["diff_ids"].as_array().unwrap().len(),
        3,
        "base + one layer per WORKDIR that created a directory"
    );
}

#[tokio::test]
async fn entrypoint_resets_inherited_cmd_and_onbuild_runs() {
    let e = env();
    write(
        &e.ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD RUN echo trig > /trig\nENTRYPOINT echo x\n",
        )],
    );
    build(&e, tagged("parent:1")).await.0.unwrap();
    let (img, _) = e.host.image_by_tag("parent:1");
    assert_eq!(
        img["config"]["Cmd"],
        json!(null),
        "ENTRYPOINT without CMD in the stage clears the base's Cmd"
    );
    assert_eq!(
        img["config"]["Entrypoint"],
        json!(["/bin/sh", "-c", "echo x"])
    );
    write(&e.ctx, &[("Dockerfile", "FROM parent:1\nRUN cat /trig\n")]);
    let (r, evs) = build(&e, tagged("child:1")).await;
    r.unwrap();
    assert!(
        evs.iter()
            .any(|ev| matches!(ev, BuildEvent::Output(s) if s.contains("trig\n"))),
        "{evs:?}"
    );
    let (img, root) = e.host.image_by_tag("child:1");
    assert_eq!(
        img["config"]["OnBuild"],
        json!(null),
        "triggers are consumed"
    );
    assert_eq!(
        std::fs::read_to_string(root.unwrap().join("trig")).unwrap(),
        "trig\n"
    );
}

#[tokio::test]
async fn run_steps_and_cache() {
    let e = env();
    write(&e.ctx, &[("Dockerfile", "FROM busybox\nARG V=1\nRUN echo v=$V > /out && pwd >> /out\nCOPY f /f\nRUN cat /f\n"), ("f", "one")]);
    let (r1, _) = build(&e, tagged("c:1")).await;
    let id1 = r1.unwrap().image_id;
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 2);
    let (img, root) = e.host.image_by_tag("c:1");
    assert_eq!(
        std::fs::read_to_string(root.unwrap().join("out")).unwrap(),
        "v=1\n/\n"
    );
    assert_eq!(
        img["history"][2]["created_by"],
        "|1 V=1 /bin/sh -c echo v=$V > /out && pwd >> /out"
    );
    assert_eq!(img["history"][2].get("empty_layer"), None);

    // Same inputs: everything from the cache, same image id.
    let (r2, evs) = build(&e, tagged("c:2")).await;
    assert_eq!(r2.unwrap().image_id, id1);
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 2);
    assert_eq!(evs.iter().filter(|e| **e == BuildEvent::Cached).count(), 4);

    // The cache survives a restart of the host.
    let host2 = Arc::new(TestHost::new(&e.host.root));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let r = Builder::new(host2.clone())
        .build(&e.ctx, tagged("c:3"), tx)
        .await
        .unwrap();
    assert_eq!(host2.runs.load(Ordering::SeqCst), 0);
    assert_eq!(r.image_id, id1);

    // A build arg changes the key of the RUN (and what follows).
    let mut o = tagged("c:4");
    o.build_args = HashMap::from([("V".to_string(), "2".to_string())]);
    build(&e, o).await.0.unwrap();
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 4);

    // Changing a copied file's content re-runs from the COPY on; mtime alone does not.
    let f = e.ctx.join("f");
    let mtime = std::fs::File::open(&f).unwrap();
    mtime
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    build(&e, tagged("c:5")).await.0.unwrap();
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 4);
    write(&e.ctx, &[("f", "two")]);
    build(&e, tagged("c:6")).await.0.unwrap();
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 5);

    // --no-cache runs everything again.
    build(
        &e,
        BuildOptions {
            no_cache: true,
            ..tagged("c:7")
        },
    )
    .await
    .0
    .unwrap();
    assert_eq!(e.host.runs.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn run_failure_names_command_and_code() {
    let e = env();
    write(
        &e.ctx,
        &[("Dockerfile", "FROM busybox\nRUN echo out; exit 3\n")],
    );
    let (r, evs) = build(&e, tagged("f:1")).await;
    let err = r.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the command '/bin/sh -c echo out; exit 3' returned a non-zero code: 3"
    );
    assert!(evs
        .iter()
        .any(|ev| matches!(ev, BuildEvent::Output(s) if s.contains("out"))));
    assert_eq!(
        std::fs::read_dir(e.host.root.join("work")).unwrap().count(),
        0,
        "work roots are released"
    );
}

#[tokio::test]
async fn run_mounts_and_env() {
    let e = env();
    write(&e.ctx, &[
        ("Dockerfile", "FROM busybox\nENV E=e\nWORKDIR /w\nRUN --mount=type=cache,target=/cache,id=c1 --mount=type=bind,source=src,target=/src --network=none sh -c 'cat /src/x >> /cache/log; cat /cache/log; echo $E; pwd'\nUSER 1000\nRUN id -u\nUSER 0\nRUN --mount=type=bind,source=src,target=/src,rw sh -c 'echo new > /src/x && cat /src/x'\n"),
        ("src/x", "data\n"),
    ]);
    let (r, evs) = build(
        &e,
        BuildOptions {
            no_cache: true,
            ..tagged("m:1")
        },
    )
    .await;
    r.unwrap();
    let out: String = evs
        .iter()
        .filter_map(|ev| match ev {
            BuildEvent::Output(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert!(out.contains("data\ne\n/w\n"), "{out}");
    assert!(out.contains("1000\n"), "{out}");
    assert!(out.contains("Running in "), "{out}");
    assert_eq!(
        std::fs::read_to_string(e.ctx.join("src/x")).unwrap(),
        "data\n",
        "rw binds write to a private copy"
    );
    let specs = e.host.run_specs.lock().unwrap().clone();
    assert_eq!(specs[0].network, "none");
    assert_eq!(specs[1].network, "default");
    assert_eq!(specs[1].user, "1000");
    let spec = &specs[0];
    assert!(spec.env.contains(&"E=e".to_string()));
    // The cache mount persists between builds, and is not part of the layer.
    let (_, evs) = build(
        &e,
        BuildOptions {
            no_cache: true,
            ..tagged("m:2")
        },
    )
    .await;
    let out: String = evs
        .iter()
        .filter_map(|ev| match ev {
            BuildEvent::Output(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert!(out.contains("data\ndata\n"), "{out}");
    let (_, root) = e.host.image_by_tag("m:2");
    assert!(!root.unwrap().join("cache/log").exists());
}

#[tokio::test]
async fn multi_stage_and_targets() {
    let e = env();
    write(
        &e.ctx,
        &[(
            "Dockerfile",
            r#"ARG BASE=busybox
FROM ${BASE} AS build
RUN echo built > /artifact
FROM busybox AS unused
RUN exit 1
FROM scratch AS final
ARG SRC=build
COPY --from=${SRC} /artifact /artifact
COPY --from=0 /bin/busybox /bb
FROM build AS derived
RUN cat /artifact
"#,
        )],
    );
    let (r, evs) = build(
        &e,
        BuildOptions {
            target: Some("final".into()),
            ..tagged("ms:1")
        },
    )
    .await;
    r.unwrap();
    // ARG + build stage (2) + final stage (4); the unused and derived stages are skipped.
    assert!(
        evs.contains(&BuildEvent::Step(
            "Step 7/7 : COPY --from=0 /bin/busybox /bb".into()
        )),
        "{evs:?}"
    );
    let (img, root) = e.host.image_by_tag("ms:1");
    let root = root.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("artifact")).unwrap(),
        "built\n"
    );
    assert!(root.join("bb").is_file());
    assert!(!root.join("bin").exists(), "scratch has nothing else");
    assert_eq!(img["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        img["config"]["Env"],
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );

    // Default target is the last stage, which builds on `build`.
    let (r, evs) = build(&e, tagged("ms:2")).await;
    r.unwrap();
    assert!(evs
        .iter()
        .any(|ev| matches!(ev, BuildEvent::Output(s) if s.contains("built"))));
    let err = build(
        &e,
        BuildOptions {
            target: Some("nope".into()),
            ..tagged("ms:3")
        },
    )
    .await
    .0
    .unwrap_err();
    assert!(matches!(err, BuildError::UnknownTarget(_)));
}

#[tokio::test]
async fn build_args_labels_and_warnings() {
    let e = env();
    write(
        &e.ctx,
        &[("Dockerfile", "FROM busybox\nARG USED\nLABEL u=$USED\n")],
    );
    let mut o = tagged("ba:1");
    o.build_args = HashMap::from([("USED".into(), "yes".into()), ("EXTRA".into(), "no".into())]);
    o.labels = HashMap::from([("from.cli".into(), "1".into())]);
    let (r, evs) = build(&e, o).await;
    r.unwrap();
    assert!(
        evs.contains(&BuildEvent::Warning(
            "One or more build-args [EXTRA] were not consumed".into()
        )),
        "{evs:?}"
    );
    let (img, _) = e.host.image_by_tag("ba:1");
    assert_eq!(
        img["config"]["Labels"],
        json!({"u": "yes", "from.cli": "1"})
    );
}

#[tokio::test]
async fn parse_errors_and_missing_base() {
    let e = env();
    write(&e.ctx, &[("Dockerfile", "FROM busybox\nBOGUS x\n")]);
    let err = build(&e, tagged("x")).await.0.unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    write(&e.ctx, &[("Dockerfile", "FROM nosuchimage\n")]);
    let err = build(&e, tagged("x")).await.0.unwrap_err();
    assert!(err.to_string().contains("nosuchimage"), "{err}");
}

#[tokio::test]
async fn heredoc_run_and_exec_form() {
    let e = env();
    write(&e.ctx, &[("Dockerfile", "FROM busybox\nRUN <<EOF\necho one > /h\necho two >> /h\nEOF\nRUN [\"/bin/sh\", \"-c\", \"cat /h > /h2\"]\nRUN cat <<X > /h3\nhere\nX\n")]);
    let (r, _) = build(&e, tagged("hd:1")).await;
    r.unwrap();
    let (img, root) = e.host.image_by_tag("hd:1");
    let root = root.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("h2")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("h3")).unwrap(), "here\n");
    assert_eq!(img["history"][2]["created_by"], "/bin/sh -c cat /h > /h2");
}

#[tokio::test]
async fn quiet_sends_nothing_but_warnings() {
    let e = env();
    write(&e.ctx, &[("Dockerfile", "FROM busybox\nRUN echo loud\n")]);
    let mut o = tagged("q:1");
    o.quiet = true;
    o.build_args = HashMap::from([("NOPE".into(), "1".into())]);
    let (r, evs) = build(&e, o).await;
    r.unwrap();
    assert_eq!(
        evs,
        vec![BuildEvent::Warning(
            "One or more build-args [NOPE] were not consumed".into()
        )]
    );
}

#[tokio::test]
async fn from_tar_context_to_image() {
    let e = env();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", &b"FROM busybox\nCOPY . /ctx/\n"[..]),
        (".dockerignore", b"*.secret\n"),
        ("keep", b"k"),
        ("x.secret", b"s"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    let ctx = berth_build::BuildContext::from_tar(&b.into_inner().unwrap()[..], "", None).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = BuildOptions {
        dockerfile: ctx.dockerfile().to_string(),
        ..tagged("tar")
    };
    Builder::new(e.host.clone())
        .build(ctx.path(), opts, tx)
        .await
        .unwrap();
    let mut out = String::new();
    while let Ok(ev) = rx.try_recv() {
        if let BuildEvent::Output(s) = ev {
            out.push_str(&s);
        }
    }
    assert!(out.contains("Successfully tagged tar:latest\n"), "{out}");
    let (_, root) = e.host.image_by_tag("tar");
    let root = root.unwrap();
    assert!(root.join("ctx/keep").is_file());
    assert!(!root.join("ctx/x.secret").exists(), ".dockerignore applies");
}

#[tokio::test]
async fn shebang_heredoc_runs_as_a_script() {
    let e = env();
    write(
        &e.ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN <<EOF\n#!/bin/cat\nhello-cat\nEOF\n",
        )],
    );
    let (r, evs) = build(&e, tagged("sb:1")).await;
    r.unwrap();
    let out: String = evs
        .iter()
        .filter_map(|ev| match ev {
            BuildEvent::Output(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert!(out.contains("#!/bin/cat\nhello-cat\n"), "{out}");
    let (img, root) = e.host.image_by_tag("sb:1");
    assert_eq!(
        std::fs::read_dir(root.unwrap().join("tmp"))
            .unwrap()
            .count(),
        0,
        "the script file is gone"
    );
    assert_eq!(img["history"].as_array().unwrap().len(), 2);
}
