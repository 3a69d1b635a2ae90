//! `guestnet router serve`, `apply` and `status` as processes: drift found and repaired (by
//! `status --repair` and by the drift timer), and a restarted router enforcing its last good
//! config again. Every claim is checked with real packets from the lab's outside host.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::{Lab, LabGuard, LabSpec, Target, TempDir};
use serde_json::{json, Value};
use sys::cmd::{Child, Output, Stdio};
use test_support::wait_until;

/// A generous bound for things that normally take milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a probe that must get through may take.
const PASS_TIMEOUT: &str = "5";
/// How long a probe that must not get through waits; always paired with one that gets through.
const BLOCK_TIMEOUT: &str = "1";

const PUBLIC_IP: &str = "203.0.113.11";
const WEB1: &str = "10.1.1.11";
const WEB2: &str = "10.1.1.12";
/// An outside address the firewall admits, and one it does not.
const ADMITTED: &str = "198.51.100.1";
const NOT_ADMITTED: &str = "192.0.2.1";

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(Instant::now() + DEADLINE, cond),
        "timed out after {DEADLINE:?} waiting for {what}"
    );
}

fn guestnet() -> sys::cmd::Program {
    sys::cmd::Program::new(env!("CARGO_BIN_EXE_guestnet"))
}

/// `guestnet router ARGS… --router net1 --data-dir DIR`.
fn router_cli(data_dir: &Path, args: &[&str]) -> Output {
    let mut c = guestnet();
    c.arg("router")
        .args(args)
        .args(["--router", "net1", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null());
    c.output().expect("run guestnet")
}

fn router_state(data_dir: &Path) -> PathBuf {
    data_dir.join("routers").join("net1")
}

/// `router apply`; returns the output whatever the outcome.
fn apply(data_dir: &Path, cfg: &Value) -> Output {
    let path = data_dir.join(format!("config-{}.json", cfg["generation"]));
    let bytes = serde_json::to_vec_pretty(cfg).expect("a json value serializes");
    std::fs::write(&path, bytes).expect("write the config");
    let mut c = guestnet();
    c.args(["router", "apply"])
        .arg(&path)
        .args(["--router", "net1", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null());
    c.output().expect("run guestnet")
}

/// `router status --json [--repair]`.
fn status(data_dir: &Path, repair: bool) -> Value {
    let mut args = vec!["status", "--json"];
    if repair {
        args.push("--repair");
    }
    let out = router_cli(data_dir, &args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("status --json prints json")
}

/// Port 80 of the public IP forwarded to `vm_ip`:8080, open to 198.51.100.0/24 only.
fn config(generation: u64, vm_ip: &str) -> Value {
    json!({
        "schema": 1,
        "generation": generation,
        "public": {
            "interface": "pub0",
            "addresses": [
                { "ip": "203.0.113.10", "prefix_len": 24, "source_nat": true },
                { "ip": PUBLIC_IP, "prefix_len": 24 }
            ],
            "gateway": "203.0.113.1"
        },
        "guest": { "interface": "guest0", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1" },
        "egress_default": "deny",
        "firewall_rules": [
            { "id": 1, "public_ip": PUBLIC_IP, "protocol": "tcp",
              "ports": { "start": 80, "end": 80 }, "source_cidrs": ["198.51.100.0/24"] }
        ],
        "port_forwards": [
            { "id": 20, "public_ip": PUBLIC_IP, "protocol": "tcp",
              "public_ports": { "start": 80, "end": 80 },
              "private_ports": { "start": 8080, "end": 8080 },
              "vm_ip": vm_ip, "source_cidrs": ["0.0.0.0/0"] }
        ]
    })
}

/// A child process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` from the outside host, from address `src`, to the public IP's port 80: the body, or
/// `Err(exit code)` (7: refused, 28: timed out).
fn get(lab: &Lab, src: &str, timeout: &str) -> Result<String, Option<i32>> {
    let url = format!("http://{PUBLIC_IP}/");
    let out = lab
        .exec_capture(
            &Target::Outside,
            &[
                "curl",
                "-sS",
                "--noproxy",
                "*",
                "--connect-timeout",
                timeout,
                "--max-time",
                "10",
                "--interface",
                src,
                &url,
            ],
        )
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.status.code())
    }
}

/// The lab plus the VM servers the tests talk to.
struct Bench {
    _servers: Vec<Killed>,
    guard: LabGuard,
}

impl Bench {
    fn up() -> Bench {
        let guard = LabGuard::up_in(TempDir::new().expect("temp dir"), &LabSpec::default_demo())
            .expect("lab up");
        let mut servers = Vec::new();
        for (vm, ip) in [("web1", WEB1), ("web2", WEB2)] {
            let target = Target::Vm(vm.to_string());
            let child = guard
                .spawn(
                    &target,
                    &["python3", "-c", lab::WHOAMI_HTTP_SERVER, ip, "8080", vm],
                )
                .expect("start a server");
            servers.push(Killed(child));
            let url = format!("http://{ip}:8080/");
            wait_for(&format!("the server in {vm}"), || {
                guard
                    .exec_capture(
                        &target,
                        &["curl", "-s", "--noproxy", "*", "--max-time", "1", &url],
                    )
                    .is_ok_and(|o| o.status.success())
            });
        }
        Bench {
            _servers: servers,
            guard,
        }
    }

    fn lab(&self) -> &Lab {
        &self.guard
    }

    fn data_dir(&self) -> &Path {
        self.guard.data_dir()
    }

    /// Runs `argv` in the router's namespace; it must succeed.
    fn in_router(&self, argv: &[&str]) {
        let out = self
            .lab()
            .exec_capture(&Target::Router("net1".to_string()), argv)
            .expect("run in the router namespace");
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }

    /// What a reboot leaves of the router's kernel state: no ruleset, no addresses.
    fn wipe_router_kernel_state(&self) {
        self.in_router(&["nft", "flush", "ruleset"]);
        self.in_router(&["ip", "addr", "flush", "dev", "pub0"]);
        self.in_router(&["ip", "addr", "flush", "dev", "guest0"]);
    }

    /// The packets say `config(_, vm_ip)` of `vm` is enforced: the admitted source reaches the
    /// VM, the other one is dropped.
    fn assert_enforced(&self, vm: &str) {
        assert_eq!(
            get(self.lab(), ADMITTED, PASS_TIMEOUT),
            Ok(format!("{vm} {ADMITTED}"))
        );
        assert_eq!(
            get(self.lab(), NOT_ADMITTED, BLOCK_TIMEOUT),
            Err(Some(28)),
            "{NOT_ADMITTED} must be dropped"
        );
    }
}

/// A running `guestnet router serve`; stopped with SIGKILL if still running when dropped, and
/// its log printed if the test is failing.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    /// Starts `router serve` and waits until its control socket answers.
    fn start(data_dir: &Path, drift_interval: &str) -> Serve {
        let log = (0..)
            .map(|n| data_dir.join(format!("serve-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let mut c = guestnet();
        c.args(["router", "serve", "--router", "net1", "--data-dir"])
            .arg(data_dir)
            .args(["--drift-interval", drift_interval])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("serve log"));
        let serve = Serve {
            child: Some(c.spawn().expect("start router serve")),
            log,
        };
        let socket = router_state(data_dir).join(vrouterd::CONTROL_SOCKET);
        wait_for("router serve to listen", || {
            vrouterd::client::is_listening(&socket)
        });
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        sys::cmd::run("kill", &["-TERM", &child.id().to_string()], None).expect("kill -TERM");
        let mut status = None;
        wait_for("router serve to exit", || {
            status = child.try_wait().expect("wait for router serve");
            status.is_some()
        });
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            self.log()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("router serve log:\n{}", self.log());
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn status_reports_a_flushed_table_as_drift_and_status_repair_restores_it() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let _serve = Serve::start(dd, "0");
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["generation"], 1, "{s}");
    assert_eq!(s["drift"], "in_sync", "{s}");
    assert_eq!(s["counters"]["rules"]["1"]["packets"], 1, "{s}");
    assert_eq!(s["counters"]["rules"]["20"]["packets"], 1, "{s}");

    bench.in_router(&["nft", "flush", "ruleset"]);

    let s = status(dd, false);
    assert!(s["drift"]["drifted"].is_object(), "{s}");
    // No forward any more: the router itself resets the connection.
    assert_eq!(get(bench.lab(), ADMITTED, BLOCK_TIMEOUT), Err(Some(7)));
    // The timer is off: nothing repairs it behind our back.
    let s = status(dd, false);
    assert!(s["drift"]["drifted"].is_object(), "{s}");

    let s = status(dd, true);
    assert_eq!(s["repaired"], 1, "{s}");
    assert_eq!(s["drift"], "in_sync", "{s}");
    assert_eq!(s["generation"], 1, "{s}");
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["drift"], "in_sync", "{s}");
    assert!(s.get("repaired").is_none(), "{s}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn serve_repairs_a_flushed_table_on_its_drift_timer() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let serve = Serve::start(dd, "1");
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");

    bench.in_router(&["nft", "flush", "ruleset"]);

    wait_for("the drift timer to repair the table", || {
        serve.log().contains("drift found and repaired")
            && get(bench.lab(), ADMITTED, BLOCK_TIMEOUT).is_ok()
    });
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["drift"], "in_sync", "{s}");
    assert_eq!(s["generation"], 1, "{s}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn restarted_serve_reapplies_the_last_good_config() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let serve = Serve::start(dd, "0");
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");

    serve.stop();
    // Stopping the router leaves the kernel enforcing.
    bench.assert_enforced("web1");
    bench.wipe_router_kernel_state();
    assert!(get(bench.lab(), ADMITTED, BLOCK_TIMEOUT).is_err());

    let _serve = Serve::start(dd, "0");
    wait_for("the restarted router to forward again", || {
        get(bench.lab(), ADMITTED, BLOCK_TIMEOUT).is_ok()
    });
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["generation"], 1, "{s}");
    assert_eq!(s["drift"], "in_sync", "{s}");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn restart_never_applies_a_refused_or_unconfirmed_candidate() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let serve = Serve::start(dd, "0");
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");

    // Valid, but the router cannot apply it (no such interface): refused, nothing changes.
    let mut refused = config(2, WEB2);
    refused["public"]["interface"] = json!("nosuch0");
    let out = apply(dd, &refused);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot configure interfaces for generation 2"),
        "{stderr}"
    );
    bench.assert_enforced("web1");
    serve.stop();

    // A record cut short in the journal, as a crash in the middle of an append leaves it.
    let unconfirmed = config(3, WEB2);
    let segment = std::fs::read_dir(router_state(dd))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal-")
        })
        .max()
        .expect("a journal segment");
    let torn = serde_json::to_vec(&unconfirmed).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&(torn.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&segment, bytes).unwrap();
    bench.wipe_router_kernel_state();

    let _serve = Serve::start(dd, "0");
    wait_for("the restarted router to forward again", || {
        get(bench.lab(), ADMITTED, BLOCK_TIMEOUT).is_ok()
    });
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["generation"], 1, "{s}");

    // Sent for real, the same content is applied: only the ledger decides what a restart does.
    let out = apply(dd, &unconfirmed);
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web2");
}

/// Without a running `serve`, each `status` is a new process that finds the kernel mark of the
/// last commit stale: that is drift as well, and `--repair` repairs it.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn status_without_serve_reports_a_flushed_table_as_drift_and_repairs_it() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["generation"], 1, "{s}");
    assert_eq!(s["drift"], "in_sync", "{s}");

    bench.in_router(&["nft", "flush", "ruleset"]);
    assert_eq!(get(bench.lab(), ADMITTED, BLOCK_TIMEOUT), Err(Some(7)));

    let s = status(dd, false);
    assert!(s["drift"]["drifted"].is_object(), "{s}");
    let s = status(dd, true);
    assert_eq!(s["repaired"], 1, "{s}");
    assert_eq!(s["drift"], "in_sync", "{s}");
    assert_eq!(s["generation"], 1, "{s}");
    bench.assert_enforced("web1");
}

/// A repair can fail for a while (here: the public interface is briefly gone); the drift timer
/// keeps trying, and repairs the table once it can.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn drift_timer_retries_a_repair_that_failed() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let serve = Serve::start(dd, "1");
    let out = apply(dd, &config(1, WEB1));
    assert!(out.status.success(), "{out:?}");
    bench.assert_enforced("web1");

    bench.in_router(&["ip", "link", "set", "pub0", "down"]);
    bench.in_router(&["ip", "link", "set", "pub0", "name", "pubaway"]);
    bench.in_router(&["nft", "flush", "ruleset"]);
    wait_for("a repair to fail", || {
        serve.log().contains("drift repair failed")
    });

    bench.in_router(&["ip", "link", "set", "pubaway", "name", "pub0"]);
    bench.in_router(&["ip", "link", "set", "pub0", "up"]);
    wait_for("the drift timer to repair the table", || {
        serve.log().contains("drift found and repaired")
            && get(bench.lab(), ADMITTED, BLOCK_TIMEOUT).is_ok()
    });
    bench.assert_enforced("web1");
    let s = status(dd, false);
    assert_eq!(s["drift"], "in_sync", "{s}");
}

/// Port 80 of the public IP balanced over web1 and web2 (port 8080) with a 1 s health check.
fn balanced_config(generation: u64) -> Value {
    let mut cfg = config(generation, WEB1);
    cfg["port_forwards"] = json!([]);
    cfg["load_balancers"] = json!([
        { "id": 31, "public_ip": PUBLIC_IP, "public_port": 80, "algorithm": "roundrobin",
          "members": [ { "vm_ip": WEB1, "port": 8080 }, { "vm_ip": WEB2, "port": 8080 } ],
          "source_cidrs": ["0.0.0.0/0"],
          "health_check": { "interval_s": 1, "healthy_threshold": 1, "unhealthy_threshold": 1 } }
    ]);
    cfg
}

/// Each member's health in `router status --json`, as `(vm_ip, status)`.
fn member_health(data_dir: &Path) -> Vec<(String, String)> {
    let s = status(data_dir, false);
    let members = s["load_balancers"][0]["members"].as_array().cloned();
    members
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["vm_ip"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn all_up(data_dir: &Path) -> bool {
    let h = member_health(data_dir);
    h.len() == 2 && h.iter().all(|(_, s)| s == "UP")
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn status_shows_balancer_members_with_health_and_haproxy_outlives_a_serve_restart() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let serve = Serve::start(dd, "0");
    let out = apply(dd, &balanced_config(1));
    assert!(out.status.success(), "{out:?}");
    wait_for("both members UP in status --json", || all_up(dd));
    let seen: std::collections::BTreeSet<String> = (0..6)
        .map(|_| get(bench.lab(), ADMITTED, PASS_TIMEOUT).expect("balanced answer"))
        .collect();
    assert_eq!(
        seen,
        ["web1 10.1.1.1".to_string(), "web2 10.1.1.1".to_string()].into(),
        "roundrobin over both members"
    );
    let text = router_cli(dd, &["status"]);
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{WEB1}:8080")) && text.contains("UP"),
        "{text}"
    );

    // haproxy is daemonized: it serves while the router daemon is down, and the restarted
    // daemon adopts the same master (and reloads it to its file) instead of starting another.
    let pid_file = router_state(dd).join("haproxy").join("haproxy.pid");
    let master = std::fs::read_to_string(&pid_file).expect("haproxy pid file");
    serve.stop();
    assert!(get(bench.lab(), ADMITTED, PASS_TIMEOUT).is_ok());
    let _serve = Serve::start(dd, "0");
    wait_for("both members UP after the restart", || all_up(dd));
    assert!(get(bench.lab(), ADMITTED, PASS_TIMEOUT).is_ok());
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("haproxy pid file"),
        master,
        "the restarted daemon started another haproxy master"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn serve_restarts_a_dnsmasq_that_died_on_its_drift_timer() {
    let bench = Bench::up();
    let dd = bench.data_dir();
    let _serve = Serve::start(dd, "1");
    let mut cfg = config(1, WEB1);
    cfg["dhcp"] = json!({
        "dns_servers": ["203.0.113.1"],
        "domain": "guests.example",
        "leases": [{ "mac": "02:00:00:00:aa:01", "ip": "10.1.1.50", "hostname": "alpha" }]
    });
    let out = apply(dd, &cfg);
    assert!(out.status.success(), "{out:?}");
    let s = status(dd, false);
    assert_eq!(s["dhcp"]["running"], true, "{s}");
    assert_eq!(s["dhcp"]["leases"], 1, "{s}");
    let pid = s["dhcp"]["pid"].as_i64().expect("dnsmasq's pid");

    bench.in_router(&["kill", "-9", &pid.to_string()]);

    let mut last = Value::Null;
    wait_for("the drift timer to start dnsmasq again", || {
        last = status(dd, false);
        last["dhcp"]["running"] == true && last["dhcp"]["pid"].as_i64() != Some(pid)
    });
    let text = router_cli(dd, &["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("dhcp        running (pid "), "{text}");
}
