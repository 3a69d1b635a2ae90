//! `guestnet-bench api`: the management server end to end, on SQLite and on PostgreSQL.
//!
//! For each database it starts a real `guestnet serve --driver lab` in a throw-away data
//! directory and drives it with signed requests, as `cs` signs them:
//! - accepted creations per second: `--clients` concurrent clients sending createFirewallRule
//!   as fast as answers come back (each answer carries a job id; the rule is written);
//! - then the router is filled to `--rules` rules, and every creation after that is timed from
//!   sending createFirewallRule to the first queryAsyncJobResult (polled every millisecond)
//!   that says `jobstatus 1`, i.e. the router enforces it;
//! - listing every rule in one page (`pagesize=-1`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mgmt::client::Client;
use serde_json::Value;
use sys::cmd::{Child, Program, Stdio};
use test_support::process::startup_line;

use crate::report::{self, Machine};

/// Where `api --markdown` writes: between these two lines.
pub(crate) const BEGIN: &str = "<!-- bench-api:begin -->";
/// See [`BEGIN`].
pub(crate) const END: &str = "<!-- bench-api:end -->";

const KEY: &str = "bench-api-key";
const SECRET: &str = "bench-secret-key";

/// Targets on the 2-core machine.
const ACCEPT_TARGET: f64 = 500.0;
pub(crate) const P50_TARGET_MS: f64 = 25.0;
pub(crate) const P99_TARGET_MS: f64 = 100.0;
const LIST_TARGET_MS: f64 = 50.0;

/// Options of `guestnet-bench api`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Rules on the router before creations are timed to enforcement.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rules: usize,
    /// Concurrent clients for the acceptance rate.
    #[arg(long, default_value_t = 8)]
    pub(crate) clients: usize,
    /// Creations sent in the acceptance phase (they also start filling the router).
    #[arg(long, default_value_t = 4_000)]
    pub(crate) burst: usize,
    /// Creations timed to enforcement.
    #[arg(long, default_value_t = 300)]
    pub(crate) samples: usize,
    /// Listings of every rule timed.
    #[arg(long, default_value_t = 30)]
    pub(crate) lists: usize,
    /// PostgreSQL server to create a throw-away database on.
    #[arg(
        long,
        env = "GUESTNET_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) postgres: String,
    /// Only this database: sqlite or postgres.
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// The `guestnet` binary (default: beside this one).
    #[arg(long)]
    pub(crate) server: Option<PathBuf>,
    /// Write the figures into FILE between its `<!-- bench-api:begin -->` and
    /// `<!-- bench-api:end -->` markers.
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
}

/// The figures of one database.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    db: &'static str,
    accepted_per_s: f64,
    accepted: usize,
    refused: usize,
    rules: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    list_p50_ms: f64,
    list_max_ms: f64,
    listed: usize,
    generations: i64,
}

struct Server {
    child: Child,
    dir: lab::TempDir,
    client: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = sys::cmd::run("kill", &["-TERM", &self.child.id().to_string()], None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(errors) = lab::down(self.dir.path()) {
            for e in errors {
                eprintln!("guestnet-bench: lab down: {}", lab::chain(&e));
            }
        }
    }
}

/// How long a starting server may take to print its startup line.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

fn start(binary: &Path, database_url: Option<&str>) -> anyhow::Result<Server> {
    let dir = lab::TempDir::new().context("temp dir")?;
    let mut cmd = Program::new(binary);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--driver",
        "lab",
        "--data-dir",
    ])
    .arg(dir.path())
    .env("GUESTNET_ADMIN_API_KEY", KEY)
    .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
    .env(
        "RUST_LOG",
        std::env::var("GUESTNET_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd.spawn().context("start guestnet serve")?;
    let (line, endpoint) = startup_line(&mut child, STARTUP_DEADLINE);
    let Some(endpoint) = endpoint else {
        let _ = child.kill_and_wait();
        bail!("no endpoint in the startup line {line:?}");
    };
    Ok(Server {
        child,
        dir,
        client: Client::new(&endpoint, KEY, SECRET),
    })
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn s(v: &Value, path: &[&str]) -> anyhow::Result<String> {
    let mut cur = v;
    for p in path {
        cur = if let Ok(i) = p.parse::<usize>() {
            &cur[i]
        } else {
            &cur[*p]
        };
    }
    cur.as_str()
        .map(str::to_string)
        .with_context(|| format!("no {path:?} in {v}"))
}

/// A distinct rule per index: port and source address make every rule unique.
fn rule_params(ip_id: &str, i: usize) -> Vec<(String, String)> {
    let port = 1 + (i % 60_000);
    let net = i / 60_000;
    vec![
        ("ipaddressid".into(), ip_id.to_string()),
        ("protocol".into(), "tcp".into()),
        ("startport".into(), port.to_string()),
        ("endport".into(), port.to_string()),
        ("cidrlist".into(), format!("198.51.{}.0/24", net % 256)),
    ]
}

pub(crate) async fn create(client: &Client, ip_id: &str, i: usize) -> anyhow::Result<String> {
    let p = rule_params(ip_id, i);
    let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = client.call("createFirewallRule", &refs).await?;
    s(&r, &["jobid"])
}

pub(crate) async fn wait_idle(
    client: &Client,
    network: &str,
    deadline: Instant,
) -> anyhow::Result<i64> {
    loop {
        let jobs = client.call("listAsyncJobs", &[("pagesize", "-1")]).await?;
        let pending = jobs["asyncjobs"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|j| j["jobstatus"] == 0).count());
        if pending == 0 {
            let r = client
                .call("listRouters", &[("networkid", network)])
                .await?;
            return Ok(r["router"][0]["appliedgeneration"].as_i64().unwrap_or(0));
        }
        if Instant::now() > deadline {
            bail!("{pending} jobs still pending");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(db: &'static str, server: &Server, o: &Options) -> anyhow::Result<Figures> {
    let c = &server.client;
    let zone = s(&c.call("listZones", &[]).await?, &["zone", "0", "id"])?;
    let offerings = c.call("listNetworkOfferings", &[]).await?;
    let offering = s(&offerings, &["networkoffering", "0", "id"])?;
    let net = c
        .call(
            "createNetwork",
            &[
                ("name", "bench"),
                ("displaytext", "bench"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
                ("gateway", "10.1.1.1"),
                ("netmask", "255.255.255.0"),
            ],
        )
        .await?;
    let network = s(&net, &["network", "id"])?;
    let ips = c
        .call(
            "listPublicIpAddresses",
            &[("associatednetworkid", &network)],
        )
        .await?;
    let ip_id = s(&ips, &["publicipaddress", "0", "id"])?;

    // Accepted creations per second, `clients` at a time.
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.clients {
        let (c, ip_id, next, refused, burst) = (
            c.clone(),
            ip_id.clone(),
            next.clone(),
            refused.clone(),
            o.burst,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= burst {
                    return;
                }
                if create(&c, &ip_id, i).await.is_err() {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        if t.await.is_err() {
            failed.store(true, Ordering::SeqCst);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refused = refused.load(Ordering::SeqCst);
    let accepted = o.burst - refused;
    if failed.load(Ordering::SeqCst) {
        bail!("a client task failed");
    }
    eprintln!("guestnet-bench: {db}: {accepted} creations accepted in {elapsed:.2} s");

    // Fill the router up to `rules`, then wait for every job.
    let mut i = o.burst;
    while i < o.rules {
        let mut batch = Vec::new();
        for _ in 0..o.clients {
            if i >= o.rules {
                break;
            }
            let (c, ip_id) = (c.clone(), ip_id.clone());
            let k = i;
            batch.push(tokio::spawn(async move { create(&c, &ip_id, k).await }));
            i += 1;
        }
        for t in batch {
            t.await.context("fill task")??;
        }
    }
    wait_idle(c, &network, Instant::now() + Duration::from_secs(600)).await?;
    eprintln!(
        "guestnet-bench: {db}: router holds {} rules",
        o.rules.max(o.burst)
    );

    // Creation to enforcement, one at a time, polling every millisecond.
    let mut lat = Vec::with_capacity(o.samples);
    for k in 0..o.samples {
        let t0 = Instant::now();
        let job = create(c, &ip_id, o.rules.max(o.burst) + k).await?;
        c.wait_job(
            &job,
            Duration::from_millis(1),
            Instant::now() + Duration::from_secs(60),
        )
        .await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let generations = wait_idle(c, &network, Instant::now() + Duration::from_secs(60)).await?;

    // Listing every rule in one page: from sending the request to holding the whole answer
    // (parsing 2.5 MB of JSON into a tree is the client's business and is left out; each
    // answer is checked afterwards).
    let mut lists = Vec::with_capacity(o.lists);
    let mut listed = 0;
    for _ in 0..o.lists {
        let t0 = Instant::now();
        let (status, body) = c
            .call_raw(
                "listFirewallRules",
                &[("ipaddressid", &ip_id), ("pagesize", "-1")],
            )
            .await?;
        lists.push(t0.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("listFirewallRules answered {status}");
        }
        let v: Value = serde_json::from_slice(&body).context("list answer")?;
        listed = v["listfirewallrulesresponse"]["firewallrule"]
            .as_array()
            .map_or(0, Vec::len);
    }
    lists.sort_by(f64::total_cmp);
    Ok(Figures {
        db,
        accepted_per_s: accepted as f64 / elapsed,
        accepted,
        refused,
        rules: o.rules.max(o.burst),
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        list_p50_ms: percentile(&lists, 0.5),
        list_max_ms: lists.last().copied().unwrap_or(f64::NAN),
        listed,
        generations,
    })
}

pub(crate) async fn fresh_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let name = format!("guestnet_bench_{}", std::process::id());
    let url = store::databases::recreate(admin_url, &name).await?;
    Ok((name, url))
}

pub(crate) async fn drop_database(admin_url: &str, name: &str) {
    // Best effort: a database left behind is recreated by the next run of the same name.
    let _ = store::databases::drop(admin_url, name).await;
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or a request fails.
pub(crate) fn run(o: &Options, stop: &AtomicBool) -> anyhow::Result<Vec<Figures>> {
    let binary = match &o.server {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .context("own path")?
            .with_file_name("guestnet"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    let mut all = Vec::new();
    for db in ["sqlite", "postgres"] {
        if o.only.as_deref().is_some_and(|only| only != db) || stop.load(Ordering::SeqCst) {
            continue;
        }
        let figures = rt.block_on(async {
            match db {
                "sqlite" => {
                    let server = start(&binary, None)?;
                    measure("SQLite", &server, o).await
                }
                _ => {
                    let (name, url) = fresh_database(&o.postgres).await?;
                    let result = async {
                        let server = start(&binary, Some(&url))?;
                        measure("PostgreSQL", &server, o).await
                    }
                    .await;
                    drop_database(&o.postgres, &name).await;
                    result
                }
            }
        })?;
        println!("{figures:?}");
        all.push(figures);
    }
    if let Some(path) = &o.markdown {
        report::write_between(
            path,
            BEGIN,
            END,
            Some("## Management server"),
            &markdown(o, &all, &Machine::read()),
        )?;
    }
    Ok(all)
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn markdown(o: &Options, all: &[Figures], machine: &Machine) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Measured by `guestnet-bench api --rules {} --clients {} --burst {} --samples {} \
         --lists {}` on {}. Each database gets a fresh `guestnet serve --driver lab` with one \
         network; requests are signed as `cs` signs them (signature version 3).\n\n",
        o.rules,
        o.clients,
        o.burst,
        o.samples,
        o.lists,
        machine.describe()
    ));
    out.push_str("| | target |");
    for f in all {
        out.push_str(&format!(" {} |", f.db));
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in all {
        out.push_str("---|");
    }
    out.push('\n');
    let row = |out: &mut String, name: &str, target: &str, cells: Vec<String>| {
        out.push_str(&format!("| {name} | {target} | {} |\n", cells.join(" | ")));
    };
    row(
        &mut out,
        &format!(
            "createFirewallRule accepted per second, {} clients",
            o.clients
        ),
        &format!("≥ {ACCEPT_TARGET:.0}"),
        all.iter()
            .map(|f| {
                format!(
                    "{:.0} ({}; {} of {} refused)",
                    f.accepted_per_s,
                    verdict(f.accepted_per_s >= ACCEPT_TARGET),
                    f.refused,
                    f.accepted + f.refused
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "create to `jobstatus 1` (enforced), p50",
        &format!("≤ {P50_TARGET_MS:.0} ms"),
        all.iter()
            .map(|f| {
                format!(
                    "{:.1} ms ({})",
                    f.p50_ms,
                    verdict(f.p50_ms <= P50_TARGET_MS)
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "create to `jobstatus 1` (enforced), p90",
        "",
        all.iter().map(|f| format!("{:.1} ms", f.p90_ms)).collect(),
    );
    row(
        &mut out,
        "create to `jobstatus 1` (enforced), p99",
        &format!("≤ {P99_TARGET_MS:.0} ms"),
        all.iter()
            .map(|f| {
                format!(
                    "{:.1} ms ({})",
                    f.p99_ms,
                    verdict(f.p99_ms <= P99_TARGET_MS)
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "create to `jobstatus 1`, worst",
        "",
        all.iter().map(|f| format!("{:.1} ms", f.max_ms)).collect(),
    );
    row(
        &mut out,
        "rules on the router while timed",
        "10,000",
        all.iter().map(|f| f.rules.to_string()).collect(),
    );
    row(
        &mut out,
        "listFirewallRules `pagesize=-1`, p50",
        &format!("≤ {LIST_TARGET_MS:.0} ms"),
        all.iter()
            .map(|f| {
                format!(
                    "{:.1} ms for {} rules ({})",
                    f.list_p50_ms,
                    f.listed,
                    verdict(f.list_p50_ms <= LIST_TARGET_MS)
                )
            })
            .collect(),
    );
    row(
        &mut out,
        "listFirewallRules `pagesize=-1`, worst",
        "",
        all.iter()
            .map(|f| format!("{:.1} ms", f.list_max_ms))
            .collect(),
    );
    row(
        &mut out,
        "router generations applied in all",
        "",
        all.iter().map(|f| f.generations.to_string()).collect(),
    );
    out.push('\n');
    out
}
