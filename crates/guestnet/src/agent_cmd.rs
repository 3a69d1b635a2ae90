//! `guestnet agent`: the host agent as its own process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::driver::Driver;
use agent::host::{HostConfig, VlanInterfaces, VmDriver};
use anyhow::{bail, Context};

/// How the agent's routers are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AgentDriver {
    /// Every router and VM is a namespace of this host's lab; configs are enforced (root).
    Lab,
    /// Configs are validated, rendered and written under the data directory; nothing is
    /// enforced.
    DryRun,
    /// Every router is a namespace of this host, plugged into the public bridge and into its
    /// network's VLAN bridge on the guest trunk; configs are enforced (root).
    Host,
}

/// Arguments of `guestnet agent`. Each has a key of the same name (with `_` for `-`) in the
/// `--config` file; a flag given here wins over the file.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct AgentArgs {
    /// A TOML file holding any of the options below (`server`, `token_file`, `data_dir`,
    /// `driver`, `apply_timeout`, `drift_interval`, `public_bridge`, `guest_interface`,
    /// `namespace_prefix`, `vm_driver`, `vlan_interfaces`, `libvirt_uri`, `kvm`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check that this host has what the driver needs, print every missing piece (one line
    /// each) and exit: 0 when all is there, 1 otherwise.
    #[arg(long)]
    check: bool,
    /// A management server, `http://HOST:PORT`; give several (or a comma-separated list) and
    /// the agent moves to the next when one stops answering.
    #[arg(
        long = "server",
        value_name = "URL",
        value_delimiter = ',',
        env = "GUESTNET_SERVERS"
    )]
    servers: Vec<String>,
    /// A file holding the token `createAgentToken` issued for this host (or set
    /// GUESTNET_AGENT_TOKEN).
    #[arg(long = "token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Where the host's lab and router state live [default: ./guestnet-agent].
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How routers are driven [default: lab].
    #[arg(long, value_enum)]
    driver: Option<AgentDriver>,
    /// Seconds a router may take to apply a config; the request then fails with that reason
    /// [default: 120].
    #[arg(long = "apply-timeout", value_name = "SECS", value_parser = parse_seconds)]
    apply_timeout: Option<f64>,
    /// Seconds between two looks for routers whose kernel lost their rules [default: 1].
    #[arg(long = "drift-interval", value_name = "SECS", value_parser = parse_seconds)]
    drift_interval: Option<f64>,
    /// Host driver: the existing Linux bridge carrying the public network.
    #[arg(long = "public-bridge", value_name = "BRIDGE")]
    public_bridge: Option<String>,
    /// Host driver: the interface carrying the guest VLANs (the trunk).
    #[arg(long = "guest-interface", value_name = "IFACE")]
    guest_interface: Option<String>,
    /// Host driver: every router's namespace is `PREFIX-<router>` [default: gnr].
    #[arg(long = "namespace-prefix", value_name = "PREFIX")]
    namespace_prefix: Option<String>,
    /// Host driver: how guests are started; `external`: by the operator's hypervisor, which
    /// plugs them into their network's bridge; `libvirt`: through the host's libvirt daemon;
    /// `qemu`: by QEMU run by the agent [default: external].
    #[arg(long = "vm-driver", value_name = "DRIVER")]
    vm_driver: Option<VmDriver>,
    /// Host driver: `create`: the agent makes each VLAN interface `IFACE.N` on the trunk (802.1Q
    /// support needed); `existing`: the host's network configuration provides them [default:
    /// create].
    #[arg(long = "vlan-interfaces", value_name = "MODE")]
    vlan_interfaces: Option<VlanInterfaces>,
    /// Host driver, `libvirt` VM driver: the daemon's URI [default: qemu:///system].
    #[arg(long = "libvirt-uri", value_name = "URI")]
    libvirt_uri: Option<String>,
    /// Host driver, `libvirt` and `qemu` VM drivers: let guests use KVM when /dev/kvm opens
    /// (otherwise QEMU's emulation).
    #[arg(long)]
    kvm: bool,
}

/// The `--config` file: the same options as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    server: Option<Servers>,
    token_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    driver: Option<AgentDriver>,
    apply_timeout: Option<f64>,
    drift_interval: Option<f64>,
    public_bridge: Option<String>,
    guest_interface: Option<String>,
    namespace_prefix: Option<String>,
    vm_driver: Option<VmDriver>,
    vlan_interfaces: Option<VlanInterfaces>,
    libvirt_uri: Option<String>,
    kvm: Option<bool>,
}

/// One server or several.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Servers {
    One(String),
    Many(Vec<String>),
}

impl AgentArgs {
    /// These flags over `file`'s keys: a flag given wins.
    fn merged(mut self, file: AgentFile) -> anyhow::Result<AgentArgs> {
        if self.servers.is_empty() {
            self.servers = match file.server {
                Some(Servers::One(s)) => s.split(',').map(|s| s.trim().to_string()).collect(),
                Some(Servers::Many(v)) => v,
                None => Vec::new(),
            };
        }
        for (what, v) in [
            ("apply_timeout", file.apply_timeout),
            ("drift_interval", file.drift_interval),
        ] {
            if let Some(v) = v {
                parse_seconds(&v.to_string()).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            }
        }
        self.token_file = self.token_file.or(file.token_file);
        self.data_dir = self.data_dir.or(file.data_dir);
        self.driver = self.driver.or(file.driver);
        self.apply_timeout = self.apply_timeout.or(file.apply_timeout);
        self.drift_interval = self.drift_interval.or(file.drift_interval);
        self.public_bridge = self.public_bridge.or(file.public_bridge);
        self.guest_interface = self.guest_interface.or(file.guest_interface);
        self.namespace_prefix = self.namespace_prefix.or(file.namespace_prefix);
        self.vm_driver = self.vm_driver.or(file.vm_driver);
        self.vlan_interfaces = self.vlan_interfaces.or(file.vlan_interfaces);
        self.libvirt_uri = self.libvirt_uri.or(file.libvirt_uri);
        self.kvm = self.kvm || file.kvm.unwrap_or(false);
        Ok(self)
    }

    /// The host driver's configuration, from these options.
    fn host_config(&self) -> anyhow::Result<HostConfig> {
        host_config(
            self.public_bridge.clone(),
            self.guest_interface.clone(),
            self.namespace_prefix.clone(),
            self.vm_driver,
            self.vlan_interfaces,
            self.libvirt_uri.clone(),
            self.kvm,
        )
    }
}

/// The host driver's configuration: the public bridge and the trunk are required.
pub(crate) fn host_config(
    public_bridge: Option<String>,
    guest_interface: Option<String>,
    namespace_prefix: Option<String>,
    vm_driver: Option<VmDriver>,
    vlan_interfaces: Option<VlanInterfaces>,
    libvirt_uri: Option<String>,
    kvm: bool,
) -> anyhow::Result<HostConfig> {
    let Some(public_bridge) = public_bridge else {
        bail!("the host driver needs --public-bridge (or `public_bridge` in the config file)");
    };
    let Some(guest_interface) = guest_interface else {
        bail!("the host driver needs --guest-interface (or `guest_interface` in the config file)");
    };
    let config = HostConfig {
        public_bridge,
        guest_interface,
        namespace_prefix: namespace_prefix
            .unwrap_or_else(|| agent::host::DEFAULT_NAMESPACE_PREFIX.to_string()),
        vm_driver: vm_driver.unwrap_or_default(),
        vlan_interfaces: vlan_interfaces.unwrap_or_default(),
        libvirt_uri: libvirt_uri.unwrap_or_else(|| agent::guests::DEFAULT_URI.to_string()),
        kvm,
    };
    config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// Reads the `--config` file.
fn read_file(path: &std::path::Path) -> anyhow::Result<AgentFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
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

/// Prints every piece the host driver lacks here; whether nothing is missing.
pub(crate) fn report_check(config: &HostConfig) -> bool {
    let lacks = agent::host::preflight(config);
    for lack in &lacks {
        println!("missing: {lack}");
    }
    if lacks.is_empty() {
        println!(
            "ok: this host can run the host driver ({})",
            agent::host::describe(config)
        );
    }
    lacks.is_empty()
}

/// Runs the agent until SIGINT or SIGTERM (or, with `--check`, checks the host and exits).
pub(crate) fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => AgentFile::default(),
    };
    let args = args.merged(file)?;
    let driver = args.driver.unwrap_or(AgentDriver::Lab);
    if args.check {
        let ok = match driver {
            AgentDriver::Host => report_check(&args.host_config()?),
            AgentDriver::Lab => match Driver::lab_possible() {
                Ok(()) => {
                    println!("ok: this host can run the lab driver");
                    true
                }
                Err(why) => {
                    println!("missing: {}", why.chain());
                    false
                }
            },
            AgentDriver::DryRun => {
                println!("ok: the dry-run driver needs nothing");
                true
            }
        };
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if args.servers.is_empty() {
        bail!("give the management servers with --server (or `server` in the config file)");
    }
    let token = token(&args)?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./guestnet-agent"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let driver = match driver {
        AgentDriver::DryRun => Driver::dry_run(&data_dir),
        AgentDriver::Lab => {
            if let Err(why) = Driver::lab_possible() {
                bail!("the lab driver cannot run here: {}", why.chain());
            }
            Driver::lab(&data_dir).context("the host's lab")?
        }
        AgentDriver::Host => {
            let config = args.host_config()?;
            let lacks = agent::host::preflight(&config);
            if !lacks.is_empty() {
                let lines: Vec<String> = lacks.iter().map(|l| format!("missing: {l}")).collect();
                bail!("the host driver cannot run here:\n{}", lines.join("\n"));
            }
            Driver::host(&data_dir, config)
                .map_err(|e| anyhow::anyhow!("the host driver: {}", e.chain()))?
        }
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    tracing::info!(driver = %driver.describe(), servers = ?args.servers, "guestnet agent starting");
    let agent = agent::Agent::new(
        driver,
        Duration::from_secs_f64(args.apply_timeout.unwrap_or(120.0)),
    );
    let opts = agent::run::Options {
        servers: args.servers,
        token,
        drift_interval: Duration::from_secs_f64(args.drift_interval.unwrap_or(1.0)),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_win_over_the_config_file() {
        let file: AgentFile = toml::from_str(
            r#"
server = ["http://a:8080", "http://b:8080"]
data_dir = "/var/lib/guestnet-agent"
driver = "host"
drift_interval = 2.5
public_bridge = "cloudbr0"
guest_interface = "eth1"
namespace_prefix = "gn"
vm_driver = "external"
vlan_interfaces = "existing"
"#,
        )
        .unwrap();
        let flags = AgentArgs {
            public_bridge: Some("brpub".into()),
            ..AgentArgs::default()
        };
        let args = flags.merged(file).unwrap();
        assert_eq!(args.servers, ["http://a:8080", "http://b:8080"]);
        assert_eq!(args.driver, Some(AgentDriver::Host));
        assert_eq!(args.drift_interval, Some(2.5));
        let host = args.host_config().unwrap();
        assert_eq!(host.public_bridge, "brpub");
        assert_eq!(host.guest_interface, "eth1");
        assert_eq!(host.namespace_prefix, "gn");
        assert_eq!(host.vm_driver, VmDriver::External);
        assert_eq!(host.vlan_interfaces, VlanInterfaces::Existing);
    }

    #[test]
    fn the_packaged_config_file_is_understood() {
        let text = include_str!("../../../packaging/etc/agent.toml");
        let file: AgentFile = toml::from_str(text).unwrap();
        let args = AgentArgs::default().merged(file).unwrap();
        assert_eq!(args.driver, Some(AgentDriver::Host));
        let host = args.host_config().unwrap();
        assert_eq!(host.public_bridge, "cloudbr0");
        assert_eq!(host.vm_driver, VmDriver::External);
    }

    #[test]
    fn a_bad_config_file_is_refused_by_name() {
        let e = toml::from_str::<AgentFile>("public_brige = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("public_brige"), "{e}");
        let e = toml::from_str::<AgentFile>("vm_driver = \"qemu?\"\n").unwrap_err();
        assert!(e.to_string().contains("qemu?"), "{e}");
        let file: AgentFile = toml::from_str("drift_interval = -1.0\n").unwrap();
        let e = AgentArgs::default().merged(file).unwrap_err();
        assert!(e.to_string().contains("drift_interval"), "{e}");
        let e = AgentArgs::default().host_config().unwrap_err();
        assert!(e.to_string().contains("--public-bridge"), "{e}");
    }
}
