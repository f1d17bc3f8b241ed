//! `berthd`: the Berth daemon. Opens the engine over its data root and serves the Docker
//! Engine API on one or more unix sockets.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

/// Command-line flags, named like dockerd's.
#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "Berth container engine daemon")]
struct Args {
    /// Socket(s) to listen on, e.g. unix:///run/berth/berth.sock.
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Root of persistent state.
    #[arg(long, default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Root of runtime state.
    #[arg(long, default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Registries to reach over plain HTTP (loopback ones always are).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Layers downloaded at once per pull.
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// Runtime for containers that name none: berth (built-in) or runc.
    #[arg(long, default_value = "berth")]
    default_runtime: String,
    /// Bridge device of the default network.
    #[arg(long, default_value = "berth0")]
    bridge: String,
    /// Subnet of the default bridge network.
    #[arg(long, default_value = "172.29.0.0/16")]
    bip: String,
    /// nftables table of this daemon.
    #[arg(long, default_value = "berth")]
    nft_table: String,
    /// Parent cgroup of all containers.
    #[arg(long, default_value = "berth")]
    cgroup_parent: String,
    /// Run containers in a user namespace: `default` (user dockremap, created if missing)
    /// or USER[:GROUP], whose first ranges in /etc/subuid and /etc/subgid are used.
    #[arg(long)]
    userns_remap: Option<String>,
    /// Log filter (tracing syntax), e.g. info or debug.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// `$BERTH_SHIM`, else `berth-shim` next to this binary, else on `$PATH`.
fn shim_binary() -> anyhow::Result<PathBuf> {
    berth_runtime::find_shim_binary()
        .context("berth-shim not found: set BERTH_SHIM or install it next to berthd")
}

/// Most tokio worker threads berthd runs: the engine waits on I/O and on its shims, so
/// more threads mostly add stacks and malloc arenas.
const MAX_WORKERS: usize = 4;
/// How long an idle blocking-pool thread lives (tokio's default is 10 s).
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How often memory freed by the allocator is handed back to the kernel.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Bounds glibc's malloc arenas (one per thread by default, up to 8 per core), so that
/// the heap freed by short-lived blocking threads does not stay spread over many arenas.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap pages to the kernel now and then (glibc keeps them otherwise).
async fn trim_heap_periodically() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: malloc_trim has no preconditions; it only releases unused memory.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    let mut cfg =
        berth_engine::EngineConfig::with_roots(args.data_root.clone(), args.exec_root.clone());
    cfg.insecure_registries = args.insecure_registries.clone();
    cfg.max_concurrent_downloads = args.max_concurrent_downloads.max(1);
    cfg.shim_binary = shim_binary()?;
    cfg.default_runtime = args.default_runtime.clone();
    cfg.bridge_name = args.bridge.clone();
    cfg.bridge_subnet = args.bip.clone();
    cfg.nft_table = args.nft_table.clone();
    cfg.cgroup_parent = args.cgroup_parent.clone();
    if let Some(v) = &args.userns_remap {
        let remap = berth_engine::userns::resolve_remap(v)?;
        tracing::info!(
            "user namespaces: root is {}:{} ({} ids from {})",
            remap.uids.outside,
            remap.gids.outside,
            remap.uids.count,
            remap.user
        );
        cfg.userns_remap = Some(remap);
    }
    let engine = berth_engine::Engine::open(cfg)
        .await
        .context("open engine")?;
    let hosts = if args.hosts.is_empty() {
        vec!["unix:///run/berth/berth.sock".to_string()]
    } else {
        args.hosts.clone()
    };
    tokio::spawn(trim_heap_periodically());
    let mut servers = Vec::new();
    for h in hosts {
        let Some(path) = h.strip_prefix("unix://") else {
            bail!("unsupported host {h}: only unix:// sockets are served");
        };
        let path = PathBuf::from(path);
        let engine = engine.clone();
        servers.push(tokio::spawn(async move {
            if let Err(e) = berth_api::serve_unix(engine, &path).await {
                tracing::error!("serve {}: {e}", path.display());
            }
        }));
        tracing::info!("berthd listening on {h}");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("berthd stopping; containers keep running");
    // Exit at once: the runtime would otherwise wait for blocking tasks such as
    // followed logs, and the shims keep every container running anyway.
    std::process::exit(0)
}
