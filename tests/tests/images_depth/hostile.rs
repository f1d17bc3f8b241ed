//! Small python servers from tests/fixtures that print their port and serve until their
//! stdin closes: the hostile registry (misbehaves one way per repository name) and the
//! bearer-token proxy; stopped on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::common::root;

/// A running fixture server.
pub struct Hostile {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Hostile {
    /// Starts the hostile registry and waits until it listens.
    pub fn start() -> Hostile {
        Self::script("hostile-registry.py", &[])
    }

    /// Starts tests/fixtures/SCRIPT with ARGS and waits until it listens.
    pub fn script(script: &str, args: &[&str]) -> Hostile {
        let mut child = Command::new("python3")
            .arg(root().join("tests/fixtures").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .expect("the fixture server prints its port");
        Hostile {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// How many registry requests repository `repo` received.
    pub fn count(&self, repo: &str) -> u64 {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{}/count/{repo}", self.addr)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
