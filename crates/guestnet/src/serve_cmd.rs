//! `guestnet serve`: the management server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mgmt::serve::{DriverChoice, Options};

/// Which agent drives the routers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DriverArg {
    /// Every router and VM is a namespace of the server's lab; configs are enforced (root).
    Lab,
    /// Configs are validated, rendered and written under the data directory; nothing is
    /// enforced.
    DryRun,
}

/// Arguments of `guestnet serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to serve the API on (`/client/api`) and metrics (`/metrics`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the database (SQLite), keys, router state and the lab live.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./guestnet-data"
    )]
    data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL, or `sqlite://PATH`; default: SQLite in the data directory.
    #[arg(
        long = "database-url",
        value_name = "URL",
        env = "GUESTNET_DATABASE_URL"
    )]
    database_url: Option<String>,
    /// The agent; default: lab when it can run here (root, nft, haproxy), dry-run otherwise.
    #[arg(long, value_enum)]
    driver: Option<DriverArg>,
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let opts = Options {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        driver: match args.driver {
            Some(DriverArg::Lab) => DriverChoice::Lab,
            Some(DriverArg::DryRun) => DriverChoice::DryRun,
            None => DriverChoice::Auto,
        },
    };
    rt.block_on(mgmt::serve::serve(opts, |line| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }))?;
    Ok(ExitCode::SUCCESS)
}
