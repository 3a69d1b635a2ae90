//! What a network's router is told about its guests: the zone's DNS servers, the network's
//! DNS domain and a static lease per VM NIC, which reaches the router in the deploy's own
//! generation (before the VM starts) and leaves it with the VM; and the VLANs racing creates
//! take.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use router_config::RouterConfig;
use serde_json::Value;

use crate::app::App;
use crate::testkit::{admin, app_on, app_with, call, on_postgres, try_call, wait};
use agent::driver::Driver;
use domain::actor::Caller;

async fn offering(app: &App, root: &Caller) -> String {
    let offerings = call(app, root, "listNetworkOfferings", &[]).await;
    offerings["networkoffering"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn network(app: &App, root: &Caller, name: &str, domain: Option<&str>) -> Value {
    let zone = app.site.zone_uuid.clone();
    let offering = offering(app, root).await;
    let mut args = vec![
        ("name", name),
        ("displaytext", name),
        ("networkofferingid", offering.as_str()),
        ("zoneid", zone.as_str()),
    ];
    if let Some(d) = domain {
        args.push(("networkdomain", d));
    }
    call(app, root, "createNetwork", &args).await["network"].clone()
}

/// The config the dry-run router of `network` holds.
async fn held_config(app: &App, dir: &std::path::Path, network: &str) -> RouterConfig {
    let routers = call(
        app,
        &admin(app).await,
        "listRouters",
        &[("networkid", network), ("listall", "true")],
    )
    .await;
    let name = routers["router"][0]["name"].as_str().unwrap().to_string();
    let file = dir.join("dry-run").join(name).join("config.json");
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

async fn deploy(app: &App, root: &Caller, network: &str, name: &str, mac: &str) -> (i64, Value) {
    let zone = app.site.zone_uuid.clone();
    let so = call(app, root, "listServiceOfferings", &[]).await["serviceoffering"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let template = call(
        app,
        root,
        "listTemplates",
        &[("templatefilter", "featured")],
    )
    .await["template"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = call(
        app,
        root,
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            ("serviceofferingid", &so),
            ("templateid", &template),
            ("networkids", network),
            ("name", name),
            ("macaddress", mac),
        ],
    )
    .await;
    wait(app, &job).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_puts_the_lease_and_the_zones_dns_in_the_router_config_and_destroy_takes_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), Driver::dry_run(dir.path())).await;
    let root = admin(&app).await;
    call(
        &app,
        &root,
        "updateZone",
        &[
            ("id", &app.site.zone_uuid),
            ("dns1", "192.0.2.53"),
            ("dns2", "198.51.100.53"),
        ],
    )
    .await;
    let net = network(&app, &root, "leases", Some("lab.example.org")).await;
    let net_id = net["id"].as_str().unwrap().to_string();
    assert_eq!(net["vlan"], "100", "{net}");
    assert_eq!(net["broadcasturi"], "vlan://100", "{net}");

    let empty = held_config(&app, dir.path(), &net_id).await;
    let dhcp = empty.dhcp.expect("the router serves DHCP and DNS");
    assert_eq!(
        dhcp.dns_servers,
        [
            Ipv4Addr::new(192, 0, 2, 53),
            Ipv4Addr::new(198, 51, 100, 53)
        ]
    );
    assert_eq!(dhcp.domain.as_deref(), Some("lab.example.org"));
    assert!(dhcp.leases.is_empty());

    // The deploy is one generation, which carries the lease; the VM runs after it.
    let before = store::testing::router_generations(&app.db, &net_id)
        .await
        .unwrap();
    let (status, result) = deploy(&app, &root, &net_id, "web1", "0a:00:00:00:00:01").await;
    assert_eq!(status, 1, "{result}");
    let after = store::testing::router_generations(&app.db, &net_id)
        .await
        .unwrap();
    assert_eq!(after.1, before.1 + 1, "{before:?} -> {after:?}");
    let vm = &result["virtualmachine"];
    assert_eq!(vm["state"], "Running", "{vm}");
    assert_eq!(vm["nic"][0]["macaddress"], "0a:00:00:00:00:01", "{vm}");
    let ip: Ipv4Addr = vm["nic"][0]["ipaddress"].as_str().unwrap().parse().unwrap();
    let held = held_config(&app, dir.path(), &net_id).await;
    assert_eq!(i64::try_from(held.generation).unwrap(), after.1);
    let leases = held.dhcp.unwrap().leases;
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].mac.to_string(), "0a:00:00:00:00:01");
    assert_eq!(leases[0].ip, ip);
    assert_eq!(leases[0].hostname, "web1");

    // A DNS change reaches the router without any change of the network.
    call(
        &app,
        &root,
        "updateZone",
        &[
            ("id", &app.site.zone_uuid),
            ("dns1", "203.0.113.53"),
            ("dns2", ""),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let cfg = held_config(&app, dir.path(), &net_id).await;
        if cfg.dhcp.as_ref().unwrap().dns_servers == [Ipv4Addr::new(203, 0, 113, 53)] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the router never got the new DNS servers: {:?}",
            cfg.dhcp
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let vm_id = vm["id"].as_str().unwrap().to_string();
    let job = call(&app, &root, "destroyVirtualMachine", &[("id", &vm_id)]).await;
    let (status, result) = wait(&app, &job).await;
    assert_eq!(status, 1, "{result}");
    let held = held_config(&app, dir.path(), &net_id).await;
    assert!(held.dhcp.unwrap().leases.is_empty());
}

/// Creates `n` networks at once; every one gets its own VLAN, the lowest ones of the range.
async fn racing_creates(app: &App, n: usize) {
    let root = admin(app).await;
    let offering = offering(app, &root).await;
    let zone = app.site.zone_uuid.clone();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (app, root, offering, zone) =
            (app.clone(), root.clone(), offering.clone(), zone.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("race{i}");
            try_call(
                &app,
                &root,
                "createNetwork",
                &[
                    ("name", &name),
                    ("displaytext", &name),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                ],
            )
            .await
        }));
    }
    let mut vlans = BTreeSet::new();
    for t in tasks {
        let net = t.await.unwrap().expect("every create succeeds");
        let vlan: u16 = net["network"]["vlan"].as_str().unwrap().parse().unwrap();
        assert!(vlans.insert(vlan), "VLAN {vlan} given twice");
    }
    let expected: BTreeSet<u16> = (100..100 + u16::try_from(n).unwrap()).collect();
    assert_eq!(vlans, expected);
    println!("{n} racing creates took VLANs {vlans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_get_distinct_vlans() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_on(
        dir.path(),
        &format!("sqlite://{}", dir.path().join("t.db").display()),
    )
    .await;
    racing_creates(&app, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_get_distinct_vlans_on_postgres() {
    on_postgres("vlans", async |app: &App| racing_creates(app, 12).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_registered_from_a_file_is_listed_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(dir.path(), Driver::dry_run(dir.path())).await;
    let root = admin(&app).await;
    let image = dir.path().join("guest.qcow2");
    std::fs::write(&image, b"not really an image").unwrap();
    let url = format!("file://{}", image.display());
    let registered = call(
        &app,
        &root,
        "registerTemplate",
        &[("name", "guest"), ("url", &url), ("format", "qcow2")],
    )
    .await;
    let t = &registered["template"][0];
    assert_eq!(t["format"], "QCOW2", "{registered}");
    assert_eq!(t["templatetype"], "USER", "{registered}");
    let again = try_call(
        &app,
        &root,
        "registerTemplate",
        &[("name", "guest"), ("url", &url), ("format", "RAW")],
    )
    .await
    .unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    let bad = try_call(
        &app,
        &root,
        "registerTemplate",
        &[("name", "other"), ("url", &url), ("format", "VHD")],
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("QCOW2 or RAW"), "{bad}");
    let dir_url = format!("file://{}", dir.path().display());
    let not_file = try_call(
        &app,
        &root,
        "registerTemplate",
        &[("name", "other"), ("url", &dir_url), ("format", "RAW")],
    )
    .await
    .unwrap_err();
    assert!(
        not_file.to_string().contains("not a readable regular file"),
        "{not_file}"
    );
    let listed = call(
        &app,
        &root,
        "listTemplates",
        &[("templatefilter", "featured"), ("name", "guest")],
    )
    .await;
    assert_eq!(listed["template"][0]["id"], t["id"], "{listed}");
}
