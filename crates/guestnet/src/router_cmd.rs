//! `guestnet router …` and `guestnet demo`: operate a virtual router.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use sys::nft::Netns;
use vrouterd::client;
use vrouterd::serve::ServeOptions;
use vrouterd::{ApplyOutcome, Router, CONTROL_SOCKET};

/// Which router, and where its state lives.
#[derive(Debug, clap::Args)]
pub(crate) struct RouterTarget {
    /// A named network namespace (under /run/netns) the router lives in.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["router", "host_netns"])]
    netns: Option<String>,
    /// A lab router by name (the lab of --data-dir).
    #[arg(long, value_name = "NAME", conflicts_with = "host_netns")]
    router: Option<String>,
    /// Act on this machine's own network namespace. Only with this flag is it ever touched.
    #[arg(long)]
    host_netns: bool,
    /// The data directory (lab and router state).
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "./guestnet-data"
    )]
    data_dir: PathBuf,
    /// Where the router keeps its ledger; default DATA-DIR/routers/NAME.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl RouterTarget {
    fn resolve(&self) -> anyhow::Result<(Netns, PathBuf)> {
        let (netns, name) = match (&self.netns, &self.router, self.host_netns) {
            (Some(ns), None, false) => (Netns::Named(ns.clone()), ns.clone()),
            (None, Some(r), false) => {
                let lab = lab::Lab::open(&self.data_dir)
                    .with_context(|| format!("no lab in {}", self.data_dir.display()))?;
                (Netns::Named(lab.router_netns(r)?), r.clone())
            }
            (None, None, true) => (Netns::Host, "host".to_string()),
            _ => bail!(
                "say which router: --netns NAME, --router NAME (a lab router) or --host-netns"
            ),
        };
        if let Netns::Named(n) = &netns {
            if !sys::netns::exists(n) {
                bail!("network namespace {n} does not exist");
            }
        }
        let state = self
            .state_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("routers").join(name));
        Ok((netns, state))
    }
}

/// The router subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RouterCommand {
    /// Make the kernel enforce exactly CONFIG.json, or the config a RouterDelta file makes of the
    /// generation the router holds (through a running `router serve` if there is one).
    Apply {
        /// A RouterConfig document or a RouterDelta (told apart by their fields).
        config: PathBuf,
        #[command(flatten)]
        target: RouterTarget,
    },
    /// Enforce the last good config, then apply configs received on the control socket.
    Serve {
        #[command(flatten)]
        target: RouterTarget,
        /// Seconds between drift checks; 0 turns the timer off (status still reports drift).
        #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
        drift_interval: f64,
    },
    /// Show the applied generation, drift and every rule's counters.
    Status {
        #[command(flatten)]
        target: RouterTarget,
        /// Repair drift now (replace the table with the last good config).
        #[arg(long)]
        repair: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the nftables script that replaces the table with CONFIG.json (touches nothing).
    Render {
        /// The RouterConfig document.
        config: PathBuf,
    },
}

/// Runs one router subcommand.
pub(crate) fn run(c: RouterCommand) -> anyhow::Result<ExitCode> {
    match c {
        RouterCommand::Apply { config, target } => apply(&config, &target),
        RouterCommand::Serve {
            target,
            drift_interval,
        } => {
            let (netns, state) = target.resolve()?;
            serve(netns, &state, drift_interval, None)
        }
        RouterCommand::Status {
            target,
            repair,
            json,
        } => status(&target, repair, json),
        RouterCommand::Render { config } => {
            let bytes = std::fs::read(&config)
                .with_context(|| format!("cannot read {}", config.display()))?;
            let cfg = router_config::parse_and_validate(&bytes)?;
            print!("{}", render::render_full(&render::plan(&cfg)));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_outcome(o: &ApplyOutcome) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(o)?);
    Ok(())
}

/// A config, parsed, that is not a delta: a delta is tried first, which a config's first rule
/// list (a field deltas do not have) stops early, before its rules are read.
fn config_document(
    path: &Path,
    bytes: &[u8],
    as_delta: &router_config::ParseError,
) -> anyhow::Result<router_config::RouterConfig> {
    router_config::parse::<router_config::RouterConfig>(bytes).map_err(|as_config| {
        anyhow::anyhow!(
            "{} is neither a router config ({}) nor a router delta ({})",
            path.display(),
            vrouterd::chain(&as_config),
            vrouterd::chain(as_delta)
        )
    })
}

fn apply(config: &Path, target: &RouterTarget) -> anyhow::Result<ExitCode> {
    let (netns, state) = target.resolve()?;
    let bytes =
        std::fs::read(config).with_context(|| format!("cannot read {}", config.display()))?;
    let delta = router_config::parse::<router_config::RouterDelta>(&bytes);
    let socket = state.join(CONTROL_SOCKET);
    if client::is_listening(&socket) {
        // A config is parsed by the router only (its refusal names what is wrong).
        let (method, route) = match delta {
            Ok(_) => ("POST", "/v1/delta"),
            Err(_) => ("PUT", "/v1/config"),
        };
        let (code, body) = client::request(&socket, method, route, &bytes)?;
        if code == 200 {
            std::io::Write::write_all(&mut std::io::stdout(), &body)?;
            println!();
            return Ok(ExitCode::SUCCESS);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        bail!(
            "{}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("router refused the config")
        );
    }
    let doc = match delta {
        Ok(d) => Ok(d),
        Err(as_delta) => Err(config_document(config, &bytes, &as_delta)?),
    };
    drop(bytes);
    let mut router = Router::open(netns, &state)?;
    let outcome = match doc {
        Ok(d) => router.apply_delta(&d)?,
        Err(c) => router.apply_document(c)?,
    };
    print_outcome(&outcome)?;
    Ok(ExitCode::SUCCESS)
}

fn status(target: &RouterTarget, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (netns, state) = target.resolve()?;
    let socket = state.join(CONTROL_SOCKET);
    let report: serde_json::Value = if client::is_listening(&socket) {
        let (code, body) = if repair {
            client::request(&socket, "POST", "/v1/repair", b"")?
        } else {
            client::request(&socket, "GET", "/v1/status", b"")?
        };
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if code != 200 {
            bail!(
                "{}",
                v.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("status failed")
            );
        }
        v
    } else {
        let mut router = Router::open(netns, &state)?;
        serde_json::to_value(vrouterd::serve::status_of(&mut router, repair)?)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_status(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(v: &serde_json::Value) {
    let generation = v
        .get("generation")
        .map(|g| g.to_string())
        .unwrap_or_default();
    println!(
        "router      {}",
        v.get("netns").and_then(|n| n.as_str()).unwrap_or("?")
    );
    println!("generation  {generation}");
    println!(
        "drift       {}",
        v.get("drift").map(|d| d.to_string()).unwrap_or_default()
    );
    if let Some(r) = v.get("repaired").filter(|r| !r.is_null()) {
        println!("repaired    re-applied generation {r}");
    }
    println!("{:>12} {:>14} {:>16}", "rule", "packets", "bytes");
    if let Some(rules) = v.pointer("/counters/rules").and_then(|r| r.as_object()) {
        for (id, c) in rules {
            println!(
                "{id:>12} {:>14} {:>16}",
                c["packets"].to_string(),
                c["bytes"].to_string()
            );
        }
    }
    for (name, ptr) in [
        ("refused", "/counters/ingress_refused"),
        ("egress-def", "/counters/egress_default"),
    ] {
        if let Some(c) = v.pointer(ptr) {
            println!(
                "{name:>12} {:>14} {:>16}",
                c["packets"].to_string(),
                c["bytes"].to_string()
            );
        }
    }
    if let Some(d) = v.get("dhcp").filter(|d| !d.is_null()) {
        let state = match (d["running"].as_bool(), d.get("pid")) {
            (Some(true), Some(pid)) => format!("running (pid {pid})"),
            _ => "NOT running".to_string(),
        };
        println!(
            "dhcp        {state}, {} leases configured, {} handed out",
            d["leases"], d["active_leases"]
        );
    }
    let balancers = v.get("load_balancers").and_then(|l| l.as_array());
    if let Some(balancers) = balancers.filter(|l| !l.is_empty()) {
        println!(
            "{:>12} {:>21} {:>12} {:>8} {:>10}",
            "lb rule", "member", "health", "current", "total"
        );
        for lb in balancers {
            let members = lb.get("members").and_then(|m| m.as_array());
            for m in members.into_iter().flatten() {
                let member = format!("{}:{}", m["vm_ip"].as_str().unwrap_or("?"), m["port"]);
                println!(
                    "{:>12} {member:>21} {:>12} {:>8} {:>10}",
                    lb["id"].to_string(),
                    m["status"].as_str().unwrap_or("?"),
                    m["current_connections"].to_string(),
                    m["total_connections"].to_string()
                );
            }
        }
    }
}

/// Serves a router until SIGINT or SIGTERM. With `initial`, applies that config once started.
pub(crate) fn serve(
    netns: Netns,
    state: &Path,
    drift_interval: f64,
    initial: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut router = Router::open(netns.clone(), state)?;
    match router.restore() {
        Ok(Some(g)) => tracing::info!(%netns, generation = g, "re-applied the last good config"),
        Ok(None) => tracing::info!(%netns, "no config applied yet"),
        // The firewall enforces the config; haproxy is retried by the drift timer.
        Err(e @ vrouterd::ApplyError::Balancer { .. }) => {
            tracing::error!(%netns, error = %vrouterd::chain(&e), "load balancing not restored yet")
        }
        // Likewise dnsmasq.
        Err(e @ vrouterd::ApplyError::Dhcp { .. }) => {
            tracing::error!(%netns, error = %vrouterd::chain(&e), "DHCP and DNS not restored yet")
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(path) = initial {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let outcome = router.apply_bytes(&bytes)?;
        tracing::info!(?outcome, "applied {}", path.display());
    }
    let drift_interval = (drift_interval > 0.0).then(|| Duration::from_secs_f64(drift_interval));
    let options = ServeOptions {
        socket: state.join(CONTROL_SOCKET),
        drift_interval,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            tracing::info!("shutting down; the kernel keeps enforcing the last applied config");
        };
        vrouterd::serve::serve(router, options, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `guestnet demo`: a lab with one router enforcing the example config, served until Ctrl-C.
pub(crate) fn demo(data_dir: &Path, config: &Path) -> anyhow::Result<ExitCode> {
    let lab = match lab::Lab::open(data_dir) {
        Ok(lab) => lab,
        Err(_) => lab::Lab::up(data_dir, &lab::LabSpec::default_demo())?,
    };
    let netns = Netns::Named(lab.router_netns("net1")?);
    let state = data_dir.join("routers").join("net1");
    let bin = std::env::args().next().unwrap_or_else(|| "guestnet".into());
    eprintln!(
        "guestnet demo: router net1 enforces {} (lab in {}).\n\
         In another terminal, try:\n  \
         {bin} lab exec --data-dir {dd} vm:web2 -- python3 -c 'import socketserver as s, http.server as h; s.TCPServer((\"10.1.1.12\", 8080), h.SimpleHTTPRequestHandler).serve_forever()' &\n  \
         {bin} lab exec --data-dir {dd} outside -- curl -s http://203.0.113.11/\n  \
         {bin} router status --data-dir {dd} --router net1\n\
         Ctrl-C stops the router; `{bin} lab down --data-dir {dd}` removes the lab.",
        config.display(),
        data_dir.display(),
        dd = data_dir.display(),
    );
    let result = serve(netns, &state, 10.0, Some(config));
    if let Err(e) = &result {
        eprintln!("guestnet demo: {e:#}");
    }
    result
}
