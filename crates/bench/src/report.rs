//! Samples, medians, and the report: plain-text tables on stdout and a Markdown section.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::mix::Mix;
use crate::router::Options;

/// Where the harness writes in a Markdown file: between these two lines.
pub(crate) const BEGIN: &str = "<!-- bench:begin -->";
/// See [`BEGIN`].
pub(crate) const END: &str = "<!-- bench:end -->";

/// Repetitions of each profiled step.
pub(crate) const PROFILE_REPEATS: usize = 3;

/// Samples of one (mix, size), in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    /// `commit_micros` of loads from empty.
    pub(crate) load_commit: Vec<f64>,
    /// Wall time of `Router::apply_document` for loads from empty.
    pub(crate) load_apply: Vec<f64>,
    /// `commit_micros` of one changed rule.
    pub(crate) change_commit: Vec<f64>,
    /// Wall time of `Router::apply_document` for one changed rule.
    pub(crate) change_apply: Vec<f64>,
    /// How the changes were committed (`netlink`, `nft`, `nothing`, or `FULL` when not a
    /// delta), with counts.
    pub(crate) change_paths: BTreeMap<String, usize>,
    /// Wall time of `guestnet router apply` processes applying one changed rule.
    pub(crate) cli: Vec<f64>,
    /// How the CLI applies were committed, with counts.
    pub(crate) cli_paths: BTreeMap<String, usize>,
    /// Wall time of `guestnet router apply` processes given a delta file of one changed rule.
    pub(crate) cli_delta: Vec<f64>,
    /// Wall time of `guestnet router apply` of a delta file through a running `router serve`.
    pub(crate) cli_serve: Vec<f64>,
    /// Restart to enforcing: `Router::open` on the state directory and its restore into a
    /// flushed namespace.
    pub(crate) restart: Vec<f64>,
    /// Resident memory (KiB) of a `router serve` process holding the router, after its changes.
    pub(crate) serve_rss_kib: Vec<f64>,
    /// Median new-connection latency of each run.
    pub(crate) latency: Vec<f64>,
    /// 10th percentile of new-connection latency of each run.
    pub(crate) latency_p10: Vec<f64>,
    /// Set and map elements of the model.
    pub(crate) elements: usize,
    /// Size of each in-process change: elements added and deleted plus buckets made and removed
    /// (lines of the nft script when the change went through `nft -f`).
    pub(crate) delta_size: Vec<f64>,
}

impl Samples {
    /// Adds another run's samples.
    pub(crate) fn merge(&mut self, o: Samples) {
        self.load_commit.extend(o.load_commit);
        self.load_apply.extend(o.load_apply);
        self.change_commit.extend(o.change_commit);
        self.change_apply.extend(o.change_apply);
        merge_counts(&mut self.change_paths, o.change_paths);
        self.cli.extend(o.cli);
        merge_counts(&mut self.cli_paths, o.cli_paths);
        self.cli_delta.extend(o.cli_delta);
        self.cli_serve.extend(o.cli_serve);
        self.restart.extend(o.restart);
        self.serve_rss_kib.extend(o.serve_rss_kib);
        self.latency.extend(o.latency);
        self.latency_p10.extend(o.latency_p10);
        self.elements = self.elements.max(o.elements);
        self.delta_size.extend(o.delta_size);
    }
}

fn merge_counts(into: &mut BTreeMap<String, usize>, from: BTreeMap<String, usize>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

/// Samples of the linear baseline at one size, in microseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinearSamples {
    /// `nft -f` creating the table.
    pub(crate) load: Vec<f64>,
    /// `nft -f` of delete-by-handle + insert.
    pub(crate) change: Vec<f64>,
    /// Median new-connection latency of each run.
    pub(crate) latency: Vec<f64>,
    /// Rules in the chain.
    pub(crate) chain_rules: usize,
}

impl LinearSamples {
    /// Adds another run's samples.
    pub(crate) fn merge(&mut self, o: LinearSamples) {
        self.load.extend(o.load);
        self.change.extend(o.change);
        self.latency.extend(o.latency);
        self.chain_rules = self.chain_rules.max(o.chain_rules);
    }
}

/// Step-by-step times of one (mix, size).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    mix: Mix,
    n: usize,
    steps: Vec<(String, Vec<f64>)>,
    notes: Vec<String>,
}

impl Profile {
    /// An empty profile.
    pub(crate) fn new(mix: Mix, n: usize) -> Profile {
        Profile {
            mix,
            n,
            steps: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A line of context printed under the table.
    pub(crate) fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// Records samples measured elsewhere.
    pub(crate) fn record(&mut self, name: &str, samples: &[f64]) {
        self.steps.push((name.to_string(), samples.to_vec()));
    }

    /// Times `f` [`PROFILE_REPEATS`] times; what it returns is dropped after the timing.
    pub(crate) fn step<R>(
        &mut self,
        name: &str,
        mut f: impl FnMut() -> anyhow::Result<R>,
    ) -> anyhow::Result<()> {
        self.step_with_input(name, || (), |()| f())
    }

    /// Times `f` [`PROFILE_REPEATS`] times on an input made by `input` outside the timing; what
    /// it returns is dropped after the timing.
    pub(crate) fn step_with_input<T, R>(
        &mut self,
        name: &str,
        mut input: impl FnMut() -> T,
        mut f: impl FnMut(T) -> anyhow::Result<R>,
    ) -> anyhow::Result<()> {
        let mut samples = Vec::with_capacity(PROFILE_REPEATS);
        for _ in 0..PROFILE_REPEATS {
            let x = input();
            let started = Instant::now();
            let out = f(x).with_context(|| format!("profile step: {name}"))?;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
            drop(out);
        }
        self.steps.push((name.to_string(), samples));
        Ok(())
    }
}

/// What the figures were measured on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Machine {
    cpu: String,
    cpus: usize,
    memory_gib: f64,
    kernel: String,
    nft: String,
}

impl Machine {
    /// Reads /proc and `nft --version`; unknown parts stay empty.
    pub(crate) fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let nft = sys::cmd::run("nft", &["--version"], None)
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            cpus,
            memory_gib,
            kernel,
            nft,
        }
    }
}

impl Machine {
    /// One line: CPUs, memory, kernel, nft.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} × {}, {:.0} GiB, kernel {}, {}",
            self.cpus, self.cpu, self.memory_gib, self.kernel, self.nft
        )
    }
}

/// Everything measured.
#[derive(Debug, Clone)]
pub(crate) struct Results {
    options: Options,
    changes_per_run: usize,
    machine: Machine,
    /// Per (mix, size).
    pub(crate) samples: BTreeMap<(Mix, usize), Samples>,
    /// The baseline per size.
    pub(crate) linear: BTreeMap<usize, LinearSamples>,
    /// Profiles of the largest size.
    pub(crate) profiles: Vec<Profile>,
    /// How long the whole run took.
    pub(crate) elapsed: Duration,
}

impl Results {
    /// No samples yet.
    pub(crate) fn new(options: &Options, changes_per_run: usize, machine: Machine) -> Results {
        Results {
            options: options.clone(),
            changes_per_run,
            machine,
            samples: BTreeMap::new(),
            linear: BTreeMap::new(),
            profiles: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// The median (the mean of the middle two for an even count).
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if !s.len().is_multiple_of(2) {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// The unit a duration in microseconds reads best in.
fn unit(us: f64) -> (f64, &'static str) {
    if us >= 1e6 {
        (1e6, "s")
    } else if us >= 1e3 {
        (1e3, "ms")
    } else {
        (1.0, "µs")
    }
}

fn in_unit(us: f64, div: f64) -> String {
    let v = us / div;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A duration in microseconds, in a readable unit.
pub(crate) fn duration(us: f64) -> String {
    if !us.is_finite() {
        return "–".to_string();
    }
    let (div, u) = unit(us);
    format!("{} {u}", in_unit(us, div))
}

/// The median of `v` and, with several samples, their range.
pub(crate) fn cell(v: &[f64]) -> String {
    let Some(m) = median(v) else {
        return "–".to_string();
    };
    let (div, u) = unit(m);
    if v.len() < 2 {
        return format!("{} {u}", in_unit(m, div));
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{} {u} ({}–{})",
        in_unit(m, div),
        in_unit(lo, div),
        in_unit(hi, div)
    )
}

/// The median size of the changes, and how many were empty.
fn size_cell(v: &[f64]) -> String {
    let Some(m) = median(v) else {
        return "–".to_string();
    };
    let empty = v.iter().filter(|b| **b == 0.0).count();
    if empty == 0 {
        format!("{m:.0}")
    } else {
        format!("{m:.0} ({empty} of {} empty)", v.len())
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("×{:.2}", a / b),
        _ => "–".to_string(),
    }
}

fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A table rendered either as aligned text or as Markdown.
struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(ToString::to_string).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = w.saturating_sub(c.chars().count());
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s.trim_end().to_string()
        };
        let mut out = format!("{}\n", self.title);
        let _ = writeln!(out, "{}", line(&self.headers));
        for r in &self.rows {
            let _ = writeln!(out, "{}", line(r));
        }
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("#### {}\n\n", self.title);
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let align: Vec<&str> = (0..self.headers.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "|{}|", align.join("|"));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out
    }
}

/// How the commits went, e.g. `netlink ×8, nothing ×2`.
fn paths_note(paths: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = paths.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", via {}", parts.join(", "))
    }
}

fn mix_table(r: &Results, mix: Mix) -> Table {
    let title = match mix {
        Mix::A => "Mix A: realistic (single ports over N/10 public IPs, 80% open to all)",
        Mix::B => "Mix B: adversarial (overlapping port ranges from nested CIDRs, one public IP)",
    };
    let mut t = Table::new(
        title,
        &[
            "N",
            "elements",
            "load from empty (commit)",
            "load (whole apply)",
            "1 changed rule (commit)",
            "its size (elements)",
            "1 changed rule (whole apply)",
            "`guestnet router apply` of 1 change",
            "… of a delta file",
            "… of a delta file through `router serve`",
            "restart to enforcing",
            "`router serve` memory (RSS)",
            "new-connection latency",
            "its 10th percentile",
        ],
    );
    for (&(m, n), s) in &r.samples {
        if m != mix {
            continue;
        }
        t.rows.push(vec![
            count(n),
            count(s.elements),
            cell(&s.load_commit),
            cell(&s.load_apply),
            format!("{}{}", cell(&s.change_commit), paths_note(&s.change_paths)),
            size_cell(&s.delta_size),
            cell(&s.change_apply),
            format!("{}{}", cell(&s.cli), paths_note(&s.cli_paths)),
            cell(&s.cli_delta),
            cell(&s.cli_serve),
            cell(&s.restart),
            median(&s.serve_rss_kib)
                .map_or_else(|| "–".to_string(), |k| format!("{:.0} MiB", k / 1024.0)),
            cell(&s.latency),
            cell(&s.latency_p10),
        ]);
    }
    t
}

fn linear_table(r: &Results) -> Table {
    let mut t = Table::new(
        "Mix B against a linear chain of the same rules",
        &[
            "N",
            "chain rules",
            "load: linear (`nft -f`)",
            "load: ours (commit)",
            "1 change: linear (delete + insert)",
            "1 change: ours (commit)",
            "latency: linear (probe rule last)",
            "latency: ours",
            "ours faster on",
        ],
    );
    for (&n, l) in &r.linear {
        let Some(s) = r.samples.get(&(Mix::B, n)) else {
            continue;
        };
        t.rows.push(vec![
            count(n),
            count(l.chain_rules),
            cell(&l.load),
            cell(&s.load_commit),
            cell(&l.change),
            cell(&s.change_commit),
            cell(&l.latency),
            cell(&s.latency),
            beats(s, l).1,
        ]);
    }
    t
}

/// Whether ours beats the linear chain on load, change and latency, and a summary.
fn beats(s: &Samples, l: &LinearSamples) -> (bool, String) {
    let figures = [
        ("load", median(&s.load_commit), median(&l.load)),
        ("change", median(&s.change_commit), median(&l.change)),
        ("latency", median(&s.latency), median(&l.latency)),
    ];
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for (name, ours, theirs) in figures {
        match (ours, theirs) {
            (Some(o), Some(t)) if o < t => won.push(name),
            _ => lost.push(name),
        }
    }
    if lost.is_empty() {
        (true, "all three".to_string())
    } else {
        (
            false,
            format!("{} (NOT {})", won.join(", "), lost.join(", ")),
        )
    }
}

fn ratio_table(r: &Results) -> Table {
    let mut t = Table::new(
        "Mix B relative to mix A (B / A, medians)",
        &[
            "N",
            "load (commit)",
            "1 change (commit)",
            "`guestnet router apply`",
            "latency",
        ],
    );
    for &n in &r.options.sizes {
        let (Some(a), Some(b)) = (r.samples.get(&(Mix::A, n)), r.samples.get(&(Mix::B, n))) else {
            continue;
        };
        t.rows.push(vec![
            count(n),
            ratio(median(&b.load_commit), median(&a.load_commit)),
            ratio(median(&b.change_commit), median(&a.change_commit)),
            ratio(median(&b.cli), median(&a.cli)),
            ratio(median(&b.latency), median(&a.latency)),
        ]);
    }
    t
}

const BIG: usize = 100_000;
const SMALL: usize = 100;

fn verdict(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "met".to_string(),
        Some(false) => "**MISSED**".to_string(),
        None => "not measured".to_string(),
    }
}

fn targets_table(r: &Results) -> Table {
    let mut t = Table::new(
        "Targets",
        &[
            "target",
            "measured (median)",
            "limit measured on this machine kind (performance-facts.md)",
            "verdict",
        ],
    );
    let a_big = r.samples.get(&(Mix::A, BIG));
    let a_small = r.samples.get(&(Mix::A, SMALL));
    let change = a_big.and_then(|s| median(&s.change_commit));
    t.rows.push(vec![
        "A: one changed rule at 100k committed ≤ 15 ms".to_string(),
        change.map_or("–".to_string(), duration),
        "a change is a delete + an add: add+del element via `nft -f` 20–24 ms at any N; add element alone ~6–8 ms; add rule to a 100k chain 75 ms (§7.2)".to_string(),
        verdict(change.map(|c| c <= 15_000.0)),
    ]);
    let load = a_big.and_then(|s| median(&s.load_commit));
    t.rows.push(vec![
        "A: 100k loaded from empty ≤ 1.5 s".to_string(),
        load.map_or("–".to_string(), duration),
        "100k-element set 0.77 s, vmap 1.1 s, linear rules 3.6 s (§7.1)".to_string(),
        verdict(load.map(|l| l <= 1_500_000.0)),
    ]);
    let lat_big = a_big.and_then(|s| median(&s.latency));
    let lat_small = a_small.and_then(|s| median(&s.latency));
    let (measured, ok) = match (lat_big, lat_small) {
        (Some(b), Some(s)) => (
            format!(
                "{} at 100k vs {} at 100 ({:+.0}%)",
                duration(b),
                duration(s),
                (b / s - 1.0) * 100.0
            ),
            Some(b <= s * 1.25),
        ),
        _ => ("–".to_string(), None),
    };
    t.rows.push(vec![
        "A: new-connection latency at 100k within 25% of that at 100".to_string(),
        measured,
        "per packet: set lookup flat ~4–6 µs RTT, linear chain 2.9–3.7 ms RTT at 100k (§7.4)"
            .to_string(),
        verdict(ok),
    ]);
    let mut all = true;
    let mut lost = Vec::new();
    for (&n, l) in &r.linear {
        if let Some(s) = r.samples.get(&(Mix::B, n)) {
            let (ok, what) = beats(s, l);
            if !ok {
                all = false;
                lost.push(format!("N={}: {what}", count(n)));
            }
        }
    }
    let measured_b = if r.linear.is_empty() {
        "–".to_string()
    } else if lost.is_empty() {
        "faster on load, change and latency at every N".to_string()
    } else {
        lost.join("; ")
    };
    t.rows.push(vec![
        "B: beat a linear chain of the same rules on every figure".to_string(),
        measured_b,
        "nft -f of 100k linear rules 3.6 s, add rule 75 ms, per packet 2.9–3.7 ms (§7.1, §7.2, §7.4)"
            .to_string(),
        verdict((!r.linear.is_empty()).then_some(all)),
    ]);
    let far = match (a_big, r.samples.get(&(Mix::B, BIG))) {
        (Some(a), Some(b)) => format!(
            "at 100k B/A: load {}, change {}, CLI {}, latency {}",
            ratio(median(&b.load_commit), median(&a.load_commit)),
            ratio(median(&b.change_commit), median(&a.change_commit)),
            ratio(median(&b.cli), median(&a.cli)),
            ratio(median(&b.latency), median(&a.latency)),
        ),
        _ => "–".to_string(),
    };
    t.rows.push(vec![
        "B: report how far from mix A it stays".to_string(),
        far,
        "interval-field concatenations: 100k load 110–122 s, ~2,000 µs per packet, 130–160 ms per change (§7.6)".to_string(),
        "reported".to_string(),
    ]);
    t
}

fn profile_table(p: &Profile) -> Table {
    let mut t = Table::new(
        format!(
            "Where the time goes: mix {} at N={} (median of {PROFILE_REPEATS})",
            p.mix.name(),
            count(p.n)
        ),
        &["step", "time"],
    );
    for (name, samples) in &p.steps {
        t.rows.push(vec![name.clone(), cell(samples)]);
    }
    t.notes = p.notes.clone();
    t
}

fn tables(r: &Results) -> Vec<Table> {
    let mut out = Vec::new();
    for &mix in &[Mix::A, Mix::B] {
        if r.samples.keys().any(|(m, _)| *m == mix) {
            out.push(mix_table(r, mix));
        }
    }
    if !r.linear.is_empty() {
        out.push(linear_table(r));
    }
    if r.options.mixes.len() > 1 {
        out.push(ratio_table(r));
    }
    out.push(targets_table(r));
    for p in &r.profiles {
        out.push(profile_table(p));
    }
    out
}

fn header(r: &Results) -> Vec<String> {
    let m = &r.machine;
    let o = &r.options;
    vec![
        format!("Machine: {}.", m.describe()),
        format!(
            "Run: `guestnet-bench router --sizes {} --runs {} --changes {} --connections {}`; \
             {} changed rules per run and size for each one-change figure; the whole run took {:.0} min.",
            o.sizes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            o.runs,
            o.changes,
            o.connections,
            r.changes_per_run,
            r.elapsed.as_secs_f64() / 60.0
        ),
        "Cells: median (min–max over all samples). Latency: median over runs of each run's median (or 10th percentile) connect() time.".to_string(),
    ]
}

/// The report as plain text.
pub(crate) fn text(r: &Results) -> String {
    let mut out = String::new();
    for l in header(r) {
        let _ = writeln!(out, "{l}");
    }
    for t in tables(r) {
        out.push('\n');
        out.push_str(&t.text());
    }
    out
}

/// The report as a Markdown section (without the markers).
pub(crate) fn markdown(r: &Results) -> String {
    let mut out = String::new();
    for l in header(r) {
        let _ = writeln!(out, "{l}");
    }
    for t in tables(r) {
        out.push('\n');
        out.push_str(&t.markdown());
    }
    out
}

/// Writes the Markdown section into `path` between [`BEGIN`] and [`END`]; a file without the
/// markers gets them and the section appended, a missing file is created.
///
/// # Errors
/// When the file cannot be read or written.
pub(crate) fn write_markdown(path: &Path, r: &Results) -> anyhow::Result<()> {
    write_between(path, BEGIN, END, None, &markdown(r))
}

/// Writes `section` into `path` between the lines `begin` and `end`, leaving the rest of the
/// file as it is; a file without the markers gets `heading` (if any), the markers and the
/// section appended, a missing file is created.
///
/// # Errors
/// When the file cannot be read or written.
pub(crate) fn write_between(
    path: &Path,
    begin: &str,
    end: &str,
    heading: Option<&str>,
    section: &str,
) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    std::fs::write(path, splice(&old, begin, end, heading, section))
        .with_context(|| format!("write {}", path.display()))
}

/// `old` with what lies between the lines `begin` and `end` replaced by `section` (see
/// [`write_between`]).
pub(crate) fn splice(
    old: &str,
    begin: &str,
    end: &str,
    heading: Option<&str>,
    section: &str,
) -> String {
    let heading = heading.map(|h| format!("{h}\n\n")).unwrap_or_default();
    match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => format!("{}{begin}\n{section}{}", &old[..b], &old[e..]),
        _ if old.is_empty() => {
            format!("# guestnet benchmarks\n\n{heading}{begin}\n{section}{end}\n")
        }
        _ => format!("{}\n\n{heading}{begin}\n{section}{end}\n", old.trim_end()),
    }
}
