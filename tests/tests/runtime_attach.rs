//! `docker attach` to a `-it` container through a real terminal (`script`), detaching with
//! the default keys (ctrl-p,ctrl-q) and with `--detach-keys`: the container keeps running
//! and its shell still answers the next attach.
#[macro_use]
mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

both_runtimes!(detach_keys_leave_the_container_running);

/// `docker attach` running under `script`, so it has a terminal; what it prints is
/// collected by a reader thread.
struct Attached {
    child: Child,
    out: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Attached {
    fn start(d: &Daemon, extra: &str, name: &str) -> Attached {
        let cmd = format!("docker -H {} attach {extra} {name}", d.host());
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Attached {
            child,
            out,
            seen: String::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (generously) until the terminal has shown `text`.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("{text:?} never shown; got {:?}", self.seen),
            }
        }
    }

    /// Waits for `docker attach` to end; returns everything it printed.
    fn finish(mut self) -> String {
        let status = self.child.wait().unwrap();
        while let Ok(b) = self.out.recv() {
            self.seen.push_str(&String::from_utf8_lossy(&b));
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        format!("{}{err} (exit {:?})", self.seen, status.code())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One attach session: runs `echo` through the shell (waiting for its output, so the shell
/// has read the line), then sends `keys`; returns what the session printed.
fn session(d: &Daemon, extra: &str, name: &str, marker: u32, keys: &[u8]) -> String {
    let mut a = Attached::start(d, extra, name);
    // The sum is printed only by the shell, never by the terminal's echo of the line.
    a.send(format!("echo mark-$(({marker}+1))\n").as_bytes());
    a.expect(&format!("mark-{}", marker + 1));
    a.send(keys);
    a.finish()
}

fn detach_keys_leave_the_container_running(rt: &str) {
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let name = format!("att{}", unique());
    d.docker_ok(&["run", "-dit", "--runtime", rt, "--name", &name, &img, "sh"]);
    // The default keys: ctrl-p ctrl-q.
    let out = session(&d, "", &name, 10, b"\x10\x11");
    assert!(out.contains("read escape sequence"), "{out}");
    let running = || d.docker_ok(&["inspect", "-f", "{{.State.Running}}", &name]);
    assert_eq!(running(), "true");
    // Custom keys; the same shell answers, so its stdin was never closed.
    let out = session(&d, "--detach-keys ctrl-x,ctrl-y", &name, 20, b"\x18\x19");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(running(), "true");
    assert_eq!(d.docker_ok(&["exec", &name, "echo", "alive"]), "alive");
    // Without a detach, leaving the shell ends the attach and the container.
    let mut a = Attached::start(&d, "", &name);
    a.send(b"exit 4\n");
    let out = a.finish();
    assert!(out.contains("(exit Some(4))"), "{out}");
    assert_eq!(running(), "false");
    d.docker_ok(&["rm", "-f", &name]);
}

#[test]
fn the_daemon_honours_detach_keys_of_api_clients() {
    use std::os::unix::net::UnixStream;
    let d = Daemon::start();
    let img = d.pull("busybox:1");
    let name = format!("apiatt{}", unique());
    d.docker_ok(&["run", "-dit", "--name", &name, &img, "sh"]);
    let sock = d.host();
    let mut s = UnixStream::connect(sock.trim_start_matches("unix://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x,ctrl-y HTTP/1.1\r\n\
         Host: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |s: &mut UnixStream, text: &str, seen: &mut Vec<u8>| {
        while !String::from_utf8_lossy(seen).contains(text) {
            let n = s.read(&mut buf).expect("daemon answers in time");
            assert!(
                n > 0,
                "stream ended before {text:?}: {:?}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    read_until(&mut s, "\r\n\r\n", &mut seen);
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 101"));
    s.write_all(b"echo mark-$((40+2))\n").unwrap();
    read_until(&mut s, "mark-42", &mut seen);
    // ctrl-x alone is passed on (and erased by the shell's line editing, ctrl-x is
    // harmless); ctrl-x ctrl-y detaches: the daemon closes the stream.
    s.write_all(b"\x18\x19").unwrap();
    loop {
        let n = s.read(&mut buf).expect("the daemon ends the session");
        if n == 0 {
            break;
        }
    }
    assert_eq!(
        d.docker_ok(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    assert_eq!(d.docker_ok(&["exec", &name, "echo", "alive"]), "alive");
    d.docker_ok(&["rm", "-f", &name]);
}
