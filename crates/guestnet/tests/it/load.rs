//! Load through two management servers: 32 clients create and delete rules on four networks
//! spread over two agents' hosts for a bounded time; then the database, every router and the
//! API's answers agree. (Throughput figures come from `guestnet-bench agents`; this test prints
//! what it saw, and asserts only agreement.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::TempDir;

use crate::procs::{self, Admin, AgentSpec, HostLab, ServerSpec};
use test_support::mgmtnet::MgmtNet;
use test_support::pg::PgCluster;

const CLIENTS: usize = 32;
const NETWORKS: usize = 4;
const LOAD_FOR: Duration = Duration::from_secs(10);

/// What one client leaves behind: the ports of rules it created and kept, per network index.
type Kept = Vec<(usize, u16)>;

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn thirty_two_clients_through_two_servers_leave_database_routers_and_api_in_agreement() {
    let pg = PgCluster::start();
    let net = MgmtNet::new(&["srv-a", "srv-b", "agent-1", "agent-2", "client"]);
    let dir = TempDir::new().expect("temp dir");
    net.in_netns("client", || {
        let url = pg.url();
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for name in ["srv-a", "srv-b"] {
            let (p, e) = procs::server(&ServerSpec {
                name: name.into(),
                data_dir: dir.path().join(name),
                database_url: Some(url.clone()),
                listen: format!("{}:8080", net.addr(name)),
                netns: Some(net.netns(name).into()),
                apply_timeout: "30".into(),
                log: dir.path().join(format!("{name}.log")),
            });
            servers.push(p);
            endpoints.push(e);
        }
        let admin = Admin::new(&endpoints[0]);
        let mut agents = Vec::new();
        let mut labs = Vec::new();
        for (i, member) in ["agent-1", "agent-2"].iter().enumerate() {
            let host = format!("h{}", i + 1);
            let token_file = dir.path().join(format!("{host}-token"));
            admin.token(&host, &token_file);
            let spec = AgentSpec {
                name: (*member).into(),
                servers: endpoints.iter().map(|e| procs::base(e)).collect(),
                token_file,
                data_dir: dir.path().join(&host),
                netns: Some(net.netns(member).into()),
                apply_timeout: "30".into(),
                log: dir.path().join(format!("{member}.log")),
            };
            labs.push(HostLab::new(&spec.data_dir));
            agents.push(procs::agent(&spec));
            admin.until(&format!("host {host} is Up"), |a| a.host_up(&host));
        }
        let nets: Vec<procs::TestNet> = (0..NETWORKS)
            .map(|i| procs::network(&admin, &format!("load{i}"), 40 + i as u8, &[]))
            .collect();
        let hosts: BTreeSet<String> = nets
            .iter()
            .map(|n| {
                admin.call("listRouters", &[("networkid", &n.id)])["router"][0]["hostname"]
                    .as_str()
                    .expect("hostname")
                    .to_string()
            })
            .collect();
        assert_eq!(hosts.len(), 2, "routers placed on both hosts: {hosts:?}");

        let stop = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let threads: Vec<std::thread::JoinHandle<Kept>> = (0..CLIENTS)
            .map(|c| {
                let endpoint = endpoints[c % endpoints.len()].clone();
                let network = c % NETWORKS;
                let ip_id = nets[network].ip_id.clone();
                let (stop, changes, failures) = (stop.clone(), changes.clone(), failures.clone());
                std::thread::spawn(move || {
                    let a = Admin::new(&endpoint);
                    let mut kept = Vec::new();
                    let mut i = 0u16;
                    while !stop.load(Ordering::SeqCst) {
                        // Each client has its own ports: 1000 per client from 10000 up.
                        let port = 10_000 + (c as u16) * 1000 + i;
                        i += 1;
                        let p = port.to_string();
                        let r = a.call(
                            "createFirewallRule",
                            &[
                                ("ipaddressid", &ip_id),
                                ("protocol", "tcp"),
                                ("startport", &p),
                                ("endport", &p),
                            ],
                        );
                        let job = r["jobid"].as_str().expect("jobid").to_string();
                        let done = match a.wait_job(&job, Duration::from_secs(60)) {
                            Ok(done) => done,
                            Err(e) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                eprintln!("load: create of port {port} failed: {e}");
                                continue;
                            }
                        };
                        changes.fetch_add(1, Ordering::SeqCst);
                        // One rule in three stays; the others are deleted again.
                        if i.is_multiple_of(3) {
                            kept.push((network, port));
                            continue;
                        }
                        let id = done["firewallrule"]["id"].as_str().expect("id").to_string();
                        let r = a.call("deleteFirewallRule", &[("id", &id)]);
                        let job = r["jobid"].as_str().expect("jobid").to_string();
                        match a.wait_job(&job, Duration::from_secs(60)) {
                            Ok(_) => {
                                changes.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                eprintln!("load: delete of port {port} failed: {e}");
                                kept.push((network, port));
                            }
                        }
                    }
                    kept
                })
            })
            .collect();
        std::thread::sleep(LOAD_FOR);
        stop.store(true, Ordering::SeqCst);
        let mut expected: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();
        for t in threads {
            for (network, port) in t.join().expect("client thread") {
                expected.entry(network).or_default().insert(port);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let done = changes.load(Ordering::SeqCst);
        eprintln!(
            "load: {done} changes by {CLIENTS} clients in {elapsed:.1} s ({:.0}/s), {} failed",
            done as f64 / elapsed,
            failures.load(Ordering::SeqCst)
        );
        assert_eq!(
            failures.load(Ordering::SeqCst),
            0,
            "no job may fail under load"
        );
        assert!(done > 0, "the load made no change");

        // The API's answers: exactly the kept rules, all Active.
        for (i, n) in nets.iter().enumerate() {
            let listed = admin.call(
                "listFirewallRules",
                &[("ipaddressid", &n.ip_id), ("pagesize", "-1")],
            );
            let mut ports = BTreeSet::new();
            for r in listed["firewallrule"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                assert_eq!(r["state"], "Active", "{r}");
                let port = r["startport"].as_u64().expect("port");
                ports.insert(u16::try_from(port).expect("a port"));
            }
            assert_eq!(
                ports,
                expected.get(&i).cloned().unwrap_or_default(),
                "network {i}"
            );
        }
        // The routers: what the database says, generation and content.
        let out = procs::verify_settles(Some(&url), &dir.path().join("srv-a"));
        assert!(out.contains("4 router(s), 0 with differences"), "{out}");
        drop(agents);
        drop(labs);
        drop(servers);
    });
}
