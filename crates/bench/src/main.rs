//! `guestnet-bench`: figures for the virtual router, measured in a lab of network namespaces.
//!
//! It is a harness that prints figures, not a test. It needs root: it builds its own lab (an
//! outside host, one router, one VM) in a temporary data directory and removes it at the end,
//! also after an error or a termination signal.
//!
//! `guestnet-bench router [--sizes …] [--runs …] [--markdown FILE]` measures, for each size and
//! both rule mixes: a load from empty, one changed rule on top of N, `guestnet router apply` of
//! one changed rule as a whole process, new-connection latency through the router, and, for the
//! adversarial mix, the same rules as a linear chain. BENCHMARKS.md explains every figure.
//!
//! `guestnet-bench lb [--sizes …] [--changes …] [--rate …] [--markdown FILE]` measures load
//! balancing at 10 to 1,000 rules: a member change, a structural reload, and connections refused
//! or reset under a steady load meanwhile (BENCHMARKS.md, "Load balancing").
//!
//! `guestnet-bench api [--rules …] [--clients …] [--markdown FILE]` measures the management
//! server end to end on SQLite and PostgreSQL: creations accepted per second, creation to
//! enforcement at 10k rules, listing 10k rules (BENCHMARKS.md, "Management server").
//!
//! `guestnet-bench agents [--only e2e|throughput|restart] [--markdown FILE]` measures the
//! spread-out pipeline with servers and agents as processes of their own: creation to
//! enforcement through an agent, sustained changes through two servers and two agents, and a
//! restarted agent restoring a router of 100k rules (BENCHMARKS.md, "Agents and several
//! servers").
//!
//! `guestnet-bench host [--networks 200] [--rules 1000] [--only routers|deploy] [--markdown FILE]`
//! measures the host driver inside a hypervisor host made of namespaces: one agent holding
//! many routers (a SIGKILL and restart until every router is confirmed enforcing its last
//! generation; the agent's CPU at idle), and a guest from deployVirtualMachine to its DHCP
//! lease and an answer through a port forward (BENCHMARKS.md, "Real hosts").
//!
//! The hidden subcommands `probe-server`, `probe-client`, `lb-server` and `lb-client` are this binary run inside the lab's
//! namespaces. Like every crate but `sys`, it never creates a process itself.

mod agents;
mod api;
mod host;
mod lb;
mod linear;
mod load;
mod mix;
mod probe;
mod report;
mod rng;
mod router;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

/// guestnet-bench: measure the router's apply path and packet path in a throw-away lab.
#[derive(Debug, Parser)]
#[command(name = "guestnet-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the router (needs root): load, one change, the CLI, connection latency, baseline.
    Router(router::Options),
    /// Measure the management server end to end on SQLite and PostgreSQL (needs root).
    Api(api::Options),
    /// Measure load balancing (needs root): member changes, reloads, failures under load.
    Lb(lb::Options),
    /// Measure servers and agents as separate processes (needs root): end to end, sustained
    /// changes through two servers and two agents, an agent restart at 100k rules.
    Agents(agents::Options),
    /// Measure the host driver (needs root): one agent holding many routers (restart, idle
    /// CPU), and a guest from deploy to an answer through a port forward.
    Host(host::Options),
    /// Print a config of a mix as JSON (generation 1, or after CHANGES changed rules as in run 1).
    #[command(hide = true)]
    Config {
        /// The mix.
        #[arg(long)]
        mix: mix::Mix,
        /// Counted rules.
        #[arg(long)]
        size: usize,
        /// Changed rules on top (the run's in-process changes, then its CLI changes).
        #[arg(long, default_value_t = 0)]
        changes: usize,
        /// Print the nft script instead: the full one, or with --delta the last change's delta.
        #[arg(long)]
        script: bool,
        /// With --script: the delta of the last change only.
        #[arg(long, requires = "script")]
        delta: bool,
        /// With --script: the linear baseline's script instead of ours.
        #[arg(long, requires = "script", conflicts_with = "delta")]
        linear: bool,
    },
    /// Accept TCP connections and drop them (run inside the lab's VM).
    #[command(hide = true)]
    ProbeServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Answer each connection's request line with a fixed answer, then close (run inside a VM).
    #[command(hide = true)]
    LbServer {
        /// Addresses to listen on.
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// Make paced connections and count how each ended (run inside the outside host).
    #[command(hide = true)]
    LbClient {
        /// Address to connect to.
        #[arg(long)]
        connect: SocketAddr,
        /// New connections per second.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Run this long.
        #[arg(
            long,
            required_unless_present = "stop_file",
            conflicts_with = "stop_file"
        )]
        seconds: Option<f64>,
        /// Run until this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
        /// Write the report here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time new TCP connections and print the figures as JSON (run inside the outside host).
    #[command(hide = true)]
    ProbeClient {
        /// Address to connect to.
        #[arg(long)]
        connect: SocketAddr,
        /// Connections timed.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Connections made first, untimed.
        #[arg(long, default_value_t = 100)]
        warmup: usize,
    },
}

/// Blocks SIGINT, SIGTERM and SIGHUP and turns them into a flag that the measuring loop checks
/// between steps, so the lab is always removed. Children inherit the mask: a Ctrl-C does not
/// cut an `nft` transaction short; the probes unblock the signals again.
fn watch_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("cannot block signals")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || loop {
        if let Ok(signal) = set.wait() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("guestnet-bench: {signal} received: stopping after the current step, then removing the lab");
        }
    });
    Ok(stop)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Router(opts) => {
            watch_signals().and_then(|stop| router::run(&opts, &stop).map(|_| ()))
        }
        Command::Lb(opts) => watch_signals().and_then(|stop| lb::run(&opts, &stop).map(|_| ())),
        Command::Api(opts) => watch_signals().and_then(|stop| api::run(&opts, &stop).map(|_| ())),
        Command::Agents(opts) => {
            watch_signals().and_then(|stop| agents::run(&opts, &stop).map(|_| ()))
        }
        Command::Host(opts) => watch_signals().and_then(|stop| host::run(&opts, &stop).map(|_| ())),
        Command::LbServer { listen } => load::serve(&listen),
        Command::LbClient {
            connect,
            rate,
            seconds,
            stop_file,
            out,
        } => match (seconds, stop_file) {
            (_, Some(f)) => Ok(load::Until::File(f)),
            (Some(s), None) => Ok(load::Until::Elapsed(std::time::Duration::from_secs_f64(s))),
            (None, None) => Err(anyhow::anyhow!("give --seconds or --stop-file")),
        }
        .and_then(|until| load::client(connect, rate, &until, out.as_deref())),
        Command::Config {
            mix,
            size,
            changes,
            script,
            delta,
            linear,
        } => print_config(mix, size, changes, script, delta, linear),
        Command::ProbeServer { listen } => probe::serve(listen),
        Command::ProbeClient {
            connect,
            count,
            warmup,
        } => probe::client(connect, count, warmup),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guestnet-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(
    mix: mix::Mix,
    size: usize,
    changes: usize,
    script: bool,
    delta: bool,
    linear: bool,
) -> anyhow::Result<()> {
    let mut cfg = mix::config(mix, size);
    let mut previous = cfg.clone();
    let mut rng = rng::Rng::new(mix::change_seed(mix, size, 0));
    let mut used = std::collections::BTreeSet::new();
    for _ in 0..changes {
        previous = cfg;
        cfg = mix::change(&previous, mix, &mut rng, &mut used)
            .context("no rule left to change")?
            .0;
    }
    if !script {
        println!("{}", serde_json::to_string(&cfg)?);
        return Ok(());
    }
    if linear {
        print!("{}", linear::render(&cfg).script);
        return Ok(());
    }
    let valid = |c: router_config::RouterConfig| {
        router_config::validate(c).map_err(|e| anyhow::anyhow!("invalid config: {e}"))
    };
    let new = valid(cfg)?;
    if delta {
        let old = valid(previous)?;
        let mut model = render::plan(&old);
        print!("{}", model.update(&old, &new).script);
    } else {
        print!("{}", render::render_full(&render::plan(&new)));
    }
    Ok(())
}

/// The `guestnet` binary beside this one (both are built into the same target directory).
fn sibling_guestnet() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.with_file_name("guestnet"))
}
