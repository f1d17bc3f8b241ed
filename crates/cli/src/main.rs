//! `berth`: a docker-compatible command line client for `berthd`.
//!
//! It speaks only the Docker Engine API over a unix socket (see [`client`]).

mod auth;
mod client;
mod cmd;
mod create_extra;
mod create_opts;
mod dockerignore;
mod error;
mod output;
mod parse;
mod progress;
mod stdio;
mod template;

use clap::{Parser, Subcommand};

use cmd::{
    build, compose, container, cp, exec, image, image_io, inspect, lifecycle, login, logs, network,
    ps, stats, system, volume,
};
use error::{CliError, CmdResult};

/// A self-sufficient runtime for containers
#[derive(Parser, Debug)]
#[command(name = "berth", version, disable_help_subcommand = true)]
struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long = "debug", global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the berth version information
    Version(system::VersionArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Save one or more images to a tar archive
    Save(image_io::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image_io::LoadArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Show the history of an image
    History(image_io::HistoryArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(container::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(container::CreateArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(container::AttachArgs),
    /// Stop one or more running containers
    Stop(lifecycle::StopArgs),
    /// Restart one or more containers
    Restart(lifecycle::StopArgs),
    /// Kill one or more running containers
    Kill(lifecycle::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(lifecycle::NamesArgs),
    /// Remove one or more containers
    Rm(lifecycle::RmArgs),
    /// Pause all processes within one or more containers
    Pause(lifecycle::NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(lifecycle::NamesArgs),
    /// Rename a container
    Rename(lifecycle::RenameArgs),
    /// Display the running processes of a container
    Top(lifecycle::TopArgs),
    /// List port mappings or a specific mapping for the container
    Port(lifecycle::PortArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(lifecycle::DiffArgs),
    /// Create a new image from a container's changes
    Commit(lifecycle::CommitArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Return low-level information on objects
    Inspect(inspect::InspectArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage berth
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Define and run multi-container applications from a compose file
    Compose(compose::ComposeArgs),
}

/// `berth container ...` aliases of the top-level container commands.
#[derive(Subcommand, Debug)]
enum ContainerCmd {
    /// List containers
    #[command(alias = "list")]
    Ls(ps::PsArgs),
    /// Create and run a new container
    #[command(disable_help_flag = true)]
    Run(container::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(container::CreateArgs),
    /// Start containers
    Start(container::StartArgs),
    /// Stop containers
    Stop(lifecycle::StopArgs),
    /// Restart containers
    Restart(lifecycle::StopArgs),
    /// Kill containers
    Kill(lifecycle::KillArgs),
    /// Wait for containers
    Wait(lifecycle::NamesArgs),
    /// Remove containers
    #[command(alias = "remove")]
    Rm(lifecycle::RmArgs),
    /// Display detailed information on containers
    Inspect(inspect::InspectArgs),
    /// Fetch logs
    Logs(logs::LogsArgs),
    /// Run a command in a container
    Exec(exec::ExecArgs),
    /// Remove all stopped containers
    Prune(volume::PruneArgs),
    /// Attach to a running container
    Attach(container::AttachArgs),
    /// Display the running processes of a container
    Top(lifecycle::TopArgs),
    /// List port mappings
    Port(lifecycle::PortArgs),
    /// Inspect filesystem changes
    Diff(lifecycle::DiffArgs),
    /// Create a new image from a container's changes
    Commit(lifecycle::CommitArgs),
    /// Rename a container
    Rename(lifecycle::RenameArgs),
    /// Pause containers
    Pause(lifecycle::NamesArgs),
    /// Unpause containers
    Unpause(lifecycle::NamesArgs),
    /// Display resource usage statistics
    Stats(stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
}

fn is_create(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Run(_)
            | Command::Create(_)
            | Command::Container(ContainerCmd::Run(_))
            | Command::Container(ContainerCmd::Create(_))
    )
}

async fn dispatch(c: &client::Client, cmd: Command) -> CmdResult {
    match cmd {
        Command::Version(a) => system::version(c, a).await,
        Command::Info(a) => system::info(c, a).await,
        Command::Pull(a) => image::pull(c, a).await,
        Command::Push(a) => image::push(c, a).await,
        Command::Images(a) => image::images(c, a).await,
        Command::Image(a) => image::image(c, a).await,
        Command::Tag(a) => image::tag(c, a).await,
        Command::Rmi(a) => image::rmi(c, a).await,
        Command::Save(a) => image_io::save(c, a).await,
        Command::Load(a) => image_io::load(c, a).await,
        Command::Build(a) => build::build(c, a).await,
        Command::History(a) => image_io::history(c, a).await,
        Command::Run(a) => container::run(c, a).await,
        Command::Create(a) => container::create(c, a).await,
        Command::Start(a) => container::start(c, a).await,
        Command::Attach(a) => container::attach(c, a).await,
        Command::Stop(a) => lifecycle::stop(c, a).await,
        Command::Restart(a) => lifecycle::restart(c, a).await,
        Command::Kill(a) => lifecycle::kill(c, a).await,
        Command::Wait(a) => lifecycle::wait(c, a).await,
        Command::Rm(a) => lifecycle::rm(c, a).await,
        Command::Pause(a) => lifecycle::pause(c, a).await,
        Command::Unpause(a) => lifecycle::unpause(c, a).await,
        Command::Rename(a) => lifecycle::rename(c, a).await,
        Command::Top(a) => lifecycle::top(c, a).await,
        Command::Port(a) => lifecycle::port(c, a).await,
        Command::Diff(a) => lifecycle::diff(c, a).await,
        Command::Commit(a) => lifecycle::commit(c, a).await,
        Command::Ps(a) => ps::ps(c, a).await,
        Command::Logs(a) => logs::logs(c, a).await,
        Command::Exec(a) => exec::exec(c, a).await,
        Command::Inspect(a) => inspect::inspect(c, a).await,
        Command::Stats(a) => stats::stats(c, a).await,
        Command::Cp(a) => cp::cp(c, a).await,
        Command::Events(a) => system::events(c, a).await,
        Command::Login(a) => login::login(c, a).await,
        Command::Logout(a) => login::logout(a),
        Command::Network(a) => network::network(c, a).await,
        Command::Volume(a) => volume::volume(c, a).await,
        Command::System(a) => system::system(c, a).await,
        Command::Compose(a) => compose::compose(c, a).await,
        Command::Container(cc) => match cc {
            ContainerCmd::Ls(a) => ps::ps(c, a).await,
            ContainerCmd::Run(a) => container::run(c, a).await,
            ContainerCmd::Create(a) => container::create(c, a).await,
            ContainerCmd::Start(a) => container::start(c, a).await,
            ContainerCmd::Stop(a) => lifecycle::stop(c, a).await,
            ContainerCmd::Restart(a) => lifecycle::restart(c, a).await,
            ContainerCmd::Kill(a) => lifecycle::kill(c, a).await,
            ContainerCmd::Wait(a) => lifecycle::wait(c, a).await,
            ContainerCmd::Rm(a) => lifecycle::rm(c, a).await,
            ContainerCmd::Inspect(a) => inspect::inspect_kind(c, a, Some("container")).await,
            ContainerCmd::Logs(a) => logs::logs(c, a).await,
            ContainerCmd::Exec(a) => exec::exec(c, a).await,
            ContainerCmd::Prune(a) => volume::prune_kind(c, a, "containers").await,
            ContainerCmd::Attach(a) => container::attach(c, a).await,
            ContainerCmd::Top(a) => lifecycle::top(c, a).await,
            ContainerCmd::Port(a) => lifecycle::port(c, a).await,
            ContainerCmd::Diff(a) => lifecycle::diff(c, a).await,
            ContainerCmd::Commit(a) => lifecycle::commit(c, a).await,
            ContainerCmd::Rename(a) => lifecycle::rename(c, a).await,
            ContainerCmd::Pause(a) => lifecycle::pause(c, a).await,
            ContainerCmd::Unpause(a) => lifecycle::unpause(c, a).await,
            ContainerCmd::Stats(a) => stats::stats(c, a).await,
            ContainerCmd::Cp(a) => cp::cp(c, a).await,
        },
    }
}

fn main() {
    // Like docker (a Go program), die quietly on a closed stdout pipe (`berth events | head`)
    // instead of panicking in println!.
    // SAFETY: resetting a signal disposition to its default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let creating = is_create(&cli.cmd);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let host = client::resolve_host(cli.host.as_deref());
    let code = rt.block_on(async move {
        let c = client::Client::new(&host).map_err(CliError::from)?;
        dispatch(&c, cli.cmd).await
    });
    let code = match code {
        Ok(code) => code,
        Err(CliError::Reported) => 1,
        Err(e) => {
            if creating {
                eprintln!("berth: {}", e.render());
                125
            } else {
                eprintln!("{}", e.render());
                1
            }
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_host_flag_and_create_detection() {
        let cli =
            Cli::try_parse_from(["berth", "-H", "unix:///x.sock", "run", "--rm", "img"]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("unix:///x.sock"));
        assert!(is_create(&cli.cmd));
        let cli = Cli::try_parse_from(["berth", "ps", "-a", "-H", "unix:///y"]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("unix:///y"));
        assert!(!is_create(&cli.cmd));
    }
}
