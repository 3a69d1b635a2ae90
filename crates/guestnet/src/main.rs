//! The `guestnet` binary: subcommands over the libraries.

mod agent_cmd;
mod lab_cmd;
mod logging;
mod router_cmd;
mod serve_cmd;
mod verify_cmd;

use clap::{Parser, Subcommand};

/// guestnet: guest-network firewall, port forwarding and load balancing, enforced atomically.
#[derive(Debug, Parser)]
#[command(name = "guestnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and use test hosts made of network namespaces.
    #[command(subcommand)]
    Lab(lab_cmd::LabCommand),
    /// Operate a virtual router: apply configs, serve its control endpoint, show its status.
    #[command(subcommand)]
    Router(router_cmd::RouterCommand),
    /// The management server: CloudStack's API, the job runner and the in-process agent.
    Serve(serve_cmd::ServeArgs),
    /// The host agent: connects to a management server and drives this host's routers.
    Agent(agent_cmd::AgentArgs),
    /// Compares, for every router, what the database says with what the router enforces.
    Verify(verify_cmd::VerifyArgs),
    /// A lab router enforcing an example config, served until Ctrl-C.
    Demo {
        /// The data directory of the lab and the router state.
        #[arg(
            long = "data-dir",
            value_name = "DIR",
            default_value = "./guestnet-data"
        )]
        data_dir: std::path::PathBuf,
        /// The RouterConfig to enforce.
        #[arg(long, value_name = "FILE.json", default_value = "examples/router.json")]
        config: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // Before any thread: the programs guestnet starts (dnsmasq, haproxy, QEMU) inherit the mask.
    if let Err(e) = sys::cmd::unblock_all_signals() {
        eprintln!("guestnet: cannot unblock signals: {e}");
    }
    logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(c) => lab_cmd::run(c),
        Command::Router(c) => router_cmd::run(c),
        Command::Serve(a) => serve_cmd::run(a),
        Command::Agent(a) => agent_cmd::run(a),
        Command::Verify(a) => verify_cmd::run(a),
        Command::Demo { data_dir, config } => router_cmd::demo(&data_dir, &config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guestnet: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
