//! Request handling: one parsed [`Request`] per connection.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::process::{Owner, Prepared};
use super::server::{ConnState, Shim};
use super::tty::{self, ConsoleSocket};
use crate::protocol::{Reply, Request};
use crate::types::{ExecConfig, SOCKET_NAME};

fn valid_exec_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && id != "."
        && id != ".."
}

impl Shim {
    fn running(&self) -> bool {
        self.init.reaped.is_none()
    }

    /// Handles the request line of connection `i`; `rest` are bytes that followed it.
    pub fn handle_request(&mut self, i: usize, line: &[u8], rest: Vec<u8>) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                self.finish(i, Reply::err(format!("bad request: {e}")));
                return;
            }
        };
        match req {
            Request::Start => {
                let r = self.start();
                self.finish(i, r);
            }
            Request::Kill { signal } => {
                let r = self.signal(self.init.pid, signal);
                // A frozen process cannot die: thaw it after SIGKILL, as Docker does.
                if signal == libc::SIGKILL
                    && self.paused
                    && r.error.is_none()
                    && self.backend.resume().is_ok()
                {
                    self.paused = false;
                }
                self.finish(i, r);
            }
            Request::State => {
                let status = if self.init.reaped.is_some() {
                    "stopped"
                } else if self.paused {
                    "paused"
                } else if self.started {
                    "running"
                } else {
                    "created"
                };
                self.finish(
                    i,
                    Reply {
                        pid: Some(self.init.pid as u32),
                        status: Some(status.into()),
                        exit: self.init.exit.clone(),
                        ..Reply::default()
                    },
                );
            }
            Request::Resize { rows, cols } => {
                let r = match &self.init.pty {
                    Some(m) => tty::resize(m, rows, cols)
                        .map_or_else(|e| Reply::err(e.to_string()), |_| Reply::default()),
                    None => Reply::err("container has no terminal"),
                };
                self.finish(i, r);
            }
            Request::Pids => {
                let pids = if self.running() {
                    self.cgroups.pids()
                } else {
                    Vec::new()
                };
                self.finish(
                    i,
                    Reply {
                        pids: Some(pids),
                        ..Reply::default()
                    },
                );
            }
            Request::Pause | Request::Resume => {
                let pause = matches!(req, Request::Pause);
                let r = if !self.running() {
                    Reply::err("container is not running")
                } else {
                    let res = if pause {
                        self.backend.pause()
                    } else {
                        self.backend.resume()
                    };
                    match res {
                        Ok(()) => {
                            self.paused = pause;
                            Reply::default()
                        }
                        Err(e) => Reply::err(e.to_string()),
                    }
                };
                self.finish(i, r);
            }
            Request::Stats => {
                let stats = self.cgroups.stats();
                self.finish(
                    i,
                    Reply {
                        stats: Some(stats),
                        ..Reply::default()
                    },
                );
            }
            Request::Attach { stdin } => self.attach(i, Owner::Init, stdin, rest),
            Request::Wait => self.wait(i, Owner::Init),
            Request::Exec { config } => self.exec(i, config, rest),
            Request::ExecWait { id } => self.wait(i, Owner::Exec(id)),
            Request::ExecResize { id, rows, cols } => {
                let r = match self.execs.get(&id).map(|p| p.pty.as_ref()) {
                    None => Reply::err(format!("no exec {id}")),
                    Some(None) => Reply::err(format!("exec {id} has no terminal")),
                    Some(Some(m)) => tty::resize(m, rows, cols)
                        .map_or_else(|e| Reply::err(e.to_string()), |_| Reply::default()),
                };
                self.finish(i, r);
            }
            Request::ExecPid { id } => {
                let r = match self.execs.get(&id) {
                    Some(p) => Reply {
                        pid: Some(p.pid as u32),
                        ..Reply::default()
                    },
                    None => Reply::err(format!("no exec {id}")),
                };
                self.finish(i, r);
            }
            Request::Shutdown => {
                self.shutdown = true;
                let exit = self.init.exit.clone();
                if exit.is_some() && !self.socket_removed {
                    // Free the path at once so a new run of this container can bind it.
                    let _ = std::fs::remove_file(self.cfg.state_dir.join(SOCKET_NAME));
                    self.socket_removed = true;
                }
                self.finish(
                    i,
                    Reply {
                        exit,
                        ..Reply::default()
                    },
                );
            }
        }
    }

    fn finish(&mut self, i: usize, r: Reply) {
        if let Some(c) = self.conns.get_mut(i) {
            c.reply(&r);
            c.state = ConnState::Done;
            c.close_after_flush = true;
        }
    }

    fn start(&mut self) -> Reply {
        if self.started {
            return Reply::err("container already started");
        }
        if !self.running() {
            return Reply::err("container has exited");
        }
        match self.backend.start() {
            Ok(()) => {
                self.started = true;
                Reply {
                    pid: Some(self.init.pid as u32),
                    ..Reply::default()
                }
            }
            Err(e) => Reply::err(e.to_string()),
        }
    }

    fn signal(&self, pid: i32, signal: i32) -> Reply {
        if !self.running() {
            return Reply::err("container is not running");
        }
        let sig = match Signal::try_from(signal) {
            Ok(s) => s,
            Err(_) => return Reply::err(format!("invalid signal {signal}")),
        };
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) => Reply::default(),
            Err(e) => Reply::err(format!("kill {pid}: {e}")),
        }
    }

    fn attach(&mut self, i: usize, owner: Owner, stdin: bool, rest: Vec<u8>) {
        let exited = self.init.exit.is_some();
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        c.reply(&Reply::default());
        c.state = ConnState::Stream {
            owner: owner.clone(),
            stdin,
        };
        if exited {
            c.close_after_flush = true;
            return;
        }
        if stdin && !rest.is_empty() {
            self.feed_stdin(&owner, &rest);
        }
    }

    fn wait(&mut self, i: usize, owner: Owner) {
        let exit = match &owner {
            Owner::Init => Some(self.init.exit.clone()),
            Owner::Exec(id) => self.execs.get(id).map(|p| p.exit.clone()),
        };
        match exit {
            None => self.finish(i, Reply::err("no such process")),
            Some(Some(exit)) => self.finish(
                i,
                Reply {
                    exit: Some(exit),
                    ..Reply::default()
                },
            ),
            Some(None) => {
                if let Some(c) = self.conns.get_mut(i) {
                    c.state = ConnState::Waiting(owner);
                }
            }
        }
    }

    fn exec(&mut self, i: usize, cfg: ExecConfig, rest: Vec<u8>) {
        match self.start_exec(&cfg) {
            Ok(pid) => {
                let owner = Owner::Exec(cfg.id.clone());
                if let Some(c) = self.conns.get_mut(i) {
                    c.reply(&Reply {
                        pid: Some(pid as u32),
                        ..Reply::default()
                    });
                    c.state = ConnState::Stream {
                        owner: owner.clone(),
                        stdin: cfg.stdin,
                    };
                }
                if cfg.stdin && !rest.is_empty() {
                    self.feed_stdin(&owner, &rest);
                }
            }
            Err(msg) => self.finish(i, Reply::err(msg)),
        }
    }

    fn start_exec(&mut self, cfg: &ExecConfig) -> Result<i32, String> {
        if !self.started || !self.running() {
            return Err("container is not running".into());
        }
        if !valid_exec_id(&cfg.id) {
            return Err(format!("invalid exec id {:?}", cfg.id));
        }
        if self.execs.contains_key(&cfg.id) {
            return Err(format!("exec {} already exists", cfg.id));
        }
        if cfg.args.is_empty() {
            return Err("exec needs a command".into());
        }
        self.exec_counter += 1;
        let n = self.exec_counter;
        let dir = &self.cfg.state_dir;
        let process = dir.join(format!("exec-{n}.json"));
        let pid_file = dir.join(format!("exec-{n}.pid"));
        super::process::write_exec_process(&self.cfg.bundle, cfg, &process)
            .map_err(|e| e.to_string())?;
        let mut prepared = if cfg.tty {
            Prepared::Tty(
                ConsoleSocket::bind(&dir.join(format!("x{n}.sock"))).map_err(|e| e.to_string())?,
            )
        } else {
            Prepared::pipes(cfg.stdin).map_err(|e| e.to_string())?
        };
        let (stdio, console) = prepared.for_runtime();
        let res = self
            .backend
            .exec(&process, &pid_file, stdio, console.as_deref())
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&process);
        let _ = std::fs::remove_file(&pid_file);
        let pid = res?;
        let proc = prepared.into_proc(pid).map_err(|e| e.to_string())?;
        self.execs.insert(cfg.id.clone(), proc);
        // The process may already have exited and been reparented to us.
        self.reap();
        Ok(pid)
    }
}
