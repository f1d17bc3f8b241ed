//! `exec` into a built-in container that runs in its own user namespace (`--userns-remap`).
//!
//! libcontainer 0.7's tenant builder joins every namespace of a container except its user
//! namespace (its list of namespace types leaves `user` out), so an exec'd process would
//! run as the host's root. For such containers the exec helper joins the namespaces
//! itself, the user namespace first as runc does, and sets up the process the way
//! libcontainer's init does (rlimits, terminal, groups and ids, seccomp, capabilities),
//! with libcontainer's own helpers for the terminal, capabilities and seccomp.
//!
//! It runs in the fresh single-threaded exec helper, which joins the container's cgroups
//! (as the host's root); a child joins the namespaces and forks the process, which is thus
//! in the container's pid namespace, then exits, so the process is reparented to the
//! shim (a subreaper). The helper reports its pid or the reason it failed.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, IntoRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use libcontainer::capabilities;
use libcontainer::syscall::syscall::create_syscall;
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

/// Namespaces in the order they are joined: the user namespace first (it owns the
/// others), the mount namespace last (it changes the root).
const ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Whether the container's spec gives it a user namespace.
pub fn has_user_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User))
}

/// Starts `process` in the container whose init is `init_pid` and writes its pid to
/// `pid_file`. Returns once the process has exec'd (or with the reason it could not).
///
/// This helper joins the container's cgroups, then forks a child that joins the
/// namespaces and forks the process itself (so that it is in the container's pid
/// namespace); the child reports the process's pid and exits. The helper stays in the
/// host's namespaces to write the pid file and any error.
pub fn exec(
    init_pid: i32,
    spec: &Spec,
    process: &Process,
    pid_file: &Path,
    console: Option<&Path>,
) -> Result<(), String> {
    let namespaces = open_namespaces(init_pid)?;
    let console = console
        .map(|p| UnixStream::connect(p).map_err(|e| format!("console {}: {e}", p.display())))
        .transpose()?;
    join_cgroups(init_pid)?;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (pid_r, pid_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: this helper process is single-threaded, so the child may do anything.
    let joiner = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((pid_r, err_r));
            let msg = match join_and_fork(&namespaces, spec, process, console, &err_w) {
                Ok(pid) => pid.to_string(),
                Err(e) => {
                    let _ = nix::unistd::write(&err_w, e.as_bytes());
                    String::new()
                }
            };
            let _ = nix::unistd::write(&pid_w, msg.as_bytes());
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((pid_w, err_w, console));
    let mut pid = String::new();
    let _ = File::from(pid_r).read_to_string(&mut pid);
    let _ = nix::sys::wait::waitpid(joiner, None);
    // EOF once the process has exec'd (close-on-exec) or died.
    let mut msg = String::new();
    let _ = File::from(err_r).read_to_string(&mut msg);
    if !msg.is_empty() {
        return Err(msg);
    }
    if pid.is_empty() {
        return Err("exec: the process was not started".into());
    }
    std::fs::write(pid_file, pid).map_err(|e| format!("{}: {e}", pid_file.display()))
}

/// In the joining child: enters the namespaces and forks the process; returns its pid
/// (as the host sees it).
fn join_and_fork(
    namespaces: &[(&'static str, CloneFlags, File)],
    spec: &Spec,
    process: &Process,
    console: Option<UnixStream>,
    err_w: &std::os::fd::OwnedFd,
) -> Result<i32, String> {
    for (name, flag, file) in namespaces {
        setns(file.as_fd(), *flag).map_err(|e| format!("join {name} namespace: {e}"))?;
    }
    // SAFETY: the joining child is single-threaded too.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let e = become_process(spec, process, console);
            let _ = nix::unistd::write(err_w, e.as_bytes());
            // SAFETY: as above.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// Opens the namespaces of `pid` that differ from this process's own.
fn open_namespaces(pid: i32) -> Result<Vec<(&'static str, CloneFlags, File)>, String> {
    let mut out = Vec::new();
    for (name, flag) in ORDER {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let f = File::open(&theirs).map_err(|e| format!("{theirs}: {e}"))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
        let same = match (f.metadata(), ours) {
            (Ok(a), Some(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            out.push((name, flag, f));
        }
    }
    Ok(out)
}

/// Moves this process into every cgroup of `pid` (v1 hierarchies and the unified one).
fn join_cgroups(pid: i32) -> Result<(), String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("cgroups of {pid}: {e}"))?;
    let me = std::process::id().to_string();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let dir = if ctrls.is_empty() {
            if root.join("cgroup.controllers").exists() {
                root.join(rel)
            } else {
                root.join("unified").join(rel)
            }
        } else {
            root.join(ctrls.trim_start_matches("name=")).join(rel)
        };
        let procs = dir.join("cgroup.procs");
        if procs.exists() {
            std::fs::write(&procs, &me).map_err(|e| format!("{}: {e}", procs.display()))?;
        }
    }
    Ok(())
}

/// In the forked child: sets the process up and execs it. Returns only on failure, with
/// the reason.
fn become_process(spec: &Spec, process: &Process, console: Option<UnixStream>) -> String {
    match setup(spec, process, console) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn setup(
    spec: &Spec,
    process: &Process,
    console: Option<UnixStream>,
) -> Result<std::convert::Infallible, String> {
    let sys = create_syscall();
    let nnp = process.no_new_privileges();
    if nnp == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    }
    for r in process.rlimits().iter().flatten() {
        sys.set_rlimit(r).map_err(|e| format!("rlimit: {e}"))?;
    }
    if process.terminal() == Some(true) {
        nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
        if let Some(sock) = console {
            // setup_console closes the socket itself.
            libcontainer::tty::setup_console(sys.as_ref(), sock.into_raw_fd(), false)
                .map_err(|e| format!("terminal: {e}"))?;
        }
    }
    let cwd = process.cwd();
    let chdir_early = nix::unistd::chdir(cwd).is_ok();
    let user = process.user();
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    sys.set_groups(&groups)
        .map_err(|e| format!("groups: {e}"))?;
    sys.set_id(Uid::from_raw(user.uid()), Gid::from_raw(user.gid()))
        .map_err(|e| format!("set ids {}:{}: {e}", user.uid(), user.gid()))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before dropping caps.
    if let (Some(s), false) = (seccomp, nnp == Some(true)) {
        libcontainer::seccomp::initialize_seccomp(s).map_err(|e| format!("seccomp: {e}"))?;
    }
    capabilities::reset_effective(sys.as_ref()).map_err(|e| format!("capabilities: {e}"))?;
    if let Some(caps) = process.capabilities() {
        capabilities::drop_privileges(caps, sys.as_ref())
            .map_err(|e| format!("capabilities: {e}"))?;
    }
    if !chdir_early {
        nix::unistd::chdir(cwd).map_err(|e| format!("chdir {}: {e}", cwd.display()))?;
    }
    if let (Some(s), true) = (seccomp, nnp == Some(true)) {
        libcontainer::seccomp::initialize_seccomp(s).map_err(|e| format!("seccomp: {e}"))?;
    }
    exec_args(process)
}

/// Replaces the environment with the process's and execs its args (PATH lookup as
/// execvp does, with the process's PATH).
fn exec_args(process: &Process) -> Result<std::convert::Infallible, String> {
    let args: Vec<std::ffi::CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("args: {e}"))?;
    let Some(prog) = args.first() else {
        return Err("no command".into());
    };
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    for e in process.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                std::env::set_var(k, v);
            }
        }
    }
    let err = nix::unistd::execvp(prog, &args).unwrap_err();
    Err(format!(
        "exec {}: {}",
        prog.to_string_lossy(),
        match err {
            nix::errno::Errno::ENOENT => "executable file not found in $PATH".to_string(),
            e => e.to_string(),
        }
    ))
}
