//! The dry-run driver answers as a real router does: older generations are superseded, the
//! same config again is a repeat, a generation is never reused with other content (also across
//! a restart of the agent), and a refusal burns its generation. Nothing here needs root.

use std::path::Path;

use agent::driver::{Applied, DeltaFailure, Driver, DriverError};
use router_config::{DeltaError, RouterConfig, RouterDelta};
use serde_json::{json, Value};
use vrouterd::ApplyError;

const ROUTER: &str = "r-1-VM";

/// A config whose ingress rules open `ports` (tcp, from anywhere) on the public IP.
fn config(generation: u64, ports: &[u16]) -> RouterConfig {
    let rules: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({ "id": i + 1, "public_ip": "203.0.113.11", "protocol": "tcp",
                    "ports": { "start": p, "end": p }, "source_cidrs": ["0.0.0.0/0"] })
        })
        .collect();
    serde_json::from_value(json!({
        "schema": 1,
        "generation": generation,
        "public": {
            "interface": "pub0",
            "addresses": [
                { "ip": "203.0.113.10", "prefix_len": 24, "source_nat": true },
                { "ip": "203.0.113.11", "prefix_len": 24 }
            ],
            "gateway": "203.0.113.1"
        },
        "guest": { "interface": "guest0", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1" },
        "egress_default": "deny",
        "firewall_rules": rules,
        "egress_rules": [],
        "port_forwards": []
    }))
    .expect("tests build well-formed documents")
}

async fn driver_with_router(dir: &Path) -> Driver {
    let d = Driver::dry_run(dir);
    d.ensure_router(
        ROUTER,
        "10.1.1.0/24".parse().expect("a CIDR"),
        "10.1.1.1".parse().expect("an address"),
        None,
    )
    .await
    .expect("a dry-run router is made");
    d
}

/// The config dry-run wrote out for the router.
fn written(dir: &Path) -> RouterConfig {
    let path = dir.join("dry-run").join(ROUTER).join("config.json");
    serde_json::from_slice(&std::fs::read(path).expect("config.json written"))
        .expect("config.json is a config")
}

#[tokio::test]
async fn dry_run_supersedes_repeats_and_refuses_a_reused_generation() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver_with_router(dir.path()).await;
    assert_eq!(
        d.apply(ROUTER, config(5, &[80])).await.unwrap(),
        Applied::Generation(5)
    );
    assert_eq!(written(dir.path()).generation, 5);
    let rendered = dir.path().join("dry-run").join(ROUTER).join("ruleset.nft");
    assert!(std::fs::read_to_string(&rendered)
        .unwrap()
        .contains("table ip"));

    assert_eq!(
        d.apply(ROUTER, config(4, &[443])).await.unwrap(),
        Applied::Superseded(5)
    );
    assert_eq!(
        d.apply(ROUTER, config(5, &[80])).await.unwrap(),
        Applied::Generation(5)
    );
    let err = d.apply(ROUTER, config(5, &[80, 443])).await.unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Apply(ApplyError::GenerationReused {
                generation: 5,
                applied: 5
            })
        ),
        "{err:?}"
    );
    // What an agent sends its server: the router's own words, nothing added.
    assert!(
        err.chain()
            .starts_with("generation 5 was already used by a different config"),
        "{}",
        err.chain()
    );
    assert_eq!(written(dir.path()).firewall_rules.len(), 1);

    let status = d.status(ROUTER).await.unwrap();
    assert_eq!(status.generation, Some(5));
    assert_eq!(status.drift, None);
    assert_eq!(status.config.map(|c| c.firewall_rules.len()), Some(1));
}

fn refuse_6666(cfg: &RouterConfig) -> Option<String> {
    cfg.firewall_rules
        .iter()
        .any(|r| r.ports.is_some_and(|p| p.start == 6666))
        .then(|| "test router: port 6666 is refused".to_string())
}

#[tokio::test]
async fn a_refusal_burns_its_generation_and_keeps_what_the_router_held() {
    let dir = tempfile::tempdir().unwrap();
    let d = Driver::dry_run_refusing(dir.path(), refuse_6666);
    assert_eq!(
        d.apply(ROUTER, config(1, &[80])).await.unwrap(),
        Applied::Generation(1)
    );
    let err = d.apply(ROUTER, config(2, &[80, 6666])).await.unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Apply(ApplyError::Kernel { generation: 2, .. })
        ),
        "{err:?}"
    );
    assert!(
        err.chain().contains("port 6666 is refused"),
        "{}",
        err.chain()
    );
    assert_eq!(d.held(ROUTER).await, Some(1));
    assert_eq!(written(dir.path()).generation, 1);
    // The number is spent, as on a real router.
    let err = d.apply(ROUTER, config(2, &[80])).await.unwrap_err();
    assert!(
        err.chain().contains("generation 2 was already used"),
        "{}",
        err.chain()
    );
    assert_eq!(
        d.apply(ROUTER, config(3, &[80, 443])).await.unwrap(),
        Applied::Generation(3)
    );
    // Through a delta too.
    let delta = RouterDelta::between(&config(3, &[80, 443]), &config(4, &[80, 443, 6666]));
    match d.apply_delta(ROUTER, delta).await {
        Err(DeltaFailure::Refused(e)) => {
            assert!(e.chain().contains("port 6666 is refused"), "{}", e.chain())
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    assert_eq!(d.held(ROUTER).await, Some(3));
}

#[tokio::test]
async fn a_delta_needs_the_generation_the_router_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver_with_router(dir.path()).await;
    let first = RouterDelta::between(&config(1, &[80]), &config(2, &[80, 443]));
    assert!(matches!(
        d.apply_delta(ROUTER, first.clone()).await,
        Err(DeltaFailure::Stale { .. })
    ));
    d.apply(ROUTER, config(1, &[80])).await.unwrap();
    assert_eq!(
        d.apply_delta(ROUTER, first).await.unwrap(),
        Applied::Generation(2)
    );
    assert_eq!(written(dir.path()).firewall_rules.len(), 2);
    let behind = RouterDelta::between(&config(1, &[80]), &config(3, &[22]));
    let stale = d.apply_delta(ROUTER, behind).await.unwrap_err();
    assert!(
        matches!(
            stale,
            DeltaFailure::Stale {
                base: 1,
                source: DeltaError::BaseMismatch { base: 1, held: 2 }
            }
        ),
        "{stale:?}"
    );
    // What an agent sends its server when it needs the complete config.
    assert_eq!(
        vrouterd::chain(&stale),
        "router holds another generation than the delta's base 1: \
         delta is against generation 1 but the router holds generation 2"
    );
    assert_eq!(d.held(ROUTER).await, Some(2));
}

#[tokio::test]
async fn a_restarted_dry_run_agent_keeps_its_routers_generations() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver_with_router(dir.path()).await;
    d.apply(ROUTER, config(7, &[80])).await.unwrap();
    drop(d);

    let d = Driver::dry_run(dir.path());
    assert_eq!(d.held(ROUTER).await, Some(7));
    let status = d.status(ROUTER).await.unwrap();
    assert_eq!((status.generation, status.drift), (Some(7), None));
    let err = d.apply(ROUTER, config(7, &[443])).await.unwrap_err();
    assert!(
        err.chain().contains("generation 7 was already used"),
        "{}",
        err.chain()
    );
    assert_eq!(
        d.apply(ROUTER, config(6, &[443])).await.unwrap(),
        Applied::Superseded(7)
    );

    // A removed router's ledger goes with it: a router made again under the name starts anew.
    d.remove_router(ROUTER).await.unwrap();
    assert_eq!(d.held(ROUTER).await, None);
    assert_eq!(
        d.apply(ROUTER, config(1, &[22])).await.unwrap(),
        Applied::Generation(1)
    );
}

/// Dry-run writes dnsmasq's files beside the ruleset while the config serves DHCP, and removes
/// them when it stops.
#[tokio::test]
async fn dry_run_writes_dnsmasqs_files_while_the_router_serves_dhcp() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver_with_router(dir.path()).await;
    let mut cfg = config(1, &[80]);
    cfg.dhcp = Some(router_config::DhcpService {
        dns_servers: vec!["192.0.2.53".parse().unwrap()],
        domain: Some("cs2cloud.internal".into()),
        leases: vec![router_config::DhcpLease {
            mac: "02:00:5e:10:00:0b".parse().unwrap(),
            ip: "10.1.1.11".parse().unwrap(),
            hostname: "web1".into(),
        }],
    });
    d.apply(ROUTER, cfg.clone()).await.unwrap();
    let files = dir.path().join("dry-run").join(ROUTER).join("dnsmasq");
    let read = |name: &str| std::fs::read_to_string(files.join(name)).unwrap();
    assert!(
        read("dnsmasq.conf").contains("server=192.0.2.53"),
        "{}",
        read("dnsmasq.conf")
    );
    assert!(
        read("dhcp-hosts").contains("02:00:5e:10:00:0b,10.1.1.11,web1"),
        "{}",
        read("dhcp-hosts")
    );
    assert!(
        read("dns-hosts").contains("10.1.1.11"),
        "{}",
        read("dns-hosts")
    );
    assert!(!files.join(".dnsmasq.conf.tmp").exists());

    cfg.generation = 2;
    cfg.dhcp = None;
    d.apply(ROUTER, cfg).await.unwrap();
    assert!(!files.exists(), "dnsmasq's files outlived the service");
}
