//! `guestnet-bench router`: builds the lab, measures every (size, mix) in interleaved runs, then
//! profiles the largest size, and reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use lab::{LabGuard, LabSpec, NetworkSpec, Target, VmSpec};
use router_config::{validate, RouterConfig, RouterDelta};
use sys::nft::{self, Netns};
use vrouterd::{ApplyMode, ApplyOutcome, CommitPath, Router};

use crate::linear::{self, Linear};
use crate::mix::{self, Mix};
use crate::probe::Latency;
use crate::report::{self, LinearSamples, Machine, Profile, Results, Samples, PROFILE_REPEATS};
use crate::rng::Rng;

/// Options of `guestnet-bench router`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Numbers of counted rules, measured in this order in every run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000,10000,100000",
        value_name = "N,…"
    )]
    pub(crate) sizes: Vec<usize>,
    /// Runs; every figure is a median over runs (or over runs × changes).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    /// Changed rules per run for the one-change figures (at least five in all are made).
    #[arg(long, default_value_t = 2)]
    pub(crate) changes: usize,
    /// Connections the latency probe times per run.
    #[arg(long, default_value_t = 2000)]
    pub(crate) connections: usize,
    /// Which mixes to measure.
    #[arg(long, value_delimiter = ',', default_value = "a,b")]
    pub(crate) mixes: Vec<Mix>,
    /// Skip the linear-chain baseline of mix B.
    #[arg(long)]
    pub(crate) no_baseline: bool,
    /// Skip the profile of the largest size.
    #[arg(long)]
    pub(crate) no_profile: bool,
    /// Write the figures into FILE, between its `<!-- bench:begin -->` and `<!-- bench:end -->`
    /// markers (appended with the markers when it has none, created when missing).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
    /// The `guestnet` binary for the end-to-end figure (default: the one beside this binary).
    #[arg(long, value_name = "PATH")]
    pub(crate) guestnet: Option<PathBuf>,
}

const NO_RULE_LEFT: &str = "no rule left to change: use bigger --sizes or fewer --changes";

/// Changed rules per run, so that at least five are made in all.
fn changes_per_run(opts: &Options) -> usize {
    opts.changes.max(5usize.div_ceil(opts.runs.max(1))).max(1)
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
pub(crate) fn run(opts: &Options, stop: &AtomicBool) -> anyhow::Result<Results> {
    let guestnet = match &opts.guestnet {
        Some(p) => p.clone(),
        None => crate::sibling_guestnet().context("cannot find this binary's directory")?,
    };
    preflight(opts, &guestnet)?;
    let machine = Machine::read();
    let started = Instant::now();
    let spec = LabSpec {
        networks: vec![NetworkSpec {
            router: "r1".to_string(),
            guest_cidr: mix::GUEST_CIDR.parse().context("guest cidr")?,
            gateway: mix::GUEST_GATEWAY,
            vms: vec![VmSpec {
                name: "vm1".to_string(),
                ip: mix::VM_IP,
                label: None,
            }],
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
    let listen = SocketAddr::from((mix::VM_IP, mix::VM_PORT)).to_string();
    let server_argv = [
        exe.as_os_str(),
        "probe-server".as_ref(),
        "--listen".as_ref(),
        listen.as_ref(),
    ];
    let mut server = guard
        .spawn(&Target::Vm("vm1".to_string()), &server_argv)
        .context("cannot start the probe server")?;
    let mut bench = Bench {
        netns: Netns::Named(guard.router_netns("r1")?),
        outside: Netns::Named(guard.netns(&Target::Outside)?),
        work: guard.data_dir().join("bench"),
        guestnet,
        exe,
        opts,
        stop,
        configs: BTreeMap::new(),
        linears: BTreeMap::new(),
        handles: BTreeMap::new(),
        results: Results::new(opts, changes_per_run(opts), machine),
        next_state: 0,
    };
    let outcome = bench.measure_all();
    let _ = server.kill();
    let _ = server.wait();
    drop(guard);
    outcome?;
    let mut results = bench.results;
    results.elapsed = started.elapsed();
    let text = report::text(&results);
    println!("{text}");
    if let Some(path) = &opts.markdown {
        report::write_markdown(path, &results)?;
        eprintln!("guestnet-bench: figures written into {}", path.display());
    }
    Ok(results)
}

fn preflight(opts: &Options, guestnet: &Path) -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "guestnet-bench needs root (it builds network namespaces)"
    );
    for tool in ["nft", "ip", "nsenter"] {
        ensure!(sys::cmd::is_on_path(tool), "`{tool}` is not on PATH");
    }
    ensure!(
        guestnet.is_file(),
        "no guestnet binary at {} (build it: cargo build --release -p guestnet, or pass --guestnet)",
        guestnet.display()
    );
    ensure!(!opts.sizes.is_empty(), "no --sizes given");
    ensure!(
        opts.sizes.iter().all(|n| *n >= 10),
        "every size must be at least 10 rules"
    );
    ensure!(opts.runs > 0, "--runs must be at least 1");
    ensure!(!opts.mixes.is_empty(), "no --mixes given");
    Ok(())
}

struct Bench<'a> {
    netns: Netns,
    outside: Netns,
    work: PathBuf,
    guestnet: PathBuf,
    exe: PathBuf,
    opts: &'a Options,
    stop: &'a AtomicBool,
    configs: BTreeMap<(Mix, usize), RouterConfig>,
    linears: BTreeMap<usize, Linear>,
    /// The linear chain's handles per size: the table is made afresh the same way every run,
    /// so its handles are too, and the (slow) listing is done once per size.
    handles: BTreeMap<usize, Vec<u64>>,
    results: Results,
    next_state: usize,
}

/// What one apply through [`Router::apply_document`] reported and cost.
struct Applied {
    mode: ApplyMode,
    via: CommitPath,
    commit_us: f64,
    wall_us: f64,
}

impl Applied {
    /// How the commit went, for the tables.
    fn path(&self) -> &'static str {
        match (self.mode, self.via) {
            (ApplyMode::Full, _) => "FULL",
            (ApplyMode::Delta, CommitPath::Netlink) => "netlink",
            (ApplyMode::Delta, CommitPath::Nft) => "nft",
            (ApplyMode::Delta, CommitPath::Nothing) => "nothing",
            (ApplyMode::Delta, CommitPath::Staged) => "staged",
        }
    }
}

/// The size of a change: element changes plus buckets made and removed, or the lines of the
/// nft script when it has no element-only form.
fn change_size(update: &render::Update) -> usize {
    match &update.fast {
        Some(fast) => {
            fast.elements
                .iter()
                .map(|c| c.elements.len())
                .sum::<usize>()
                + fast
                    .create
                    .lines()
                    .filter(|l| l.starts_with("add chain "))
                    .count()
                + fast.remove.len()
        }
        None => update.script.lines().count(),
    }
}

fn apply(router: &mut Router, doc: RouterConfig) -> anyhow::Result<Applied> {
    applied(router, |r| r.apply_document(doc))
}

/// Times one apply (`how`) from the call to its return.
fn applied(
    router: &mut Router,
    how: impl FnOnce(&mut Router) -> Result<ApplyOutcome, vrouterd::ApplyError>,
) -> anyhow::Result<Applied> {
    let started = Instant::now();
    let outcome = how(router)?;
    let wall_us = micros(started.elapsed());
    match outcome {
        ApplyOutcome::Applied {
            mode,
            commit_micros,
            via,
            ..
        } => Ok(Applied {
            mode,
            via,
            commit_us: commit_micros as f64,
            wall_us,
        }),
        other => bail!("expected the config to be applied, got {other:?}"),
    }
}

impl Bench<'_> {
    fn check_stop(&self) -> anyhow::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn changes_per_run(&self) -> usize {
        changes_per_run(self.opts)
    }

    fn config(&mut self, mix: Mix, n: usize) -> RouterConfig {
        self.configs
            .entry((mix, n))
            .or_insert_with(|| mix::config(mix, n))
            .clone()
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.netns
            .run("nft", &["flush", "ruleset"], None)
            .context("nft flush ruleset")?;
        Ok(())
    }

    /// A state directory nobody used before.
    fn fresh_state(&mut self) -> anyhow::Result<PathBuf> {
        self.next_state += 1;
        let dir = self.work.join(format!("state-{}", self.next_state));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    fn latency(&self) -> anyhow::Result<Latency> {
        let target = SocketAddr::from((mix::PROBE_IP, mix::PROBE_PORT)).to_string();
        let count = self.opts.connections.to_string();
        let out = self
            .outside
            .run(
                path_str(&self.exe)?,
                &["probe-client", "--connect", &target, "--count", &count],
                None,
            )
            .context("latency probe")?;
        serde_json::from_slice(&out.stdout).context("latency probe output")
    }

    fn measure_all(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.work)
            .with_context(|| format!("create {}", self.work.display()))?;
        let sizes = self.opts.sizes.clone();
        let mixes = self.opts.mixes.clone();
        for run in 0..self.opts.runs {
            for &n in &sizes {
                for &mix in &mixes {
                    self.check_stop()?;
                    self.measure_mix(mix, n, run).with_context(|| {
                        format!("mix {} with N={n}, run {}", mix.name(), run + 1)
                    })?;
                }
                if mixes.contains(&Mix::B) && !self.opts.no_baseline {
                    self.check_stop()?;
                    self.measure_linear(n, run)
                        .with_context(|| format!("linear baseline with N={n}, run {}", run + 1))?;
                }
            }
        }
        if !self.opts.no_profile {
            if let Some(&n) = sizes.iter().max() {
                for &mix in &mixes {
                    self.check_stop()?;
                    let p = self
                        .profile(mix, n)
                        .with_context(|| format!("profile of mix {} with N={n}", mix.name()))?;
                    self.results.profiles.push(p);
                }
            }
        }
        Ok(())
    }

    /// Load from empty, changes in process, changes through the CLI, latency.
    fn measure_mix(&mut self, mix: Mix, n: usize, run: usize) -> anyhow::Result<()> {
        let base = self.config(mix, n);
        let per_run = self.changes_per_run();
        let mut s = Samples::default();

        // 1. Load from empty: no ruleset, a fresh state directory.
        self.flush()?;
        let state = self.fresh_state()?;
        let mut router = Router::open(self.netns.clone(), &state)?;
        let loaded = apply(&mut router, base.clone())?;
        ensure!(
            loaded.mode == ApplyMode::Full,
            "a load from empty was not a full apply"
        );
        s.load_commit.push(loaded.commit_us);
        s.load_apply.push(loaded.wall_us);
        s.elements = router.model().map_or(0, render::Ruleset::element_count);

        // 2. One changed rule on top of N, in process.
        let mut rng = Rng::new(mix::change_seed(mix, n, run));
        let mut used = BTreeSet::new();
        let mut current = base;
        for _ in 0..per_run {
            let (next, _) =
                mix::change(&current, mix, &mut rng, &mut used).context(NO_RULE_LEFT)?;
            // Kept to size the delta afterwards, outside the timing.
            let before = router.model().cloned().zip(router.config().cloned());
            // As a server sends it: a delta against the generation the router holds.
            let delta = RouterDelta::between(&current, &next);
            let a = applied(&mut router, |r| r.apply_delta(&delta))?;
            *s.change_paths.entry(a.path().to_string()).or_default() += 1;
            s.change_commit.push(a.commit_us);
            s.change_apply.push(a.wall_us);
            if let (Some((mut model, old)), Some(new)) = (before, router.config()) {
                s.delta_size
                    .push(change_size(&model.update(&old, new)) as f64);
            }
            current = next;
        }
        drop(router);

        // 3. One changed rule through `guestnet router apply`, a whole process each.
        let mut files = Vec::new();
        for i in 0..per_run {
            let (next, _) =
                mix::change(&current, mix, &mut rng, &mut used).context(NO_RULE_LEFT)?;
            let file = self.work.join(format!("change-{i}.json"));
            let bytes = serde_json::to_vec(&next)?;
            std::fs::write(&file, bytes).with_context(|| format!("write {}", file.display()))?;
            files.push(file);
            current = next;
        }
        let ns = match &self.netns {
            Netns::Named(n) => n.clone(),
            Netns::Host => bail!("the lab router has no named namespace"),
        };
        for file in &files {
            let started = Instant::now();
            let out = sys::cmd::run(
                path_str(&self.guestnet)?,
                &[
                    "router",
                    "apply",
                    path_str(file)?,
                    "--netns",
                    &ns,
                    "--state-dir",
                    path_str(&state)?,
                ],
                None,
            )?;
            s.cli.push(micros(started.elapsed()));
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).context("guestnet router apply output")?;
            let path = match (
                v.get("mode").and_then(|m| m.as_str()),
                v.get("via").and_then(|m| m.as_str()),
            ) {
                (Some("delta"), Some(via)) => via.to_string(),
                (Some("delta"), None) => "delta".to_string(),
                _ => "FULL".to_string(),
            };
            *s.cli_paths.entry(path).or_default() += 1;
        }
        for file in &files {
            let _ = std::fs::remove_file(file);
        }

        // 3b. The same through a delta file (`RouterDelta` against the generation held), a
        // whole process each: no 13 MB document to read at 100k.
        let files = self.delta_files(&mut current, mix, &mut rng, &mut used, "delta")?;
        for file in &files {
            let started = Instant::now();
            self.cli_apply(file, &ns, &state)?;
            s.cli_delta.push(micros(started.elapsed()));
        }

        // 3c. Restart to enforcing: open the state directory and restore into a flushed table.
        self.flush()?;
        let started = Instant::now();
        let mut router = Router::open(self.netns.clone(), &state)?;
        let restored = router.restore()?;
        s.restart.push(micros(started.elapsed()));
        ensure!(
            restored == Some(current.generation),
            "the restart restored {restored:?}, not generation {}",
            current.generation
        );
        drop(router);

        // 3d. Delta files through a running `router serve`, and its memory holding the router.
        self.through_serve(&mut s, &mut current, mix, &mut rng, &mut used, &ns, &state)?;

        // 4. New-connection latency with N loaded.
        let lat = self.latency()?;
        s.latency.push(lat.median_us);
        s.latency_p10.push(lat.p10_us);
        let _ = std::fs::remove_dir_all(&state);

        eprintln!(
            "run {}/{} mix {} N={n:>6}: load {} (whole apply {}), 1 change {} {}, CLI {}, new connection {}",
            run + 1,
            self.opts.runs,
            mix.name(),
            report::duration(loaded.commit_us),
            report::duration(loaded.wall_us),
            report::duration(report::median(&s.change_commit).unwrap_or(f64::NAN)),
            report_paths(&s.change_paths),
            report::duration(report::median(&s.cli).unwrap_or(f64::NAN)),
            report::duration(lat.median_us),
        );
        self.results.samples.entry((mix, n)).or_default().merge(s);
        Ok(())
    }

    /// Writes the next `changes_per_run` changes of `current` as delta files.
    fn delta_files(
        &self,
        current: &mut RouterConfig,
        mix: Mix,
        rng: &mut Rng,
        used: &mut BTreeSet<usize>,
        tag: &str,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for i in 0..self.changes_per_run() {
            let (next, _) = mix::change(current, mix, rng, used).context(NO_RULE_LEFT)?;
            let delta = router_config::RouterDelta::between(current, &next);
            let file = self.work.join(format!("{tag}-{i}.json"));
            std::fs::write(&file, serde_json::to_vec(&delta)?)
                .with_context(|| format!("write {}", file.display()))?;
            files.push(file);
            *current = next;
        }
        Ok(files)
    }

    /// One `guestnet router apply FILE` process; checks it applied.
    fn cli_apply(&self, file: &Path, ns: &str, state: &Path) -> anyhow::Result<()> {
        let out = sys::cmd::run(
            path_str(&self.guestnet)?,
            &[
                "router",
                "apply",
                path_str(file)?,
                "--netns",
                ns,
                "--state-dir",
                path_str(state)?,
            ],
            None,
        )?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("guestnet router apply output")?;
        ensure!(
            v.get("result").and_then(|r| r.as_str()) == Some("applied"),
            "guestnet router apply of {} answered {v}",
            file.display()
        );
        let _ = std::fs::remove_file(file);
        Ok(())
    }

    /// Starts `guestnet router serve` on the state, applies delta files through it, reads its
    /// resident memory, and stops it.
    #[allow(clippy::too_many_arguments)]
    fn through_serve(
        &self,
        s: &mut Samples,
        current: &mut RouterConfig,
        mix: Mix,
        rng: &mut Rng,
        used: &mut BTreeSet<usize>,
        ns: &str,
        state: &Path,
    ) -> anyhow::Result<()> {
        let files = self.delta_files(current, mix, rng, used, "serve")?;
        let log = self.work.join("serve.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut child = sys::cmd::Program::new(&self.guestnet)
            .args([
                "router",
                "serve",
                "--netns",
                ns,
                "--state-dir",
                path_str(state)?,
                "--drift-interval",
                "0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .spawn()?;
        let socket = state.join(vrouterd::CONTROL_SOCKET);
        let deadline = Instant::now() + Duration::from_secs(300);
        let result = (|| -> anyhow::Result<()> {
            while !vrouterd::client::is_listening(&socket) {
                if let Some(status) = child.try_wait()? {
                    bail!("router serve ended ({status}); see {}", log.display());
                }
                ensure!(
                    Instant::now() < deadline,
                    "router serve did not listen within 300 s; see {}",
                    log.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            for file in &files {
                let started = Instant::now();
                self.cli_apply(file, ns, state)?;
                s.cli_serve.push(micros(started.elapsed()));
            }
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                .context("the serve process's status")?;
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .context("VmRSS in the serve process's status")?;
            s.serve_rss_kib.push(rss);
            Ok(())
        })();
        child.signal(nix::sys::signal::Signal::SIGTERM).ok();
        let stop = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > stop {
                child.kill_and_wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        result
    }

    fn linear(&mut self, n: usize) -> Linear {
        let cfg = self.config(Mix::B, n);
        self.linears
            .entry(n)
            .or_insert_with(|| linear::render(&cfg))
            .clone()
    }

    /// The same mix-B rules as a linear chain: load, changes, latency.
    fn measure_linear(&mut self, n: usize, run: usize) -> anyhow::Result<()> {
        let base = self.config(Mix::B, n);
        let lin = self.linear(n);
        let mut s = LinearSamples {
            chain_rules: lin.chain_rules,
            ..LinearSamples::default()
        };
        // Our table with only the probe (its DNAT and its rule), so the probe reaches the VM.
        self.flush()?;
        let state = self.fresh_state()?;
        {
            let mut router = Router::open(self.netns.clone(), &state)?;
            apply(&mut router, mix::probe_config(1))?;
        }
        let _ = std::fs::remove_dir_all(&state);

        let started = Instant::now();
        nft::apply(&self.netns, &lin.script).context("load the linear chain")?;
        s.load.push(micros(started.elapsed()));

        // Handles are read before timing, outside the measured interval.
        let handles = match self.handles.get(&n) {
            Some(h) => h.clone(),
            None => {
                let listing = self
                    .netns
                    .run(
                        "nft",
                        &["-a", "list", "chain", "ip", linear::TABLE, linear::CHAIN],
                        None,
                    )
                    .context("list the linear chain")?;
                let h = linear::handles(&String::from_utf8_lossy(&listing.stdout));
                self.handles.insert(n, h.clone());
                h
            }
        };
        ensure!(
            handles.len() == lin.chain_rules,
            "the linear chain lists {} rules, {} were loaded",
            handles.len(),
            lin.chain_rules
        );
        // The same changes as mix B's in-process changes of this run.
        let mut rng = Rng::new(mix::change_seed(Mix::B, n, run));
        let mut used = BTreeSet::new();
        let mut current = base;
        for _ in 0..self.changes_per_run() {
            let (next, change) =
                mix::change(&current, Mix::B, &mut rng, &mut used).context(NO_RULE_LEFT)?;
            let script = linear::change_script(&lin, &handles, &next, change.index)
                .context("no chain rule for the changed rule")?;
            let started = Instant::now();
            nft::apply(&self.netns, &script).context("change the linear chain")?;
            s.change.push(micros(started.elapsed()));
            current = next;
        }

        let lat = self.latency()?;
        s.latency.push(lat.median_us);
        eprintln!(
            "run {}/{} linear N={n:>6}: load {}, 1 change {}, new connection {}",
            run + 1,
            self.opts.runs,
            report::duration(s.load[0]),
            report::duration(report::median(&s.change).unwrap_or(f64::NAN)),
            report::duration(lat.median_us),
        );
        self.results.linear.entry(n).or_default().merge(s);
        Ok(())
    }

    /// Where the time of a load and of one change goes, step by step, replaying the router's
    /// path with the same public functions. The change is the first one of run 1.
    fn profile(&mut self, mix: Mix, n: usize) -> anyhow::Result<Profile> {
        let base = self.config(mix, n);
        let mut rng = Rng::new(mix::change_seed(mix, n, 0));
        let (next, _) =
            mix::change(&base, mix, &mut rng, &mut BTreeSet::new()).context(NO_RULE_LEFT)?;
        let mut p = Profile::new(mix, n);
        let invalid = |e: router_config::ConfigProblems| anyhow::anyhow!("invalid config: {e}");

        let bytes = serde_json::to_vec(&base)?;
        p.note(format!(
            "Config document: {:.1} MB.",
            bytes.len() as f64 / 1e6
        ));
        p.step("serialize the config to JSON", || {
            serde_json::to_vec(&base).map_err(Into::into)
        })?;
        p.step("parse the JSON document", || {
            router_config::parse::<RouterConfig>(&bytes).map_err(Into::into)
        })?;
        let valid = validate(base.clone()).map_err(invalid)?;
        p.step_with_input(
            "validate",
            || base.clone(),
            |doc| validate(doc).map_err(invalid),
        )?;
        let model = render::plan(&valid);
        p.step("plan the whole model (render::plan)", || {
            Ok(render::plan(&valid))
        })?;
        let full = render::render_full(&model);
        let buckets = full
            .lines()
            .filter(|l| {
                l.starts_with("add chain ip guestnet ib_")
                    || l.starts_with("add chain ip guestnet pb_")
            })
            .count();
        p.note(format!(
            "Full script: {:.1} MB, {} set and map elements, {buckets} port-range bucket chains (each with its own interval set).",
            full.len() as f64 / 1e6,
            model.element_count()
        ));
        p.step("render the full script (render_full)", || {
            Ok(render::render_full(&model))
        })?;
        let next_valid = validate(next.clone()).map_err(invalid)?;
        p.step_with_input(
            "move the model by one change (Ruleset::update: plan + render the delta)",
            || model.clone(),
            |mut m| {
                let update = m.update(&valid, &next_valid);
                Ok((m, update))
            },
        )?;
        let delta = RouterDelta::between(&base, &next);
        p.step_with_input(
            "apply the delta to the config in place (ValidConfig::apply_delta)",
            || valid.clone(),
            |mut v| {
                let change = v
                    .apply_delta(&delta)
                    .map_err(|e| anyhow::anyhow!("delta refused: {e}"))?;
                Ok((v, change))
            },
        )?;
        let mut moved = valid.clone();
        let change = moved
            .apply_delta(&delta)
            .map_err(|e| anyhow::anyhow!("delta refused: {e}"))?;
        p.step_with_input(
            "move the model by the change (Ruleset::apply_change)",
            || model.clone(),
            |mut m| {
                let update = m.apply_change(&moved, &change);
                Ok((m, update))
            },
        )?;
        p.step_with_input(
            "drop the previous config (vrouterd does it on another thread)",
            || validate(base.clone()),
            |v| {
                drop(v);
                Ok(())
            },
        )?;
        let update = model.clone().update(&valid, &next_valid);
        let inverse = split_inverse(&update.script);
        p.note(format!(
            "The change profiled (the first of run 1): {} element(s) and bucket(s) changed, {} partition(s) re-planned, {} as an nft script.",
            change_size(&update),
            update.partitions_replanned,
            if update.script.is_empty() { "empty".to_string() } else { format!("{} bytes", update.script.len()) }
        ));

        // The kernel side: the full script, the delta as the router commits it, and the same
        // delta through nft -f (the router's path before the netlink batch) for comparison.
        let mut full_nft = Vec::new();
        let mut batch = Vec::new();
        let mut delta_nft = Vec::new();
        let mut deletions = Vec::new();
        let mut additions = Vec::new();
        let mut floor = Vec::new();
        for _ in 0..PROFILE_REPEATS {
            self.check_stop()?;
            if let Some(fast) = &update.fast {
                self.flush()?;
                full_nft.push(self.timed_nft(&full, "the full script")?);
                batch.push(self.timed_batch(fast)?);
            }
            self.flush()?;
            full_nft.push(self.timed_nft(&full, "the full script")?);
            delta_nft.push(self.timed_nft(&update.script, "the delta")?);
            // Undo the delta in two transactions, deletions then additions, to show each kind.
            if let Some((del, add)) = &inverse {
                if !del.is_empty() {
                    deletions.push(self.timed_nft(del, "deletions only")?);
                }
                if !add.is_empty() {
                    additions.push(self.timed_nft(add, "additions only")?);
                }
            }
            floor.push(self.timed_nft("", "an empty script")?);
        }
        p.record(
            "nft -f of the full script, empty ruleset (nsenter + nft)",
            &full_nft,
        );
        if !batch.is_empty() {
            p.record(
                "commit the delta as the router does (nft -f for new buckets, then one netlink batch on an open socket)",
                &batch,
            );
        }
        p.record(
            "for comparison: the same delta through nft -f (nsenter + nft)",
            &delta_nft,
        );
        if !deletions.is_empty() {
            p.record(
                "  its elements through nft -f: deletions only, one transaction",
                &deletions,
            );
        }
        if !additions.is_empty() {
            p.record(
                "  its elements through nft -f: additions only, one transaction",
                &additions,
            );
        }
        p.record(
            "nft -f of an empty script, N loaded (process floor)",
            &floor,
        );
        let candidate = self.work.join("profile-candidate.json");
        p.step(
            "write the candidate to the ledger (serialize, write, fsync)",
            || write_synced(&candidate, &serde_json::to_vec(&next)?),
        )?;
        let _ = std::fs::remove_file(&candidate);

        // What a fresh process pays before it can apply a delta: open the ledger of N.
        self.flush()?;
        let state = self.fresh_state()?;
        {
            let mut router = Router::open(self.netns.clone(), &state)?;
            apply(&mut router, base.clone())?;
        }
        p.step(
            "Router::open with N in the ledger (read, parse, validate, plan)",
            || {
                let router = Router::open(self.netns.clone(), &state)?;
                ensure!(router.model().is_some(), "the ledger was not in sync");
                Ok(router)
            },
        )?;
        let _ = std::fs::remove_dir_all(&state);
        Ok(p)
    }

    /// Commits `fast` the way the router does, on a socket opened beforehand; the timing starts
    /// at the first command.
    fn timed_batch(&self, fast: &render::FastUpdate) -> anyhow::Result<f64> {
        let mut socket = nft::NftSocket::open(&self.netns)?;
        let generation = socket.generation()?;
        let batches: Vec<nft::ElementBatch> = vrouterd::element_batches(fast);
        let started = Instant::now();
        let generation = if fast.create.is_empty() {
            generation
        } else {
            nft::apply(&self.netns, &fast.create).context("nft -f of the new buckets")?;
            socket.generation()?
        };
        socket
            .commit_batch(render::TABLE, generation, &batches, &fast.remove)
            .context("netlink batch of the delta")?;
        Ok(micros(started.elapsed()))
    }

    fn timed_nft(&self, script: &str, what: &str) -> anyhow::Result<f64> {
        let started = Instant::now();
        nft::apply(&self.netns, script).with_context(|| format!("nft -f of {what}"))?;
        Ok(micros(started.elapsed()))
    }
}

/// The inverse of a delta made only of element lines, as two scripts: the deletions (of what the
/// delta added), then the additions (of what it deleted). `None` for any other delta.
fn split_inverse(script: &str) -> Option<(String, String)> {
    let mut del = String::new();
    let mut add = String::new();
    for line in script.lines() {
        if let Some(rest) = line.strip_prefix("add element ") {
            del.push_str("delete element ");
            del.push_str(rest);
            del.push('\n');
        } else if let Some(rest) = line.strip_prefix("delete element ") {
            add.push_str("add element ");
            add.push_str(rest);
            add.push('\n');
        } else {
            return None;
        }
    }
    Some((del, add))
}

fn report_paths(paths: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = paths.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    format!("({})", parts.join(", "))
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
