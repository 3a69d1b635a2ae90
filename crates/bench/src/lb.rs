//! `guestnet-bench lb`: the router's load balancing at 10 to 1,000 rules: a member change
//! (runtime API), a structural change (checked seamless reload), and connections refused or
//! reset under a steady load while both happen.
//!
//! One lab router and two VMs, each running `lb-server` on ports [`MEMBER_PORT`] and
//! [`EXTRA_PORT`]. Rule i listens on 203.0.113.10 port [`FIRST_PORT`] + i with both VMs' port
//! [`MEMBER_PORT`] as members; one ingress range rule opens all the ports. A member change adds
//! or removes VM 1's port [`EXTRA_PORT`] on one rule; a structural change flips one rule's
//! algorithm between roundrobin and leastconn.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use lab::{LabGuard, LabSpec, NetworkSpec, Target, VmSpec};
use router_config::{
    RouterConfig, RuleId, WireFirewallRule, WireLoadBalancer, WireMember, WirePorts,
};
use sys::haproxy::{Haproxy, HaproxyFiles};
use sys::nft::Netns;
use vrouterd::{ApplyOutcome, Router};

use crate::load::LoadReport;
use crate::mix;
use crate::report::{self, Machine};

/// Where `lb --markdown` writes in a Markdown file: between these two lines.
pub(crate) const BEGIN: &str = "<!-- bench-lb:begin -->";
/// See [`BEGIN`].
pub(crate) const END: &str = "<!-- bench-lb:end -->";

/// The public port of rule 0; rule i listens on `FIRST_PORT + i`.
pub(crate) const FIRST_PORT: u16 = 10_000;
/// The port of both members of every rule.
pub(crate) const MEMBER_PORT: u16 = 8080;
/// The port of the member that member changes add and remove (VM 1).
pub(crate) const EXTRA_PORT: u16 = 8081;
/// The second VM.
pub(crate) const VM2_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 12);
/// The id of the ingress range rule; rule i has id `FIRST_LB_ID + i`.
const FIREWALL_ID: u64 = 1;
const FIRST_LB_ID: u64 = 100;
/// Targets at the largest size.
const MEMBER_TARGET_US: f64 = 5_000.0;
const RELOAD_TARGET_US: f64 = 400_000.0;
/// Pauses between the changes under load, so the load meets every one of them.
const MEMBER_GAP: Duration = Duration::from_millis(100);
const RELOAD_GAP: Duration = Duration::from_millis(200);
/// Repetitions of each profiled step.
const PROFILE_REPEATS: usize = 5;
/// Steady load before the first and after the last change.
const SETTLE: Duration = Duration::from_secs(1);

/// Options of `guestnet-bench lb`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Numbers of load-balancer rules, measured in this order; the load runs at the largest.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,100,1000",
        value_name = "N,…"
    )]
    pub(crate) sizes: Vec<usize>,
    /// Member changes per size, and under load.
    #[arg(long, default_value_t = 20)]
    pub(crate) changes: usize,
    /// Structural reloads per size (at least 20 at the largest size, where the load makes 20).
    #[arg(long, default_value_t = 5)]
    pub(crate) reloads: usize,
    /// New connections per second of the load.
    #[arg(long, default_value_t = 500.0)]
    pub(crate) rate: f64,
    /// Skip the load.
    #[arg(long)]
    pub(crate) no_load: bool,
    /// Write the figures into FILE between its `<!-- bench-lb:begin -->` and
    /// `<!-- bench-lb:end -->` markers (appended under a "Load balancing" heading when it has
    /// none, created when missing).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
}

/// The config of `n` rules at `generation`.
pub(crate) fn config(n: usize, generation: u64) -> RouterConfig {
    let mut cfg = mix::probe_config(1);
    cfg.generation = generation;
    cfg.port_forwards.clear();
    let last = u32::from(FIRST_PORT) + n.max(1) as u32 - 1;
    cfg.firewall_rules = vec![WireFirewallRule {
        id: FIREWALL_ID,
        public_ip: mix::PROBE_IP,
        protocol: "tcp".to_string(),
        ports: Some(WirePorts {
            start: u32::from(FIRST_PORT),
            end: last,
        }),
        icmp: None,
        source_cidrs: vec!["0.0.0.0/0".to_string()],
    }];
    cfg.load_balancers = (0..n)
        .map(|i| WireLoadBalancer {
            id: FIRST_LB_ID + i as u64,
            public_ip: mix::PROBE_IP,
            public_port: u32::from(FIRST_PORT) + i as u32,
            protocol: "tcp".to_string(),
            proxy_protocol: None,
            algorithm: "roundrobin".to_string(),
            members: vec![member(mix::VM_IP, MEMBER_PORT), member(VM2_IP, MEMBER_PORT)],
            source_cidrs: vec!["0.0.0.0/0".to_string()],
            stickiness: None,
            health_check: None,
        })
        .collect();
    cfg
}

fn member(vm_ip: Ipv4Addr, port: u16) -> WireMember {
    WireMember {
        vm_ip,
        port: u32::from(port),
    }
}

/// The rule the k-th change of a series touches: spread over the rules, two changes each (an
/// add, then its removal).
pub(crate) fn rule_for(k: usize, n: usize) -> usize {
    ((k / 2) * 37) % n.max(1)
}

/// The next generation with rule `index`'s extra member added, or removed when it has it.
pub(crate) fn toggle_member(cfg: &RouterConfig, index: usize) -> RouterConfig {
    let mut next = cfg.clone();
    next.generation += 1;
    let extra = member(mix::VM_IP, EXTRA_PORT);
    let members = &mut next.load_balancers[index].members;
    match members.iter().position(|m| *m == extra) {
        Some(i) => {
            members.remove(i);
        }
        None => members.push(extra),
    }
    next
}

/// The next generation with rule `index`'s algorithm flipped between roundrobin and leastconn.
pub(crate) fn toggle_algorithm(cfg: &RouterConfig, index: usize) -> RouterConfig {
    let mut next = cfg.clone();
    next.generation += 1;
    let lb = &mut next.load_balancers[index];
    lb.algorithm = if lb.algorithm == "roundrobin" {
        "leastconn"
    } else {
        "roundrobin"
    }
    .to_string();
    next
}

/// Figures of one size, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeSamples {
    /// Rules.
    pub(crate) n: usize,
    /// Wall time of `apply_document` of a member change.
    pub(crate) member_apply: Vec<f64>,
    /// Its `commit_micros` (the nft side, before haproxy is moved).
    pub(crate) member_commit: Vec<f64>,
    /// Member changes after which the master had reloaded.
    pub(crate) member_reloaded: usize,
    /// Wall time of `apply_document` of a structural change, until the new worker answers.
    pub(crate) reload_apply: Vec<f64>,
    /// Structural changes after which the master had not reloaded exactly once.
    pub(crate) reload_not_one: usize,
    /// `haproxy -c` of the size's file, as the router runs it before a reload.
    pub(crate) check: Vec<f64>,
    /// At the largest size: the steps of a member change replayed one by one, with samples.
    pub(crate) profile: Vec<(String, Vec<f64>)>,
}

/// The load and what happened during it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadSamples {
    /// Rules.
    pub(crate) n: usize,
    /// The client's counts.
    pub(crate) report: LoadReport,
    /// Member changes made under load (wall time of each apply).
    pub(crate) member_apply: Vec<f64>,
    /// Of them, changes after which the master had reloaded.
    pub(crate) member_reloaded: usize,
    /// Structural reloads made under load (wall time of each apply).
    pub(crate) reload_apply: Vec<f64>,
    /// Of them, changes after which the master had not reloaded exactly once.
    pub(crate) reload_not_one: usize,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub(crate) struct LbResults {
    options: Options,
    machine: Machine,
    /// Per size, in the order measured.
    pub(crate) sizes: Vec<SizeSamples>,
    /// The load, unless skipped.
    pub(crate) load: Option<LoadSamples>,
    /// How long the whole run took.
    pub(crate) elapsed: Duration,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

/// Runs the whole benchmark and prints (and maybe writes) the report.
///
/// # Errors
/// The first step that fails; the lab is removed in every case.
pub(crate) fn run(opts: &Options, stop: &AtomicBool) -> anyhow::Result<LbResults> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "guestnet-bench needs root (it builds network namespaces)"
    );
    for tool in ["nft", "ip", "nsenter", "haproxy"] {
        ensure!(sys::cmd::is_on_path(tool), "`{tool}` is not on PATH");
    }
    ensure!(!opts.sizes.is_empty(), "no --sizes given");
    ensure!(
        opts.sizes.iter().all(|n| (1..=50_000).contains(n)),
        "every size must be 1 to 50,000 rules"
    );
    ensure!(opts.rate > 0.0, "--rate must be positive");
    let started = Instant::now();
    let spec = LabSpec {
        networks: vec![NetworkSpec {
            router: "r1".to_string(),
            guest_cidr: mix::GUEST_CIDR.parse().context("guest cidr")?,
            gateway: mix::GUEST_GATEWAY,
            vms: vec![
                VmSpec {
                    name: "vm1".to_string(),
                    ip: mix::VM_IP,
                    label: None,
                },
                VmSpec {
                    name: "vm2".to_string(),
                    ip: VM2_IP,
                    label: None,
                },
            ],
        }],
    };
    let guard = LabGuard::up(&spec).context("cannot build the lab")?;
    eprintln!(
        "guestnet-bench: lab {} in {} (removed at the end; if this process is killed, run \
         `guestnet lab down --data-dir {}`)",
        guard.id(),
        guard.data_dir().display(),
        guard.data_dir().display()
    );
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut servers = Vec::new();
    let mut outcome = Ok(());
    for (vm, ip) in [("vm1", mix::VM_IP), ("vm2", VM2_IP)] {
        let a = SocketAddr::from((ip, MEMBER_PORT)).to_string();
        let b = SocketAddr::from((ip, EXTRA_PORT)).to_string();
        let argv = [
            exe.as_os_str(),
            "lb-server".as_ref(),
            "--listen".as_ref(),
            a.as_ref(),
            "--listen".as_ref(),
            b.as_ref(),
        ];
        match guard.spawn(&Target::Vm(vm.to_string()), &argv) {
            Ok(child) => servers.push(child),
            Err(e) => {
                outcome = Err(e).context("cannot start a VM server");
                break;
            }
        }
    }
    let mut results = LbResults {
        options: opts.clone(),
        machine: Machine::read(),
        sizes: Vec::new(),
        load: None,
        elapsed: Duration::ZERO,
    };
    if outcome.is_ok() {
        outcome = (|| {
            let mut bench = Bench {
                netns: Netns::Named(guard.router_netns("r1")?),
                outside: Netns::Named(guard.netns(&Target::Outside)?),
                guard: &guard,
                work: guard.data_dir().join("bench-lb"),
                exe: exe.clone(),
                opts,
                stop,
            };
            bench.measure_all(&mut results)
        })();
    }
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    drop(guard);
    outcome?;
    results.elapsed = started.elapsed();
    println!("{}", text(&results));
    if let Some(path) = &opts.markdown {
        report::write_between(
            path,
            BEGIN,
            END,
            Some("## Load balancing"),
            &markdown(&results),
        )?;
        eprintln!("guestnet-bench: figures written into {}", path.display());
    }
    Ok(results)
}

struct Bench<'a> {
    netns: Netns,
    outside: Netns,
    guard: &'a LabGuard,
    work: PathBuf,
    exe: PathBuf,
    opts: &'a Options,
    stop: &'a AtomicBool,
}

/// One apply: its wall time and `commit_micros`.
fn apply(router: &mut Router, doc: RouterConfig) -> anyhow::Result<(f64, f64)> {
    let generation = doc.generation;
    let started = Instant::now();
    let outcome = router
        .apply_document(doc)
        .with_context(|| format!("apply generation {generation}"))?;
    let wall = micros(started.elapsed());
    match outcome {
        ApplyOutcome::Applied { commit_micros, .. } => Ok((wall, commit_micros as f64)),
        other => bail!("expected generation {generation} to be applied, got {other:?}"),
    }
}

impl Bench<'_> {
    fn check_stop(&self) -> anyhow::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn haproxy(&self, state: &Path) -> anyhow::Result<Haproxy> {
        Haproxy::adopt(&self.netns, HaproxyFiles::new(state.join("haproxy")))
            .context("adopt the router's haproxy")?
            .context("the router's haproxy is not running")
    }

    fn reloads(h: &Haproxy) -> anyhow::Result<u32> {
        Ok(h.processes().context("show proc")?.reloads)
    }

    /// A short burst from the outside host to rule `index`: every connection must succeed.
    fn sanity(&self, index: usize) -> anyhow::Result<()> {
        let target = SocketAddr::from((mix::PROBE_IP, FIRST_PORT + index as u16)).to_string();
        let out = self
            .outside
            .run(
                path_str(&self.exe)?,
                &[
                    "lb-client",
                    "--connect",
                    &target,
                    "--rate",
                    "200",
                    "--seconds",
                    "0.2",
                ],
                None,
            )
            .context("sanity client")?;
        let r: LoadReport = serde_json::from_slice(&out.stdout).context("sanity client output")?;
        ensure!(
            r.attempted > 0 && r.succeeded == r.attempted,
            "rule {index} ({target}) does not answer every connection: {r:?}"
        );
        Ok(())
    }

    /// The members haproxy lists for rule `index`.
    fn members_listed(h: &Haproxy, index: usize) -> anyhow::Result<usize> {
        let backend = render::haproxy::listen_name(RuleId(FIRST_LB_ID + index as u64));
        Ok(h.server_states()
            .context("show servers state")?
            .iter()
            .filter(|s| s.backend == backend)
            .count())
    }

    fn measure_all(&mut self, results: &mut LbResults) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.work)
            .with_context(|| format!("create {}", self.work.display()))?;
        let state = self.work.join("state");
        std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
        let mut router = Router::open(self.netns.clone(), &state)?;
        let mut current = config(0, 0);
        let mut sizes = self.opts.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        let largest = sizes.last().copied().unwrap_or(0);
        for &n in &sizes {
            self.check_stop()?;
            let s = self
                .measure_size(&mut router, &state, &mut current, n, n == largest)
                .with_context(|| format!("N={n}"))?;
            results.sizes.push(s);
        }
        if !self.opts.no_load {
            self.check_stop()?;
            let l = self
                .measure_load(&mut router, &state, &mut current, largest)
                .with_context(|| format!("load at N={largest}"))?;
            results.load = Some(l);
        }
        // Stop haproxy: a config without load balancers.
        let mut last = config(0, current.generation + 1);
        last.load_balancers.clear();
        apply(&mut router, last).context("stop haproxy")?;
        Ok(())
    }

    fn measure_size(
        &self,
        router: &mut Router,
        state: &Path,
        current: &mut RouterConfig,
        n: usize,
        largest: bool,
    ) -> anyhow::Result<SizeSamples> {
        let mut s = SizeSamples {
            n,
            ..SizeSamples::default()
        };
        *current = config(n, current.generation + 1);
        let (load, _) = apply(router, current.clone())?;
        self.sanity(0)?;
        self.sanity(n - 1)?;
        let h = self.haproxy(state)?;

        for k in 0..self.opts.changes {
            self.check_stop()?;
            let index = rule_for(k, n);
            let next = toggle_member(current, index);
            let want = next.load_balancers[index].members.len();
            let before = Self::reloads(&h)?;
            let (wall, commit) = apply(router, next.clone())?;
            if Self::reloads(&h)? != before {
                s.member_reloaded += 1;
            }
            let listed = Self::members_listed(&h, index)?;
            ensure!(
                listed == want,
                "after member change {k} rule {index} lists {listed} members, the config has {want}"
            );
            s.member_apply.push(wall);
            s.member_commit.push(commit);
            *current = next;
        }

        let reloads = if largest {
            self.opts.reloads.max(20)
        } else {
            self.opts.reloads
        };
        for k in 0..reloads {
            self.check_stop()?;
            let next = toggle_algorithm(current, rule_for(k * 2, n));
            let before = Self::reloads(&h)?;
            let (wall, _) = apply(router, next.clone())?;
            if Self::reloads(&h)? != before + 1 {
                s.reload_not_one += 1;
            }
            s.reload_apply.push(wall);
            *current = next;
        }
        self.sanity(0)?;

        // `haproxy -c` of the file now in place, as the router runs it before every reload.
        let file = state.join("haproxy").join("haproxy.cfg");
        for _ in 0..3 {
            let started = Instant::now();
            sys::haproxy::check(&self.netns, &file).context("haproxy -c")?;
            s.check.push(micros(started.elapsed()));
        }
        if largest {
            s.profile = self
                .profile_member(&h, current)
                .context("profile of a member change")?;
        }
        eprintln!(
            "N={n:>5}: apply of the N rules {}, member change {} (reloaded {}×), structural reload {} (not one reload: {}×), haproxy -c {}",
            report::duration(load),
            report::duration(report::median(&s.member_apply).unwrap_or(f64::NAN)),
            s.member_reloaded,
            report::duration(report::median(&s.reload_apply).unwrap_or(f64::NAN)),
            s.reload_not_one,
            report::duration(report::median(&s.check).unwrap_or(f64::NAN)),
        );
        Ok(s)
    }

    /// Replays the steps of a member change on `current` with the same public functions the
    /// router uses, [`PROFILE_REPEATS`] times each.
    fn profile_member(
        &self,
        h: &Haproxy,
        current: &RouterConfig,
    ) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
        let invalid = |e: router_config::ConfigProblems| anyhow::anyhow!("invalid config: {e}");
        let next = toggle_member(current, 0);
        let old = router_config::validate(current.clone()).map_err(invalid)?;
        let scratch = self.work.join("profile");
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        let mut ledger = vrouterd::ledger::Ledger::open(&scratch).context("scratch ledger")?;
        // The scratch ledger holds the current config; each repeat records the next generation,
        // toggling the member on and off, as a delta against the one before.
        let mut held = old.document().clone();
        ledger.record_seen(held.generation)?;
        let first = ledger.prepare(None, &held, None)?;
        ledger.record(first)?;
        let global = render::haproxy::Global {
            stats_socket: sys::haproxy::HaproxyFiles::new(&scratch).stats_socket(),
            hard_stop_after: vrouterd::HARD_STOP_AFTER,
        };
        let backend = render::haproxy::listen_name(RuleId(FIRST_LB_ID));
        let server = format!(
            "{backend}/{}",
            render::haproxy::server_name(&old.load_balancers[0].members[0])
        );
        let mut steps: Vec<(String, Vec<f64>)> = [
            "validate the new config",
            "plan the haproxy change and render haproxy.cfg (render::haproxy)",
            "ledger: record the generation seen, append the change (2 fdatasyncs)",
            "write haproxy.cfg",
            "runtime API: one request of two commands (`get weight` ×2, read-only)",
        ]
        .iter()
        .map(|t| (t.to_string(), Vec::new()))
        .collect();
        for _ in 0..PROFILE_REPEATS {
            self.check_stop()?;
            let doc = next.clone();
            let t = Instant::now();
            let new = router_config::validate(doc).map_err(invalid)?;
            steps[0].1.push(micros(t.elapsed()));
            let t = Instant::now();
            let change = render::haproxy::plan_lb_change(&old, &new);
            let text =
                render::haproxy::render_haproxy(&new, &global).context("nothing rendered")?;
            steps[1].1.push(micros(t.elapsed()));
            ensure!(
                matches!(change, render::haproxy::LbChange::Members(_)),
                "a member toggle is not a member change: {change:?}"
            );
            let t = Instant::now();
            let mut recorded = if held.generation % 2 == old.generation() % 2 {
                next.clone()
            } else {
                current.clone()
            };
            recorded.generation = held.generation + 1;
            ledger.record_seen(recorded.generation)?;
            let pending = ledger.prepare(Some(&held), &recorded, None)?;
            ledger.record(pending)?;
            held = recorded;
            steps[2].1.push(micros(t.elapsed()));
            let file = scratch.join("haproxy.cfg");
            let t = Instant::now();
            std::fs::write(&file, &text).with_context(|| format!("write {}", file.display()))?;
            steps[3].1.push(micros(t.elapsed()));
            let commands = vec![
                format!("get weight {server}"),
                format!("get weight {server}"),
            ];
            let t = Instant::now();
            let answers = h.runtime(&commands).context("runtime API")?;
            steps[4].1.push(micros(t.elapsed()));
            ensure!(
                answers.iter().all(|a| !sys::haproxy::is_error(a)),
                "haproxy refused `get weight {server}`: {answers:?}"
            );
            drop(new);
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(steps)
    }

    fn measure_load(
        &self,
        router: &mut Router,
        state: &Path,
        current: &mut RouterConfig,
        n: usize,
    ) -> anyhow::Result<LoadSamples> {
        let mut l = LoadSamples {
            n,
            ..LoadSamples::default()
        };
        let h = self.haproxy(state)?;
        let stop_file = self.work.join("load.stop");
        let out = self.work.join("load.json");
        let ready = out.with_extension("ready");
        for f in [&stop_file, &out, &ready] {
            let _ = std::fs::remove_file(f);
        }
        let target = SocketAddr::from((mix::PROBE_IP, FIRST_PORT)).to_string();
        let rate = self.opts.rate.to_string();
        let argv = [
            self.exe.as_os_str(),
            "lb-client".as_ref(),
            "--connect".as_ref(),
            target.as_ref(),
            "--rate".as_ref(),
            rate.as_ref(),
            "--stop-file".as_ref(),
            stop_file.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ];
        let mut client = self
            .guard
            .spawn(&Target::Outside, &argv)
            .context("cannot start the load client")?;
        let changes = (|| -> anyhow::Result<()> {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !ready.exists() {
                ensure!(Instant::now() < deadline, "the load client never started");
                if let Some(status) = client.try_wait()? {
                    bail!("the load client exited early: {status}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(SETTLE);
            for _ in 0..self.opts.changes {
                self.check_stop()?;
                let next = toggle_member(current, 0);
                let before = Self::reloads(&h)?;
                let (wall, _) = apply(router, next.clone())?;
                if Self::reloads(&h)? != before {
                    l.member_reloaded += 1;
                }
                l.member_apply.push(wall);
                *current = next;
                std::thread::sleep(MEMBER_GAP);
            }
            for _ in 0..self.opts.changes {
                self.check_stop()?;
                let next = toggle_algorithm(current, 0);
                let before = Self::reloads(&h)?;
                let (wall, _) = apply(router, next.clone())?;
                if Self::reloads(&h)? != before + 1 {
                    l.reload_not_one += 1;
                }
                l.reload_apply.push(wall);
                *current = next;
                std::thread::sleep(RELOAD_GAP);
            }
            std::thread::sleep(SETTLE);
            Ok(())
        })();
        std::fs::write(&stop_file, b"")
            .with_context(|| format!("write {}", stop_file.display()))?;
        let waited = Instant::now();
        while client.try_wait()?.is_none() {
            if waited.elapsed() > Duration::from_secs(30) {
                let _ = client.kill();
                let _ = client.wait();
                bail!("the load client did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        changes?;
        let bytes = std::fs::read(&out).with_context(|| format!("read {}", out.display()))?;
        l.report = serde_json::from_slice(&bytes).context("load client output")?;
        let r = &l.report;
        eprintln!(
            "load at N={n}: {} attempted at {:.0}/s over {:.1} s, {} succeeded, {} refused, {} reset, {} timed out, {} short reads, {} other; connection median {} p99 {} max {}",
            r.attempted,
            r.achieved_rate(),
            r.seconds,
            r.succeeded,
            r.refused,
            r.reset,
            r.timed_out,
            r.short_reads,
            r.other,
            report::duration(r.median_us),
            report::duration(r.p99_us),
            report::duration(r.max_us),
        );
        for f in &r.first_failures {
            eprintln!("  failure {f}");
        }
        Ok(l)
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The rows of the report: (title, header, rows).
type Table = (String, Vec<String>, Vec<Vec<String>>);

fn tables(r: &LbResults) -> Vec<Table> {
    let mut out = Vec::new();
    let rows = r
        .sizes
        .iter()
        .map(|s| {
            vec![
                s.n.to_string(),
                report::cell(&s.member_apply),
                report::cell(&s.member_commit),
                format!(
                    "runtime API ×{}, reload ×{}",
                    s.member_apply.len() - s.member_reloaded,
                    s.member_reloaded
                ),
                report::cell(&s.reload_apply),
                report::cell(&s.check),
                format!(
                    "{} of {}",
                    s.reload_apply.len() - s.reload_not_one,
                    s.reload_apply.len()
                ),
            ]
        })
        .collect();
    out.push((
        "Apply path (no load)".to_string(),
        [
            "rules",
            "member change: whole apply",
            "its nft commit",
            "how haproxy moved",
            "structural reload: whole apply",
            "`haproxy -c` alone",
            "exactly one reload",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    ));
    if let Some(s) = r.sizes.iter().find(|s| !s.profile.is_empty()) {
        out.push((
            format!(
                "Where a member change's time goes at N={} (steps replayed alone, median of {PROFILE_REPEATS})",
                s.n
            ),
            ["step", "time"].map(String::from).to_vec(),
            s.profile
                .iter()
                .map(|(name, v)| vec![name.clone(), report::cell(v)])
                .collect(),
        ));
    }
    if let Some(l) = &r.load {
        let p = &l.report;
        out.push((
            format!(
                "Under load: rule {} (port {FIRST_PORT}) at N={}, {} member changes then {} structural reloads",
                FIRST_LB_ID, l.n, l.member_apply.len(), l.reload_apply.len()
            ),
            [
                "attempted",
                "rate achieved",
                "succeeded",
                "refused",
                "reset",
                "timed out",
                "short reads",
                "other",
                "connection time: median / p99 / max",
            ]
            .map(String::from)
            .to_vec(),
            vec![vec![
                p.attempted.to_string(),
                format!("{:.0}/s over {:.1} s", p.achieved_rate(), p.seconds),
                p.succeeded.to_string(),
                p.refused.to_string(),
                p.reset.to_string(),
                p.timed_out.to_string(),
                p.short_reads.to_string(),
                p.other.to_string(),
                format!(
                    "{} / {} / {}",
                    report::duration(p.median_us),
                    report::duration(p.p99_us),
                    report::duration(p.max_us)
                ),
            ]],
        ));
        out.push((
            "Changes made under that load".to_string(),
            ["change", "count", "whole apply", "how haproxy moved"]
                .map(String::from)
                .to_vec(),
            vec![
                vec![
                    "member add/remove on the loaded rule".to_string(),
                    l.member_apply.len().to_string(),
                    report::cell(&l.member_apply),
                    format!(
                        "runtime API ×{}, reload ×{}",
                        l.member_apply.len() - l.member_reloaded,
                        l.member_reloaded
                    ),
                ],
                vec![
                    "algorithm flip on the loaded rule".to_string(),
                    l.reload_apply.len().to_string(),
                    report::cell(&l.reload_apply),
                    format!(
                        "exactly one reload ×{}",
                        l.reload_apply.len() - l.reload_not_one
                    ),
                ],
            ],
        ));
    }
    out.push((
        "Targets".to_string(),
        [
            "figure",
            "measured",
            "target",
            "verdict",
            "reference (performance-facts.md)",
        ]
        .map(String::from)
        .to_vec(),
        targets(r),
    ));
    out
}

fn targets(r: &LbResults) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if let Some(s) = r.sizes.iter().max_by_key(|s| s.n) {
        let member = report::median(&s.member_apply).unwrap_or(f64::NAN);
        rows.push(vec![
            format!("member change at {} rules (whole apply, median)", s.n),
            report::duration(member),
            "≤ 5 ms".to_string(),
            verdict(member <= MEMBER_TARGET_US && s.member_reloaded == 0).to_string(),
            "§7.5: runtime API 0.16–0.22 ms per command (one connection each); 500 commands in one request 4.1 ms"
                .to_string(),
        ]);
        let reload = report::median(&s.reload_apply).unwrap_or(f64::NAN);
        rows.push(vec![
            format!("structural reload at {} rules (whole apply, median of {})", s.n, s.reload_apply.len()),
            report::duration(reload),
            "≤ 400 ms".to_string(),
            verdict(reload <= RELOAD_TARGET_US && s.reload_not_one == 0).to_string(),
            "§7.5: reload with socket transfer 87 ms (71–126) at 100, 256 ms (191–276) at 1,000; `haproxy -c` 55 ms at 100, 77 ms at 1,000"
                .to_string(),
        ]);
    }
    if let Some(l) = &r.load {
        let p = &l.report;
        rows.push(vec![
            format!(
                "connections refused or reset under {:.0}/s during {} member changes and {} reloads",
                p.rate,
                l.member_apply.len(),
                l.reload_apply.len()
            ),
            format!(
                "{} refused, {} reset of {} ({} failed otherwise)",
                p.refused,
                p.reset,
                p.attempted,
                p.failed_otherwise()
            ),
            "0".to_string(),
            verdict(p.refused + p.reset == 0 && p.attempted > 0).to_string(),
            "§7.8: 8 seamless reloads under ~1,000 connections/s: 11,572 succeeded, 0 failed".to_string(),
        ]);
    }
    rows
}

fn header(r: &LbResults) -> Vec<String> {
    let o = &r.options;
    let sizes: Vec<String> = o.sizes.iter().map(ToString::to_string).collect();
    vec![
        format!("Machine: {}.", r.machine.describe()),
        format!(
            "Run: `guestnet-bench lb --sizes {} --changes {} --reloads {} --rate {}{}`; the whole run took {}.",
            sizes.join(","),
            o.changes,
            o.reloads,
            o.rate,
            if o.no_load { " --no-load" } else { "" },
            report::duration(micros(r.elapsed)),
        ),
        "Cells: median (min–max over all samples).".to_string(),
    ]
}

/// The report as plain text.
pub(crate) fn text(r: &LbResults) -> String {
    let mut out = header(r).join("\n");
    out.push('\n');
    for (title, head, rows) in tables(r) {
        out.push_str(&format!("\n{title}\n"));
        let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in std::iter::once(&head).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

/// The report as a Markdown section (without the markers).
pub(crate) fn markdown(r: &LbResults) -> String {
    let mut out = header(r).join("\n");
    out.push('\n');
    for (title, head, rows) in tables(r) {
        out.push_str(&format!("\n#### {title}\n\n| {} |\n", head.join(" | ")));
        out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
        for row in rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }
    out
}
