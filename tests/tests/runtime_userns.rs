//! `berthd --userns-remap=default`: every container runs in a user namespace whose root
//! is the first subordinate id of `dockremap` on the host, as with Docker; `--userns=host`
//! opts one container out. Seen from inside (id, uid_map, writing anywhere in the rootfs
//! and in a named volume) and from the host (the process's uid, the owner of what it
//! wrote in the snapshot's upper directory and in the volume).
#[macro_use]
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;

both_runtimes!(
    remapped_root_owns_what_it_writes,
    named_volume_and_engine_files_are_writable,
    userns_host_opts_out,
    build_steps_run_remapped,
    a_missing_working_directory_belongs_to_the_remapped_root,
);

/// The first subordinate uid and gid of `dockremap`: the container's root on the host.
fn remapped_root() -> (u32, u32) {
    let first = |file: &str| -> u32 {
        let text = std::fs::read_to_string(file).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("dockremap:"))
            .unwrap_or_else(|| panic!("no dockremap range in {file}:\n{text}"));
        line.split(':').nth(1).unwrap().parse().unwrap()
    };
    (first("/etc/subuid"), first("/etc/subgid"))
}

fn remap_daemon() -> (Daemon, String) {
    let d = Daemon::start_with(&["--userns-remap=default"]);
    let img = d.pull("busybox:1");
    (d, img)
}

/// Every `fs` directory of the daemon's snapshots holding `name` at its top.
fn in_upper_dirs(d: &Daemon, name: &str) -> Vec<PathBuf> {
    let snaps = d.data_root().join("snapshots/snapshots");
    std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("fs").join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// "UID/GID NAME" lines of a tar, read with GNU tar.
fn tar_owners(tar: &Path) -> String {
    let out = std::process::Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(tar)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", f[1], f[5])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn owner(p: &Path) -> (u32, u32) {
    let md = p.symlink_metadata().unwrap();
    (md.uid(), md.gid())
}

/// The container's output once it printed `marker` (it keeps running afterwards).
fn logs_until(d: &Daemon, name: &str, marker: &str) -> String {
    for _ in 0..200 {
        let out = d.docker_ok(&["logs", name]);
        if out.lines().any(|l| l == marker) {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{name} never printed {marker}: {}",
        d.docker_ok(&["logs", name])
    );
}

fn remapped_root_owns_what_it_writes(rt: &str) {
    let (d, img) = remap_daemon();
    let (uid, gid) = remapped_root();
    assert!(uid >= 100000, "dockremap's range starts at {uid}");
    let info = d.docker_ok(&["info", "-f", "{{json .SecurityOptions}}"]);
    assert!(info.contains("name=userns"), "{info}");

    let name = format!("u{}", unique());
    let script = "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; \
                  stat -c '%u:%g' /bin/busybox / /etc; \
                  touch /made-in-root && mkdir -p /etc/made.d && echo x > /etc/made.d/f && \
                  echo x >> /bin/busybox-note && echo wrote; exec sleep 300";
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        rt,
        "--name",
        &name,
        &img,
        "sh",
        "-c",
        script,
    ]);
    let inside = logs_until(&d, &name, "wrote");
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[0], "0", "{inside}");
    assert_eq!(lines[1], "0", "{inside}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{inside}");
    let gmap: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(gmap, ["0", &gid.to_string(), "65536"], "{inside}");
    // Image files and directories appear owned by root inside.
    assert_eq!(&lines[4..7], ["0:0", "0:0", "0:0"], "{inside}");
    assert_eq!(lines[7], "wrote", "{inside}");

    // On the host the container's process runs as the subordinate ids.
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid:"), [uid; 4], "{status}");
    assert_eq!(ids("Gid:"), [gid; 4], "{status}");

    // What it wrote lands in its upper directory, owned by the subordinate ids; the
    // image's layers are untouched.
    let made = in_upper_dirs(&d, "made-in-root");
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(owner(&made[0]), (uid, gid));
    let upper = made[0].parent().unwrap();
    assert_eq!(owner(&upper.join("etc/made.d/f")), (uid, gid));
    let layer_files = in_upper_dirs(&d, "bin/busybox");
    assert!(!layer_files.is_empty());
    assert!(layer_files.iter().all(|p| owner(p) == (0, 0)));

    let mode = d.docker_ok(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", &name]);
    assert_eq!(mode, "");

    // An exec joins the container's user namespace too (the built-in runtime's own exec
    // path: libcontainer's tenant builder would leave it out), with the container's
    // capabilities and seccomp filter.
    let out = d.docker_ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; grep -E '^(CapEff|Seccomp):' /proc/self/status | cut -f2; \
         touch /etc/by-exec && echo wrote",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{out}");
    assert_eq!(&lines[2..], ["00000000a80425fb", "2", "wrote"], "{out}");
    assert_eq!(owner(&upper.join("etc/by-exec")), (uid, gid));
    let out = d.docker_ok(&["exec", "-u", "1000:1000", &name, "id", "-u"]);
    assert_eq!(out, "1000");
    let exec = d.docker(&["exec", &name, "no-such-command"]);
    assert!(!exec.status.success());

    // docker cp into it gives the files to its root.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("copied"), "c").unwrap();
    let from = src.path().join("copied").display().to_string();
    d.docker_ok(&["cp", &from, &format!("{name}:/etc/")]);
    assert_eq!(owner(&upper.join("etc/copied")), (uid, gid));
    let out = d.docker_ok(&["exec", &name, "stat", "-c", "%u:%g", "/etc/copied"]);
    assert_eq!(out, "0:0");

    // docker cp out of it and docker export carry the ids it sees.
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("made.tar");
    let out = d.docker(&["cp", &format!("{name}:/etc/made.d"), "-"]);
    assert!(out.status.success(), "{:?}", text(&out));
    std::fs::write(&out_path, &out.stdout).unwrap();
    let listing = tar_owners(&out_path);
    assert!(listing.contains("0/0 made.d/f"), "{listing}");
    let exported = out_dir.path().join("export.tar");
    d.docker_ok(&["export", "-o", exported.to_str().unwrap(), &name]);
    let listing = tar_owners(&exported);
    assert!(listing.contains("0/0 made-in-root"), "{listing}");
    assert!(listing.contains("0/0 etc/made.d/f"), "{listing}");
    assert!(!listing.contains(&format!("{uid}/")), "{listing}");

    // A commit records the owners the container saw, not the subordinate ids.
    let committed = format!("committed-{}", unique());
    d.docker_ok(&["commit", &name, &committed]);
    for userns in ["--userns=host", "--userns="] {
        let out = d.docker_ok(&[
            "run",
            "--rm",
            "--runtime",
            rt,
            userns,
            &committed,
            "stat",
            "-c",
            "%u:%g",
            "/made-in-root",
            "/etc/made.d/f",
            "/etc/by-exec",
        ]);
        assert_eq!(out, "0:0\n0:0\n0:0", "{userns}");
    }
    d.docker_ok(&["rm", "-f", &name]);
}

fn named_volume_and_engine_files_are_writable(rt: &str) {
    let (d, img) = remap_daemon();
    let (uid, gid) = remapped_root();
    let vol = format!("v{}", unique());
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "-v",
        &format!("{vol}:/data"),
        &img,
        "sh",
        "-c",
        "echo hi > /data/f && stat -c '%u:%g' /data/f /data && echo 10.9.9.9 extra >> /etc/hosts && \
         echo ok >> /etc/resolv.conf && hostname > /etc/hostname && echo wrote",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0:0", "0:0", "wrote"],
        "{out}"
    );
    let mountpoint = d.docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]);
    let f = Path::new(&mountpoint).join("f");
    assert_eq!(owner(&f), (uid, gid));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hi\n");
    // A second container sees and extends the volume.
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "-v",
        &format!("{vol}:/data"),
        &img,
        "sh",
        "-c",
        "cat /data/f && echo more >> /data/f && echo ok",
    ]);
    assert_eq!(out, "hi\nok");
}

/// `-w` naming a directory the image lacks: the engine creates it, and the container's
/// root must own it (the unmapped host root would leave it read-only to the container).
fn a_missing_working_directory_belongs_to_the_remapped_root(rt: &str) {
    let (d, img) = remap_daemon();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "-w",
        "/made/for/it",
        &img,
        "sh",
        "-c",
        "touch here && stat -c '%u:%g' . /made",
    ]);
    assert_eq!(out, "0:0\n0:0");
}

fn userns_host_opts_out(rt: &str) {
    let (d, img) = remap_daemon();
    let name = format!("h{}", unique());
    let out = d.docker_ok(&[
        "run",
        "--runtime",
        rt,
        "--name",
        &name,
        "--userns=host",
        &img,
        "sh",
        "-c",
        "cat /proc/self/uid_map; touch /hostroot && echo wrote",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(map, ["0", "0", "4294967295"], "{out}");
    assert_eq!(lines[1], "wrote");
    let made = in_upper_dirs(&d, "hostroot");
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(owner(&made[0]), (0, 0));
    let mode = d.docker_ok(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", &name]);
    assert_eq!(mode, "host");
    // Privileged needs the opt-out, as in Docker.
    let out = d.docker(&["run", "--rm", "--runtime", rt, "--privileged", &img, "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--userns=host"),
        "{:?}",
        text(&out)
    );
    d.docker_ok(&[
        "run",
        "--rm",
        "--runtime",
        rt,
        "--privileged",
        "--userns=host",
        &img,
        "true",
    ]);
    d.docker_ok(&["rm", "-f", &name]);
}

/// A container keeps the mapping it was created with: after the daemon restarts with
/// another one its files would have the wrong owners, so it is refused with a clear error,
/// and it runs again once the daemon's mapping is back.
#[test]
fn a_container_runs_only_under_the_mapping_it_was_created_with() {
    let (mut d, img) = remap_daemon();
    d.docker_ok(&["create", "--name", "made-remapped", &img, "touch", "/etc/x"]);
    d.restart_with(&[]);
    d.docker_ok(&["create", "--name", "made-plain", &img, "touch", "/etc/x"]);
    let out = d.docker(&["start", "made-remapped"]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("created with its root remapped") && err.contains("recreate it"),
        "{err}"
    );
    d.restart_with(&["--userns-remap=default"]);
    let out = d.docker(&["start", "made-plain"]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("without user namespace remapping"), "{err}");
    d.docker_ok(&["start", "-a", "made-remapped"]);
    let code = d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "made-remapped"]);
    assert_eq!(code, "0");
}

/// `docker build` (classic builder) of `ctx` tagged `tag` against `d`, asserting success.
fn build_ok(d: &Daemon, tag: &str, ctx: &Path, extra: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(d.host())
        .args(["build", "-t", tag])
        .args(extra)
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(
        out.status.success(),
        "docker build {tag} failed:\nstdout: {o}\nstderr: {e}\nlog: {}",
        d.log()
    );
    format!("{o}{e}")
}

/// Sorted "UID/GID NAME" lines of `docker export` of a container created from `image`.
fn exported_owners(d: &Daemon, image: &str) -> Vec<String> {
    let name = format!("x{}", unique());
    d.docker_ok(&["create", "--name", &name, image, "true"]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("export.tar");
    d.docker_ok(&["export", "-o", tar.to_str().unwrap(), &name]);
    d.docker_ok(&["rm", &name]);
    let mut lines: Vec<String> = tar_owners(&tar).lines().map(String::from).collect();
    lines.sort();
    lines
}

/// Under remapping a Dockerfile's RUN steps run in the daemon's user namespace, as
/// Docker's do: root inside is the remapped root (uid_map), files made by root and by
/// `USER 1000` are recorded with the ids the step saw, a WORKDIR the engine creates and a
/// cache mount are writable; the image holds the same owners as the same build without
/// remapping, and the host's network (with /sys) is usable.
fn build_steps_run_remapped(rt: &str) {
    let mut d = Daemon::start_with(&["--userns-remap=default", "--default-runtime", rt]);
    let img = d.pull("busybox:1");
    let (uid, _) = remapped_root();
    let df = format!(
        "FROM {img}\n\
         RUN id -u > /uid\n\
         RUN touch /f && chown 1000:1000 /f\n\
         RUN cat /proc/self/uid_map > /map\n\
         RUN ls /sys/class/net > /netdevs && awk '$5 == \"/sys\" {{print $6}}' /proc/self/mountinfo > /sysopts\n\
         RUN --network=none ls /sys/class/net > /netdevs-none && id -u >> /netdevs-none\n\
         WORKDIR /work/deep\n\
         RUN touch here\n\
         RUN --mount=type=cache,target=/cache touch /cache/c && ls /cache > /cached\n\
         USER 1000\n\
         RUN touch /tmp/by1000 && id -u > /tmp/uid1000\n"
    );
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), &df).unwrap();
    build_ok(&d, "remapped:1", ctx.path(), &[]);

    for userns in ["--userns=", "--userns=host"] {
        let out = d.docker_ok(&[
            "run",
            "--rm",
            "--runtime",
            rt,
            "-u",
            "0",
            userns,
            "remapped:1",
            "sh",
            "-c",
            "cat /uid /map /cached /tmp/uid1000; \
             stat -c '%u:%g %n' /f /uid /work /work/deep /work/deep/here /tmp/by1000",
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "0", "{userns}: {out}");
        let map: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(map, ["0", &uid.to_string(), "65536"], "{userns}: {out}");
        assert_eq!(lines[2], "c", "{userns}: {out}");
        assert_eq!(lines[3], "1000", "{userns}: {out}");
        assert_eq!(
            &lines[4..],
            [
                "1000:1000 /f",
                "0:0 /uid",
                "0:0 /work",
                "0:0 /work/deep",
                "0:0 /work/deep/here",
                "1000:1000 /tmp/by1000"
            ],
            "{userns}: {out}"
        );
    }
    let netdevs = d.docker_ok(&["run", "--rm", "remapped:1", "cat", "/netdevs"]);
    assert!(netdevs.lines().any(|l| l == "lo"), "{netdevs}");
    // The host's /sys, bound read-only, keeping the host mount's flags.
    let sysopts = d.docker_ok(&["run", "--rm", "remapped:1", "cat", "/sysopts"]);
    assert!(
        sysopts.starts_with("ro,") && sysopts.contains("nosuid"),
        "{sysopts}"
    );
    // A step with `--network=none` gets its own network namespace (and sysfs) only.
    let none = d.docker_ok(&["run", "--rm", "remapped:1", "cat", "/netdevs-none"]);
    assert_eq!(none, "lo\n0");
    let remapped = exported_owners(&d, "remapped:1");
    assert!(
        !remapped.iter().any(|l| l.starts_with(&format!("{uid}/"))),
        "{remapped:?}"
    );

    // The same build without remapping: the same owners everywhere.
    d.restart_with(&["--default-runtime", rt]);
    build_ok(&d, "plain:1", ctx.path(), &["--no-cache"]);
    let plain = exported_owners(&d, "plain:1");
    assert_eq!(remapped, plain);
    let layers = |image: &str| d.docker_ok(&["inspect", "-f", "{{len .RootFS.Layers}}", image]);
    assert_eq!(layers("remapped:1"), layers("plain:1"));
}
