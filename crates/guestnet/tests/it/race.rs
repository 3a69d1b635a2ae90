//! Racing updates through the signed API: many clients at once create, update and delete rules,
//! members and policies of one network on a `guestnet serve --driver dry-run`, without waiting
//! for each other's jobs. Afterwards every job has ended, the network's worker still takes
//! jobs, its copy of the rows never differed from the database (the server's own check, counted
//! in `/metrics`), and `guestnet verify` finds no difference. Once with the test build, and once
//! with the release build (where debug assertions are off and the copy check runs only because
//! the test asks for it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::TempDir;
use mgmt::client::ClientError;
use sys::cmd::{Child, Stdio};

use crate::procs::{self, Admin, KEY, SECRET};

/// Clients racing at once.
const CLIENTS: usize = 12;
/// Requests each client sends.
const REQUESTS: usize = 40;

/// A `guestnet serve --driver dry-run` of some build, killed when dropped.
struct DryServer {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl DryServer {
    fn start(binary: &Path, extra: &[&str]) -> DryServer {
        let dir = TempDir::new().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut child = sys::cmd::Program::new(binary)
            .args(["serve", "--driver", "dry-run", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env("GUESTNET_ADMIN_API_KEY", KEY)
            .env("GUESTNET_ADMIN_SECRET_KEY", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start guestnet serve");
        let (line, endpoint) = procs::startup_line(&mut child, procs::DEADLINE);
        let endpoint =
            endpoint.unwrap_or_else(|| panic!("no endpoint in the startup line {line:?}"));
        DryServer {
            child,
            endpoint,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// The value of a counter in `/metrics`.
    fn counter(&self, name: &str) -> f64 {
        let addr = procs::base(&self.endpoint)
            .trim_start_matches("http://")
            .to_string();
        let mut s = std::net::TcpStream::connect(&addr).expect("connect for /metrics");
        s.set_read_timeout(Some(procs::DEADLINE)).expect("timeout");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("ask /metrics");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read /metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }
}

impl Drop for DryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients saw.
#[derive(Default, Debug)]
struct Tally {
    /// Requests accepted (a job was queued).
    accepted: usize,
    /// Requests refused: 537 for a clash, 431 for objects being deleted and rules still being
    /// changed.
    refused: usize,
    /// Jobs that succeeded.
    succeeded: usize,
    /// Jobs that failed.
    failed: usize,
}

/// One client's requests: a small deterministic generator per client, so runs repeat.
fn client(endpoint: &str, seed: u64, net: &Shared) -> (Tally, Vec<String>) {
    let admin = Admin::new(endpoint);
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % n
    };
    let mut tally = Tally::default();
    let mut jobs = Vec::new();
    let mut mine: Vec<(String, &'static str)> = Vec::new();
    for _ in 0..REQUESTS {
        let port = (1000 + next(60)).to_string();
        let algorithm = ["roundrobin", "leastconn", "source"][next(3) as usize];
        let private = (20 + next(40)).to_string();
        let vm = &net.vms[next(net.vms.len() as u64) as usize];
        let choice = next(8);
        let victim = if choice == 7 && !mine.is_empty() {
            let i = next(mine.len() as u64) as usize;
            Some(mine.remove(i))
        } else {
            None
        };
        let (cmd, params): (&str, Vec<(&str, &str)>) = match choice {
            0 | 1 => (
                "createFirewallRule",
                vec![
                    ("ipaddressid", net.ip.as_str()),
                    ("protocol", "tcp"),
                    ("startport", port.as_str()),
                ],
            ),
            2 => (
                "updateLoadBalancerRule",
                vec![("id", net.lb.as_str()), ("algorithm", algorithm)],
            ),
            3 => (
                "updatePortForwardingRule",
                vec![("id", net.pf.as_str()), ("privateport", private.as_str())],
            ),
            4 => (
                "assignToLoadBalancerRule",
                vec![("id", net.lb.as_str()), ("virtualmachineids", vm.as_str())],
            ),
            5 => (
                "removeFromLoadBalancerRule",
                vec![("id", net.lb.as_str()), ("virtualmachineids", vm.as_str())],
            ),
            6 => (
                "createEgressFirewallRule",
                vec![
                    ("networkid", net.id.as_str()),
                    ("protocol", "udp"),
                    ("startport", port.as_str()),
                ],
            ),
            _ => match &victim {
                Some((id, cmd)) => (*cmd, vec![("id", id.as_str())]),
                None => continue,
            },
        };
        match admin.try_call(cmd, &params) {
            Ok(v) => {
                tally.accepted += 1;
                if let Some(job) = v["jobid"].as_str() {
                    jobs.push(job.to_string());
                }
                if let Some(id) = v["id"].as_str() {
                    match cmd {
                        "createFirewallRule" => mine.push((id.to_string(), "deleteFirewallRule")),
                        "createEgressFirewallRule" => {
                            mine.push((id.to_string(), "deleteEgressFirewallRule"))
                        }
                        _ => {}
                    }
                }
            }
            Err(ClientError::Api {
                code: 431 | 537, ..
            }) => tally.refused += 1,
            Err(e) => panic!("{cmd} {params:?}: {e}"),
        }
    }
    (tally, jobs)
}

/// The network the clients share.
struct Shared {
    id: String,
    ip: String,
    lb: String,
    pf: String,
    vms: Vec<String>,
}

/// Runs the race against `binary` (with `extra` serve arguments) and checks what it leaves.
fn race(binary: &Path, extra: &[&str], build: &str) {
    let server = DryServer::start(binary, extra);
    let admin = Admin::new(&server.endpoint);
    let net = procs::network(&admin, "race", 7, &[("race-vm1", 11), ("race-vm2", 12)]);
    let vms: Vec<String> = ["race-vm1", "race-vm2"]
        .iter()
        .map(|n| procs::vm_id(&admin, n))
        .collect();
    let lb = admin.run(
        "createLoadBalancerRule",
        &[
            ("publicipid", &net.ip_id),
            ("name", "web"),
            ("algorithm", "roundrobin"),
            ("publicport", "80"),
            ("privateport", "8080"),
        ],
    )["loadbalancer"]["id"]
        .as_str()
        .expect("lb id")
        .to_string();
    admin.run(
        "assignToLoadBalancerRule",
        &[("id", &lb), ("virtualmachineids", &vms[0])],
    );
    let pf = admin.run(
        "createPortForwardingRule",
        &[
            ("ipaddressid", &net.ip_id),
            ("protocol", "tcp"),
            ("publicport", "2222"),
            ("privateport", "22"),
            ("virtualmachineid", &vms[1]),
        ],
    )["portforwardingrule"]["id"]
        .as_str()
        .expect("pf id")
        .to_string();
    let shared = Shared {
        id: net.id.clone(),
        ip: net.ip_id.clone(),
        lb,
        pf,
        vms,
    };

    let started = Instant::now();
    let results: Vec<(Tally, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (endpoint, shared) = (&server.endpoint, &shared);
                s.spawn(move || client(endpoint, c as u64 + 1, shared))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client panicked"))
            .collect()
    });
    let mut total = Tally::default();
    for (tally, jobs) in &results {
        total.accepted += tally.accepted;
        total.refused += tally.refused;
        for job in jobs {
            match admin.wait_job(job, Duration::from_secs(60)) {
                Ok(_) => total.succeeded += 1,
                Err(e) if e.contains(" failed: ") => total.failed += 1,
                Err(e) => panic!(
                    "job {job} did not end: {e}; the server's log:\n{}",
                    server.log()
                ),
            }
        }
    }
    // The worker is alive: it still takes a job.
    admin.run(
        "createFirewallRule",
        &[
            ("ipaddressid", &shared.ip),
            ("protocol", "tcp"),
            ("startport", "3333"),
        ],
    );
    let mismatches = server.counter("guestnet_worker_copy_mismatches_total");
    println!(
        "racing updates ({build} build): {CLIENTS} clients, {} requests accepted, {} refused, \
         {} jobs succeeded, {} failed, {mismatches} copy differences, {:.1?}",
        total.accepted,
        total.refused,
        total.succeeded,
        total.failed,
        started.elapsed()
    );
    assert_eq!(
        mismatches,
        0.0,
        "the worker's copy differed from the database; the server's log:\n{}",
        server.log()
    );
    assert_eq!(total.failed, 0, "no router refuses what the API accepted");
    let (ok, out) = procs::verify(None, server.dir.path());
    assert!(ok, "guestnet verify found differences:\n{out}");
}

#[test]
fn racing_updates_leave_the_worker_and_the_database_agreeing() {
    race(Path::new(env!("CARGO_BIN_EXE_guestnet")), &[], "test");
}

/// The release build, built here (`cargo build --release`, nothing to do when the test command
/// built it already), with the copy check asked for since release builds leave it off.
#[test]
fn racing_updates_on_the_release_build_leave_the_worker_and_the_database_agreeing() {
    let binary = release_binary();
    race(&binary, &["--check-copy"], "release");
}

/// Builds the release `guestnet` in this workspace's target directory and returns its path.
fn release_binary() -> PathBuf {
    let test_binary = Path::new(env!("CARGO_BIN_EXE_guestnet"));
    let target = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the workspace");
    let out = sys::cmd::Program::new(env!("CARGO"))
        .args(["build", "--release", "-p", "guestnet", "--bin", "guestnet"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build --release");
    assert!(
        out.status.success(),
        "cargo build --release failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = target.join("release").join("guestnet");
    assert!(binary.exists(), "no {}", binary.display());
    binary
}
