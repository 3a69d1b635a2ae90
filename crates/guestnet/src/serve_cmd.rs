//! `guestnet serve`: the management server.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mgmt::bootstrap::VlanRanges;
use mgmt::serve::{DriverChoice, Options};

/// Which agent drives the routers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DriverArg {
    /// Every router and VM is a namespace of the server's lab; configs are enforced (root).
    Lab,
    /// Configs are validated, rendered and written under the data directory; nothing is
    /// enforced.
    DryRun,
    /// The in-process agent drives routers as namespaces of this machine, plugged into the
    /// public bridge (`--public-bridge`) and each network's VLAN bridge on the guest trunk
    /// (`--guest-interface`); configs are enforced (root).
    Host,
    /// No agent in this process: `guestnet agent` processes connect (to any server of the
    /// database) and drive their hosts' routers.
    Agents,
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
    /// The agent; default: the in-process agent with the lab when it can run here (root, nft,
    /// haproxy), dry-run otherwise.
    #[arg(long, value_enum)]
    driver: Option<DriverArg>,
    /// Seconds a router may take to apply a config before its jobs fail with that reason.
    #[arg(long = "apply-timeout", value_name = "SECS", default_value_t = 120.0,
          value_parser = crate::agent_cmd::parse_seconds)]
    apply_timeout: f64,
    /// This server's name among the servers sharing the database; default: the machine's
    /// host name and the process id.
    #[arg(long = "server-name", value_name = "NAME")]
    server_name: Option<String>,
    /// The URL other servers and `guestnet verify` reach this server at; default
    /// `http://LISTEN`.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// The host name of the in-process agent (its routers are placed on it).
    #[arg(long = "host-name", value_name = "NAME", default_value = mgmt::serve::EMBEDDED_HOST)]
    host_name: String,
    /// After every generation, compare each network worker's copy of its rows with a full read
    /// of the database (a difference is logged, counted in `/metrics` and repaired); always on
    /// in debug builds. Costs a full read per generation.
    #[arg(long = "check-copy")]
    check_copy: bool,
    /// Host driver: the existing Linux bridge carrying the public network.
    #[arg(long = "public-bridge", value_name = "BRIDGE")]
    public_bridge: Option<String>,
    /// Host driver: the interface carrying the guest VLANs (the trunk).
    #[arg(long = "guest-interface", value_name = "IFACE")]
    guest_interface: Option<String>,
    /// Host driver: every router's namespace is `PREFIX-<router>` [default: gnr].
    #[arg(long = "namespace-prefix", value_name = "PREFIX")]
    namespace_prefix: Option<String>,
    /// Host driver: how guests are started: `external`, `libvirt` or `qemu` [default:
    /// external].
    #[arg(long = "vm-driver", value_name = "DRIVER")]
    vm_driver: Option<agent::host::VmDriver>,
    /// Host driver: `create` (the agent makes `IFACE.N`) or `existing` (the host provides
    /// them) [default: create].
    #[arg(long = "vlan-interfaces", value_name = "MODE")]
    vlan_interfaces: Option<agent::host::VlanInterfaces>,
    /// The most connections one client address may hold at once (more are answered 429);
    /// raise it when every client comes through one load balancer.
    #[arg(long = "max-connections-per-address", value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,
    /// The guest VLANs of the zone's physical network (`100-199` or `100-199,300-349`, within
    /// 1-4094), used when the database has no physical network yet (a first start);
    /// updatePhysicalNetwork changes them later.
    #[arg(long = "guest-vlans", value_name = "RANGES",
          default_value = mgmt::bootstrap::DEFAULT_GUEST_VLANS,
          value_parser = parse_vlans)]
    guest_vlans: VlanRanges,
    /// The DNS servers (one or two IPv4 addresses, comma-separated) the zone's guests are
    /// given, set when this start seeds the database; updateZone changes them later.
    #[arg(long = "zone-dns", value_name = "IP[,IP]", value_parser = parse_dns)]
    zone_dns: Option<ZoneDns>,
}

/// `--zone-dns`: one or two addresses.
#[derive(Debug, Clone)]
struct ZoneDns(Vec<Ipv4Addr>);

fn parse_vlans(text: &str) -> Result<VlanRanges, String> {
    VlanRanges::parse(text).map_err(|e| e.to_string())
}

fn parse_dns(text: &str) -> Result<ZoneDns, String> {
    let dns = text
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{a:?} is not an IPv4 address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if dns.len() > 2 {
        return Err("at most two DNS servers (dns1,dns2)".into());
    }
    Ok(ZoneDns(dns))
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let driver = match args.driver {
        Some(DriverArg::Lab) => DriverChoice::Lab,
        Some(DriverArg::DryRun) => DriverChoice::DryRun,
        Some(DriverArg::Agents) => DriverChoice::Agents,
        Some(DriverArg::Host) => DriverChoice::Host(crate::agent_cmd::host_config(
            args.public_bridge,
            args.guest_interface,
            args.namespace_prefix,
            args.vm_driver,
            args.vlan_interfaces,
            None,
            false,
        )?),
        None => DriverChoice::Auto,
    };
    let opts = Options {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
        driver,
        apply_timeout: std::time::Duration::from_secs_f64(args.apply_timeout),
        server_name: args
            .server_name
            .unwrap_or_else(crate::agent_cmd::default_name),
        advertise: args.advertise,
        host_name: args.host_name,
        check_copy: args.check_copy,
        per_address: usize::try_from(args.max_connections_per_address).unwrap_or(usize::MAX),
        guest: mgmt::bootstrap::GuestDefaults {
            vlans: args.guest_vlans,
            dns: args.zone_dns.map(|d| d.0).unwrap_or_default(),
        },
    };
    rt.block_on(mgmt::serve::serve(opts, |line| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }))?;
    Ok(ExitCode::SUCCESS)
}
