//! The job runner with a router that refuses one job's change: pending jobs share generations,
//! a refused batch is retried without its newest jobs, the refused job alone fails with 530
//! and the router's reason, and every other job succeeds. Nothing is lost. And with a router
//! that does not answer in time: its job fails with that reason, and the next apply catches
//! up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use router_config::RouterConfig;
use serde_json::Value;

use crate::testkit::{admin, app_with, app_with_timeout, call, settle, try_call, wait};
use agent::driver::Driver;

/// The port whose firewall rule the test router refuses.
const REFUSED: u32 = 6666;

fn refuse_port(cfg: &RouterConfig) -> Option<String> {
    cfg.firewall_rules
        .iter()
        .any(|r| r.ports.is_some_and(|p| p.start == REFUSED))
        .then(|| format!("test router: port {REFUSED} is refused"))
}

/// A network (its uuid) and its source-NAT address (the address's uuid).
async fn network_and_ip(app: &crate::app::App, root: &domain::actor::Caller) -> (String, String) {
    let zone = app.site.zone_uuid.clone();
    let offerings = call(app, root, "listNetworkOfferings", &[]).await;
    let offering = offerings["networkoffering"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let net = call(
        app,
        root,
        "createNetwork",
        &[
            ("name", "n"),
            ("displaytext", "n"),
            ("networkofferingid", &offering),
            ("zoneid", &zone),
        ],
    )
    .await;
    let network = net["network"]["id"].as_str().unwrap().to_string();
    let ips = call(
        app,
        root,
        "listPublicIpAddresses",
        &[("associatednetworkid", &network)],
    )
    .await;
    let ip = ips["publicipaddress"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (network, ip)
}

async fn generations(app: &crate::app::App, network: &str) -> (i64, i64) {
    store::testing::router_generations(&app.db, network)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_fails_alone_and_the_others_share_generations() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(
        dir.path(),
        Driver::dry_run_refusing(dir.path(), refuse_port),
    )
    .await;
    let root = admin(&app).await;
    let (network, ip) = network_and_ip(&app, &root).await;
    let before = generations(&app, &network).await;

    // Six creations while the runner is held, the refused one in the middle.
    app.doorbell.hold();
    let mut jobs: Vec<(u32, Value)> = Vec::new();
    for port in [6661, 6662, REFUSED, 6663, 6664, 6665] {
        let port_s = port.to_string();
        let job = call(
            &app,
            &root,
            "createFirewallRule",
            &[
                ("ipaddressid", &ip),
                ("protocol", "tcp"),
                ("startport", &port_s),
            ],
        )
        .await;
        jobs.push((port, job));
    }
    app.doorbell.release();

    for (port, job) in &jobs {
        let (status, result) = wait(&app, job).await;
        if *port == REFUSED {
            assert_eq!(status, 2, "{result}");
            assert_eq!(result["errorcode"], 530, "{result}");
            let text = result["errortext"].as_str().unwrap();
            assert!(
                text.starts_with("Failed to create firewall rule: "),
                "{text}"
            );
            assert!(text.contains("port 6666 is refused"), "{text}");
        } else {
            assert_eq!(status, 1, "port {port}: {result}");
            assert_eq!(result["firewallrule"]["state"], "Active", "{result}");
        }
    }
    // The refused rule is gone; the others are Active.
    let listed = call(&app, &root, "listFirewallRules", &[("ipaddressid", &ip)]).await;
    let mut ports: Vec<i64> = listed["firewallrule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["startport"].as_i64().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, vec![6661, 6662, 6663, 6664, 6665]);

    // Attempts, newest job dropped first: [all six] [five] [four] [three] refused, [6661 6662]
    // applied; then [6666 6663 6664 6665] [three] [two] refused, [6666] refused alone (failed);
    // then [6663 6664 6665] applied. Ten generations tried, two applied, carrying five jobs.
    let after = generations(&app, &network).await;
    assert_eq!(
        after.0 - before.0,
        10,
        "generations tried: {before:?} -> {after:?}"
    );
    let file = dir
        .path()
        .join("dry-run")
        .join(listed_router(&app, &network).await)
        .join("config.json");
    let written: RouterConfig = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(i64::try_from(written.generation).unwrap(), after.1);
    assert_eq!(written.firewall_rules.len(), 5);
    // Nothing stays pending.
    let pending = store::testing::job_count(&app.db, domain::job::JobStatus::Pending)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

async fn listed_router(app: &crate::app::App, network: &str) -> String {
    store::testing::network_router(&app.db, network)
        .await
        .unwrap()
        .1
}

/// The port whose first apply the stalling test router sits on.
const STALLED: u32 = 7777;

static STALL: AtomicBool = AtomicBool::new(true);

/// Sits on the first config that opens port 7777 for longer than the apply timeout, then
/// applies it as usual (late): the router that does not answer in time.
fn stall_once(cfg: &RouterConfig) -> Option<String> {
    let opens = cfg
        .firewall_rules
        .iter()
        .any(|r| r.ports.is_some_and(|p| p.start == STALLED));
    if opens && STALL.swap(false, Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(900));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_does_not_answer_fails_its_job_and_the_next_apply_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_timeout(
        dir.path(),
        Driver::dry_run_refusing(dir.path(), stall_once),
        Duration::from_millis(300),
    )
    .await;
    let root = admin(&app).await;
    let (network, ip) = network_and_ip(&app, &root).await;
    let rule = |port: u32| {
        let port = port.to_string();
        let ip = ip.clone();
        let app = app.clone();
        let root = root.clone();
        async move {
            call(
                &app,
                &root,
                "createFirewallRule",
                &[
                    ("ipaddressid", ip.as_str()),
                    ("protocol", "tcp"),
                    ("startport", port.as_str()),
                    ("endport", port.as_str()),
                ],
            )
            .await
        }
    };

    // The router sits on the config: the job fails with the timeout as its reason.
    let (status, result) = wait(&app, &rule(STALLED).await).await;
    assert_eq!(status, 2, "{result}");
    assert_eq!(result["errorcode"], 530, "{result}");
    let text = result["errortext"].as_str().unwrap();
    assert!(text.contains("did not answer within 0.3 s"), "{text}");
    let listed = call(&app, &root, "listFirewallRules", &[("ipaddressid", &ip)]).await;
    assert!(listed.get("firewallrule").is_none(), "{listed}");

    // The router answers again: the runner sends it the config without the failed rule, and
    // the database and the router agree on the generation.
    let router = listed_router(&app, &network).await;
    let file = dir.path().join("dry-run").join(&router).join("config.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (desired, applied) = generations(&app, &network).await;
        let last_error = store::testing::router_last_error(&app.db, &router)
            .await
            .unwrap();
        let written: RouterConfig = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        if last_error.is_none()
            && desired == applied
            && i64::try_from(written.generation).unwrap() == applied
        {
            assert!(written.firewall_rules.is_empty(), "{written:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the router never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // And takes the next job as usual.
    let (status, result) = wait(&app, &rule(7778).await).await;
    assert_eq!(status, 1, "{result}");
    let written: RouterConfig = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written.firewall_rules.len(), 1);
}

/// A server restarted with a backlog of pending jobs takes them while clients race writes at it
/// (some clashing, some reading before they write, some given up half-way as an impatient
/// client does): every request is answered as accepted or refused for its parameters, none
/// with "database is locked" (530). Four restarts, each with its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_backlog_fails_no_concurrent_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = crate::testkit::app(dir.path()).await;
    let root = admin(&app).await;
    let (network, ip) = network_and_ip(&app, &root).await;
    let (mut accepted, mut refused, mut abandoned, mut backlogged) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for round in 0..4u32 {
        // The backlog: rules accepted while the runner is held, left pending by the stop.
        app.doorbell.hold();
        let mut backlog = Vec::new();
        for port in round * 200 + 1..=round * 200 + 150 {
            let port = port.to_string();
            let v = call(
                &app,
                &root,
                "createFirewallRule",
                &[
                    ("ipaddressid", &ip),
                    ("protocol", "tcp"),
                    ("startport", &port),
                ],
            )
            .await;
            backlog.push(v["id"].as_str().unwrap().to_string());
        }
        backlogged += backlog.len();
        app.db.pool().close().await;
        drop(app);

        // The restart: the runner takes the backlog while the requests come.
        app = crate::testkit::app(dir.path()).await;
        crate::runner::start(&app.doorbell, crate::runner::host_channel().1).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..120usize {
            let (app, root, ip, network) = (app.clone(), root.clone(), ip.clone(), network.clone());
            let victim = backlog[i % backlog.len()].clone();
            let port = (10_000 + round as usize * 100 + i % 30).to_string();
            tasks.spawn(async move {
                let request = async {
                    match i % 4 {
                        // Half of these clash with an earlier one: refused after the job's
                        // rows were written, so their transaction is rolled back.
                        0 => try_call(
                            &app,
                            &root,
                            "createFirewallRule",
                            &[
                                ("ipaddressid", &ip),
                                ("protocol", "tcp"),
                                ("startport", &port),
                            ],
                        )
                        .await
                        .map(|_| ()),
                        1 => try_call(&app, &root, "deleteFirewallRule", &[("id", &victim)])
                            .await
                            .map(|_| ()),
                        // A transaction that reads (a free address) before it writes.
                        2 => try_call(
                            &app,
                            &root,
                            "associateIpAddress",
                            &[("networkid", &network)],
                        )
                        .await
                        .map(|_| ()),
                        _ => try_call(
                            &app,
                            &root,
                            "createEgressFirewallRule",
                            &[
                                ("networkid", &network),
                                ("protocol", "udp"),
                                ("startport", &port),
                            ],
                        )
                        .await
                        .map(|_| ()),
                    }
                };
                if i % 10 == 9 {
                    // A client that gives up: the request is dropped wherever it is.
                    let _ = tokio::time::timeout(Duration::from_micros(300), request).await;
                    return None;
                }
                Some(request.await)
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                None => abandoned += 1,
                Some(Ok(())) => accepted += 1,
                Some(Err(e)) if matches!(e.code.code(), 431 | 537) => refused += 1,
                Some(Err(e)) => {
                    failures.push(format!("round {round}: {} {}", e.code.code(), e.text))
                }
            }
        }
        // The backlog and the new jobs all end.
        settle(&app, Duration::from_secs(60)).await;
    }
    println!(
        "4 restarts with a backlog ({backlogged} jobs in all): {accepted} requests accepted, \
         {refused} refused, {abandoned} abandoned, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
