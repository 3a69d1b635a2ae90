//! `guestnet-bench agents`: the spread-out pipeline, where every management server and every
//! host agent is a process of its own and they talk over loopback.
//!
//! Three parts, each selectable with `--only`:
//! - `e2e`: one `guestnet serve --driver agents` and one `guestnet agent --driver lab`, on
//!   SQLite and on a throw-away PostgreSQL database; the router is filled to `--rules` firewall
//!   rules, then `--samples` creations are timed one at a time from sending createFirewallRule
//!   to the first queryAsyncJobResult (polled every millisecond) answering `jobstatus 1`;
//! - `throughput`: two servers on one PostgreSQL database, two agents (each knowing both
//!   servers), four networks placed two per host; `--clients` clients create a rule, wait for
//!   its job, delete it, wait again, for `--seconds`; changes per second, job latency, router
//!   generations (how many changes one generation carries), CPU per process over the window,
//!   and afterwards whether the database, the routers and the API agree;
//! - `restart`: a lab router holding `--restart-rules` rules (mix A) loses its kernel rules;
//!   a fresh `guestnet agent` process on the same data directory restores them from the
//!   router's ledger, timed from spawning the process to the agent's log line saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use mgmt::client::Client;
use sys::cmd::{Program, Stdio};
use sys::nft::Netns;
use test_support::process::{base_url as base, startup_line, Proc};

use crate::api::{self, percentile, s, verdict};
use crate::mix::{self, Mix};
use crate::report::{self, Machine};

/// Where `agents --markdown` writes: between these two lines.
pub(crate) const BEGIN: &str = "<!-- bench-agents:begin -->";
/// See [`BEGIN`].
pub(crate) const END: &str = "<!-- bench-agents:end -->";
/// The section's heading, for a file that has no markers yet.
const HEADING: &str = "## Agents and several servers";

const KEY: &str = "bench-agents-api-key";
const SECRET: &str = "bench-agents-secret-key";

/// Targets on the 2-core machine.
const THROUGHPUT_TARGET: f64 = 250.0;
const RESTART_TARGET_S: f64 = 2.0;

/// The agent's log line when its drift timer has restored a router.
const RESTORED: &str = "enforced again from its ledger";

/// Networks of the throughput part (two routers per host).
const NETWORKS: usize = 4;
const SERVERS: [&str; 2] = ["srv-a", "srv-b"];
const HOSTS: [&str; 2] = ["h1", "h2"];

/// A bound for steps that normally take seconds.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// API call to enforcement through an agent process, at 10k rules.
    E2e,
    /// Sustained changes through two servers and two agents.
    Throughput,
    /// A restarted agent restoring a router of 100k rules.
    Restart,
}

/// Options of `guestnet-bench agents`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Only this part (default: all three).
    #[arg(long, value_enum)]
    pub(crate) only: Option<Part>,
    /// e2e: rules on the router before creations are timed.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rules: usize,
    /// e2e: creations timed to enforcement, one at a time.
    #[arg(long, default_value_t = 300)]
    pub(crate) samples: usize,
    /// e2e: concurrent clients filling the router.
    #[arg(long, default_value_t = 8)]
    pub(crate) fill_clients: usize,
    /// throughput: concurrent clients, each creating then deleting a rule in a closed loop.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,
    /// throughput: length of the measured window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) seconds: f64,
    /// throughput: seconds of load before the window opens.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// throughput: milliseconds between two queryAsyncJobResult polls of a client.
    #[arg(long, default_value_t = 5)]
    pub(crate) poll_ms: u64,
    /// restart: rules the router holds (mix A).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) restart_rules: usize,
    /// restart: restarts timed.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// PostgreSQL server to create throw-away databases on.
    #[arg(
        long,
        env = "GUESTNET_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) postgres: String,
    /// The `guestnet` binary (default: beside this one).
    #[arg(long, value_name = "PATH")]
    pub(crate) guestnet: Option<PathBuf>,
    /// Write the figures into FILE between its `<!-- bench-agents:begin -->` and
    /// `<!-- bench-agents:end -->` markers.
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
}

impl Options {
    fn wants(&self, part: Part) -> bool {
        self.only.is_none_or(|p| p == part)
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

// A `guestnet` process with its log is a `test_support::process::Proc`, killed with SIGKILL
// when dropped: the harness blocks SIGINT, SIGTERM and SIGHUP (see `main.rs`) and its children
// inherit that mask, so they could not act on a SIGTERM anyway.

/// Starts `guestnet serve --driver agents`; returns it and its API endpoint (from the startup
/// line).
fn start_server(
    binary: &Path,
    name: &str,
    data_dir: &Path,
    database_url: Option<&str>,
    logs: &Path,
) -> anyhow::Result<(Proc, String)> {
    let mut cmd = Program::new(binary);
    cmd.args(["serve", "--driver", "agents", "--listen", "127.0.0.1:0"])
        .args(["--server-name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .env("GUESTNET_ADMIN_API_KEY", KEY)
        .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("GUESTNET_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let mut proc = Proc::spawn(name, &mut cmd, &logs.join(format!("{name}.log")))?;
    let child = proc.child_mut().context("the server's process")?;
    let (line, endpoint) = startup_line(child, STEP_DEADLINE);
    match endpoint {
        Some(e) => Ok((proc, e)),
        None => bail!(
            "{name}: no endpoint in the startup line {line:?}\n{}",
            proc.tail()
        ),
    }
}

/// What an agent process is started with.
struct AgentSpec<'a> {
    name: &'a str,
    servers: Vec<String>,
    token_file: &'a Path,
    data_dir: &'a Path,
    log: PathBuf,
    rust_log: String,
    drift_interval: Option<&'a str>,
}

/// Starts `guestnet agent --driver lab`.
fn start_agent(binary: &Path, spec: &AgentSpec<'_>) -> anyhow::Result<Proc> {
    let mut cmd = Program::new(binary);
    cmd.args(["agent", "--driver", "lab"])
        .arg("--server")
        .arg(spec.servers.join(","))
        .arg("--token-file")
        .arg(spec.token_file)
        .arg("--data-dir")
        .arg(spec.data_dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", &spec.rust_log)
        .stdout(Stdio::null());
    if let Some(d) = spec.drift_interval {
        cmd.args(["--drift-interval", d]);
    }
    Ok(Proc::spawn(spec.name, &mut cmd, &spec.log)?)
}

fn agent_log_level() -> String {
    std::env::var("GUESTNET_BENCH_AGENT_LOG").unwrap_or_else(|_| "info".into())
}

/// Servers, agents and the agents' labs of one part; everything stopped and removed when
/// dropped (processes first, then the labs, then the directory).
struct Rig {
    servers: Vec<Proc>,
    agents: Vec<Proc>,
    lab_dirs: Vec<PathBuf>,
    endpoints: Vec<String>,
    /// Where the processes' logs go: the directory, or `GUESTNET_BENCH_LOG_DIR` if set (kept).
    logs: PathBuf,
    root: lab::TempDir,
}

impl Rig {
    fn new() -> anyhow::Result<Rig> {
        let root = lab::TempDir::new().context("temp dir")?;
        let logs = match std::env::var_os("GUESTNET_BENCH_LOG_DIR") {
            Some(d) => {
                let d = PathBuf::from(d);
                std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
                d
            }
            None => root.path().to_path_buf(),
        };
        Ok(Rig {
            servers: Vec::new(),
            agents: Vec::new(),
            lab_dirs: Vec::new(),
            endpoints: Vec::new(),
            logs,
            root,
        })
    }

    fn dir(&self) -> &Path {
        self.root.path()
    }

    fn server(&mut self, binary: &Path, name: &str, url: Option<&str>) -> anyhow::Result<()> {
        let data = self.dir().join(name);
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let (p, e) = start_server(binary, name, &data, url, &self.logs)?;
        self.servers.push(p);
        self.endpoints.push(e);
        Ok(())
    }

    /// Mints a token for `host` through `admin` and starts its agent, which knows `servers`
    /// (indices into the endpoints, in the order it tries them).
    async fn agent(
        &mut self,
        binary: &Path,
        admin: &Client,
        host: &str,
        servers: &[usize],
    ) -> anyhow::Result<()> {
        let t = admin.call("createAgentToken", &[("host", host)]).await?;
        let token = s(&t, &["agenttoken", "token"])?;
        let token_file = self.dir().join(format!("{host}.token"));
        std::fs::write(&token_file, token).context("write the token file")?;
        let data_dir = self.dir().join(host);
        self.lab_dirs.push(data_dir.clone());
        let spec = AgentSpec {
            name: host,
            servers: servers.iter().map(|i| base(&self.endpoints[*i])).collect(),
            token_file: &token_file,
            data_dir: &data_dir,
            log: self.logs.join(format!("{host}.log")),
            rust_log: agent_log_level(),
            drift_interval: None,
        };
        let p = start_agent(binary, &spec)?;
        self.agents.push(p);
        Ok(())
    }

    fn tails(&self) -> String {
        self.servers
            .iter()
            .chain(&self.agents)
            .map(Proc::tail)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.agents.clear();
        self.servers.clear();
        for dir in &self.lab_dirs {
            if let Err(errors) = lab::down(dir) {
                for e in errors {
                    eprintln!("guestnet-bench: lab down: {}", lab::chain(&e));
                }
            }
        }
    }
}

/// Adds the rig's process logs to an error (not when a signal stopped the run).
fn with_logs<T>(rig: &Rig, r: anyhow::Result<T>, stop: &AtomicBool) -> anyhow::Result<T> {
    r.map_err(|e| {
        if stop.load(Ordering::SeqCst) {
            e
        } else {
            e.context(format!("logs:\n{}", rig.tails()))
        }
    })
}

/// Sleeps until `t`, or less once `stop` is set.
async fn sleep_until_or_stop(t: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= t || stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep((t - now).min(Duration::from_millis(100))).await;
    }
}

// ---------------------------------------------------------------------------------------------
// API helpers.

async fn wait_host_up(c: &Client, host: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let r = c.call("listHosts", &[("name", host)]).await?;
        if r["host"][0]["state"] == "Up" {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "host {host} never came Up: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A network made for the benchmark.
#[derive(Debug, Clone)]
struct Net {
    id: String,
    ip_id: String,
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
    let ip_id = s(&ips, &["publicipaddress", "0", "id"])?;
    Ok(Net { id, ip_id })
}

/// Creates rules `from..to` (as [`api::create`] makes them) with `clients` concurrent clients,
/// each sending its next creation as soon as the previous one is answered.
async fn fill(
    c: &Client,
    ip_id: &str,
    from: usize,
    to: usize,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (c, ip_id, next, stop) = (c.clone(), ip_id.to_string(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= to || stop.load(Ordering::SeqCst) {
                    return anyhow::Ok(());
                }
                api::create(&c, &ip_id, i).await?;
            }
        }));
    }
    for t in tasks {
        t.await.context("fill task")??;
    }
    ensure!(!stop.load(Ordering::SeqCst), "stopped");
    Ok(())
}

/// Every router: name → (host, network id, applied generation).
async fn routers(c: &Client) -> anyhow::Result<BTreeMap<String, (String, String, i64)>> {
    let r = c.call("listRouters", &[("pagesize", "-1")]).await?;
    let mut out = BTreeMap::new();
    for router in r["router"].as_array().map_or(&[][..], Vec::as_slice) {
        out.insert(
            s(router, &["name"])?,
            (
                s(router, &["hostname"])?,
                s(router, &["guestnetworkid"])?,
                router["appliedgeneration"].as_i64().unwrap_or(0),
            ),
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Part 1: end to end.

/// The end-to-end figures of one database.
#[derive(Debug, Clone)]
pub(crate) struct E2e {
    db: &'static str,
    rules: usize,
    samples: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Generations the router applied in all (filling included).
    generations: i64,
    /// Generations applied while the creations were timed.
    generations_timed: i64,
    fill_s: f64,
}

async fn e2e_measure(
    db: &'static str,
    rig: &mut Rig,
    binary: &Path,
    o: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<E2e> {
    let admin = Client::new(&rig.endpoints[0], KEY, SECRET);
    rig.agent(binary, &admin, HOSTS[0], &[0]).await?;
    wait_host_up(&admin, HOSTS[0]).await?;
    let net = network(&admin, "bench", 1).await?;
    let t = Instant::now();
    fill(&admin, &net.ip_id, 0, o.rules, o.fill_clients, stop).await?;
    let g0 = api::wait_idle(&admin, &net.id, Instant::now() + Duration::from_secs(600)).await?;
    let fill_s = t.elapsed().as_secs_f64();
    eprintln!(
        "guestnet-bench: agents e2e {db}: router holds {} rules ({fill_s:.1} s to fill)",
        o.rules
    );
    let mut lat = Vec::with_capacity(o.samples);
    for k in 0..o.samples {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        let t0 = Instant::now();
        let job = api::create(&admin, &net.ip_id, o.rules + k).await?;
        admin
            .wait_job(
                &job,
                Duration::from_millis(1),
                Instant::now() + STEP_DEADLINE,
            )
            .await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let g1 = api::wait_idle(&admin, &net.id, Instant::now() + STEP_DEADLINE).await?;
    Ok(E2e {
        db,
        rules: o.rules,
        samples: lat.len(),
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        generations: g1,
        generations_timed: g1 - g0,
        fill_s,
    })
}

fn e2e(
    rt: &tokio::runtime::Runtime,
    binary: &Path,
    o: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<E2e>> {
    let mut all = Vec::new();
    for db in ["SQLite", "PostgreSQL"] {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        let figures = rt.block_on(async {
            let database = match db {
                "SQLite" => None,
                _ => Some(api::fresh_database(&o.postgres).await?),
            };
            let result = async {
                let mut rig = Rig::new()?;
                rig.server(
                    binary,
                    SERVERS[0],
                    database.as_ref().map(|(_, u)| u.as_str()),
                )?;
                let r = e2e_measure(db, &mut rig, binary, o, stop).await;
                let r = with_logs(&rig, r, stop);
                drop(rig);
                r
            }
            .await;
            if let Some((name, _)) = &database {
                api::drop_database(&o.postgres, name).await;
            }
            result
        })?;
        println!(
            "agents e2e {}: {} rules, {} samples: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms; generations {} in all, {} while timed",
            figures.db,
            figures.rules,
            figures.samples,
            figures.p50_ms,
            figures.p90_ms,
            figures.p99_ms,
            figures.max_ms,
            figures.generations,
            figures.generations_timed
        );
        all.push(figures);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// CPU accounting.

/// A process's parent and CPU ticks (utime + stime + cutime + cstime) from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(i32, u64)> {
    sys::proc::stat(pid).map(|s| (s.parent, s.cpu_ticks))
}

fn is_postgres(pid: i32) -> bool {
    sys::proc::comm(pid).is_some_and(|c| c == "postgres")
}

/// CPU times at one moment.
#[derive(Debug, Clone, Default)]
struct CpuSnap {
    /// The named processes' ticks.
    named: Vec<u64>,
    /// Every `postgres` process: pid → (ticks, whether it is a backend of the benchmark's
    /// database).
    postgres: BTreeMap<i32, (u64, bool)>,
    /// `postgres` processes whose parent is not one (postmasters: one per cluster).
    postmasters: usize,
    machine: u64,
}

/// Whether a `postgres` process serves database `db` (its title names the database).
fn serves(pid: i32, db: &str) -> bool {
    sys::proc::cmdline(pid).is_some_and(|args| {
        args.iter()
            .flat_map(|a| a.split_whitespace())
            .any(|w| w == db)
    })
}

fn cpu_snap(pids: &[i32], db: &str) -> CpuSnap {
    let named = pids
        .iter()
        .map(|&p| proc_stat(p).map_or(0, |(_, t)| t))
        .collect();
    let mut postgres = BTreeMap::new();
    let mut postmasters = 0;
    for pid in sys::proc::pids() {
        if !is_postgres(pid) {
            continue;
        }
        if let Some((parent, ticks)) = proc_stat(pid) {
            let ours = serves(pid, db);
            postgres.insert(pid, (ticks, ours));
            if !is_postgres(parent) {
                postmasters += 1;
            }
        }
    }
    CpuSnap {
        named,
        postgres,
        postmasters,
        machine: sys::proc::machine_busy_ticks(),
    }
}

/// CPU use of one component over the window, in % of one core.
#[derive(Debug, Clone)]
pub(crate) struct CpuUse {
    name: String,
    percent: f64,
}

/// Per component in % of one core, the machine's total, the number of PostgreSQL clusters,
/// and the share of PostgreSQL's backends serving the benchmark's database.
fn cpu_use(
    names: &[String],
    a: &CpuSnap,
    b: &CpuSnap,
    window_s: f64,
) -> (Vec<CpuUse>, f64, usize, f64) {
    let hz = sys::proc::clock_ticks() as f64;
    let pct = |ticks: u64| ticks as f64 / hz / window_s * 100.0;
    let mut out: Vec<CpuUse> = names
        .iter()
        .enumerate()
        .map(|(i, n)| CpuUse {
            name: n.clone(),
            percent: pct(b.named[i].saturating_sub(a.named[i])),
        })
        .collect();
    let used = |only_ours: bool| -> u64 {
        b.postgres
            .iter()
            .filter(|(_, (_, ours))| !only_ours || *ours)
            .map(|(pid, (t, _))| t.saturating_sub(a.postgres.get(pid).map_or(0, |x| x.0)))
            .sum()
    };
    let postmasters = a.postmasters.max(b.postmasters);
    out.push(CpuUse {
        name: format!(
            "PostgreSQL (every `postgres` process: {} at the end, {} cluster(s))",
            b.postgres.len(),
            postmasters
        ),
        percent: pct(used(false)),
    });
    let ours = pct(used(true));
    (
        out,
        pct(b.machine.saturating_sub(a.machine)),
        postmasters,
        ours,
    )
}

// ---------------------------------------------------------------------------------------------
// Part 2: throughput.

/// One job that ended, as a client saw it.
#[derive(Debug, Clone, Copy)]
struct Done {
    at: Instant,
    latency_ms: f64,
    create: bool,
}

#[derive(Debug, Default)]
struct Tally {
    done: Vec<Done>,
    failures: Vec<String>,
    /// queryAsyncJobResult calls sent inside the window.
    polls: usize,
}

/// The measured window of the throughput part.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
    poll: Duration,
}

impl Window {
    fn holds(&self, t: Instant) -> bool {
        t >= self.start && t <= self.end
    }
}

/// Polls a job (as [`Client::wait_job`] does) until it ends, counting the polls sent inside
/// the window.
async fn wait_counting(c: &Client, job: &str, w: Window, polls: &mut usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if w.holds(Instant::now()) {
            *polls += 1;
        }
        let r = c
            .call("queryAsyncJobResult", &[("jobid", job)])
            .await
            .map_err(|e| e.to_string())?;
        match r["jobstatus"].as_i64() {
            Some(1) => return Ok(()),
            Some(2) => return Err(format!("job {job} failed: {}", r["jobresult"])),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(format!("job {job} still pending after 120 s"));
        }
        tokio::time::sleep(w.poll).await;
    }
}

/// The throughput figures.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    clients: usize,
    window_s: f64,
    changes: usize,
    creates: usize,
    deletes: usize,
    failed: usize,
    first_failures: Vec<String>,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Per router: (name, host, generations applied in the window).
    generations: Vec<(String, String, i64)>,
    placement: BTreeMap<String, usize>,
    cpu: Vec<CpuUse>,
    machine_pct: f64,
    cores: usize,
    postmasters: usize,
    /// PostgreSQL's backends serving the benchmark's database, % of one core.
    postgres_backends: f64,
    /// queryAsyncJobResult calls sent in the window, and the interval between two of a client.
    polls: usize,
    poll_ms: u64,
    verify_summary: String,
    rules_left: Vec<usize>,
    agree: bool,
}

impl Throughput {
    fn generations_total(&self) -> i64 {
        self.generations.iter().map(|g| g.2).sum()
    }

    /// The component with the largest CPU share.
    fn busiest(&self) -> Option<&CpuUse> {
        self.cpu
            .iter()
            .max_by(|a, b| a.percent.total_cmp(&b.percent))
    }
}

/// One client's closed loop: create a rule, wait for its job, delete it, wait again; until
/// `end`. A created rule is always deleted, also after `end`.
async fn client_loop(
    c: Client,
    i: usize,
    clients: usize,
    ip_id: String,
    w: Window,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut k = 0usize;
    while Instant::now() < w.end && !stop.load(Ordering::SeqCst) {
        // Unique per client and iteration (no two live rules of a network share a port).
        let port = (1 + (k * clients + i) % 65_535).to_string();
        k += 1;
        let t0 = Instant::now();
        let created = c
            .call(
                "createFirewallRule",
                &[
                    ("ipaddressid", &ip_id),
                    ("protocol", "tcp"),
                    ("startport", &port),
                    ("endport", &port),
                    ("cidrlist", "198.51.100.0/24"),
                ],
            )
            .await;
        let (id, job) = match created
            .map_err(anyhow::Error::from)
            .and_then(|r| Ok((s(&r, &["id"])?, s(&r, &["jobid"])?)))
        {
            Ok(x) => x,
            Err(e) => {
                tally.failures.push(format!("createFirewallRule: {e:#}"));
                continue;
            }
        };
        match wait_counting(&c, &job, w, &mut tally.polls).await {
            Ok(()) => tally.done.push(Done {
                at: Instant::now(),
                latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
                create: true,
            }),
            Err(e) => {
                tally.failures.push(format!("create job: {e}"));
                continue;
            }
        }
        let t1 = Instant::now();
        let deleted = c
            .call("deleteFirewallRule", &[("id", &id)])
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| s(&r, &["jobid"]));
        let job = match deleted {
            Ok(j) => j,
            Err(e) => {
                tally.failures.push(format!("deleteFirewallRule: {e:#}"));
                continue;
            }
        };
        match wait_counting(&c, &job, w, &mut tally.polls).await {
            Ok(()) => tally.done.push(Done {
                at: Instant::now(),
                latency_ms: t1.elapsed().as_secs_f64() * 1000.0,
                create: false,
            }),
            Err(e) => tally.failures.push(format!("delete job: {e}")),
        }
    }
    tally
}

async fn pending_jobs(c: &Client) -> anyhow::Result<usize> {
    let jobs = c.call("listAsyncJobs", &[("pagesize", "-1")]).await?;
    Ok(jobs["asyncjobs"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|j| j["jobstatus"] == 0).count()))
}

async fn throughput_measure(
    rig: &mut Rig,
    binary: &Path,
    url: &str,
    db: &str,
    o: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Throughput> {
    let admins: Vec<Client> = rig
        .endpoints
        .iter()
        .map(|e| Client::new(e, KEY, SECRET))
        .collect();
    // Each agent knows both servers; h1 tries srv-a first and h2 srv-b, so each server holds
    // one host's connection and runs its routers' jobs.
    rig.agent(binary, &admins[0], HOSTS[0], &[0, 1]).await?;
    rig.agent(binary, &admins[0], HOSTS[1], &[1, 0]).await?;
    for h in HOSTS {
        wait_host_up(&admins[1], h).await?;
    }
    let mut nets = Vec::new();
    for n in 0..NETWORKS {
        nets.push(network(&admins[0], &format!("tp{n}"), 10 + n).await?);
    }
    let before_idle = Instant::now() + STEP_DEADLINE;
    for n in &nets {
        api::wait_idle(&admins[0], &n.id, before_idle).await?;
    }
    let placed = routers(&admins[0]).await?;
    let mut placement: BTreeMap<String, usize> = BTreeMap::new();
    for (host, _, _) in placed.values() {
        *placement.entry(host.clone()).or_default() += 1;
    }
    eprintln!("guestnet-bench: agents throughput: routers per host {placement:?}");

    let names: Vec<String> = SERVERS
        .iter()
        .map(|n| format!("server {n}"))
        .chain(HOSTS.iter().map(|h| format!("agent {h}")))
        .chain(std::iter::once(format!(
            "guestnet-bench ({} clients)",
            o.clients
        )))
        .collect();
    let pids: Vec<i32> = rig
        .servers
        .iter()
        .chain(&rig.agents)
        .map(|p| p.pid().and_then(|x| i32::try_from(x).ok()).unwrap_or(0))
        .chain(std::iter::once(
            i32::try_from(std::process::id()).unwrap_or(0),
        ))
        .collect();

    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(o.warmup);
    let window_end = window_start + Duration::from_secs_f64(o.seconds);
    let window = Window {
        start: window_start,
        end: window_end,
        poll: Duration::from_millis(o.poll_ms),
    };
    let mut tasks = Vec::new();
    for i in 0..o.clients {
        // Client i works on network i % 4 through server (i / 4) % 2: every network gets
        // requests through both servers.
        let endpoint = &rig.endpoints[(i / NETWORKS) % rig.endpoints.len()];
        let c = Client::new(endpoint, KEY, SECRET);
        tasks.push(tokio::spawn(client_loop(
            c,
            i,
            o.clients,
            nets[i % NETWORKS].ip_id.clone(),
            window,
            stop.clone(),
        )));
    }
    let sampler = {
        let admin = admins[0].clone();
        let pids = pids.clone();
        let db = db.to_string();
        let stop = stop.clone();
        tokio::spawn(async move {
            sleep_until_or_stop(window_start, &stop).await;
            let cpu0 = cpu_snap(&pids, &db);
            let t0 = Instant::now();
            let g0 = routers(&admin).await;
            sleep_until_or_stop(window_end, &stop).await;
            let cpu1 = cpu_snap(&pids, &db);
            let t1 = Instant::now();
            let g1 = routers(&admin).await;
            (cpu0, cpu1, (t1 - t0).as_secs_f64(), g0, g1)
        })
    };
    let mut tally = Tally::default();
    for t in tasks {
        let one = t.await.context("client task")?;
        tally.done.extend(one.done);
        tally.failures.extend(one.failures);
        tally.polls += one.polls;
    }
    let (cpu0, cpu1, cpu_window, g0, g1) = sampler.await.context("sampler task")?;
    ensure!(!stop.load(Ordering::SeqCst), "stopped");
    let (g0, g1) = (g0?, g1?);

    // Afterwards: nothing pending, then the database, the routers and the API must agree.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending = pending_jobs(&admins[0]).await?;
        if pending == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{pending} jobs still pending 120 s after the load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify = {
        let (binary, url) = (binary.to_path_buf(), url.to_string());
        tokio::task::spawn_blocking(move || {
            Program::new(&binary)
                .args(["verify", "--database-url", &url])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .context("verify task")?
        .context("run guestnet verify")?
    };
    let verify_text = String::from_utf8_lossy(&verify.stdout).into_owned();
    let verify_summary = verify_text
        .lines()
        .rev()
        .find(|l| l.contains("router(s)"))
        .unwrap_or("no summary line")
        .to_string();
    if !verify.status.success() {
        eprintln!(
            "guestnet-bench: guestnet verify found differences:\n{verify_text}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    let mut rules_left = Vec::new();
    for n in &nets {
        let r = admins[1]
            .call(
                "listFirewallRules",
                &[("networkid", &n.id), ("pagesize", "-1")],
            )
            .await?;
        rules_left.push(r["firewallrule"].as_array().map_or(0, Vec::len));
    }

    let in_window: Vec<Done> = tally
        .done
        .iter()
        .filter(|d| window.holds(d.at))
        .copied()
        .collect();
    let mut lat: Vec<f64> = in_window.iter().map(|d| d.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let creates = in_window.iter().filter(|d| d.create).count();
    let mut generations = Vec::new();
    for (name, (host, _, after)) in &g1 {
        let before = g0.get(name).map_or(0, |g| g.2);
        generations.push((name.clone(), host.clone(), after - before));
    }
    let (cpu, machine_pct, postmasters, postgres_backends) =
        cpu_use(&names, &cpu0, &cpu1, cpu_window);
    let verify_ok = verify.status.success();
    let agree = verify_ok && rules_left.iter().all(|n| *n == 0);
    let mut first_failures = tally.failures.clone();
    first_failures.truncate(5);
    Ok(Throughput {
        clients: o.clients,
        window_s: o.seconds,
        changes: in_window.len(),
        creates,
        deletes: in_window.len() - creates,
        failed: tally.failures.len(),
        first_failures,
        per_s: in_window.len() as f64 / o.seconds,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        generations,
        placement,
        cpu,
        machine_pct,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        postmasters,
        postgres_backends,
        polls: tally.polls,
        poll_ms: o.poll_ms,
        verify_summary,
        rules_left,
        agree,
    })
}

fn throughput(
    rt: &tokio::runtime::Runtime,
    binary: &Path,
    o: &Options,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Throughput> {
    ensure!(o.seconds > 0.0, "--seconds must be positive");
    ensure!(o.clients > 0, "--clients must be at least 1");
    let t = rt.block_on(async {
        let (name, url) = api::fresh_database(&o.postgres).await?;
        let result = async {
            let mut rig = Rig::new()?;
            // One after the other: the first creates the schema.
            for n in SERVERS {
                rig.server(binary, n, Some(&url))?;
            }
            let r = throughput_measure(&mut rig, binary, &url, &name, o, stop).await;
            let r = with_logs(&rig, r, stop);
            drop(rig);
            r
        }
        .await;
        api::drop_database(&o.postgres, &name).await;
        result
    })?;
    println!("{}", throughput_text(&t));
    Ok(t)
}

fn throughput_text(t: &Throughput) -> String {
    let mut out = format!(
        "agents throughput: {} clients, {:.0} s window: {:.0} changes/s ({} changes: {} creations, \
         {} deletions; {} failed), job latency p50 {:.1} ms, p99 {:.1} ms; {} generations \
         ({:.1} changes per generation); {:.0} polls/s; placement {:?}\n",
        t.clients,
        t.window_s,
        t.per_s,
        t.changes,
        t.creates,
        t.deletes,
        t.failed,
        t.p50_ms,
        t.p99_ms,
        t.generations_total(),
        t.changes as f64 / t.generations_total().max(1) as f64,
        t.polls as f64 / t.window_s,
        t.placement
    );
    for (name, host, g) in &t.generations {
        out.push_str(&format!("  router {name} on {host}: {g} generations\n"));
    }
    for c in &t.cpu {
        out.push_str(&format!(
            "  CPU {}: {:.0}% of one core, {:.0}% of the machine\n",
            c.name,
            c.percent,
            c.percent / t.cores as f64
        ));
    }
    out.push_str(&format!(
        "  CPU machine total: {:.0}% of one core ({:.0}% of {} cores)\n",
        t.machine_pct,
        t.machine_pct / t.cores as f64,
        t.cores
    ));
    out.push_str(&format!(
        "  verify: {}; rules left per network {:?}; database, routers and API agree: {}",
        t.verify_summary,
        t.rules_left,
        if t.agree { "yes" } else { "no" }
    ));
    for f in &t.first_failures {
        out.push_str(&format!("\n  failure: {f}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Part 3: restart.

/// The restart figures.
#[derive(Debug, Clone)]
pub(crate) struct Restart {
    rules: usize,
    load_s: f64,
    /// Spawn to the log line, per run, in seconds.
    runs: Vec<f64>,
    /// Runs after which `nft list tables` showed the router's table.
    confirmed: usize,
    /// Per run, from the agent's log: spawn to "agent starting", spawn to "committed", the
    /// commit's kernel and candidate times (seconds).
    breakdown: Vec<Breakdown>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Breakdown {
    started_s: Option<f64>,
    committed_s: Option<f64>,
    kernel_s: Option<f64>,
    candidate_s: Option<f64>,
}

/// Removes the lab of a data directory when dropped.
struct LabDown(PathBuf);

impl Drop for LabDown {
    fn drop(&mut self) {
        if let Err(errors) = lab::down(&self.0) {
            for e in errors {
                eprintln!("guestnet-bench: lab down: {}", lab::chain(&e));
            }
        }
    }
}

/// Seconds since midnight UTC of a log line's RFC 3339 timestamp (`…T12:34:56.789012Z`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The value of `key=NUMBER` in a log line.
fn log_field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Offsets from the spawn (seconds since midnight UTC) read from an agent's log.
fn breakdown(log: &str, spawned: f64) -> Breakdown {
    let since = |t: f64| (t - spawned).rem_euclid(86_400.0);
    let mut b = Breakdown::default();
    for line in log.lines() {
        if line.contains("guestnet agent starting") && b.started_s.is_none() {
            b.started_s = log_time(line).map(since);
        }
        if line.contains(" committed") && b.committed_s.is_none() {
            b.committed_s = log_time(line).map(since);
            b.kernel_s = log_field(line, "kernel_us").map(|us| us / 1e6);
            b.candidate_s = log_field(line, "candidate_us").map(|us| us / 1e6);
        }
    }
    b
}

fn restart(
    rt: &tokio::runtime::Runtime,
    binary: &Path,
    o: &Options,
    stop: &AtomicBool,
) -> anyhow::Result<Restart> {
    ensure!(o.runs > 0, "--runs must be at least 1");
    let root = lab::TempDir::new().context("temp dir")?;
    let dir = root.path().join("host");
    let lab_down = LabDown(dir.clone());
    let router = "r1";

    // The router as an agent leaves it: made and loaded through the agent's own driver.
    let load_s = rt.block_on(async {
        let driver = agent::driver::Driver::lab(&dir).context("the host's lab")?;
        let cidr = mix::GUEST_CIDR.parse().context("guest cidr")?;
        driver
            .ensure_router(router, cidr, mix::GUEST_GATEWAY, None)
            .await
            .context("the router")?;
        let config = mix::config(Mix::A, o.restart_rules);
        let t = Instant::now();
        let applied = driver
            .apply(router, config)
            .await
            .context("the router's config")?;
        let load_s = t.elapsed().as_secs_f64();
        ensure!(
            matches!(applied, agent::driver::Applied::Generation(1)),
            "the router did not take generation 1: {applied:?}"
        );
        // Dropping the driver closes the router's sockets and unlocks its state directory.
        drop(driver);
        anyhow::Ok(load_s)
    })?;
    eprintln!(
        "guestnet-bench: agents restart: router holds {} rules (loaded in {load_s:.2} s)",
        o.restart_rules
    );
    let netns = Netns::Named(
        lab::Lab::open(&dir)
            .map_err(|e| anyhow::anyhow!(lab::chain(&e)))?
            .router_netns(router)
            .map_err(|e| anyhow::anyhow!(lab::chain(&e)))?,
    );
    let tables = |ns: &Netns| -> anyhow::Result<String> {
        let out = ns
            .run("nft", &["list", "tables"], None)
            .context("nft list tables")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let token_file = root.path().join("token");
    std::fs::write(&token_file, "no-server-answers").context("write the token file")?;

    let mut runs = Vec::new();
    let mut confirmed = 0;
    let mut parts = Vec::new();
    for run in 0..o.runs {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        // What a restarted router has lost: every rule in its kernel.
        netns
            .run("nft", &["flush", "ruleset"], None)
            .context("nft flush ruleset")?;
        ensure!(
            !tables(&netns)?.contains(render::TABLE),
            "the table is still there after the flush"
        );
        let spec = AgentSpec {
            name: "agent",
            servers: vec!["http://127.0.0.1:9".into()],
            token_file: &token_file,
            data_dir: &dir,
            log: root.path().join(format!("agent-{run}.log")),
            rust_log: "info,vrouterd=debug".into(),
            drift_interval: Some("0.05"),
        };
        let spawned_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            .rem_euclid(86_400.0);
        let t0 = Instant::now();
        let mut agent = start_agent(binary, &spec)?;
        let elapsed = loop {
            if agent.log().contains(RESTORED) {
                break t0.elapsed().as_secs_f64();
            }
            if !agent.running() {
                bail!(
                    "the agent exited before restoring the router\n{}",
                    agent.tail()
                );
            }
            ensure!(!stop.load(Ordering::SeqCst), "stopped");
            if t0.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the agent did not restore the router within 120 s\n{}",
                    agent.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if tables(&netns)?.contains(render::TABLE) {
            confirmed += 1;
        }
        let b = breakdown(&agent.log(), spawned_wall);
        drop(agent);
        println!(
            "agents restart run {}: {:.3} s to {RESTORED:?} (agent started {:?} s, committed \
             {:?} s, kernel {:?} s, candidate {:?} s)",
            run + 1,
            elapsed,
            b.started_s,
            b.committed_s,
            b.kernel_s,
            b.candidate_s
        );
        runs.push(elapsed);
        parts.push(b);
    }
    drop(lab_down);
    drop(root);
    Ok(Restart {
        rules: o.restart_rules,
        load_s,
        runs,
        confirmed,
        breakdown: parts,
    })
}

// ---------------------------------------------------------------------------------------------
// The run and the report.

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    e2e: Vec<E2e>,
    throughput: Option<Throughput>,
    restart: Option<Restart>,
}

fn preflight(binary: &Path) -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "guestnet-bench agents needs root (the agents build network namespaces)"
    );
    for tool in ["nft", "ip", "nsenter"] {
        ensure!(sys::cmd::is_on_path(tool), "`{tool}` is not on PATH");
    }
    ensure!(
        binary.is_file(),
        "no guestnet binary at {} (build it: cargo build --release -p guestnet, or pass \
         --guestnet)",
        binary.display()
    );
    Ok(())
}

/// Runs the benchmark.
///
/// # Errors
/// When a process cannot be started or a request fails, and when after the throughput load
/// the database, the routers and the API do not agree (after the figures are written).
pub(crate) fn run(o: &Options, stop: &Arc<AtomicBool>) -> anyhow::Result<Figures> {
    let binary = match &o.guestnet {
        Some(b) => b.clone(),
        None => crate::sibling_guestnet().context("cannot find this binary's directory")?,
    };
    preflight(&binary)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    let mut figures = Figures::default();
    if o.wants(Part::E2e) {
        figures.e2e = e2e(&rt, &binary, o, stop)?;
    }
    if o.wants(Part::Throughput) {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        figures.throughput = Some(throughput(&rt, &binary, o, stop)?);
    }
    if o.wants(Part::Restart) {
        ensure!(!stop.load(Ordering::SeqCst), "stopped");
        let r = restart(&rt, &binary, o, stop)?;
        println!("{}", restart_summary(&r));
        figures.restart = Some(r);
    }
    if let Some(path) = &o.markdown {
        report::write_between(
            path,
            BEGIN,
            END,
            Some(HEADING),
            &markdown(o, &figures, &Machine::read()),
        )?;
        eprintln!("guestnet-bench: figures written into {}", path.display());
    }
    if let Some(t) = &figures.throughput {
        ensure!(
            t.agree,
            "after the throughput load the database, the routers and the API do not agree: {}; \
             rules left per network {:?}",
            t.verify_summary,
            t.rules_left
        );
    }
    Ok(figures)
}

fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (report::median(v).unwrap_or(f64::NAN), lo, hi)
}

fn restart_summary(r: &Restart) -> String {
    let (m, lo, hi) = median_range(&r.runs);
    format!(
        "agents restart: {} rules: {:.2} s median ({:.2}–{:.2} s) over {} runs; table present \
         afterwards in {} of {}",
        r.rules,
        m,
        lo,
        hi,
        r.runs.len(),
        r.confirmed,
        r.runs.len()
    )
}

fn command_line(o: &Options) -> String {
    let mut s = format!(
        "guestnet-bench agents --rules {} --samples {} --fill-clients {} --clients {} \
         --seconds {} --warmup {} --poll-ms {} --restart-rules {} --runs {}",
        o.rules,
        o.samples,
        o.fill_clients,
        o.clients,
        o.seconds,
        o.warmup,
        o.poll_ms,
        o.restart_rules,
        o.runs
    );
    if let Some(p) = o.only {
        s.push_str(match p {
            Part::E2e => " --only e2e",
            Part::Throughput => " --only throughput",
            Part::Restart => " --only restart",
        });
    }
    s
}

fn markdown(o: &Options, f: &Figures, machine: &Machine) -> String {
    let mut out = format!(
        "Measured by `{}` on {}. Every server is a `guestnet serve --driver agents` process and \
         every agent a `guestnet agent --driver lab` process, all on this machine, talking over \
         loopback.\n\n",
        command_line(o),
        machine.describe()
    );
    if !f.e2e.is_empty() {
        e2e_markdown(&mut out, &f.e2e);
    }
    if let Some(t) = &f.throughput {
        throughput_markdown(&mut out, t);
    }
    if let Some(r) = &f.restart {
        restart_markdown(&mut out, r);
    }
    out
}

/// 100000 → "100,000".
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

fn row(out: &mut String, name: &str, target: &str, cells: &[String]) {
    out.push_str(&format!("| {name} | {target} | {} |\n", cells.join(" | ")));
}

fn e2e_markdown(out: &mut String, all: &[E2e]) {
    out.push_str(
        "**End to end through an agent process** (one server, one agent, one network):\n\n",
    );
    out.push_str("| | target |");
    for f in all {
        out.push_str(&format!(" {} |", f.db));
    }
    out.push_str("\n|---|---|");
    for _ in all {
        out.push_str("---|");
    }
    out.push('\n');
    let cells = |g: &dyn Fn(&E2e) -> String| all.iter().map(g).collect::<Vec<_>>();
    row(
        out,
        "create to `jobstatus 1` (enforced), p50",
        &format!("≤ {:.0} ms", api::P50_TARGET_MS),
        &cells(&|f| {
            format!(
                "{:.1} ms ({})",
                f.p50_ms,
                verdict(f.p50_ms <= api::P50_TARGET_MS)
            )
        }),
    );
    row(
        out,
        "create to `jobstatus 1` (enforced), p90",
        "",
        &cells(&|f| format!("{:.1} ms", f.p90_ms)),
    );
    row(
        out,
        "create to `jobstatus 1` (enforced), p99",
        &format!("≤ {:.0} ms", api::P99_TARGET_MS),
        &cells(&|f| {
            format!(
                "{:.1} ms ({})",
                f.p99_ms,
                verdict(f.p99_ms <= api::P99_TARGET_MS)
            )
        }),
    );
    row(
        out,
        "create to `jobstatus 1`, worst",
        "",
        &cells(&|f| format!("{:.1} ms", f.max_ms)),
    );
    row(
        out,
        "rules on the router while timed; creations timed",
        "10,000",
        &cells(&|f| format!("{}; {}", thousands(f.rules), f.samples)),
    );
    row(
        out,
        "router generations applied: in all; while timed",
        "",
        &cells(&|f| format!("{}; {}", f.generations, f.generations_timed)),
    );
    row(
        out,
        "filling the router (accepted and enforced)",
        "",
        &cells(&|f| format!("{:.1} s", f.fill_s)),
    );
    out.push('\n');
}

fn throughput_markdown(out: &mut String, t: &Throughput) {
    let gens = t.generations_total();
    out.push_str(&format!(
        "**Sustained changes** (two servers on one PostgreSQL database, two agents, {} \
         networks, {} clients, a {:.0} s window):\n\n",
        NETWORKS, t.clients, t.window_s
    ));
    out.push_str("| | target | measured |\n|---|---|---|\n");
    row(
        out,
        "changes per second (jobs that succeeded and ended in the window)",
        &format!("≥ {THROUGHPUT_TARGET:.0}"),
        &[format!(
            "{:.0} ({})",
            t.per_s,
            verdict(t.per_s >= THROUGHPUT_TARGET)
        )],
    );
    row(
        out,
        "changes in the window: creations; deletions",
        "",
        &[format!("{}: {}; {}", t.changes, t.creates, t.deletes)],
    );
    row(
        out,
        "jobs or calls that failed (whole run)",
        "0",
        &[t.failed.to_string()],
    );
    row(
        out,
        &format!(
            "job latency (call to `jobstatus 1`, polled every {} ms), p50; p99",
            t.poll_ms
        ),
        "",
        &[format!("{:.1} ms; {:.1} ms", t.p50_ms, t.p99_ms)],
    );
    row(
        out,
        "queryAsyncJobResult polls in the window: per second; per change",
        "",
        &[format!(
            "{:.0}; {:.1}",
            t.polls as f64 / t.window_s,
            t.polls as f64 / t.changes.max(1) as f64
        )],
    );
    row(
        out,
        "router generations applied in the window (all routers)",
        "",
        &[gens.to_string()],
    );
    row(
        out,
        "changes per generation (coalescing)",
        "",
        &[format!("{:.1}", t.changes as f64 / gens.max(1) as f64)],
    );
    let per_router: Vec<String> = t
        .generations
        .iter()
        .map(|(n, h, g)| format!("{n} on {h}: {g}"))
        .collect();
    row(out, "generations per router", "", &[per_router.join("; ")]);
    let placement: Vec<String> = t
        .placement
        .iter()
        .map(|(h, n)| format!("{h}: {n}"))
        .collect();
    row(
        out,
        "routers per host (listRouters `hostname`)",
        "2 each",
        &[placement.join(", ")],
    );
    row(
        out,
        "`guestnet verify` after the load",
        "0 with differences",
        std::slice::from_ref(&t.verify_summary),
    );
    row(
        out,
        "firewall rules left per network (listFirewallRules)",
        "0",
        &[format!("{:?}", t.rules_left)],
    );
    row(
        out,
        "database, routers and API agree",
        "yes",
        &[if t.agree { "yes" } else { "**no**" }.to_string()],
    );
    out.push('\n');
    out.push_str(&format!(
        "CPU over the window (utime + stime from `/proc/PID/stat`, children each process \
         waited for included; the machine from `/proc/stat`; {} cores):\n\n",
        t.cores
    ));
    out.push_str(
        "| component | % of one core | % of the machine | CPU time per change |\n\
         |---|---|---|---|\n",
    );
    let cores = t.cores as f64;
    let named: f64 = t.cpu.iter().map(|c| c.percent).sum();
    // CPU milliseconds per change: % of one core is 10 ms of CPU per second.
    let per_change = |pct: f64| format!("{:.2} ms", pct * 10.0 / t.per_s.max(f64::MIN_POSITIVE));
    let mut line = |name: &str, pct: f64, total: &str| {
        out.push_str(&format!(
            "| {name} | {pct:.0}{total} | {:.0} | {} |\n",
            pct / cores,
            per_change(pct)
        ));
    };
    for c in &t.cpu {
        line(&c.name, c.percent, "");
    }
    line(
        "of which PostgreSQL's backends serving the benchmark's database",
        t.postgres_backends,
        "",
    );
    line(
        "the rest of the machine (kernel work not charged to these, other processes)",
        (t.machine_pct - named).max(0.0),
        "",
    );
    line(
        "machine total",
        t.machine_pct,
        &format!(" (of {:.0})", cores * 100.0),
    );
    out.push('\n');
    if let Some(b) = t.busiest() {
        let saturated = t.machine_pct >= 0.9 * cores * 100.0;
        out.push_str(&format!(
            "Largest CPU share: **{}**, {:.0}% of one core ({:.0}% of the machine). The machine \
             as a whole was busy {:.0}% of {:.0}%{}\n",
            b.name,
            b.percent,
            b.percent / cores,
            t.machine_pct,
            cores * 100.0,
            if saturated {
                ": the cores were saturated, and this component holds the largest share of them, \
                 so it is the one that runs out first."
            } else {
                ": the cores were not saturated."
            }
        ));
    }
    if t.postmasters > 1 {
        out.push_str(&format!(
            "\n{} PostgreSQL clusters were running; the PostgreSQL row counts all of them.\n",
            t.postmasters
        ));
    }
    if !t.first_failures.is_empty() {
        out.push_str("\nFirst failures:\n\n");
        for f in &t.first_failures {
            out.push_str(&format!("- {f}\n"));
        }
    }
    out.push('\n');
}

fn restart_markdown(out: &mut String, r: &Restart) {
    let (m, lo, hi) = median_range(&r.runs);
    out.push_str(&format!(
        "**Restart** (a lab router holding {} rules of mix A; its kernel rules flushed, then a \
         new `guestnet agent` process on its data directory):\n\n",
        thousands(r.rules)
    ));
    out.push_str("| | target | measured |\n|---|---|---|\n");
    row(
        out,
        &format!(
            "spawning the agent to its log line \"{RESTORED}\", median (range) of {}",
            r.runs.len()
        ),
        &format!("≤ {RESTART_TARGET_S:.0} s"),
        &[format!(
            "{m:.2} s ({lo:.2}–{hi:.2} s) ({})",
            verdict(m <= RESTART_TARGET_S && hi <= RESTART_TARGET_S)
        )],
    );
    row(
        out,
        "each run",
        "",
        &[r.runs
            .iter()
            .map(|x| format!("{x:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")],
    );
    row(
        out,
        "the router's table present afterwards (`nft list tables`)",
        "every run",
        &[format!("{} of {}", r.confirmed, r.runs.len())],
    );
    let med = |g: &dyn Fn(&Breakdown) -> Option<f64>| {
        let v: Vec<f64> = r.breakdown.iter().filter_map(g).collect();
        report::median(&v).map_or("–".to_string(), |x| report::duration(x * 1e6))
    };
    row(
        out,
        "from the agent's log, median: spawn to \"guestnet agent starting\"",
        "",
        &[med(&|b| b.started_s)],
    );
    row(
        out,
        "spawn to the router's \"committed\" line (lab and ledger read, config validated, \
         candidate written, table committed)",
        "",
        &[med(&|b| b.committed_s)],
    );
    row(
        out,
        "of which planning, rendering and `nft -f` of the whole table (`kernel_us`)",
        "",
        &[med(&|b| b.kernel_s)],
    );
    row(
        out,
        "of which writing the candidate ledger (`candidate_us`)",
        "",
        &[med(&|b| b.candidate_s)],
    );
    row(
        out,
        "loading the same rules the first time (in-process driver)",
        "",
        &[format!("{:.2} s", r.load_s)],
    );
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::{breakdown, log_field, log_time, thousands};

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_agent_log_gives_the_restart_breakdown() {
        let log = "\
2026-11-26T02:59:40.100000Z  INFO guestnet::agent_cmd: guestnet agent starting driver=lab
2026-11-26T02:59:41.300000Z DEBUG vrouterd::router: committed netns=netns x generation=1 \
candidate_us=36944 kernel_us=1050011 promote_us=12
2026-11-26T02:59:41.301000Z  INFO agent::run: the router's kernel had lost its rules; \
enforced again from its ledger router=r1 generation=1";
        let spawned = 2.0 * 3600.0 + 59.0 * 60.0 + 40.0;
        let b = breakdown(log, spawned);
        let near = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() < 1e-6);
        assert!(near(b.started_s, 0.1), "{b:?}");
        assert!(near(b.committed_s, 1.3), "{b:?}");
        assert!(near(b.kernel_s, 1.050011), "{b:?}");
        assert!(near(b.candidate_s, 0.036944), "{b:?}");
        assert_eq!(log_time("not a log line"), None);
        assert_eq!(log_field("a kernel_us=12 b", "kernel_us"), Some(12.0));
        assert_eq!(log_field("a xkernel_us=12 b", "kernel_us"), None);
    }

    #[test]
    fn log_times_wrap_at_midnight() {
        let b = breakdown(
            "2026-11-27T00:00:00.500000Z  INFO x: guestnet agent starting",
            86_399.5,
        );
        assert!(b.started_s.is_some_and(|s| (s - 1.0).abs() < 1e-6), "{b:?}");
    }
}
