//! `guestnet agent`: the host agent as its own process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::driver::Driver;
use anyhow::{bail, Context};

/// How the agent's routers are driven.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum AgentDriver {
    /// Every router and VM is a namespace of this host's lab; configs are enforced (root).
    Lab,
    /// Configs are validated, rendered and written under the data directory; nothing is
    /// enforced.
    DryRun,
}

/// Arguments of `guestnet agent`.
#[derive(Debug, clap::Args)]
pub(crate) struct AgentArgs {
    /// A management server, `http://HOST:PORT`; give several (or a comma-separated list) and
    /// the agent moves to the next when one stops answering.
    #[arg(
        long = "server",
        value_name = "URL",
        required = true,
        value_delimiter = ',',
        env = "GUESTNET_SERVERS"
    )]
    servers: Vec<String>,
    /// A file holding the token `createAgentToken` issued for this host (or set
    /// GUESTNET_AGENT_TOKEN).
    #[arg(long = "token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Where the host's lab and router state live.
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./guestnet-agent"
    )]
    data_dir: PathBuf,
    /// How routers are driven.
    #[arg(long, value_enum, default_value = "lab")]
    driver: AgentDriver,
    /// Seconds a router may take to apply a config; the request then fails with that reason.
    #[arg(long = "apply-timeout", value_name = "SECS", default_value_t = 120.0,
          value_parser = parse_seconds)]
    apply_timeout: f64,
    /// Seconds between two looks for routers whose kernel lost their rules.
    #[arg(long = "drift-interval", value_name = "SECS", default_value_t = 1.0,
          value_parser = parse_seconds)]
    drift_interval: f64,
}

/// A positive number of seconds.
pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of seconds between 0 and 86400"
        )),
    }
}

/// This machine's host name and this process's id: a default name for a server.
pub(crate) fn default_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "server".into());
    format!("{host}-{}", std::process::id())
}

fn token(args: &AgentArgs) -> anyhow::Result<String> {
    let token = match (&args.token_file, std::env::var("GUESTNET_AGENT_TOKEN")) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?,
        (None, Ok(t)) => t,
        (None, Err(_)) => bail!("give the host's token with --token-file or GUESTNET_AGENT_TOKEN"),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the token is empty");
    }
    Ok(token)
}

/// Runs the agent until SIGINT or SIGTERM.
pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let token = token(&args)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let driver = match args.driver {
        AgentDriver::DryRun => Driver::dry_run(&args.data_dir),
        AgentDriver::Lab => {
            if let Err(why) = Driver::lab_possible() {
                bail!("the lab driver cannot run here: {}", why.chain());
            }
            Driver::lab(&args.data_dir).context("the host's lab")?
        }
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    tracing::info!(driver = %driver.describe(), servers = ?args.servers, "guestnet agent starting");
    let agent = agent::Agent::new(driver, Duration::from_secs_f64(args.apply_timeout));
    let opts = agent::run::Options {
        servers: args.servers,
        token,
        drift_interval: Duration::from_secs_f64(args.drift_interval),
    };
    rt.block_on(agent::run::run(opts, agent, shutdown()));
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
