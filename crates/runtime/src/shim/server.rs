//! The shim's single-threaded poll loop: client connections, process output, stdin,
//! reaping and exit bookkeeping.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::sys::socket::{send, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::backend::Backend;
use super::log::JsonLogger;
use super::process::{Owner, Proc};
use super::signals::{pfd, poll};
use crate::cgroup::CgroupDirs;
use crate::protocol::{encode_frame, Reply};
use crate::types::{write_json_atomic, ExitStatus, ShimConfig, EXIT_NAME, SOCKET_NAME};

/// A client's output buffer larger than this means a stuck client: it is dropped.
const MAX_CLIENT_BUFFER: usize = 64 << 20;
/// Finished execs whose exit status is kept for `exec_wait`.
const MAX_FINISHED_EXECS: usize = 128;
/// Stop reading a client's stdin bytes while this much is still queued for the process.
const MAX_STDIN_BUFFER: usize = 1 << 20;

/// Bytes read at once; the buffer is on the stack, whose touched pages stay resident.
const READ_CHUNK: usize = 32 << 10;

/// How long the shim stays after the container exited and its last client left.
const LINGER_MS: i32 = 2000;

/// What a connection is doing.
pub enum ConnState {
    /// reading the request line
    Request,
    /// streaming a process's output (and maybe feeding its stdin)
    Stream { owner: Owner, stdin: bool },
    /// waiting for a process to exit
    Waiting(Owner),
    /// reply sent; close once flushed
    Done,
}

/// One client connection.
pub struct Conn {
    pub sock: UnixStream,
    pub inbuf: Vec<u8>,
    pub out: Vec<u8>,
    pub state: ConnState,
    pub read_closed: bool,
    pub close_after_flush: bool,
    pub dead: bool,
}

impl Conn {
    /// Queues a reply line.
    pub fn reply(&mut self, r: &Reply) {
        match serde_json::to_vec(r) {
            Ok(mut line) => {
                line.push(b'\n');
                self.out.extend_from_slice(&line);
            }
            Err(_) => self.out.extend_from_slice(b"{\"error\":\"internal\"}\n"),
        }
    }
}

/// The shim's whole state.
pub struct Shim {
    pub cfg: ShimConfig,
    pub backend: Backend,
    pub init: Proc,
    pub started: bool,
    pub paused: bool,
    pub cgroups: CgroupDirs,
    pub execs: HashMap<String, Proc>,
    pub conns: Vec<Conn>,
    pub logger: Option<JsonLogger>,
    pub shutdown: bool,
    /// the socket path was already unlinked (after shutdown)
    pub socket_removed: bool,
    pub exec_counter: u32,
    /// how many execs have finished (orders them for forgetting)
    pub finished_execs: u64,
}

enum Token {
    Sig,
    Listener,
    Out(Owner, usize),
    Stdin(Owner),
    Conn(usize),
}

impl Shim {
    pub fn proc_mut(&mut self, owner: &Owner) -> Option<&mut Proc> {
        match owner {
            Owner::Init => Some(&mut self.init),
            Owner::Exec(id) => self.execs.get_mut(id),
        }
    }

    fn procs(&self) -> impl Iterator<Item = (Owner, &Proc)> {
        std::iter::once((Owner::Init, &self.init))
            .chain(self.execs.iter().map(|(k, p)| (Owner::Exec(k.clone()), p)))
    }

    /// Serves until the container has exited and every client is gone (or shutdown).
    pub fn run(&mut self, listener: &UnixListener, sig: &OwnedFd) -> std::io::Result<()> {
        loop {
            self.settle();
            let exited = self.init.exit.is_some();
            if exited && self.shutdown && self.conns.is_empty() {
                return Ok(());
            }
            // After the exit, linger briefly for late `wait` calls; exit.json stays anyway.
            let timeout = if exited && self.conns.is_empty() {
                LINGER_MS
            } else {
                -1
            };
            let mut fds = vec![
                pfd(sig.as_raw_fd(), libc::POLLIN),
                pfd(listener.as_raw_fd(), libc::POLLIN),
            ];
            let mut tokens = vec![Token::Sig, Token::Listener];
            for (owner, p) in self.procs() {
                for (i, o) in p.outputs.iter().enumerate().filter(|(_, o)| o.open) {
                    fds.push(pfd(o.fd.as_raw_fd(), libc::POLLIN));
                    tokens.push(Token::Out(owner.clone(), i));
                }
                if let Some(fd) = &p.stdin {
                    if !p.stdin_buf.is_empty() {
                        fds.push(pfd(fd.as_raw_fd(), libc::POLLOUT));
                        tokens.push(Token::Stdin(owner.clone()));
                    }
                }
            }
            for (i, c) in self.conns.iter().enumerate() {
                let mut ev = 0;
                if !c.read_closed && !matches!(c.state, ConnState::Done) {
                    let full = match &c.state {
                        ConnState::Stream { owner, stdin: true } => {
                            let p = match owner {
                                Owner::Init => Some(&self.init),
                                Owner::Exec(id) => self.execs.get(id),
                            };
                            p.is_some_and(|p| p.stdin_buf.len() >= MAX_STDIN_BUFFER)
                        }
                        _ => false,
                    };
                    if !full {
                        ev |= libc::POLLIN;
                    }
                }
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                fds.push(pfd(c.sock.as_raw_fd(), ev));
                tokens.push(Token::Conn(i));
            }
            if poll(&mut fds, timeout)? == 0 {
                // Lingered long enough. Unlink the socket first, then serve whoever
                // connected before that (a new shim's retire request), then leave.
                if !self.socket_removed {
                    let _ = std::fs::remove_file(self.cfg.state_dir.join(SOCKET_NAME));
                    self.socket_removed = true;
                }
                self.accept(listener);
                self.shutdown = true;
                continue;
            }
            for (pf, tok) in fds.iter().zip(tokens) {
                if pf.revents == 0 {
                    continue;
                }
                match tok {
                    Token::Sig => {
                        let mut buf = [0u8; 64];
                        while matches!(nix::unistd::read(sig.as_raw_fd(), &mut buf), Ok(n) if n > 0)
                        {
                        }
                        self.reap();
                    }
                    Token::Listener => self.accept(listener),
                    Token::Out(owner, i) => self.read_output(&owner, i),
                    Token::Stdin(owner) => self.write_stdin(&owner),
                    Token::Conn(i) => self.service_conn(i, pf.revents),
                }
            }
            self.reap();
            self.conns.retain(|c| !c.dead);
        }
    }

    fn accept(&mut self, listener: &UnixListener) {
        while let Ok((sock, _)) = listener.accept() {
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(Conn {
                sock,
                inbuf: Vec::new(),
                out: Vec::new(),
                state: ConnState::Request,
                read_closed: false,
                close_after_flush: false,
                dead: false,
            });
        }
    }

    /// Collects exited children; records init/exec exits.
    pub fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, code, signal) = match status {
                WaitStatus::Exited(pid, code) => (pid.as_raw(), code, None),
                WaitStatus::Signaled(pid, sig, _) => {
                    (pid.as_raw(), 128 + sig as i32, Some(sig as i32))
                }
                _ => continue,
            };
            let exit = ExitStatus::now(code, signal, false);
            if pid == self.init.pid && self.init.reaped.is_none() {
                self.init.reaped = Some(exit);
            } else if let Some(p) = self
                .execs
                .values_mut()
                .find(|p| p.pid == pid && p.reaped.is_none())
            {
                p.reaped = Some(exit);
            }
        }
    }

    fn read_output(&mut self, owner: &Owner, i: usize) {
        let mut buf = [0u8; READ_CHUNK];
        let Some(p) = self.proc_mut(owner) else {
            return;
        };
        let Some(o) = p.outputs.get_mut(i) else {
            return;
        };
        let stream = o.stream;
        let n = match nix::unistd::read(o.fd.as_raw_fd(), &mut buf) {
            Ok(0) => {
                o.open = false;
                return;
            }
            Ok(n) => n,
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => return,
            Err(_) => {
                // EIO on a pty master once every slave is closed
                o.open = false;
                return;
            }
        };
        let data = &buf[..n];
        if *owner == Owner::Init {
            if let Some(l) = self.logger.as_mut() {
                if let Err(e) = l.write(stream, data) {
                    eprintln!("berth-shim {}: {e}", self.cfg.id);
                }
            }
        }
        let mut frame = Vec::with_capacity(n + 8);
        encode_frame(stream, data, &mut frame);
        for c in self.conns.iter_mut() {
            if matches!(&c.state, ConnState::Stream { owner: o, .. } if o == owner) {
                c.out.extend_from_slice(&frame);
                if c.out.len() > MAX_CLIENT_BUFFER {
                    c.dead = true;
                }
            }
        }
    }

    fn write_stdin(&mut self, owner: &Owner) {
        let Some(p) = self.proc_mut(owner) else {
            return;
        };
        let Some(fd) = &p.stdin else { return };
        match nix::unistd::write(fd, &p.stdin_buf) {
            Ok(n) => {
                p.stdin_buf.drain(..n);
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            Err(_) => {
                p.stdin_buf.clear();
                p.stdin = None;
            }
        }
        if p.stdin_buf.is_empty() && p.close_stdin && !p.tty {
            p.stdin = None;
        }
    }

    /// Queues client bytes for a process's stdin.
    pub fn feed_stdin(&mut self, owner: &Owner, data: &[u8]) {
        if let Some(p) = self.proc_mut(owner) {
            if p.stdin.is_some() && !p.close_stdin {
                p.stdin_buf.extend_from_slice(data);
            }
        }
    }

    fn close_stdin(&mut self, owner: &Owner) {
        let open_stdin = self.cfg.open_stdin;
        if let Some(p) = self.proc_mut(owner) {
            if p.tty || (*owner == Owner::Init && !open_stdin) {
                return;
            }
            p.close_stdin = true;
            if p.stdin_buf.is_empty() {
                p.stdin = None;
            }
        }
    }

    fn service_conn(&mut self, i: usize, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            self.flush_conn(i);
        }
        if revents & libc::POLLIN != 0 {
            self.read_conn(i);
        } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            if let Some(c) = self.conns.get_mut(i) {
                c.dead = true;
            }
        }
    }

    fn flush_conn(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        while !c.out.is_empty() {
            match send(
                c.sock.as_raw_fd(),
                &c.out,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => return,
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
        if c.close_after_flush {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
            c.dead = true;
        }
    }

    fn read_conn(&mut self, i: usize) {
        let mut buf = [0u8; READ_CHUNK];
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        let n = match c.sock.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return
            }
            Err(_) => {
                c.dead = true;
                return;
            }
        };
        if n == 0 {
            c.read_closed = true;
            match &c.state {
                ConnState::Stream { owner, stdin: true } => {
                    let owner = owner.clone();
                    self.close_stdin(&owner);
                }
                ConnState::Request => c.dead = true,
                _ => {}
            }
            return;
        }
        match &c.state {
            ConnState::Stream { owner, stdin: true } => {
                let owner = owner.clone();
                self.feed_stdin(&owner, &buf[..n]);
            }
            ConnState::Request => {
                c.inbuf.extend_from_slice(&buf[..n]);
                if let Some(pos) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let rest = c.inbuf.split_off(pos + 1);
                    let line = std::mem::take(&mut c.inbuf);
                    self.handle_request(i, &line[..pos], rest);
                    self.flush_conn(i);
                } else if c.inbuf.len() > 1 << 20 {
                    c.dead = true;
                }
            }
            _ => {}
        }
    }

    /// Finishes processes that were reaped and whose output is fully drained.
    pub fn settle(&mut self) {
        if self.init.exit.is_none()
            && self.init.reaped.is_some()
            && self.init.outputs.iter().all(|o| !o.open)
        {
            self.finish_init();
        }
        let done: Vec<String> = self
            .execs
            .iter()
            .filter(|(_, p)| {
                p.exit.is_none() && p.reaped.is_some() && p.outputs.iter().all(|o| !o.open)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in done {
            self.finished_execs += 1;
            let order = self.finished_execs;
            if let Some(p) = self.execs.get_mut(&id) {
                p.exit = p.reaped.clone();
                p.release_fds();
                p.finished_order = order;
            }
            let exit = self.execs.get(&id).and_then(|p| p.exit.clone());
            self.release(&Owner::Exec(id), exit);
        }
        self.forget_old_execs();
    }

    /// Keeps at most [`MAX_FINISHED_EXECS`] finished execs (health checks exec forever).
    fn forget_old_execs(&mut self) {
        let finished = self.execs.values().filter(|p| p.exit.is_some()).count();
        if finished <= MAX_FINISHED_EXECS {
            return;
        }
        let mut orders: Vec<u64> = self
            .execs
            .values()
            .filter(|p| p.exit.is_some())
            .map(|p| p.finished_order)
            .collect();
        orders.sort_unstable();
        let cutoff = orders[finished - MAX_FINISHED_EXECS - 1];
        let streaming: Vec<Owner> = self
            .conns
            .iter()
            .filter_map(|c| match &c.state {
                ConnState::Stream { owner, .. } | ConnState::Waiting(owner) => Some(owner.clone()),
                _ => None,
            })
            .collect();
        self.execs.retain(|id, p| {
            p.exit.is_none()
                || p.finished_order > cutoff
                || streaming.contains(&Owner::Exec(id.clone()))
        });
    }

    fn finish_init(&mut self) {
        let Some(mut exit) = self.init.reaped.clone() else {
            return;
        };
        if let Some(l) = self.logger.as_mut() {
            let _ = l.flush();
        }
        exit.oom_killed = self.cgroups.oom_kills() > 0;
        if let Err(e) = write_json_atomic(&self.cfg.state_dir.join(EXIT_NAME), &exit) {
            eprintln!("berth-shim {}: {e}", self.cfg.id);
        }
        self.init.exit = Some(exit.clone());
        self.init.release_fds();
        // Waiters hear of the exit first; the runtime's cleanup runs while the engine
        // records it. A retire request is served only after this returns, so the engine
        // never reuses the state directory before the cleanup is done.
        self.release(&Owner::Init, Some(exit));
        if let Err(e) = self.backend.cleanup_after_exit() {
            eprintln!("berth-shim {}: {e}", self.cfg.id);
        }
    }

    /// Replies to waiters of `owner` and closes its streams once flushed.
    fn release(&mut self, owner: &Owner, exit: Option<ExitStatus>) {
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            match &c.state {
                ConnState::Waiting(o) if o == owner => {
                    c.reply(&Reply {
                        exit: exit.clone(),
                        ..Reply::default()
                    });
                    c.state = ConnState::Done;
                    c.close_after_flush = true;
                }
                ConnState::Stream { owner: o, .. } if o == owner => {
                    c.close_after_flush = true;
                }
                _ => continue,
            }
            self.flush_conn(i);
        }
    }
}
