//! Everything that calls into libcontainer. Only the freshly exec'd, single-threaded
//! `berth-shim` process runs this code: `serve` creates the container here, and the
//! short-lived `berth-shim lc OP ...` / `exec-helper` processes run the later operations.
//! The long-lived monitor (`berth-monitor`) never links it, so libcontainer's code pages
//! never count against a running container's shim.

use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{signal, SigHandler, Signal};

use super::backend::ChildStdio;

/// Runs `f` with SIGPIPE at its default disposition, so processes cloned inside `f`
/// do not inherit the shim's "ignore SIGPIPE".
fn with_default_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: single-threaded shim; restoring the previous disposition afterwards.
    let old = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let out = f();
    if let Ok(old) = old {
        // SAFETY: as above.
        let _ = unsafe { signal(Signal::SIGPIPE, old) };
    }
    out
}

/// Creates container `id` from `bundle` with libcontainer, its state under `root`; the
/// init (waiting before exec) becomes this process's child. Returns its pid.
pub fn create(
    root: &Path,
    id: &str,
    bundle: &Path,
    stdio: Option<ChildStdio>,
    console: Option<&Path>,
) -> Result<i32, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .validate_id()
        .and_then(|b| b.with_root_path(root))
        .map_err(|e| e.to_string())?
        .with_console_socket(console);
    if let Some(s) = stdio {
        b = b
            .with_stdin(s.stdin)
            .with_stdout(s.stdout)
            .with_stderr(s.stderr);
    }
    let built = with_default_sigpipe(|| {
        b.as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
    });
    let c = built.map_err(|e| e.to_string())?;
    c.pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| "no init pid recorded".to_string())
}

/// Body of `berth-shim lc OP ROOT ID`: `start`, `pause`, `resume` or `delete` (forced, and
/// the state directory removed) of the libcontainer container `root/id`.
pub fn operation(op: &str, root: &Path, id: &str) -> Result<(), String> {
    let mut c = Container::load(root.join(id)).map_err(|e| format!("load: {e}"))?;
    let r = match op {
        "start" => c.start().map_err(|e| e.to_string()),
        "pause" => c.pause().map_err(|e| e.to_string()),
        "resume" => c.resume().map_err(|e| e.to_string()),
        "delete" => {
            let r = c.delete(true).map_err(|e| e.to_string());
            let _ = std::fs::remove_dir_all(root.join(id));
            r
        }
        other => Err(format!("unknown operation {other:?}")),
    };
    r
}

/// Body of `berth-shim exec-helper ROOT ID PROCESS_JSON PID_FILE [CONSOLE_SOCKET]`: joins the
/// container with libcontainer's tenant builder from this fresh single-threaded process,
/// writes the new pid to PID_FILE and returns (the process is reparented to the shim).
pub fn exec_helper(
    root: &Path,
    id: &str,
    process: &Path,
    pid_file: &Path,
    console: Option<&Path>,
) -> Result<(), String> {
    if let Some((init, spec)) = userns_container(root, id)? {
        let text = std::fs::read(process).map_err(|e| format!("{}: {e}", process.display()))?;
        let process: oci_spec::runtime::Process =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", process.display()))?;
        return with_default_sigpipe(|| {
            super::userns_exec::exec(init, &spec, &process, pid_file, console)
        });
    }
    let built = with_default_sigpipe(|| {
        ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(root)
            .map(|b| {
                b.with_console_socket(console)
                    .as_tenant()
                    .with_process(Some(process))
                    .with_detach(true)
                    .build()
            })
    });
    let pid = built
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    std::fs::write(pid_file, pid.as_raw().to_string())
        .map_err(|e| format!("{}: {e}", pid_file.display()))
}

/// The init pid and spec of container `root/id` when it has its own user namespace,
/// which libcontainer's tenant builder would not join.
fn userns_container(
    root: &Path,
    id: &str,
) -> Result<Option<(i32, oci_spec::runtime::Spec)>, String> {
    let c = Container::load(root.join(id)).map_err(|e| format!("load: {e}"))?;
    let config = c.bundle().join("config.json");
    let spec =
        oci_spec::runtime::Spec::load(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    if !super::userns_exec::has_user_namespace(&spec) {
        return Ok(None);
    }
    let pid = c
        .pid()
        .ok_or_else(|| format!("container {id} is not running"))?;
    Ok(Some((pid.as_raw(), spec)))
}
