//! Load balancing through the router's haproxy: algorithms, stickiness, health checks, member
//! changes and reloads under a long download, source lists, a second rule, refusals and status;
//! all with real HTTP from the outside host to the balancer's public IP and port.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vrouterd::serve::status_of;
use vrouterd::{chain, ApplyError, ApplyOutcome};

use crate::support::*;

/// Requests within which roundrobin must have reached both members (it alternates: 2 suffice).
const SPREAD_REQUESTS: usize = 6;

/// How long the slow download lasts: [`SLOW_CHUNKS`] chunks, one every [`SLOW_PAUSE_S`].
const SLOW_CHUNKS: usize = 40;
const SLOW_CHUNK_BYTES: usize = 1000;
const SLOW_PAUSE_S: &str = "0.5";

/// A whoami HTTP server (`NAME CLIENT-IP`) that on `GET /slow` instead streams
/// [`SLOW_CHUNKS`] chunks of [`SLOW_CHUNK_BYTES`] bytes, one every [`SLOW_PAUSE_S`] seconds. Plain
/// sockets: no name lookup at start.
const SLOW_SERVER: &str = r#"
import socket, sys, threading, time
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, size, pause = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
def serve(c, peer):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                return
            data += d
        path = data.split(b" ")[1]
        if path == b"/slow":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (count * size))
            for _ in range(count):
                c.sendall(b"x" * size)
                time.sleep(pause)
        else:
            body = f"{name} {peer[0]}".encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(64)
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"#;

/// A load-balancer rule on [`PUBLIC_IP`].
fn lb(id: u64, port: u16, algorithm: &str, members: &[(&str, u16)], sources: &[&str]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|(ip, port)| json!({ "vm_ip": ip, "port": port }))
        .collect();
    json!({ "id": id, "public_ip": PUBLIC_IP, "public_port": port, "algorithm": algorithm,
            "members": members, "source_cidrs": sources })
}

fn with(mut rule: Value, key: &str, value: Value) -> Value {
    rule[key] = value;
    rule
}

/// The name of the member that answered, or panics with what came back.
fn who(reply: &Reply) -> String {
    match reply {
        Reply::Answer(a) => a.split_whitespace().next().unwrap_or_default().to_string(),
        other => panic!("no answer through the balancer: {other:?}"),
    }
}

/// Members seen over `n` requests from `src` to `PUBLIC_IP:port`.
fn members_seen(net: &Net, src: &str, port: u16, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| who(&net.http_get(&outside(), Some(src), PUBLIC_IP, port)))
        .collect()
}

fn distinct(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

/// The whoami servers on web1 and web2, on `port`.
fn both_servers(net: &mut Net, port: u16) {
    net.http_server(&vm("web1"), WEB1, port, "web1");
    net.http_server(&vm("web2"), WEB2, port, "web2");
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn roundrobin_spreads_over_both_members_beside_a_second_rule_and_refuses_unlisted_sources() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    net.http_server(&vm("web2"), WEB2, 8081, "web2-alt");
    let outcome = net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
            .firewall(2, PUBLIC_IP, "tcp", "8080", &["0.0.0.0/0"])
            .load_balancer(lb(
                31,
                80,
                "roundrobin",
                &[(WEB1, 80), (WEB2, 80)],
                &["198.51.100.0/24", "203.0.113.0/24"],
            ))
            .load_balancer(lb(32, 8080, "leastconn", &[(WEB2, 8081)], &["0.0.0.0/0"])),
    );
    assert!(matches!(
        outcome,
        ApplyOutcome::Applied { generation: 1, .. }
    ));

    for src in [NET_A1, SEGMENT_B] {
        let seen = members_seen(&net, src, 80, SPREAD_REQUESTS);
        assert_eq!(
            distinct(&seen),
            BTreeSet::from(["web1".to_string(), "web2".to_string()]),
            "from {src}: {seen:?}"
        );
    }
    // The members see haproxy's address on the guest network, not the client's.
    assert!(matches!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::Answer(a) if a.ends_with(&format!(" {GUEST_GATEWAY}"))
    ));
    // The second rule, on its own port, to its own member.
    for src in [NET_A1, NET_C] {
        assert_eq!(
            net.http_get(&outside(), Some(src), PUBLIC_IP, 8080),
            answer("web2-alt", GUEST_GATEWAY),
            "second rule from {src}"
        );
    }
    // A source outside rule 31's list: the firewall admits it, haproxy refuses it; a listed
    // source on the same path gets through (above).
    let refused = net.http_get(&outside(), Some(NET_C), PUBLIC_IP, 80);
    assert!(
        !matches!(refused, Reply::Answer(_)),
        "unlisted source answered: {refused:?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn source_algorithm_and_source_stickiness_keep_each_client_on_one_member() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    both_servers(&mut net, 81);
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80-81", &["0.0.0.0/0"])
            .load_balancer(lb(
                31,
                80,
                "source",
                &[(WEB1, 80), (WEB2, 80)],
                &["0.0.0.0/0"],
            ))
            .load_balancer(with(
                lb(
                    32,
                    81,
                    "roundrobin",
                    &[(WEB1, 81), (WEB2, 81)],
                    &["0.0.0.0/0"],
                ),
                "stickiness",
                json!({ "method": "SourceBased", "params": { "tablesize": "10k", "expire": "5m" } }),
            )),
    );
    let sources = [OUTSIDE, SEGMENT_B, SEGMENT_C, NET_A1, NET_A2, NET_C];
    for port in [80, 81] {
        let mut firsts = BTreeSet::new();
        for src in sources {
            let seen = members_seen(&net, src, port, SPREAD_REQUESTS);
            assert_eq!(distinct(&seen).len(), 1, "port {port} from {src}: {seen:?}");
            firsts.insert(seen[0].clone());
        }
        // Not everyone on one member: the rule balances between clients.
        assert_eq!(firsts.len(), 2, "port {port}: every client on {firsts:?}");
    }
}

/// One GET with a cookie jar; returns the member that answered.
fn get_with_jar(net: &Net, jar: &Path, port: u16) -> String {
    let jar = jar.display().to_string();
    let url = format!("http://{PUBLIC_IP}:{port}/");
    let out = net
        .lab()
        .exec_capture(
            &outside(),
            &[
                "curl",
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "10",
                "-c",
                &jar,
                "-b",
                &jar,
                &url,
            ],
        )
        .expect("run curl");
    assert!(out.status.success(), "curl: {out:?}");
    who(&Reply::Answer(
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn lb_cookie_stickiness_keeps_a_cookie_jar_on_one_member() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
            .load_balancer(with(
                lb(
                    31,
                    80,
                    "roundrobin",
                    &[(WEB1, 80), (WEB2, 80)],
                    &["0.0.0.0/0"],
                ),
                "stickiness",
                json!({ "method": "LbCookie", "params": { "cookie-name": "GNSTICKY", "mode": "insert", "nocache": "true" } }),
            )),
    );
    // Without a cookie, roundrobin spreads.
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut firsts = BTreeSet::new();
    for client in ["a", "b"] {
        let jar = dir.path().join(client);
        let seen: Vec<String> = (0..SPREAD_REQUESTS)
            .map(|_| get_with_jar(&net, &jar, 80))
            .collect();
        assert_eq!(distinct(&seen).len(), 1, "jar {client}: {seen:?}");
        let cookies = std::fs::read_to_string(&jar).expect("curl wrote the jar");
        assert!(cookies.contains("GNSTICKY"), "{cookies}");
        firsts.insert(seen[0].clone());
    }
    // Roundrobin gave the two fresh clients different members, each kept by its cookie.
    assert_eq!(firsts.len(), 2, "{firsts:?}");
}

/// The health status haproxy reports for `vm_ip` in rule `id`, through `status_of` as JSON (what
/// `guestnet router status --json` prints).
fn health(net: &mut Net, id: u64, vm_ip: &str) -> String {
    let report =
        status_of(&mut net.router, false).unwrap_or_else(|e| panic!("status: {}", chain(&e)));
    let v = serde_json::to_value(&report).expect("status serializes");
    let lbs = v["load_balancers"]
        .as_array()
        .unwrap_or_else(|| panic!("no load_balancers in {v}"));
    let rule = lbs
        .iter()
        .find(|l| l["id"] == json!(id))
        .unwrap_or_else(|| panic!("no rule {id} in {v}"));
    let member = rule["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["vm_ip"] == json!(vm_ip)))
        .unwrap_or_else(|| panic!("no member {vm_ip} in {v}"));
    assert!(member["total_connections"].is_u64(), "{member}");
    member["status"].as_str().unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn health_check_takes_a_stopped_member_out_and_back_and_status_shows_it() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
            .load_balancer(with(
                lb(
                    31,
                    80,
                    "roundrobin",
                    &[(WEB1, 80), (WEB2, 80)],
                    &["0.0.0.0/0"],
                ),
                "health_check",
                json!({ "interval_s": 1, "response_timeout_s": 1,
                        "healthy_threshold": 2, "unhealthy_threshold": 1 }),
            )),
    );
    // Thresholds: down after one failed check (1 s apart), up after two good ones.
    let thresholds = Duration::from_secs(10);
    let up = |net: &mut Net, ip| health(net, 31, ip) == "UP";
    assert!(
        wait_until(Instant::now() + thresholds, || up(&mut net, WEB1)
            && up(&mut net, WEB2)),
        "members never UP: {} {}",
        health(&mut net, 31, WEB1),
        health(&mut net, 31, WEB2)
    );
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");

    net.stop_server(WEB2, 80);
    assert!(
        wait_until(Instant::now() + thresholds, || health(&mut net, 31, WEB2)
            .starts_with("DOWN")),
        "web2 never DOWN: {}",
        health(&mut net, 31, WEB2)
    );
    assert_eq!(health(&mut net, 31, WEB1), "UP");
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen), BTreeSet::from(["web1".to_string()]));

    net.http_server(&vm("web2"), WEB2, 80, "web2");
    assert!(
        wait_until(Instant::now() + thresholds, || up(&mut net, WEB2)),
        "web2 never back UP: {}",
        health(&mut net, 31, WEB2)
    );
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");
}

/// A slow download through the balancer, written to a file; wait for it with [`finish`].
struct Download {
    child: sys::cmd::Child,
    file: std::path::PathBuf,
}

fn start_download(net: &Net, dir: &Path, name: &str, port: u16) -> Download {
    let file = dir.join(name);
    let path = file.display().to_string();
    let url = format!("http://{PUBLIC_IP}:{port}/slow");
    let child = net
        .lab()
        .spawn(
            &outside(),
            &[
                "curl",
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "120",
                "-o",
                &path,
                &url,
            ],
        )
        .expect("start curl");
    Download { child, file }
}

/// Waits for a download; returns its exit status and the bytes it got.
fn finish(mut d: Download, deadline: Instant) -> (Option<i32>, u64) {
    let status = loop {
        if let Some(s) = d.child.try_wait().expect("wait for curl") {
            break s.code();
        }
        if Instant::now() >= deadline {
            let _ = d.child.kill();
            let _ = d.child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let len = std::fs::metadata(&d.file).map_or(0, |m| m.len());
    (status, len)
}

/// Bytes received so far by a download.
fn received(d: &Download) -> u64 {
    std::fs::metadata(&d.file).map_or(0, |m| m.len())
}

fn slow_server(net: &mut Net, host: &str, ip: &str, port: u16) {
    slow_server_of(net, host, ip, port, SLOW_CHUNKS);
}

/// A [`SLOW_SERVER`] whose slow answer has `chunks` chunks.
fn slow_server_of(net: &mut Net, host: &str, ip: &str, port: u16, chunks: usize) {
    let port_text = port.to_string();
    let count = chunks.to_string();
    let size = SLOW_CHUNK_BYTES.to_string();
    net.start_at(
        &vm(host),
        &format!("{ip}:{port}"),
        &[
            "python3",
            "-c",
            SLOW_SERVER,
            ip,
            &port_text,
            host,
            &count,
            &size,
            SLOW_PAUSE_S,
        ],
    );
    wait_for(&format!("slow server on {ip}:{port}"), || {
        matches!(
            net.http_get_short(&vm(host), None, ip, port),
            Reply::Answer(_)
        )
    });
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_long_download_survives_member_changes_and_a_reload() {
    let mut net = Net::up();
    slow_server(&mut net, "web1", WEB1, 8000);
    slow_server(&mut net, "web2", WEB2, 8000);
    let base = Config::new(1).firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"]);
    let rule =
        |algorithm: &str, members: &[(&str, u16)]| lb(31, 80, algorithm, members, &["0.0.0.0/0"]);
    net.apply(
        &base
            .clone()
            .load_balancer(rule("roundrobin", &[(WEB1, 8000)])),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let total = u64::try_from(SLOW_CHUNKS * SLOW_CHUNK_BYTES).expect("small");
    let deadline = Instant::now() + Duration::from_secs(60);

    // The first download goes to web1, the only member.
    let first = start_download(&net, dir.path(), "first", 80);
    wait_for("the first download to start", || received(&first) > 0);

    // Add web2 through the runtime API: no reload.
    let reloads = net.haproxy_reloads();
    net.apply(
        &base
            .clone()
            .generation(2)
            .load_balancer(rule("roundrobin", &[(WEB1, 8000), (WEB2, 8000)])),
    );
    wait_for(
        "web2 to answer through the balancer",
        || matches!(net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80), Reply::Answer(a) if a.starts_with("web2 ")),
    );

    // Remove web1, which still carries the first download: disabled, left draining.
    net.apply(
        &base
            .clone()
            .generation(3)
            .load_balancer(rule("roundrobin", &[(WEB2, 8000)])),
    );
    assert!(
        !net.router.draining_members().is_empty(),
        "web1 was deleted despite its connection"
    );
    assert_eq!(
        net.haproxy_reloads(),
        reloads,
        "member changes must not reload haproxy"
    );
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen), BTreeSet::from(["web2".to_string()]));
    let second = start_download(&net, dir.path(), "second", 80);
    wait_for("the second download to start", || received(&second) > 0);

    // A structural change: a reload, while both downloads run.
    net.apply(
        &base
            .clone()
            .generation(4)
            .load_balancer(rule("leastconn", &[(WEB2, 8000)])),
    );
    assert!(
        received(&first) < total,
        "the first download ended too early to prove anything"
    );
    assert_eq!(
        net.haproxy_reloads(),
        reloads + 1,
        "a structural change is one reload"
    );
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen), BTreeSet::from(["web2".to_string()]));

    for (name, d) in [("first", first), ("second", second)] {
        assert_eq!(finish(d, deadline), (Some(0), total), "{name} download");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_parameter_haproxy_cannot_honour_is_refused_whole_and_the_old_one_serves() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    net.http_server(&vm("web1"), WEB1, 2222, "web1-ssh");
    let good = Config::new(1)
        .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
        .load_balancer(lb(
            31,
            80,
            "roundrobin",
            &[(WEB1, 80), (WEB2, 80)],
            &["0.0.0.0/0"],
        ));
    net.apply(&good);
    // haproxy's timers stop at ~24.8 days: an `expire` of 30 days is refused, naming the field,
    // before anything is applied (haproxy -c would refuse it too, behind validation).
    let bad = good
        .clone()
        .generation(2)
        .firewall(2, PUBLIC_IP, "tcp", "2222", &["0.0.0.0/0"])
        .forward(21, PUBLIC_IP, "tcp", "2222", "2222", WEB1, &["0.0.0.0/0"])
        .without(31)
        .load_balancer(with(
            lb(
                31,
                80,
                "roundrobin",
                &[(WEB1, 80), (WEB2, 80)],
                &["0.0.0.0/0"],
            ),
            "stickiness",
            json!({ "method": "SourceBased", "params": { "expire": "30d" } }),
        ));
    let err = net.try_apply(&bad).expect_err("expire 30d must be refused");
    assert!(
        matches!(err, ApplyError::Invalid { generation: 2, .. }),
        "{}",
        chain(&err)
    );
    assert!(
        chain(&err).contains("load balancer 31: field `stickiness.params.expire`"),
        "{}",
        chain(&err)
    );
    assert_eq!(net.router.generation(), Some(1));
    // Nothing of generation 2 applies: no forward, and the old balancer still spreads.
    assert!(
        !matches!(
            net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 2222),
            Reply::Answer(_)
        ),
        "the refused config's forward was applied"
    );
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");

    // The first load balancer of a router is checked too: nothing starts.
    let mut fresh = Net::up();
    fresh.apply(&Config::new(1));
    let err = fresh
        .try_apply(&bad.clone().generation(2))
        .expect_err("refused");
    assert!(matches!(err, ApplyError::Invalid { .. }), "{}", chain(&err));
    assert_eq!(fresh.router.generation(), Some(1));
    assert!(fresh.router.load_balancers().expect("status").is_empty());
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_removed_member_drains_and_is_deleted_once_its_connection_ends() {
    let mut net = Net::up();
    let chunks = 8;
    slow_server_of(&mut net, "web1", WEB1, 8000, chunks);
    both_servers(&mut net, 80);
    let base = Config::new(1).firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"]);
    let rule = |members: &[(&str, u16)]| lb(31, 80, "roundrobin", members, &["0.0.0.0/0"]);
    net.apply(&base.clone().load_balancer(rule(&[(WEB1, 8000)])));
    let dir = tempfile::tempdir().expect("temp dir");
    let download = start_download(&net, dir.path(), "slow", 80);
    wait_for("the download to start", || received(&download) > 0);

    net.apply(
        &base
            .clone()
            .generation(2)
            .load_balancer(rule(&[(WEB2, 80)])),
    );
    let web1 = ("lb_31".to_string(), "m_10_1_1_11_8000".to_string());
    assert_eq!(net.router.draining_members(), std::slice::from_ref(&web1));
    // While it drains, a tick keeps it (its connection is open) and it takes no new requests.
    net.router.tend_balancer().expect("tend");
    assert_eq!(net.router.draining_members(), [web1]);
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen), BTreeSet::from(["web2".to_string()]));

    let total = u64::try_from(chunks * SLOW_CHUNK_BYTES).expect("small");
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(finish(download, deadline), (Some(0), total));
    assert!(
        wait_until(Instant::now() + DEADLINE, || {
            net.router.tend_balancer().is_ok() && net.router.draining_members().is_empty()
        }),
        "the drained member was never deleted: {:?}",
        net.router.draining_members()
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn restore_reloads_the_running_haproxy_and_removing_the_last_rule_stops_it() {
    let mut net = Net::up();
    both_servers(&mut net, 8000);
    let base = Config::new(1).firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"]);
    net.apply(&base.clone().load_balancer(lb(
        31,
        80,
        "roundrobin",
        &[(WEB1, 8000), (WEB2, 8000)],
        &["0.0.0.0/0"],
    )));
    assert_eq!(
        distinct(&members_seen(&net, NET_A1, 80, SPREAD_REQUESTS)).len(),
        2
    );
    // What the daemon does at start and after drift.
    assert_eq!(
        net.router
            .restore()
            .unwrap_or_else(|e| panic!("restore: {}", chain(&e))),
        Some(1)
    );
    assert_eq!(
        distinct(&members_seen(&net, NET_A1, 80, SPREAD_REQUESTS)).len(),
        2
    );

    net.apply(&base.generation(2));
    assert!(net.router.load_balancers().expect("status").is_empty());
    // The firewall still admits port 80, but nothing listens there any more.
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::Refused
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_rule_back_while_the_stopped_haproxy_still_drains_a_download_serves_again() {
    let mut net = Net::up();
    let chunks = 12;
    slow_server_of(&mut net, "web1", WEB1, 8000, chunks);
    let base = Config::new(1).firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"]);
    let rule = lb(31, 80, "roundrobin", &[(WEB1, 8000)], &["0.0.0.0/0"]);
    net.apply(&base.clone().load_balancer(rule.clone()));
    let dir = tempfile::tempdir().expect("temp dir");
    let download = start_download(&net, dir.path(), "slow", 80);
    wait_for("the download to start", || received(&download) > 0);

    // The last rule goes: haproxy stops listening but finishes the download.
    net.apply(&base.clone().generation(2));
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::Refused
    );
    // The rule comes back while the old haproxy still drains.
    net.apply(&base.clone().generation(3).load_balancer(rule));
    assert_eq!(
        who(&net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80)),
        "web1"
    );
    let total = u64::try_from(chunks * SLOW_CHUNK_BYTES).expect("small");
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(finish(download, deadline), (Some(0), total));
    assert_eq!(
        who(&net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80)),
        "web1"
    );
}

/// Every stickiness method, health check and algorithm the renderer knows, as haproxy 2.6 reads
/// it: the snapshot's input, rendered with the router's real global section, passes `haproxy -c`.
#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn every_rendered_load_balancer_kind_passes_haproxy_check() {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/tests/data/lb-all-kinds/input.json"),
    )
    .expect("snapshot input");
    let cfg = router_config::parse_and_validate(&input).expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let global = render::haproxy::Global {
        stats_socket: sys::haproxy::HaproxyFiles::new(dir.path()).stats_socket(),
        hard_stop_after: Duration::from_secs(600),
    };
    let text = render::haproxy::render_haproxy(&cfg, &global).expect("load balancers");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, text).expect("write");
    sys::haproxy::check(&sys::nft::Netns::Host, &path).unwrap_or_else(|e| panic!("{}", chain(&e)));
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn a_restore_enforces_the_firewall_even_when_haproxy_cannot_take_the_config() {
    let mut net = Net::up();
    both_servers(&mut net, 80);
    let cfg = Config::new(1)
        .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
        .load_balancer(lb(
            31,
            80,
            "roundrobin",
            &[(WEB1, 80), (WEB2, 80)],
            &["0.0.0.0/0"],
        ));
    net.apply(&cfg);
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));

    // Something outside the config breaks haproxy's side (here: its candidate file cannot be
    // written), and the kernel loses the table, as after a reboot.
    let candidate = net
        .lab()
        .data_dir()
        .join("routers/net1/haproxy/haproxy.cfg.new");
    let _ = std::fs::remove_file(&candidate);
    std::fs::create_dir_all(&candidate).expect("block the candidate path");
    net.in_router(&["nft", "flush", "ruleset"]);
    assert!(net.pings(&outside(), Some(NET_C), PUBLIC_IP));

    // The restore still puts the firewall back, and says haproxy is not restored.
    let err = net
        .router
        .restore()
        .expect_err("haproxy cannot be restored");
    assert!(
        matches!(err, ApplyError::Balancer { generation: 1, .. }),
        "{}",
        chain(&err)
    );
    assert_eq!(net.router.drift().expect("drift"), vrouterd::Drift::InSync);
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));
    // The haproxy that ran before keeps serving meanwhile.
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");

    // Once the environment is mended, the drift timer's chore restores haproxy.
    std::fs::remove_dir(&candidate).expect("unblock");
    net.router
        .tend_balancer()
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let seen = members_seen(&net, NET_A1, 80, SPREAD_REQUESTS);
    assert_eq!(distinct(&seen).len(), 2, "{seen:?}");
}
