//! Issue 6: `docker build` (the classic builder, `POST /build`) and `berth build` against
//! berthd: every instruction, multi-stage builds, the build flags, the cache, bad input.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{shared_registry, text, Daemon};

/// The shared registry's busybox image (pulled by the build itself when missing).
fn base() -> String {
    format!("{}/busybox:1", shared_registry().addr())
}

/// Writes `files` (relative path, content) into a fresh temp dir.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
}

/// `docker build` with the classic builder against `d`.
fn docker_build(d: &Daemon, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(d.host())
        .arg("build")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `docker build`, asserting success; returns stdout + stderr.
fn build_ok(d: &Daemon, args: &[&str]) -> String {
    let out = docker_build(d, args);
    let (o, e) = text(&out);
    assert!(
        out.status.success(),
        "docker build {args:?} failed ({:?}):\nstdout: {o}\nstderr: {e}\nlog: {}",
        out.status.code(),
        d.log()
    );
    format!("{o}{e}")
}

/// `docker build` expected to fail; returns stdout + stderr.
fn build_err(d: &Daemon, args: &[&str]) -> String {
    let out = docker_build(d, args);
    let (o, e) = text(&out);
    assert!(
        !out.status.success(),
        "docker build {args:?} succeeded:\n{o}"
    );
    format!("{o}{e}")
}

fn inspect(d: &Daemon, format: &str, image: &str) -> String {
    d.docker_ok(&["image", "inspect", "-f", format, image])
}

fn run(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm", "--network", "none"];
    a.extend_from_slice(args);
    d.docker_ok(&a)
}

/// Mounts under the daemon's directories and build work snapshots still present.
fn leftovers(d: &Daemon) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let data = d.data_root().display().to_string();
    let mut left: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&data))
        .map(String::from)
        .collect();
    for sub in ["build", "snapshots"] {
        let dir = d.data_root().join(sub);
        for entry in walk_names(&dir, 3) {
            if entry.contains("build-") {
                left.push(entry);
            }
        }
    }
    left
}

fn walk_names(dir: &Path, depth: u32) -> Vec<String> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk_names(&p, depth - 1));
            }
        }
    }
    out
}

#[test]
fn every_metadata_instruction_reaches_the_image_config_and_it_runs() {
    let d = Daemon::start();
    let df = format!(
        r#"# a comment
ARG BASE={base}
FROM ${{BASE}} AS first
ARG GREETING=hello
ARG UNSET
ENV APP_HOME=/srv/app \
    MODE=${{GREETING:-x}}-${{UNSET:-dflt}}-${{GREETING:+set}}
LABEL org.test.one="1" org.test.two=${{GREETING}}
EXPOSE 8080/tcp 53/udp
WORKDIR ${{APP_HOME}}
WORKDIR sub
RUN echo "shell:$GREETING" > /shell.txt
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "$MODE" > /mode.txt
USER web
RUN id -u > /tmp/uid
USER root
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /shell.txt /exec.txt /mode.txt /tmp/uid; pwd"]
"#,
        base = base()
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let tag = "every:1";
    let out = build_ok(
        &d,
        &[
            "-t",
            tag,
            "--build-arg",
            "GREETING=hi",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("Successfully built"), "{out}");
    assert!(out.contains("Successfully tagged every:1"), "{out}");
    assert_eq!(
        inspect(&d, "{{json .Config.Env}}", tag),
        r#"["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","APP_HOME=/srv/app","MODE=hi-dflt-set"]"#
    );
    assert_eq!(
        inspect(
            &d,
            "{{index .Config.Labels \"org.test.one\"}} {{index .Config.Labels \"org.test.two\"}}",
            tag
        ),
        "1 hi"
    );
    assert_eq!(
        inspect(&d, "{{json .Config.ExposedPorts}}", tag),
        r#"{"53/udp":{},"8080/tcp":{}}"#
    );
    assert_eq!(inspect(&d, "{{.Config.WorkingDir}}", tag), "/srv/app/sub");
    assert_eq!(inspect(&d, "{{.Config.User}}", tag), "root");
    assert_eq!(
        inspect(&d, "{{json .Config.Volumes}}", tag),
        r#"{"/cache":{},"/data":{}}"#
    );
    assert_eq!(inspect(&d, "{{.Config.StopSignal}}", tag), "SIGUSR1");
    assert_eq!(
        inspect(&d, "{{json .Config.Healthcheck}}", tag),
        r#"{"Test":["CMD","true"],"Interval":5000000000,"Timeout":2000000000,"Retries":4}"#
    );
    assert_eq!(
        inspect(&d, "{{json .Config.OnBuild}}", tag),
        r#"["RUN echo child"]"#
    );
    assert_eq!(
        inspect(&d, "{{json .Config.Entrypoint}}", tag),
        r#"["/bin/sh","-c"]"#
    );
    assert_eq!(
        inspect(&d, "{{json .Config.Shell}}", tag),
        r#"["/bin/sh","-e","-c"]"#
    );
    assert_eq!(
        run(&d, &[tag]),
        "shell:hi\nexec-form\nhi-dflt-set\n1000\n/srv/app/sub"
    );
    // ONBUILD triggers run in a child image.
    let child = context(&[("Dockerfile", "FROM every:1\nRUN test -d /srv/app\n")]);
    let out = build_ok(&d, &["-t", "child:1", child.path().to_str().unwrap()]);
    assert!(out.contains("child"), "onbuild trigger output: {out}");
}

#[test]
fn copy_and_add_variants() {
    let d = Daemon::start();
    let df = format!(
        r#"# escape=`
FROM {base} AS files
RUN mkdir -p /out && echo from-stage > /out/staged.txt

FROM {base}
COPY *.txt /txt/
COPY ["dir/", "/dir/"]
COPY --chown=web:web owned.conf /owned.conf
COPY --chown=1234:99 --chmod=0750 script.sh /bin/script.sh
COPY --from=files /out/staged.txt /staged.txt
COPY --from={base} /var/www/index.html /from-image.html
ADD bundle.tar /unpacked/
ADD plain.bin /plain.bin
COPY <<EOF /heredoc.txt
line one
line two
EOF
RUN <<EOT
echo heredoc-run > /heredoc-run.txt
EOT
RUN echo escaped `
    continued > /escaped.txt
"#,
        base = base()
    );
    let ctx = context(&[
        ("Dockerfile", &df),
        ("a.txt", "A\n"),
        ("b.txt", "B\n"),
        ("c.md", "not copied\n"),
        ("dir/inner/deep.txt", "deep\n"),
        ("owned.conf", "owned\n"),
        ("script.sh", "#!/bin/sh\necho script\n"),
        ("plain.bin", "binary\n"),
    ]);
    // A local tar that ADD unpacks.
    let tar_src = context(&[("x/y.txt", "in-tar\n")]);
    let st = Command::new("tar")
        .arg("-cf")
        .arg(ctx.path().join("bundle.tar"))
        .arg("-C")
        .arg(tar_src.path())
        .arg("x")
        .status()
        .unwrap();
    assert!(st.success());
    build_ok(&d, &["-t", "copies:1", ctx.path().to_str().unwrap()]);
    let out = run(
        &d,
        &[
            "copies:1",
            "sh",
            "-c",
            "ls /txt; cat /dir/inner/deep.txt; stat -c '%U:%G %u:%g %a' /owned.conf /bin/script.sh; \
             /bin/script.sh; cat /staged.txt /from-image.html /unpacked/x/y.txt /plain.bin /heredoc.txt \
             /heredoc-run.txt /escaped.txt",
        ],
    );
    assert_eq!(
        out,
        "a.txt\nb.txt\ndeep\nweb:web 1000:1000 644\nUNKNOWN:UNKNOWN 1234:99 750\nscript\n\
         from-stage\nhello-from-image\nin-tar\nbinary\nline one\nline two\nheredoc-run\nescaped continued"
    );
}

#[test]
fn multi_stage_target_skips_unneeded_stages() {
    let d = Daemon::start();
    let df = format!(
        r#"FROM {base} AS unused
RUN echo UNUSED-STAGE-RAN && exit 3

FROM {base} AS deps
RUN echo deps > /deps.txt

FROM deps AS app
COPY --from=deps /deps.txt /app-deps.txt
CMD ["cat", "/app-deps.txt"]

FROM {base} AS after
RUN echo AFTER-STAGE-RAN && exit 4
"#,
        base = base()
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let out = build_ok(
        &d,
        &[
            "--target",
            "app",
            "-t",
            "staged:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(!out.contains("STAGE-RAN"), "{out}");
    assert!(
        out.contains("Step 1/5"),
        "only the needed steps are counted: {out}"
    );
    assert_eq!(run(&d, &["staged:1"]), "deps");
    let err = build_err(&d, &["--target", "nope", ctx.path().to_str().unwrap()]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn build_flags_file_tags_labels_iidfile_quiet_no_cache() {
    let d = Daemon::start();
    let ctx = context(&[("data.txt", "data\n")]);
    let outside = context(&[(
        "Other.dockerfile",
        &format!("FROM {}\nCOPY data.txt /\nRUN echo ran-step\n", base()),
    )]);
    let df = outside.path().join("Other.dockerfile");
    let iid = outside.path().join("iid");
    let out = build_ok(
        &d,
        &[
            "-f",
            df.to_str().unwrap(),
            "-t",
            "multi:a",
            "-t",
            "multi:b",
            "--label",
            "from.flag=yes",
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(out.contains("ran-step"), "{out}");
    let id = std::fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(inspect(&d, "{{.Id}}", "multi:a"), id);
    assert_eq!(inspect(&d, "{{.Id}}", "multi:b"), id);
    assert_eq!(
        inspect(&d, "{{index .Config.Labels \"from.flag\"}}", "multi:a"),
        "yes"
    );
    assert_eq!(run(&d, &["multi:a", "cat", "/data.txt"]), "data");
    // -q prints only the id.
    let q = docker_build(
        &d,
        &[
            "-q",
            "-f",
            df.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    let (qo, _) = text(&q);
    assert!(q.status.success());
    assert!(qo.trim().starts_with("sha256:"), "{qo}");
    assert!(!qo.contains("Step"), "{qo}");
    // --no-cache runs the step again.
    let again = build_ok(
        &d,
        &[
            "--no-cache",
            "-f",
            df.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(!again.contains("Using cache"), "{again}");
    assert!(again.contains("ran-step"), "{again}");
}

#[test]
fn dockerignore_with_exceptions_and_double_star() {
    let d = Daemon::start();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}\nCOPY . /ctx/\nRUN find /ctx -type f | sort\n",
                base()
            ),
        ),
        (".dockerignore", "**/*.log\nsecret/\n*.tmp\n!keep.tmp\n"),
        ("app.txt", "app\n"),
        ("a/b/c.log", "log\n"),
        ("top.log", "log\n"),
        ("secret/key", "key\n"),
        ("drop.tmp", "tmp\n"),
        ("keep.tmp", "keep\n"),
    ]);
    build_ok(&d, &["-t", "ignored:1", ctx.path().to_str().unwrap()]);
    let files = run(
        &d,
        &["ignored:1", "sh", "-c", "cd /ctx && find . -type f | sort"],
    );
    assert_eq!(
        files,
        "./.dockerignore\n./Dockerfile\n./app.txt\n./keep.tmp"
    );
}

#[test]
fn run_mounts_cache_persists_and_bind_reads_the_context() {
    let d = Daemon::start();
    let df = format!(
        "FROM {}\nARG N\nRUN --mount=type=cache,target=/cache echo $N >> /cache/runs && cat /cache/runs > /seen\n\
         RUN --mount=type=bind,source=conf,target=/mnt/conf cat /mnt/conf/app.conf > /conf-copy\n",
        base()
    );
    let ctx = context(&[("Dockerfile", &df), ("conf/app.conf", "bound\n")]);
    build_ok(
        &d,
        &[
            "--build-arg",
            "N=1",
            "-t",
            "m:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    build_ok(
        &d,
        &[
            "--build-arg",
            "N=2",
            "-t",
            "m:2",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run(&d, &["m:2", "cat", "/seen"]), "1\n2");
    assert_eq!(run(&d, &["m:2", "cat", "/conf-copy"]), "bound");
    // Neither mount leaves anything in the image.
    assert_eq!(
        run(
            &d,
            &[
                "m:2",
                "sh",
                "-c",
                "ls -A /cache /mnt/conf 2>/dev/null | wc -l"
            ]
        ),
        "0"
    );
}

#[test]
fn cache_reuse_invalidation_restart_prune_and_df() {
    let mut d = Daemon::start();
    let df = format!(
        "FROM {}\nCOPY one.txt /one.txt\nRUN cat /one.txt > /copy1\nCOPY two.txt /two.txt\nRUN cat /two.txt > /copy2\nCMD cat /copy1 /copy2\n",
        base()
    );
    let ctx = context(&[("Dockerfile", &df), ("one.txt", "1\n"), ("two.txt", "2\n")]);
    let p = ctx.path().to_str().unwrap().to_string();
    let first = build_ok(&d, &["-t", "c:1", &p]);
    assert!(!first.contains("Using cache"), "{first}");
    let id1 = inspect(&d, "{{.Id}}", "c:1");
    let second = build_ok(&d, &["-t", "c:2", &p]);
    assert_eq!(second.matches("Using cache").count(), 5, "{second}");
    assert_eq!(inspect(&d, "{{.Id}}", "c:2"), id1);
    // Changing the second copied file keeps steps 2-3 cached and reruns 4-6.
    std::fs::write(ctx.path().join("two.txt"), "22\n").unwrap();
    let third = build_ok(&d, &["-t", "c:3", &p]);
    assert_eq!(third.matches("Using cache").count(), 2, "{third}");
    let after_step3 = third.split("Step 4/6").nth(1).unwrap();
    assert!(!after_step3.contains("Using cache"), "{third}");
    assert_eq!(run(&d, &["c:3"]), "1\n22");
    // The cache survives a restart.
    d.restart();
    let fourth = build_ok(&d, &["-t", "c:4", &p]);
    assert_eq!(fourth.matches("Using cache").count(), 5, "{fourth}");
    // system df accounts for it; builder prune empties it.
    let df_out = d.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    let line = df_out
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .unwrap_or_else(|| panic!("{df_out}"));
    assert_ne!(line, "Build Cache 0", "{df_out}");
    let pruned = d.docker_ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let df_out = d.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df_out.contains("Build Cache 0"), "{df_out}");
    let fifth = build_ok(&d, &["-t", "c:5", &p]);
    assert!(!fifth.contains("Using cache"), "{fifth}");
    assert_eq!(run(&d, &["c:5"]), "1\n22");
}

/// A failing build: its Dockerfile, extra context files, and what the error must say.
type BadCase<'a> = (String, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[test]
fn bad_input_fails_clearly_and_leaves_nothing_behind() {
    let d = Daemon::start();
    let b = base();
    let cases: Vec<BadCase> = vec![
        (
            format!("FROM {b}\nRUN true\nNOTANINSTRUCTION foo\n"),
            vec![],
            vec!["line 3"],
        ),
        (format!("FROM {b}\nCOPY ../x /x\n"), vec![], vec!["../x"]),
        (format!("FROM {b}\nCOPY link /x\n"), vec![], vec!["link"]),
        (
            format!("FROM {b}\nRUN echo visible-output; exit 7\n"),
            vec![],
            vec!["visible-output", "returned a non-zero code: 7"],
        ),
        (
            format!("FROM {b}\nCOPY --from=nostage /x /x\n"),
            vec![],
            vec!["nostage"],
        ),
        (
            format!("FROM {}/no-such-image:1\n", shared_registry().addr()),
            vec![],
            vec!["no-such-image"],
        ),
    ];
    for (df, files, expect) in cases {
        let ctx = context(&[("Dockerfile", &df)]);
        write_files(ctx.path(), &files);
        std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("link")).unwrap();
        let err = build_err(&d, &[ctx.path().to_str().unwrap()]);
        for e in expect {
            assert!(err.contains(e), "expected {e:?} for\n{df}\ngot: {err}");
        }
    }
    let left = leftovers(&d);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "");
}

#[test]
fn run_steps_add_no_engine_files_to_the_layer() {
    let d = Daemon::start();
    let base_ref = d.pull("busybox:1");
    let df = format!("FROM {base_ref}\nRUN true\nRUN echo x > /made\n");
    let ctx = context(&[("Dockerfile", &df)]);
    build_ok(&d, &["-t", "clean:1", ctx.path().to_str().unwrap()]);
    let base_layers = inspect(&d, "{{len .RootFS.Layers}}", &base_ref);
    let layers = inspect(&d, "{{len .RootFS.Layers}}", "clean:1");
    // RUN true changes nothing: only the second RUN adds a layer.
    assert_eq!(
        layers.parse::<usize>().unwrap(),
        base_layers.parse::<usize>().unwrap() + 1
    );
    // The top layer holds what the step made and nothing the engine made for the run
    // (no /etc/resolv.conf, /etc/hosts, /etc/hostname, /proc, /dev or /sys stubs).
    let save = tempfile::tempdir().unwrap();
    let tar = save.path().join("img.tar");
    d.docker_ok(&["save", "-o", tar.to_str().unwrap(), "clean:1"]);
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(save.path())
        .status()
        .unwrap();
    assert!(st.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(save.path().join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    let list = Command::new("tar")
        .arg("-tf")
        .arg(save.path().join(top.as_str().unwrap()))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout).to_string();
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, vec!["made"], "top layer");
}

#[test]
fn berth_build_builds_and_tags() {
    let d = Daemon::start();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {}\nARG V\nCOPY f.txt /f.txt\nRUN echo $V >> /f.txt\nCMD [\"cat\", \"/f.txt\"]\n", base()),
        ),
        ("f.txt", "file\n"),
    ]);
    let out = d.berth_ok(&[
        "build",
        "-t",
        "bb:1",
        "--build-arg",
        "V=arg",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(out.contains("Successfully tagged bb:1"), "{out}");
    assert_eq!(run(&d, &["bb:1"]), "file\narg");
    let again = d.berth_ok(&[
        "build",
        "-q",
        "-t",
        "bb:2",
        "--build-arg",
        "V=arg",
        ctx.path().to_str().unwrap(),
    ]);
    assert_eq!(again, inspect(&d, "{{.Id}}", "bb:1"));
}

/// A dockerd of the test's own (no bridge, no iptables); stopped on drop.
struct Dockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    exec_root: std::path::PathBuf,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        if Command::new("dockerd").arg("--version").output().is_err() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let exec_root = std::path::PathBuf::from(format!("/run/bt-dockerd-{}", common::unique()));
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Dockerd {
            child,
            dir,
            exec_root,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !d.docker(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not come up: {}",
                std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Some(d)
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        common::ok(self.docker(args), args)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containerd and unmounts what it mounted.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

#[test]
fn built_image_runs_identically_under_dockerd() {
    let d = Daemon::start();
    let reg = shared_registry();
    let df = format!(
        r#"FROM {base} AS gen
RUN mkdir /out && echo generated > /out/gen.txt && chmod 640 /out/gen.txt

FROM {base}
ENV GREETING=hi TARGET=world
WORKDIR /app
COPY --chown=web:web hello.txt ./
COPY --from=gen /out/gen.txt /app/
RUN echo "$GREETING $TARGET" > /app/run.txt && ln -s run.txt /app/link && rm /var/www/index.html
USER web
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["id -u; id -g; id -un; pwd; echo $GREETING $TARGET; cat /app/*.txt; cat /app/link; stat -c '%n %a %u %g %s' /app/* /var/www; ls /var/www | wc -l"]
"#,
        base = base()
    );
    let ctx = context(&[("Dockerfile", &df), ("hello.txt", "hello\n")]);
    let name = format!("{}/built-{}:1", reg.addr(), common::unique());
    build_ok(&d, &["-t", &name, ctx.path().to_str().unwrap()]);
    let here = run(&d, &[&name]);
    assert!(here.starts_with("1000\n1000\nweb\n/app\n"), "{here}");
    // Push with docker push when berthd has it, else through a saved archive and skopeo.
    if !d.docker(&["push", &name]).status.success() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = tmp.path().join("img.tar");
        d.docker_ok(&["save", "-o", tar.to_str().unwrap(), &name]);
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", tar.display()))
            .arg(format!("docker://{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {:?}", text(&out));
    }
    let Some(dockerd) = Dockerd::start() else {
        eprintln!("dockerd is not installed: skipping the dockerd half");
        return;
    };
    dockerd.docker_ok(&["pull", "-q", &name]);
    let there = dockerd.docker_ok(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(here, there);
    let cfg = "{{json .Config.Env}} {{.Config.User}} {{.Config.WorkingDir}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{len .RootFS.Layers}}";
    assert_eq!(
        inspect(&d, cfg, &name),
        dockerd.docker_ok(&["image", "inspect", "-f", cfg, &name])
    );
    dockerd.docker_ok(&["rmi", &name]);
}

#[test]
fn scratch_images_exec_form_run_proxy_args_and_pull() {
    let d = Daemon::start();
    let df = format!(
        r#"FROM scratch
COPY --from={base} /bin/busybox /bin/busybox
ADD --chmod=0700 tool.sh /tool.sh
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo proxy=$HTTP_PROXY > /proxy.txt"]
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/proxy.txt"]
"#,
        base = base()
    );
    let ctx = context(&[
        ("Dockerfile", &df),
        ("tool.sh", "#!/bin/busybox sh\necho tool\n"),
    ]);
    let out = build_ok(
        &d,
        &[
            "--pull",
            "--build-arg",
            "HTTP_PROXY=http://proxy.invalid:3128",
            "-t",
            "scratchy:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(out.contains("Successfully tagged scratchy:1"), "{out}");
    assert_eq!(run(&d, &["scratchy:1"]), "proxy=http://proxy.invalid:3128");
    assert_eq!(
        run(&d, &["scratchy:1", "stat", "-c", "%a", "/tool.sh"]),
        "700"
    );
    // Proxy args are not recorded in the image's history (Docker keeps them out).
    let history = d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "scratchy:1",
    ]);
    assert!(!history.contains("proxy.invalid"), "{history}");
    // Only the COPY, ADD and RUN made layers.
    assert_eq!(inspect(&d, "{{len .RootFS.Layers}}", "scratchy:1"), "3");
}
