//! The load of `guestnet-bench lb`: a tiny answering TCP server for the VMs and a paced client
//! for the outside host, both run as hidden subcommands of this binary inside the lab's
//! namespaces.
//!
//! Each client connection connects, sends [`REQUEST`], reads until the server closes, and closes.
//! The server closes first, right after [`ANSWER`], so TIME-WAIT lands on the VM and the client's
//! ephemeral ports are free again at once. Every connection ends in exactly one [`Outcome`].

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};

/// What the client sends on every connection.
pub(crate) const REQUEST: &[u8] = b"guestnet-bench hello\n";
/// What the server answers on every connection, then closes.
pub(crate) const ANSWER: &[u8] = b"guestnet-bench answer: 0123456789abcdefghijklmnopqrstuvwxyz\n";
/// How long a connect, a write or a read may take before the connection counts as timed out.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the client waits for the path to answer before it starts the load.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// Threads making connections: enough that one stalled connection (a SYN retransmitted after
/// 1 s) does not hold back the pace.
const WORKERS: usize = 32;

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The full answer, then the server's close.
    Success,
    /// `ECONNREFUSED` on connect.
    Refused,
    /// `ECONNRESET` (or a broken pipe) at any step.
    Reset,
    /// A connect, write or read that took longer than [`IO_TIMEOUT`].
    Timeout,
    /// A close before the full answer (or a different answer).
    ShortRead,
    /// Anything else (an unreachable host, no free port, …).
    Other,
}

/// Sorts an I/O error into an [`Outcome`].
pub(crate) fn classify(e: &std::io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Outcome::Reset
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        ErrorKind::UnexpectedEof => Outcome::ShortRead,
        _ => Outcome::Other,
    }
}

/// What the client prints (or writes): counts of outcomes and the time of whole connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoadReport {
    /// Connections started.
    pub(crate) attempted: u64,
    /// Full answers.
    pub(crate) succeeded: u64,
    /// `ECONNREFUSED`.
    pub(crate) refused: u64,
    /// Resets.
    pub(crate) reset: u64,
    /// Timeouts.
    pub(crate) timed_out: u64,
    /// Short reads.
    pub(crate) short_reads: u64,
    /// Other failures.
    pub(crate) other: u64,
    /// The first few failures, as text, for the log.
    pub(crate) first_failures: Vec<String>,
    /// Seconds the load ran.
    pub(crate) seconds: f64,
    /// The pace asked for, connections per second.
    pub(crate) rate: f64,
    /// Median time of a whole connection (connect to close), microseconds.
    pub(crate) median_us: f64,
    /// Its 99th percentile.
    pub(crate) p99_us: f64,
    /// The slowest connection.
    pub(crate) max_us: f64,
}

impl LoadReport {
    /// Counts one outcome.
    pub(crate) fn count(&mut self, o: Outcome) {
        self.attempted += 1;
        let slot = match o {
            Outcome::Success => &mut self.succeeded,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Timeout => &mut self.timed_out,
            Outcome::ShortRead => &mut self.short_reads,
            Outcome::Other => &mut self.other,
        };
        *slot += 1;
    }

    /// Connections that failed in any way but a refusal or a reset.
    pub(crate) fn failed_otherwise(&self) -> u64 {
        self.timed_out + self.short_reads + self.other
    }

    /// Connections per second actually started.
    pub(crate) fn achieved_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.attempted as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Answers every connection on every address of `listen` with [`ANSWER`] once it has read the
/// request line, then closes; one thread per connection.
///
/// # Errors
/// When an address cannot be bound.
pub(crate) fn serve(listen: &[SocketAddr]) -> anyhow::Result<()> {
    crate::probe::unblock_signals()?;
    ensure!(!listen.is_empty(), "no --listen address");
    let mut threads = Vec::new();
    for addr in listen {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer(stream));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn answer(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => got += n,
        }
        if buf[..got].contains(&b'\n') {
            let _ = s.write_all(ANSWER);
            return;
        }
    }
}

/// One whole connection.
fn exchange(target: &SocketAddr) -> Result<(), (Outcome, String)> {
    let fail = |step: &str, e: std::io::Error| (classify(&e), format!("{step}: {e}"));
    let mut s = TcpStream::connect_timeout(target, IO_TIMEOUT).map_err(|e| fail("connect", e))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| fail("set timeouts", e))?;
    s.write_all(REQUEST).map_err(|e| fail("write", e))?;
    let mut got = Vec::with_capacity(ANSWER.len());
    s.read_to_end(&mut got).map_err(|e| fail("read", e))?;
    if got != ANSWER {
        return Err((
            Outcome::ShortRead,
            format!("read {} of {} bytes", got.len(), ANSWER.len()),
        ));
    }
    Ok(())
}

/// Waits until `target` answers a whole exchange.
fn wait_ready(target: &SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        match exchange(target) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err((_, e)) => anyhow::bail!("{target} never answered: {e}"),
        }
    }
}

/// When the load ends.
#[derive(Debug, Clone)]
pub(crate) enum Until {
    /// After this long.
    Elapsed(Duration),
    /// Once this file exists (checked every 20 ms).
    File(PathBuf),
}

/// Waits for `target` to answer, then starts `rate` connections per second (connection k is due
/// at k / rate seconds, on one of [`WORKERS`] threads) until `until`; waits for the connections
/// in flight and prints a [`LoadReport`] as one JSON line, or writes it to `out` (then an empty
/// `out` with the extension `ready` marks the start of the load).
///
/// # Errors
/// When the target never answers, or the report cannot be written.
pub(crate) fn client(
    target: SocketAddr,
    rate: f64,
    until: &Until,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    crate::probe::unblock_signals()?;
    ensure!(rate > 0.0, "--rate must be positive");
    wait_ready(&target)?;
    if let Some(out) = out {
        // Tells the harness the load is starting.
        let ready = out.with_extension("ready");
        std::fs::write(&ready, b"").with_context(|| format!("write {}", ready.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let total = Arc::new(Mutex::new((LoadReport::default(), Vec::<f64>::new())));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (stop, next, total) = (Arc::clone(&stop), Arc::clone(&next), Arc::clone(&total));
        workers.push(std::thread::spawn(move || {
            let mut report = LoadReport::default();
            let mut micros = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let due = started + Duration::from_secs_f64(k as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let t = Instant::now();
                match exchange(&target) {
                    Ok(()) => report.count(Outcome::Success),
                    Err((o, e)) => {
                        report.count(o);
                        if report.first_failures.len() < 5 {
                            report
                                .first_failures
                                .push(format!("at {:.3} s: {e}", started.elapsed().as_secs_f64()));
                        }
                    }
                }
                micros.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let mut all = total
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            merge(&mut all.0, report);
            all.1.extend(micros);
        }));
    }
    match until {
        Until::Elapsed(d) => std::thread::sleep(*d),
        Until::File(f) => {
            while !f.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();
    for w in workers {
        let _ = w.join();
    }
    let (mut report, mut micros) = std::mem::take(
        &mut *total
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    micros.sort_by(f64::total_cmp);
    report.seconds = seconds;
    report.rate = rate;
    report.median_us = crate::probe::percentile(&micros, 0.5);
    report.p99_us = crate::probe::percentile(&micros, 0.99);
    report.max_us = micros.last().copied().unwrap_or(f64::NAN);
    let json = serde_json::to_string(&report)?;
    match out {
        Some(path) => {
            // Written beside, then renamed: the harness never reads half a report.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, json).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// Adds one worker's counts to `into`.
pub(crate) fn merge(into: &mut LoadReport, from: LoadReport) {
    into.attempted += from.attempted;
    into.succeeded += from.succeeded;
    into.refused += from.refused;
    into.reset += from.reset;
    into.timed_out += from.timed_out;
    into.short_reads += from.short_reads;
    into.other += from.other;
    for f in from.first_failures {
        if into.first_failures.len() < 10 {
            into.first_failures.push(f);
        }
    }
}
