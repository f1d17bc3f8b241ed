//! Pull robustness: SIGKILL mid-pull then resume, hostile layers, corrupted blobs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::common::{text, Daemon, Registry};
use super::push_raw;

/// A TCP proxy in front of a registry that counts the bytes sent to the client and holds
/// them back once `limit` is reached, until [`GateProxy::open`].
struct GateProxy {
    port: u16,
    sent: Arc<AtomicU64>,
    gate: Arc<(Mutex<Option<u64>>, Condvar)>,
}

impl GateProxy {
    fn start(upstream: u16, limit: u64) -> GateProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let gate = Arc::new((Mutex::new(Some(limit)), Condvar::new()));
        let (s, g) = (sent.clone(), gate.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (s, g) = (s.clone(), g.clone());
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 32 * 1024];
                    loop {
                        {
                            let (lock, cv) = &*g;
                            let mut limit = lock.lock().unwrap();
                            while limit.is_some_and(|l| s.load(Ordering::SeqCst) >= l) {
                                limit = cv.wait(limit).unwrap();
                            }
                        }
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        s.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        GateProxy { port, sent, gate }
    }

    fn open(&self) {
        *self.gate.0.lock().unwrap() = None;
        self.gate.1.notify_all();
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// The largest partial download in the daemon's content store ingest dir.
fn largest_partial(d: &Daemon) -> u64 {
    let mut files = Vec::new();
    files_under(&d.data_root(), &mut files);
    files
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "ingest"))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_pull_restarts_clean_and_the_next_pull_resumes() {
    const LAYER: u64 = 48 * 1024 * 1024;
    let reg = Registry::start();
    push_raw(&reg, "big:1", "random", &(LAYER / 1024).to_string());
    let proxy = GateProxy::start(reg.port, 16 * 1024 * 1024);
    let image = format!("127.0.0.1:{}/big:1", proxy.port);
    let mut d = Daemon::start();
    let mut pull = Command::new("docker")
        .args(["-H", &d.host(), "pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while largest_partial(&d) < 8 * 1024 * 1024 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no partial download appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill();
    let _ = pull.wait();
    let partial = largest_partial(&d);
    proxy.open();
    d.restart();
    assert_eq!(
        d.docker_ok(&["images", "-q"]),
        "",
        "a half-pulled image is listed"
    );
    let before = proxy.sent.load(Ordering::SeqCst);
    let out = d.docker_ok(&["pull", &image]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let fetched = proxy.sent.load(Ordering::SeqCst) - before;
    assert!(partial >= 8 * 1024 * 1024, "partial {partial}");
    assert!(
        fetched + partial / 2 < LAYER,
        "resume fetched {fetched} bytes again although {partial} were on disk"
    );
    let size = d.docker_ok(&["image", "inspect", "-f", "{{.Size}}", &image]);
    assert!(size.parse::<u64>().unwrap() >= LAYER, "{size}");
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let reg = Registry::start();
    let d = Daemon::start();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "original").unwrap();
    let escaped = outside.path().join("escaped");
    let cases = [
        (
            "hostile-dotdot:1",
            "dotdot",
            escaped.to_str().unwrap().to_string(),
        ),
        (
            "hostile-symlink:1",
            "symlink",
            outside.path().to_str().unwrap().to_string(),
        ),
        (
            "hostile-hardlink:1",
            "hardlink",
            victim.to_str().unwrap().to_string(),
        ),
    ];
    for (name, kind, arg) in &cases {
        push_raw(&reg, name, kind, arg);
        let image = format!("{}/{name}", reg.addr());
        let out = d.docker(&["pull", &image]);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "{kind}: hostile layer was accepted");
        let repo = name.split(':').next().unwrap();
        assert!(
            err.contains(repo),
            "{kind}: message does not name the image: {err}"
        );
        assert!(
            !escaped.exists(),
            "{kind}: a file was written outside the data root"
        );
        assert!(
            !outside.path().join("owned").exists(),
            "{kind}: wrote through a symlink"
        );
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            m.nlink(),
            1,
            "{kind}: a hardlink to an outside file was made"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
    }
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let reg = Registry::start();
    let layer = push_raw(&reg, "corrupt:1", "random", "512");
    let hex = layer.trim_start_matches("sha256:");
    let data = reg
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let d = Daemon::start();
    let image = format!("{}/corrupt:1", reg.addr());
    let out = d.docker(&["pull", &image]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "a corrupted blob was accepted");
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains("digest"), "{err}");
    assert_eq!(d.docker_ok(&["images", "-q"]), "");
}
