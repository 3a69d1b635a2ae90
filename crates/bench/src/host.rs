//! `guestnet-bench host`: one host agent with the host driver holding many routers, and a
//! guest's way from deployVirtualMachine to an answer through a port forward.
//!
//! Everything runs inside a hypervisor host made of namespaces
//! ([`test_support::hypervisor::Hypervisor`]): one `guestnet serve --driver agents` (SQLite)
//! and one `guestnet agent --driver host` on its public bridge and trunk, the VLAN interfaces
//! provided by the hypervisor (`--vlan-interfaces existing`).
//!
//! Two parts, each selectable with `--only`:
//! - `routers`: `--networks` networks (each its own VLAN and router) and `--rules` rules on each
//!   router, made through the API by `--clients` concurrent clients (firewall rules and port
//!   forwards to one VM per network, see [`rule_plan`]); then `--restarts` times the agent is
//!   killed with SIGKILL and started again, timed until `guestnet verify`'s comparison
//!   (`mgmt::verify::verify`) finds every router holding the generation the database says it
//!   confirmed, its kernel holding what it committed, its config equal to the database's and no
//!   job pending; then, with nothing changing, the agent's CPU time over `--idle-seconds` as a
//!   share of one core, and its resident memory;
//! - `deploy`: `--deploys` times, a VM deployed on a network of its own (the `external` VM
//!   driver: the harness plugs a namespace guest with the deployed MAC into the network's
//!   bridge, as a hypervisor plugs a tap, and busybox `udhcpc` takes the lease), timed from the
//!   deployVirtualMachine call to its job's success, to the lease, and to the first HTTP answer
//!   through a port forward created as soon as the deploy's job ended, fetched from the
//!   hypervisor's outside host.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use mgmt::client::Client;
use nix::sys::signal::{SigSet, Signal};
use sys::cmd::Stdio;
use test_support::hypervisor::{in_netns, Hypervisor, PUBLIC_BRIDGE, TRUNK};
use test_support::process::{base_url, startup_line, Proc};

use crate::api::{s, verdict};
use crate::report::{self, median, Machine};

/// Where `host --markdown` writes: between these two lines.
pub(crate) const BEGIN: &str = "<!-- bench-host:begin -->";
/// See [`BEGIN`].
pub(crate) const END: &str = "<!-- bench-host:end -->";
/// The section's heading, for a file that has no markers yet.
const HEADING: &str = "## Real hosts: the host driver";

const KEY: &str = "bench-host-api-key";
const SECRET: &str = "bench-host-secret-key";

/// Targets.
pub(crate) const RESTART_TARGET_S: f64 = 10.0;
pub(crate) const IDLE_CPU_TARGET_PCT: f64 = 2.0;

/// The first guest VLAN.
const FIRST_VLAN: u16 = 100;
/// A bound for steps that normally take seconds.
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// The host's name.
const HOST: &str = "hv1";
/// The public port of the deploy part's port forward.
const DEPLOY_PORT: u16 = 8080;

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Many routers: restart and idle CPU.
    Routers,
    /// A guest from deploy to reachable.
    Deploy,
}

/// Options of `guestnet-bench host`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Networks, each with its own VLAN and router (at most 230: one public address each).
    #[arg(long, default_value_t = 200)]
    pub(crate) networks: usize,
    /// Rules per router (three in ten port forwards, the rest firewall rules).
    #[arg(long, default_value_t = 1000)]
    pub(crate) rules: usize,
    /// Concurrent clients making the rules.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// Agent restarts timed.
    #[arg(long, default_value_t = 5)]
    pub(crate) restarts: usize,
    /// The idle window over which the agent's CPU time is read.
    #[arg(long, default_value_t = 60)]
    pub(crate) idle_seconds: u64,
    /// Deploys timed.
    #[arg(long, default_value_t = 5)]
    pub(crate) deploys: usize,
    /// Only this part.
    #[arg(long, value_enum)]
    pub(crate) only: Option<Part>,
    /// The `guestnet` binary (default: beside this one).
    #[arg(long)]
    pub(crate) server: Option<PathBuf>,
    /// Write the figures into FILE between its `<!-- bench-host:begin -->` and
    /// `<!-- bench-host:end -->` markers.
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
}

impl Options {
    fn wants(&self, part: Part) -> bool {
        self.only.is_none_or(|p| p == part)
    }
}

// ---------------------------------------------------------------------------------------------
// The rules (pure).

/// One rule a router is given through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleSpec {
    /// createFirewallRule: TCP `port` of the network's public address, from `cidr`.
    Firewall { port: u16, cidr: String },
    /// createPortForwardingRule (no firewall rule opened): TCP `public_port` to port 80 of the
    /// network's VM.
    Forward { public_port: u16 },
}

/// The `n` rules of every router: rule `i` is a port forward when `i % 10 < 3` (public ports
/// from 20000 up), a firewall rule otherwise (ports from 1 up, sources one of 256 /24s).
/// Ports never repeat within a router, so no two rules conflict.
pub(crate) fn rule_plan(n: usize) -> Vec<RuleSpec> {
    (0..n)
        .map(|i| {
            if i % 10 < 3 {
                RuleSpec::Forward {
                    public_port: 20_000 + u16::try_from(i).unwrap_or(u16::MAX - 20_000),
                }
            } else {
                RuleSpec::Firewall {
                    port: 1 + u16::try_from(i).unwrap_or(u16::MAX - 1),
                    cidr: format!("198.51.{}.0/24", i % 256),
                }
            }
        })
        .collect()
}

/// The order rules are sent in: round after round, rule `i` of every network before rule
/// `i + 1` of any, so every router fills at the same pace. Pairs (network, rule).
pub(crate) fn send_order(networks: usize, rules: usize) -> Vec<(usize, usize)> {
    (0..rules)
        .flat_map(|r| (0..networks).map(move |n| (n, r)))
        .collect()
}

/// CPU `ticks` over `seconds` as a share of one core, in percent.
pub(crate) fn core_share(ticks: u64, ticks_per_s: u64, seconds: f64) -> f64 {
    if ticks_per_s == 0 || seconds <= 0.0 {
        return f64::NAN;
    }
    ticks as f64 / ticks_per_s as f64 / seconds * 100.0
}

/// A `/proc/<pid>/stat` text's CPU ticks: the process's own (utime + stime) and those of the
/// children it waited for (cutime + cstime).
pub(crate) fn own_and_children_ticks(stat: &str) -> Option<(u64, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| (f[0] + f[1], f[2] + f[3]))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub(crate) fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// The rig.

/// The server, the agent and the hypervisor they run in; dropped in that order.
struct Rig {
    agent: Option<Proc>,
    server: Proc,
    endpoint: String,
    binary: PathBuf,
    dir: lab::TempDir,
    hv: Hypervisor,
    token_file: PathBuf,
    agent_starts: usize,
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The processes go first; the hypervisor (routers included) when the fields drop.
        self.agent = None;
    }
}

fn start_server(
    binary: &Path,
    hv: &Hypervisor,
    dir: &Path,
    vlans: usize,
) -> anyhow::Result<(Proc, String)> {
    let last = usize::from(FIRST_VLAN) + vlans.max(1) - 1;
    let mut cmd = sys::netns::command_in(&hv.netns(), binary, Vec::<&str>::new());
    cmd.args(["serve", "--driver", "agents", "--listen", "127.0.0.1:0"])
        .args(["--guest-vlans", &format!("{FIRST_VLAN}-{last}")])
        .arg("--data-dir")
        .arg(dir.join("server"))
        .env("GUESTNET_ADMIN_API_KEY", KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("GUESTNET_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn("server", &mut cmd, &dir.join("server.log"))?;
    let child = proc.child_mut().context("the server's process")?;
    let (line, endpoint) = startup_line(child, STEP_DEADLINE);
    match endpoint {
        Some(e) => Ok((proc, e)),
        None => bail!(
            "no endpoint in the server's startup line {line:?}\n{}",
            proc.tail()
        ),
    }
}

impl Rig {
    fn new(binary: &Path, vlans: usize) -> anyhow::Result<Rig> {
        let dir = lab::TempDir::new().context("temp dir")?;
        let hv = Hypervisor::new();
        for v in 0..vlans {
            let vlan = FIRST_VLAN + u16::try_from(v).context("too many VLANs")?;
            hv.provide_vlan(vlan);
        }
        let (server, endpoint) = start_server(binary, &hv, dir.path(), vlans)?;
        let token_file = dir.path().join("agent.token");
        Ok(Rig {
            agent: None,
            server,
            endpoint,
            binary: binary.to_path_buf(),
            dir,
            hv,
            token_file,
            agent_starts: 0,
        })
    }

    fn client(&self) -> Client {
        Client::new(&self.endpoint, KEY, SECRET)
    }

    fn database_url(&self) -> String {
        format!(
            "sqlite://{}",
            self.dir.path().join("server").join("guestnet.db").display()
        )
    }

    /// Starts `guestnet agent --driver host` in the hypervisor.
    fn start_agent(&mut self) -> anyhow::Result<()> {
        self.agent_starts += 1;
        let mut cmd = sys::netns::command_in(&self.hv.netns(), &self.binary, Vec::<&str>::new());
        cmd.args(["agent", "--driver", "host", "--server"])
            .arg(base_url(&self.endpoint))
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--data-dir")
            .arg(self.dir.path().join("agent"))
            .args(["--public-bridge", PUBLIC_BRIDGE, "--guest-interface", TRUNK])
            .args(["--namespace-prefix", &self.hv.router_prefix()])
            .args(["--vlan-interfaces", "existing"])
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("GUESTNET_BENCH_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null());
        let log = self
            .dir
            .path()
            .join(format!("agent-{}.log", self.agent_starts));
        // The harness blocks SIGINT, SIGTERM and SIGHUP (see `main.rs`) and a child inherits
        // the mask, so the agent's dnsmasq would never see the SIGHUP that makes it re-read its
        // leases. The agent is started from a thread of its own with those signals unblocked.
        let agent = std::thread::scope(|s| {
            s.spawn(|| {
                let mut set = SigSet::empty();
                for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                    set.add(sig);
                }
                set.thread_unblock().context("cannot unblock signals")?;
                Ok::<_, anyhow::Error>(Proc::spawn("agent", &mut cmd, &log)?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread starting the agent panicked"))
        })??;
        self.agent = Some(agent);
        Ok(())
    }

    fn agent_pid(&self) -> anyhow::Result<i32> {
        let pid = self
            .agent
            .as_ref()
            .and_then(Proc::pid)
            .context("no agent running")?;
        Ok(i32::try_from(pid)?)
    }

    fn tails(&self) -> String {
        let mut t = self.server.tail();
        if let Some(a) = &self.agent {
            t.push('\n');
            t.push_str(&a.tail());
        }
        t
    }
}

/// A runtime whose threads are all in namespace `ns` (made by a thread that entered it), so
/// every connection its tasks open starts there.
fn runtime(ns: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    in_netns(ns, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("runtime")
    })
}

async fn wait_host_up(c: &Client) -> anyhow::Result<()> {
    wait_host_state(c, "Up").await
}

async fn wait_host_state(c: &Client, state: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let r = c.call("listHosts", &[("name", HOST)]).await?;
        if r["host"][0]["state"] == state {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "host {HOST} never {state}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A network made for the benchmark: its id, its source-NAT address's id and address.
#[derive(Debug, Clone)]
struct Net {
    id: String,
    ip_id: String,
    ip: String,
    third: usize,
}

async fn network(c: &Client, name: &str, third: usize) -> anyhow::Result<Net> {
    let zone = s(&c.call("listZones", &[]).await?, &["zone", "0", "id"])?;
    let offerings = c.call("listNetworkOfferings", &[]).await?;
    let offering = s(&offerings, &["networkoffering", "0", "id"])?;
    let gateway = format!("10.1.{third}.1");
    let net = c
        .call(
            "createNetwork",
            &[
                ("name", name),
                ("displaytext", name),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
                ("gateway", &gateway),
                ("netmask", "255.255.255.0"),
            ],
        )
        .await?;
    let id = s(&net, &["network", "id"])?;
    let ips = c
        .call("listPublicIpAddresses", &[("associatednetworkid", &id)])
        .await?;
    Ok(Net {
        id,
        ip_id: s(&ips, &["publicipaddress", "0", "id"])?,
        ip: s(&ips, &["publicipaddress", "0", "ipaddress"])?,
        third,
    })
}

/// deployVirtualMachine's parameters for VM `name` at `ip` with `mac` on `net` (not sent).
async fn deploy_params(
    c: &Client,
    net: &Net,
    name: &str,
    ip: &str,
    mac: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let zone = s(&c.call("listZones", &[]).await?, &["zone", "0", "id"])?;
    let offering = s(
        &c.call("listServiceOfferings", &[]).await?,
        &["serviceoffering", "0", "id"],
    )?;
    let template = s(
        &c.call("listTemplates", &[("templatefilter", "featured")])
            .await?,
        &["template", "0", "id"],
    )?;
    Ok(vec![
        ("zoneid".into(), zone),
        ("serviceofferingid".into(), offering),
        ("templateid".into(), template),
        ("networkids".into(), net.id.clone()),
        ("ipaddress".into(), ip.into()),
        ("macaddress".into(), mac.into()),
        ("name".into(), name.into()),
    ])
}

fn refs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Sends one rule; its job id.
async fn create_rule(c: &Client, net: &Net, vm: &str, rule: &RuleSpec) -> anyhow::Result<String> {
    let r = match rule {
        RuleSpec::Firewall { port, cidr } => {
            let port = port.to_string();
            c.call(
                "createFirewallRule",
                &[
                    ("ipaddressid", &net.ip_id),
                    ("protocol", "tcp"),
                    ("startport", &port),
                    ("endport", &port),
                    ("cidrlist", cidr),
                ],
            )
            .await?
        }
        RuleSpec::Forward { public_port } => {
            let port = public_port.to_string();
            c.call(
                "createPortForwardingRule",
                &[
                    ("ipaddressid", &net.ip_id),
                    ("protocol", "tcp"),
                    ("publicport", &port),
                    ("privateport", "80"),
                    ("virtualmachineid", vm),
                    ("openfirewall", "false"),
                ],
            )
            .await?
        }
    };
    s(&r, &["jobid"])
}

/// One run of `guestnet verify`'s comparison: how many routers, how many with differences, the
/// first difference seen.
async fn verify_once(db: &store::Db) -> anyhow::Result<(usize, usize, Option<String>)> {
    let reports = mgmt::verify::verify(db).await.context("verify")?;
    let differing: Vec<_> = reports
        .iter()
        .filter(|r| {
            !r.differences.is_empty()
                || r.held.and_then(|g| i64::try_from(g).ok()) != Some(r.applied)
        })
        .collect();
    let first = differing.first().map(|r| {
        format!(
            "{}: {}",
            r.router,
            r.differences.first().cloned().unwrap_or_default()
        )
    });
    Ok((reports.len(), differing.len(), first))
}

// ---------------------------------------------------------------------------------------------
// Part 1: many routers.

/// The figures of the routers part.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routers {
    pub(crate) networks: usize,
    pub(crate) rules: usize,
    pub(crate) networks_s: f64,
    pub(crate) vms_s: f64,
    pub(crate) fill_s: f64,
    pub(crate) settle_s: f64,
    pub(crate) verify_s: f64,
    /// Per restart: seconds from the new agent's spawn to host Up, to the start of the first
    /// clean comparison, and to its end.
    pub(crate) up_s: Vec<f64>,
    pub(crate) clean_start_s: Vec<f64>,
    pub(crate) clean_end_s: Vec<f64>,
    pub(crate) idle_seconds: f64,
    /// Seconds from the last restart's clean comparison until the processes that restart set
    /// going had ended (the agent's reaped children's CPU time still for [`SETTLED_FOR`]).
    pub(crate) quiet_s: f64,
    pub(crate) idle_cpu_pct: f64,
    pub(crate) server_idle_cpu_pct: f64,
    /// The agent's own share (utime + stime), without the children it waited for.
    pub(crate) idle_own_cpu_pct: f64,
    pub(crate) rss_kib: u64,
    pub(crate) threads: usize,
}

async fn make_routers(
    rig: &Rig,
    o: &Options,
    stop: &AtomicBool,
    f: &mut Routers,
) -> anyhow::Result<()> {
    let c = rig.client();
    ensure!(
        (1..=230).contains(&o.networks),
        "--networks must be 1 to 230 (one public address and one 10.1.N.0/24 each)"
    );
    // Networks: createNetwork answers once the router runs on the host.
    let t = Instant::now();
    let mut nets = Vec::new();
    for i in 0..o.networks {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        nets.push(network(&c, &format!("n{i}"), i + 1).await?);
    }
    f.networks_s = t.elapsed().as_secs_f64();
    eprintln!(
        "guestnet-bench host: {} networks and routers in {:.1} s",
        o.networks, f.networks_s
    );
    // One VM per network, the port forwards' target.
    let plan = rule_plan(o.rules);
    let t = Instant::now();
    let mut vms = Vec::new();
    for n in &nets {
        let p = deploy_params(
            &c,
            n,
            &format!("vm{}", n.third),
            &format!("10.1.{}.11", n.third),
            &format!("02:00:5e:11:{:02x}:0b", n.third),
        )
        .await?;
        let r = c.call("deployVirtualMachine", &refs(&p)).await?;
        vms.push((s(&r, &["id"])?, s(&r, &["jobid"])?));
    }
    for (_, job) in &vms {
        c.wait_job(
            job,
            Duration::from_millis(20),
            Instant::now() + STEP_DEADLINE,
        )
        .await
        .context("deploy")?;
    }
    f.vms_s = t.elapsed().as_secs_f64();
    // The rules, by concurrent clients, each sending its next as soon as one is answered.
    let order = Arc::new(send_order(o.networks, o.rules));
    let next = Arc::new(AtomicUsize::new(0));
    let last_jobs = Arc::new(std::sync::Mutex::new(vec![String::new(); o.networks]));
    let nets = Arc::new(nets);
    let vm_ids: Arc<Vec<String>> = Arc::new(vms.into_iter().map(|(id, _)| id).collect());
    let plan = Arc::new(plan);
    let t = Instant::now();
    let mut tasks = Vec::new();
    let stopped = Arc::new(AtomicBool::new(false));
    for _ in 0..o.clients.max(1) {
        let (c, order, next, last_jobs, nets, vm_ids, plan, stopped) = (
            c.clone(),
            order.clone(),
            next.clone(),
            last_jobs.clone(),
            nets.clone(),
            vm_ids.clone(),
            plan.clone(),
            stopped.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if stopped.load(Ordering::SeqCst) {
                    return anyhow::Ok(());
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(n, r)) = order.get(i) else {
                    return anyhow::Ok(());
                };
                let job = create_rule(&c, &nets[n], &vm_ids[n], &plan[r]).await?;
                if r + 1 == plan.len() {
                    if let Ok(mut l) = last_jobs.lock() {
                        l[n] = job;
                    }
                }
                if i % 10_000 == 0 && i > 0 {
                    eprintln!("guestnet-bench host: {i} rules sent");
                }
            }
        }));
    }
    // The clients look at `stopped`, set here once the harness is asked to stop.
    for task in tasks {
        loop {
            if stop.load(Ordering::SeqCst) {
                stopped.store(true, Ordering::SeqCst);
            }
            if task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.await.context("a client")??;
    }
    f.fill_s = t.elapsed().as_secs_f64();
    ensure!(!stop.load(Ordering::SeqCst), "stopped");
    // Every router's last rule enforced (jobs of one network end in order).
    let last: Vec<String> = last_jobs
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    for job in last.iter().filter(|j| !j.is_empty()) {
        c.wait_job(
            job,
            Duration::from_millis(50),
            Instant::now() + Duration::from_secs(1800),
        )
        .await
        .context("a router's last rule")?;
    }
    f.settle_s = t.elapsed().as_secs_f64();
    eprintln!(
        "guestnet-bench host: {} rules sent in {:.1} s, all enforced after {:.1} s",
        o.networks * o.rules,
        f.fill_s,
        f.settle_s
    );
    Ok(())
}

/// Counts every rule the API lists, firewall rules and port forwards.
async fn count_rules(c: &Client) -> anyhow::Result<usize> {
    let mut total = 0;
    for (cmd, field) in [
        ("listFirewallRules", "firewallrule"),
        ("listPortForwardingRules", "portforwardingrule"),
    ] {
        let r = c
            .call(cmd, &[("pagesize", "-1"), ("listall", "true")])
            .await?;
        total += r[field].as_array().map_or(0, Vec::len);
    }
    Ok(total)
}

/// Polls the comparison until it is clean; (seconds from `t0` to the start of the clean run,
/// to its end).
async fn until_clean(
    db: &store::Db,
    routers: usize,
    t0: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<(f64, f64)> {
    let deadline = t0 + STEP_DEADLINE;
    loop {
        let started = t0.elapsed().as_secs_f64();
        let (n, differing, first) = verify_once(db).await?;
        if n == routers && differing == 0 {
            return Ok((started, t0.elapsed().as_secs_f64()));
        }
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        ensure!(
            Instant::now() < deadline,
            "{differing} of {n} routers still differ after {} s: {first:?}",
            STEP_DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn routers_part(rig: &mut Rig, o: &Options, stop: &AtomicBool) -> anyhow::Result<Routers> {
    let mut f = Routers {
        networks: o.networks,
        rules: o.rules,
        ..Routers::default()
    };
    let ns = rig.hv.netns();
    let rt = runtime(&ns)?;
    in_netns(&ns, || -> anyhow::Result<()> {
        rt.block_on(async {
            let c = rig.client();
            make_routers(rig, o, stop, &mut f).await?;
            let listed = count_rules(&c).await?;
            ensure!(
                listed == o.networks * o.rules,
                "the API lists {listed} rules, {} were made",
                o.networks * o.rules
            );
            let db = store::Db::connect(&rig.database_url())
                .await
                .context("open the database")?;
            let t = Instant::now();
            until_clean(&db, o.networks, Instant::now(), stop).await?;
            f.verify_s = t.elapsed().as_secs_f64();
            eprintln!(
                "guestnet-bench host: {} routers verified clean ({:.2} s per comparison)",
                o.networks, f.verify_s
            );
            for run in 0..o.restarts {
                ensure!(!stop.load(Ordering::SeqCst), "stopped");
                if let Some(a) = rig.agent.as_mut() {
                    a.kill9();
                }
                // The server sees the connection close; the new agent is timed from its start.
                wait_host_state(&c, "Disconnected").await?;
                let t0 = Instant::now();
                rig.start_agent()?;
                wait_host_up(&c).await?;
                let up = t0.elapsed().as_secs_f64();
                let (start, end) = until_clean(&db, o.networks, t0, stop).await?;
                println!(
                    "host restart {}: Up after {up:.2} s; every router clean in the comparison \
                     started at {start:.2} s, ended at {end:.2} s",
                    run + 1
                );
                f.up_s.push(up);
                f.clean_start_s.push(start);
                f.clean_end_s.push(end);
            }
            // Idle: nothing changes; the agent's drift timer and heartbeats run.
            let pid = rig.agent_pid()?;
            let server = i32::try_from(rig.server.pid().context("server pid")?)?;
            let ticks = |p: i32| sys::proc::stat(p).map(|s| s.cpu_ticks);
            let split = |p: i32| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|t| own_and_children_ticks(&t))
            };
            // The window opens once what the last restart set going has ended: every network's
            // worker makes sure its router and VM exist again, and the host driver's look at
            // each router's links runs `ip`; those processes, reaped late, are the restart's
            // cost, not the idle timer's.
            let settle_from = Instant::now();
            let settle_deadline = settle_from + SETTLE_DEADLINE;
            let mut last = split(pid).map(|(_, c)| c);
            let mut still_since = Instant::now();
            while still_since.elapsed() < SETTLED_FOR {
                ensure!(!stop.load(Ordering::SeqCst), "stopped");
                ensure!(
                    Instant::now() < settle_deadline,
                    "the agent's children kept using CPU for {SETTLE_DEADLINE:?} after the restart"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = split(pid).map(|(_, c)| c);
                if now != last {
                    last = now;
                    still_since = Instant::now();
                }
            }
            f.quiet_s = settle_from.elapsed().as_secs_f64() - SETTLED_FOR.as_secs_f64();
            let split0 = split(pid);
            let (a0, s0, t0) = (ticks(pid), ticks(server), Instant::now());
            let end = t0 + Duration::from_secs(o.idle_seconds);
            while Instant::now() < end {
                ensure!(!stop.load(Ordering::SeqCst), "stopped");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (a1, s1) = (ticks(pid), ticks(server));
            let split1 = split(pid);
            let secs = t0.elapsed().as_secs_f64();
            let hz = sys::proc::clock_ticks();
            let (a0, a1, s0, s1) = (
                a0.context("agent stat")?,
                a1.context("agent stat")?,
                s0.context("server stat")?,
                s1.context("server stat")?,
            );
            f.idle_seconds = secs;
            f.idle_cpu_pct = core_share(a1 - a0, hz, secs);
            f.server_idle_cpu_pct = core_share(s1 - s0, hz, secs);
            if let (Some((own0, _)), Some((own1, _))) = (split0, split1) {
                f.idle_own_cpu_pct = core_share(own1 - own0, hz, secs);
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .context("the agent's status")?;
            f.rss_kib = vm_rss_kib(&status).unwrap_or(0);
            f.threads = sys::proc::thread_count(pid).unwrap_or(0);
            let (_, differing, first) = verify_once(&db).await?;
            ensure!(differing == 0, "after the idle window: {first:?}");
            println!(
                "host idle: settled {:.1} s after the restart; agent {:.2}% of a core over \
                 {secs:.0} s ({:.2}% its own threads; server {:.2}%), RSS {} MiB, {} threads",
                f.quiet_s,
                f.idle_cpu_pct,
                f.idle_own_cpu_pct,
                f.server_idle_cpu_pct,
                f.rss_kib / 1024,
                f.threads
            );
            Ok(())
        })
    })?;
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Part 2: deploy to reachable.

/// The figures of one deploy, seconds from the deployVirtualMachine call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deploy {
    pub(crate) job_s: f64,
    pub(crate) lease_s: f64,
    pub(crate) http_s: f64,
}

/// The script busybox's `udhcpc` runs with a lease: the address and the default route.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  bound|renew)\n\
    ip -4 addr flush dev \"$interface\"\n\
    ip addr add \"$ip/$mask\" dev \"$interface\"\n\
    for r in $router; do ip route replace default via \"$r\" dev \"$interface\"; break; done\n\
    ;;\n\
esac\n\
exit 0\n";

/// The body `http://ip:port/` answers from `ns` (`curl`), if it answers 2xx.
fn fetch(ns: &str, ip: &str, port: u16) -> Option<String> {
    let url = format!("http://{ip}:{port}/");
    let out = Hypervisor::output(ns, &["curl", "-s", "-f", "-m", "2", &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// socat's address of a command answering one HTTP request with `200` and `body` (HTTP/1.0:
/// the body ends with the connection).
fn http_answer(body: &str) -> String {
    format!("SYSTEM:echo HTTP/1.0 200 OK; echo; echo {body}")
}

fn deploy_part(rig: &mut Rig, o: &Options, stop: &AtomicBool) -> anyhow::Result<Vec<Deploy>> {
    let ns = rig.hv.netns();
    let rt = runtime(&ns)?;
    let third = 231;
    let net = in_netns(&ns, || {
        rt.block_on(async {
            let c = rig.client();
            let net = network(&c, "guests", third).await?;
            // The forward's firewall rule, open to the outside host.
            c.run(
                "createFirewallRule",
                &[
                    ("ipaddressid", &net.ip_id),
                    ("protocol", "tcp"),
                    ("startport", &DEPLOY_PORT.to_string()),
                    ("endport", &DEPLOY_PORT.to_string()),
                    ("cidrlist", "203.0.113.0/24"),
                ],
            )
            .await?;
            anyhow::Ok(net)
        })
    })?;
    let vlan = in_netns(&ns, || {
        rt.block_on(async {
            let r = rig
                .client()
                .call("listNetworks", &[("id", &net.id)])
                .await?;
            s(&r, &["network", "0", "vlan"])
        })
    })?;
    let bridge = agent::host::bridge_name(TRUNK, vlan.parse().context("the network's VLAN")?);
    let script = rig.dir.path().join("udhcpc.script");
    std::fs::write(&script, UDHCPC_SCRIPT).context("write the udhcpc script")?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .context("make the script executable")?;
    let script = script.to_string_lossy().into_owned();
    let outside = rig.hv.outside();
    let mut runs = Vec::new();
    for run in 0..o.deploys {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        let name = format!("d{run}");
        let mac = format!("02:00:5e:12:00:{:02x}", run + 1);
        let ip = format!("10.1.{third}.{}", 20 + run);
        let c = rig.client();
        let params = in_netns(&ns, || {
            rt.block_on(deploy_params(&c, &net, &format!("web{run}"), &ip, &mac))
        })?;
        // deploy → job done.
        let t0 = Instant::now();
        let (vm, job_s) = in_netns(&ns, || {
            rt.block_on(async {
                let r = c.call("deployVirtualMachine", &refs(&params)).await?;
                let job = s(&r, &["jobid"])?;
                let vm = s(&r, &["id"])?;
                c.wait_job(
                    &job,
                    Duration::from_millis(5),
                    Instant::now() + STEP_DEADLINE,
                )
                .await?;
                anyhow::Ok((vm, t0.elapsed().as_secs_f64()))
            })
        })?;
        // The forward is asked for at once; the hypervisor plugs the guest meanwhile.
        let pf_job = in_netns(&ns, || {
            rt.block_on(async {
                let r = c
                    .call(
                        "createPortForwardingRule",
                        &[
                            ("ipaddressid", &net.ip_id),
                            ("protocol", "tcp"),
                            ("publicport", &DEPLOY_PORT.to_string()),
                            ("privateport", "80"),
                            ("virtualmachineid", &vm),
                            ("openfirewall", "false"),
                        ],
                    )
                    .await?;
                s(&r, &["jobid"])
            })
        })?;
        let guest = rig
            .hv
            .guest(&name, &format!("tapd{run}"), &bridge, &mac, None, None);
        let _web = Hypervisor::spawn(
            &guest,
            &[
                "socat",
                "TCP-LISTEN:80,reuseaddr,fork",
                &http_answer(&format!("web{run}")),
            ],
        );
        let lease = Hypervisor::output(
            &guest,
            &[
                "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "20", "-T", "1", "-s", &script,
            ],
        );
        let lease_s = t0.elapsed().as_secs_f64();
        if !lease.status.success() {
            let bridges = Hypervisor::output(&ns, &["bridge", "link"]);
            let routers: Vec<String> = rig
                .hv
                .router_namespaces()
                .iter()
                .map(|r| {
                    let procs: Vec<String> = sys::netns::pids(r)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|p| sys::proc::cmdline(p).map(|c| c.join(" ")))
                        .collect();
                    format!("{r}: {procs:?}")
                })
                .collect();
            let mut files = String::new();
            if let Ok(dirs) = std::fs::read_dir(rig.dir.path().join("agent").join("routers")) {
                for d in dirs.flatten() {
                    let dns = d.path().join("dnsmasq");
                    for f in std::fs::read_dir(&dns).into_iter().flatten().flatten() {
                        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                        files.push_str(&format!("{}:\n{text}\n", f.path().display()));
                    }
                }
            }
            if let Some(a) = &rig.agent {
                files.push_str(&a.log());
            }
            bail!(
                "udhcpc found no lease on {bridge}: {}\nbridge ports: {}\nrouters: {routers:?}\n\
                 {files}",
                String::from_utf8_lossy(&lease.stderr),
                String::from_utf8_lossy(&bridges.stdout)
            );
        }
        let addr = Hypervisor::output(&guest, &["ip", "-4", "-o", "addr", "show", "eth0"]);
        ensure!(
            String::from_utf8_lossy(&addr.stdout).contains(&format!("{ip}/24")),
            "the guest leased something else: {addr:?}"
        );
        let want = format!("web{run}");
        let answered = test_support::wait_until(Instant::now() + STEP_DEADLINE, || {
            fetch(&outside, &net.ip, DEPLOY_PORT).as_deref() == Some(want.as_str())
        });
        let http_s = t0.elapsed().as_secs_f64();
        ensure!(answered, "{want} never answered through the port forward");
        println!(
            "host deploy {}: job {job_s:.2} s, lease {lease_s:.2} s, first answer through the \
             port forward {http_s:.2} s",
            run + 1
        );
        runs.push(Deploy {
            job_s,
            lease_s,
            http_s,
        });
        // Taken down for the next run: the forward, the VM, the guest.
        in_netns(&ns, || {
            rt.block_on(async {
                let done = c
                    .wait_job(
                        &pf_job,
                        Duration::from_millis(20),
                        Instant::now() + STEP_DEADLINE,
                    )
                    .await?;
                let pf = s(&done, &["portforwardingrule", "id"])?;
                c.run("deletePortForwardingRule", &[("id", &pf)]).await?;
                c.run("destroyVirtualMachine", &[("id", &vm), ("expunge", "true")])
                    .await?;
                anyhow::Ok(())
            })
        })?;
        rig.hv.unplug(&name);
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// The run and the report.

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    pub(crate) routers: Option<Routers>,
    pub(crate) deploys: Vec<Deploy>,
}

/// Runs the benchmark.
///
/// # Errors
/// When a process cannot be started, a request fails, or the routers never agree with the
/// database.
pub(crate) fn run(o: &Options, stop: &Arc<AtomicBool>) -> anyhow::Result<Figures> {
    let binary = match &o.server {
        Some(b) => b.clone(),
        None => crate::sibling_guestnet().context("cannot find the guestnet binary")?,
    };
    ensure!(
        binary.exists(),
        "no guestnet binary at {}",
        binary.display()
    );
    let machine = Machine::read();
    let vlans = if o.wants(Part::Routers) {
        o.networks
    } else {
        0
    } + 1;
    let mut rig = Rig::new(&binary, vlans)?;
    let ns = rig.hv.netns();
    let setup = in_netns(&ns, || {
        runtime(&ns)?.block_on(async {
            let c = rig.client();
            let t = c.call("createAgentToken", &[("host", HOST)]).await?;
            std::fs::write(&rig.token_file, s(&t, &["agenttoken", "token"])?)
                .context("write the token file")?;
            rig.start_agent()?;
            wait_host_up(&c).await
        })
    });
    let with_logs = |r: anyhow::Result<()>, rig: &Rig| {
        r.map_err(|e| e.context(format!("logs:\n{}", rig.tails())))
    };
    with_logs(setup, &rig)?;
    let mut f = Figures::default();
    if o.wants(Part::Routers) {
        let r = routers_part(&mut rig, o, stop);
        let r = r.map_err(|e| e.context(format!("logs:\n{}", rig.tails())))?;
        f.routers = Some(r);
    }
    if o.wants(Part::Deploy) {
        let d = deploy_part(&mut rig, o, stop);
        f.deploys = d.map_err(|e| e.context(format!("logs:\n{}", rig.tails())))?;
    }
    drop(rig);
    let text = markdown(o, &f, &machine);
    print!("{text}");
    if let Some(path) = &o.markdown {
        report::write_between(path, BEGIN, END, Some(HEADING), &text)?;
    }
    Ok(f)
}

fn median_or_nan(v: &[f64]) -> f64 {
    median(v).unwrap_or(f64::NAN)
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn command_line(o: &Options) -> String {
    let mut s = format!(
        "guestnet-bench host --networks {} --rules {} --clients {} --restarts {} \
         --idle-seconds {} --deploys {}",
        o.networks, o.rules, o.clients, o.restarts, o.idle_seconds, o.deploys
    );
    match o.only {
        Some(Part::Routers) => s.push_str(" --only routers"),
        Some(Part::Deploy) => s.push_str(" --only deploy"),
        None => {}
    }
    s
}

/// The Markdown section of the figures.
pub(crate) fn markdown(o: &Options, f: &Figures, machine: &Machine) -> String {
    let mut out = format!(
        "Measured by `{}` on {}. One `guestnet serve --driver agents` (SQLite) and one \
         `guestnet agent --driver host` run inside a hypervisor host made of namespaces.\n\n",
        command_line(o),
        machine.describe()
    );
    if let Some(r) = &f.routers {
        routers_markdown(&mut out, r);
    }
    if !f.deploys.is_empty() {
        deploy_markdown(&mut out, &f.deploys);
    }
    out
}

fn cells(v: &[f64]) -> String {
    let (lo, hi) = range(v);
    format!("{:.2} s ({lo:.2}–{hi:.2})", median_or_nan(v))
}

fn routers_markdown(out: &mut String, r: &Routers) {
    let total = r.networks * r.rules;
    let clean = median_or_nan(&r.clean_end_s);
    let rate = total as f64 / r.fill_s;
    out.push_str(&format!(
        "#### {} routers of {} rules each ({} rules) behind one agent\n\n\
         Made through the API: {} networks in {:.1} s (createNetwork answers once the router \
         runs), one VM each in {:.1} s, then the rules at {:.0} creations/s ({:.1} s), all \
         enforced {:.1} s after the first was sent. The API then listed all {} rules, and one \
         comparison of every router took {:.2} s.\n\n\
         | figure | target | median of {} (range) | verdict |\n|---|---|---|---|\n",
        r.networks,
        thousands(r.rules),
        thousands(total),
        r.networks,
        r.networks_s,
        r.vms_s,
        rate,
        r.fill_s,
        r.settle_s,
        thousands(total),
        r.verify_s,
        r.up_s.len()
    ));
    out.push_str(&format!(
        "| agent killed with SIGKILL and started again → host Up |  | {} |  |\n",
        cells(&r.up_s)
    ));
    out.push_str(&format!(
        "| → start of the first clean comparison |  | {} |  |\n",
        cells(&r.clean_start_s)
    ));
    out.push_str(&format!(
        "| → every router confirmed enforcing its last generation (end of that comparison) | \
         ≤ {RESTART_TARGET_S:.0} s | {} | {} |\n",
        cells(&r.clean_end_s),
        verdict(clean <= RESTART_TARGET_S)
    ));
    out.push_str(&format!(
        "| agent's CPU at idle over {:.0} s (opened {:.1} s after the last restart's clean \
         comparison, once the processes it started had ended), share of one core | \
         ≤ {IDLE_CPU_TARGET_PCT:.0} % | {:.2} % | {} |\n",
        r.idle_seconds,
        r.quiet_s,
        r.idle_cpu_pct,
        verdict(r.idle_cpu_pct <= IDLE_CPU_TARGET_PCT)
    ));
    out.push_str(&format!(
        "| of which the agent's own threads (utime + stime) |  | {:.2} % |  |\n\
         | the server's CPU in the same window |  | {:.2} % |  |\n\
         | agent's resident memory; threads |  | {:.0} MiB; {} |  |\n\n",
        r.idle_own_cpu_pct,
        r.server_idle_cpu_pct,
        r.rss_kib as f64 / 1024.0,
        r.threads
    ));
}

/// How long the agent's reaped children's CPU time must stay still before the idle window opens.
const SETTLED_FOR: Duration = Duration::from_secs(10);

/// How long the agent may take to settle after a restart.
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);

fn deploy_markdown(out: &mut String, d: &[Deploy]) {
    let col = |f: fn(&Deploy) -> f64| d.iter().map(f).collect::<Vec<_>>();
    out.push_str(&format!(
        "#### A guest from deploy to reachable (`external` VM driver), median of {} (range)\n\n\
         | from the deployVirtualMachine call to | seconds |\n|---|---|\n\
         | its job's success (the router holds the lease, the host the VM) | {} |\n\
         | the guest's DHCP lease (plugged in when the job ended) | {} |\n\
         | the first answer through a port forward from the outside host | {} |\n\n",
        d.len(),
        cells(&col(|x| x.job_s)),
        cells(&col(|x| x.lease_s)),
        cells(&col(|x| x.http_s)),
    ));
}
