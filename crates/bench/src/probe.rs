//! The new-connection probe: a TCP server for the VM and a client for the outside host, both run
//! as hidden subcommands of this binary inside the lab's namespaces.
//!
//! The client times `connect()`, from the SYN leaving to the SYN-ACK making the socket
//! established, for fresh connections only, and closes each with a reset so neither side keeps
//! a TIME-WAIT socket. Established traffic never reaches the ruleset's lookups (the router
//! accepts it on conntrack state first), so only new connections measure the rules.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{setsockopt, sockopt};
use serde::{Deserialize, Serialize};

/// How long a single connect may take before the probe gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the client waits for the server (and the path) to come up.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// What the client prints: connect latencies in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Latency {
    /// Connections timed.
    pub(crate) count: usize,
    /// Median.
    pub(crate) median_us: f64,
    /// 10th percentile.
    pub(crate) p10_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
}

/// The parent blocks the termination signals (see `main`); a probe must die on them again.
pub(crate) fn unblock_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_unblock().context("cannot unblock signals")
}

/// Accepts connections on `listen` forever and drops each at once.
///
/// # Errors
/// When the address cannot be bound.
pub(crate) fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    unblock_signals()?;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    for stream in listener.incoming() {
        drop(stream);
    }
    Ok(())
}

/// Closes with a reset: no FIN exchange, no TIME-WAIT on either side.
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&s, sockopt::Linger, &linger);
    drop(s);
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Waits for `target` to accept, makes `warmup` untimed connections, then times `count`
/// connections; prints a [`Latency`] as one JSON line.
///
/// # Errors
/// When the target never accepts, or a timed connection fails.
pub(crate) fn client(target: SocketAddr, count: usize, warmup: usize) -> anyhow::Result<()> {
    unblock_signals()?;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(s) => {
                reset(s);
                break;
            }
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e).with_context(|| format!("{target} never accepted")),
        }
    }
    for _ in 0..warmup {
        let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
            .with_context(|| format!("warm-up connection to {target}"))?;
        reset(s);
    }
    let mut micros = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
            .with_context(|| format!("connection {i} to {target}"))?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        reset(s);
    }
    if micros.is_empty() {
        bail!("no connection timed");
    }
    micros.sort_by(f64::total_cmp);
    let latency = Latency {
        count,
        median_us: percentile(&micros, 0.5),
        p10_us: percentile(&micros, 0.1),
        p90_us: percentile(&micros, 0.9),
        p99_us: percentile(&micros, 0.99),
    };
    println!("{}", serde_json::to_string(&latency)?);
    Ok(())
}
