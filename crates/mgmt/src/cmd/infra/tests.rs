//! The handlers of zones, networks, addresses, ranges, VMs and routers, end to end.

/// The handlers end to end on SQLite with the dry-run agent: a network, an address, a VM,
/// the lists, and the deletes, each job run by the real job runner.
mod flow {
    use crate::app::App;
    use crate::testkit::{admin, app, call, on_postgres, try_call, user, wait};
    use domain::actor::Caller;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn networks_addresses_and_vms() {
        let dir = tempfile::tempdir().unwrap();
        flow(&app(dir.path()).await).await;
    }

    /// The same on PostgreSQL: the server `GUESTNET_TEST_POSTGRES_URL` names (the test
    /// command sets it, starting a server if none answers), or the one on 127.0.0.1:5432.
    /// The test creates a database there and drops it; no server is a failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn networks_addresses_and_vms_on_postgres() {
        on_postgres("infra", flow).await;
    }

    async fn flow(app: &App) {
        let app = app.clone();
        let root = admin(&app).await;
        let alice = user(&app, &root, "alice").await;
        let zone = app.site.zone_uuid.clone();

        let zones = call(&app, &alice, "listZones", &[]).await;
        assert_eq!(zones["count"], 1);
        assert_eq!(zones["zone"][0]["networktype"], "Advanced");
        let offerings = call(&app, &alice, "listNetworkOfferings", &[]).await;
        assert_eq!(offerings["count"], 2);
        assert_eq!(
            offerings["networkoffering"][0]["egressdefaultpolicy"],
            false
        );
        assert_eq!(offerings["networkoffering"][1]["egressdefaultpolicy"], true);
        let offering = offerings["networkoffering"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let so = call(&app, &alice, "listServiceOfferings", &[]).await;
        let so = so["serviceoffering"][0]["id"].as_str().unwrap().to_string();
        let t = call(
            &app,
            &alice,
            "listTemplates",
            &[("templatefilter", "executable")],
        )
        .await;
        let template = t["template"][0]["id"].as_str().unwrap().to_string();
        let mine = call(&app, &alice, "listTemplates", &[("templatefilter", "self")]).await;
        assert_eq!(mine, serde_json::json!({}));

        // A network: router implemented, source NAT taken.
        let n = call(
            &app,
            &alice,
            "createNetwork",
            &[
                ("name", "net1"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
            ],
        )
        .await;
        let net = n["network"]["id"].as_str().unwrap().to_string();
        assert_eq!(n["network"]["cidr"], "10.1.0.0/24");
        assert_eq!(n["network"]["state"], "Implemented");
        let n2 = call(
            &app,
            &alice,
            "createNetwork",
            &[
                ("name", "net2"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
            ],
        )
        .await;
        assert_eq!(n2["network"]["cidr"], "10.1.1.0/24");
        // Another account may use the CIDR too.
        call(
            &app,
            &root,
            "createNetwork",
            &[
                ("name", "rootnet"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
                ("gateway", "10.1.0.1"),
                ("netmask", "255.255.255.0"),
            ],
        )
        .await;
        let routers = call(&app, &alice, "listRouters", &[]).await;
        assert_eq!(routers["count"], 2);
        assert_eq!(routers["router"][0]["state"], "Running");
        assert_eq!(routers["router"][0]["enforced"], false);
        assert_eq!(routers["router"][0]["publicip"], "203.0.113.10");
        let all = call(&app, &root, "listRouters", &[("listall", "true")]).await;
        assert_eq!(all["count"], 3);

        // An address.
        let a = call(&app, &alice, "associateIpAddress", &[("networkid", &net)]).await;
        let (status, result) = wait(&app, &a).await;
        assert_eq!(status, 1, "{result}");
        assert_eq!(result["ipaddress"]["ipaddress"], "203.0.113.13");
        assert_eq!(result["ipaddress"]["state"], "Allocated");
        let ips = call(&app, &alice, "listPublicIpAddresses", &[]).await;
        assert_eq!(ips["count"], 3);
        let snat = call(
            &app,
            &alice,
            "listPublicIpAddresses",
            &[("issourcenat", "true")],
        )
        .await;
        assert_eq!(snat["count"], 2);
        let snat_id = snat["publicipaddress"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let refused = try_call(&app, &alice, "disassociateIpAddress", &[("id", &snat_id)])
            .await
            .unwrap_err();
        assert_eq!(refused.code.code(), 431);
        let free = call(
            &app,
            &root,
            "listPublicIpAddresses",
            &[("allocatedonly", "false")],
        )
        .await;
        assert_eq!(
            free["count"],
            241 - 4 + 1,
            "root sees its own and the free ones"
        );
        let hidden = try_call(
            &app,
            &root,
            "disassociateIpAddress",
            &[("id", "00000000-0000-0000-0000-000000000000")],
        )
        .await
        .unwrap_err();
        assert_eq!(hidden.code.code(), 431);

        // A VM.
        let v = call(
            &app,
            &alice,
            "deployVirtualMachine",
            &[
                ("zoneid", &zone),
                ("serviceofferingid", &so),
                ("templateid", &template),
                ("networkids", &net),
                ("name", "web-1"),
            ],
        )
        .await;
        let (status, result) = wait(&app, &v).await;
        assert_eq!(status, 1, "{result}");
        assert_eq!(result["virtualmachine"]["state"], "Running");
        assert_eq!(result["virtualmachine"]["nic"][0]["ipaddress"], "10.1.0.2");
        let dup = try_call(
            &app,
            &root,
            "deployVirtualMachine",
            &[
                ("zoneid", &zone),
                ("serviceofferingid", &so),
                ("templateid", &template),
                ("networkids", n2["network"]["id"].as_str().unwrap()),
                ("name", "web-1"),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(dup.code.code(), 431, "{}", dup.text);
        let vms = call(&app, &alice, "listVirtualMachines", &[]).await;
        assert_eq!(vms["count"], 1);
        let not_root = call(&app, &root, "listVirtualMachines", &[]).await;
        assert_eq!(not_root, serde_json::json!({}));

        // Ranges are the admin's.
        let denied = try_call(&app, &alice, "listVlanIpRanges", &[])
            .await
            .unwrap_err();
        assert_eq!(denied.code.code(), 432);
        let r = call(
            &app,
            &root,
            "createVlanIpRange",
            &[
                ("startip", "198.51.100.10"),
                ("endip", "198.51.100.20"),
                ("gateway", "198.51.100.1"),
                ("netmask", "255.255.255.0"),
            ],
        )
        .await;
        assert_eq!(r["vlan"]["vlan"], "untagged");
        let overlap = try_call(
            &app,
            &root,
            "createVlanIpRange",
            &[("startip", "198.51.100.20"), ("endip", "198.51.100.30")],
        )
        .await
        .unwrap_err();
        assert_eq!(overlap.code.code(), 431);
        let ranges = call(&app, &root, "listVlanIpRanges", &[]).await;
        assert_eq!(ranges["count"], 2);

        // Rules on the address and the VM, then tear down.
        let vm_id = vms["virtualmachine"][0]["id"].as_str().unwrap().to_string();
        let ip_id = result_ip(&app, &alice).await;
        let pf = call(
            &app,
            &alice,
            "createPortForwardingRule",
            &[
                ("ipaddressid", &ip_id),
                ("protocol", "tcp"),
                ("publicport", "2222"),
                ("privateport", "22"),
                ("virtualmachineid", &vm_id),
            ],
        )
        .await;
        assert_eq!(wait(&app, &pf).await.0, 1);
        let fw = call(
            &app,
            &alice,
            "createFirewallRule",
            &[
                ("ipaddressid", &ip_id),
                ("protocol", "tcp"),
                ("startport", "80"),
            ],
        )
        .await;
        assert_eq!(wait(&app, &fw).await.0, 1);
        let eg = call(
            &app,
            &alice,
            "createEgressFirewallRule",
            &[
                ("networkid", &net),
                ("protocol", "tcp"),
                ("startport", "443"),
            ],
        )
        .await;
        assert_eq!(wait(&app, &eg).await.0, 1);
        let fws = call(&app, &alice, "listFirewallRules", &[]).await;
        assert_eq!(fws["count"], 2, "{fws}");
        let ip_now = call(&app, &alice, "listPublicIpAddresses", &[("id", &ip_id)]).await;
        assert_eq!(ip_now["publicipaddress"][0]["hasrules"], true);

        let d = call(&app, &alice, "destroyVirtualMachine", &[("id", &vm_id)]).await;
        let (status, result) = wait(&app, &d).await;
        assert_eq!(status, 1, "{result}");
        assert_eq!(result["virtualmachine"]["state"], "Destroyed");
        let pfs = call(&app, &alice, "listPortForwardingRules", &[]).await;
        assert_eq!(pfs, serde_json::json!({}));
        let fws = call(&app, &alice, "listFirewallRules", &[]).await;
        assert_eq!(
            fws["count"], 1,
            "the opened rule went with its forward: {fws}"
        );
        let rel = call(&app, &alice, "disassociateIpAddress", &[("id", &ip_id)]).await;
        assert_eq!(wait(&app, &rel).await.0, 1);
        let fws = call(&app, &alice, "listFirewallRules", &[]).await;
        assert_eq!(fws, serde_json::json!({}));
        let del = call(&app, &alice, "deleteNetwork", &[("id", &net)]).await;
        let (status, result) = wait(&app, &del).await;
        assert_eq!(status, 1, "{result}");
        let left = call(&app, &alice, "listNetworks", &[]).await;
        assert_eq!(left["count"], 1);
        let ips = call(&app, &alice, "listPublicIpAddresses", &[]).await;
        assert_eq!(ips["count"], 1);
        let rules = store::filter::count(&app.db, "rules", &store::filter::Filter::new())
            .await
            .unwrap();
        assert_eq!(rules, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_checks_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let zone = app.site.zone_uuid.clone();
        let offerings = call(&app, &root, "listNetworkOfferings", &[]).await;
        let offering = offerings["networkoffering"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for (gw, mask) in [
            ("10.1.0.0", "255.255.255.0"),
            ("10.1.0.1", "255.0.255.0"),
            ("8.8.8.1", "255.255.255.0"),
            ("203.0.113.1", "255.255.255.0"),
        ] {
            let e = try_call(
                &app,
                &root,
                "createNetwork",
                &[
                    ("name", "bad"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                    ("gateway", gw),
                    ("netmask", mask),
                ],
            )
            .await
            .unwrap_err();
            assert_eq!(e.code.code(), 431, "{gw}/{mask}: {}", e.text);
        }
        // Exhaust the public addresses: the next network gets 533 and leaves no row.
        store::testing::allocate_every_public_ip(&app.db)
            .await
            .unwrap();
        let e = try_call(
            &app,
            &root,
            "createNetwork",
            &[
                ("name", "n"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(e.code.code(), 533);
        let n = store::filter::count(&app.db, "networks", &store::filter::Filter::new())
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Two networks of one account on one CIDR, as CloudStack gives every isolated network
    /// 10.1.1.0/24: both implemented, each with its own router, and a VM on each at the same
    /// address.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_may_give_two_networks_one_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let alice = user(&app, &root, "alice").await;
        let zone = app.site.zone_uuid.clone();
        let offerings = call(&app, &alice, "listNetworkOfferings", &[]).await;
        let offering = offerings["networkoffering"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let so = call(&app, &alice, "listServiceOfferings", &[]).await;
        let so = so["serviceoffering"][0]["id"].as_str().unwrap().to_string();
        let t = call(
            &app,
            &alice,
            "listTemplates",
            &[("templatefilter", "executable")],
        )
        .await;
        let template = t["template"][0]["id"].as_str().unwrap().to_string();
        let mut nets = Vec::new();
        for name in ["first", "second"] {
            let n = call(
                &app,
                &alice,
                "createNetwork",
                &[
                    ("name", name),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                    ("gateway", "10.1.1.1"),
                    ("netmask", "255.255.255.0"),
                ],
            )
            .await;
            assert_eq!(n["network"]["cidr"], "10.1.1.0/24");
            assert_eq!(n["network"]["state"], "Implemented");
            nets.push(n["network"]["id"].as_str().unwrap().to_string());
        }
        assert_ne!(nets[0], nets[1]);
        for (i, net) in nets.iter().enumerate() {
            let v = call(
                &app,
                &alice,
                "deployVirtualMachine",
                &[
                    ("zoneid", &zone),
                    ("serviceofferingid", &so),
                    ("templateid", &template),
                    ("networkids", net),
                    ("name", &format!("web-{i}")),
                    ("ipaddress", "10.1.1.11"),
                ],
            )
            .await;
            let (status, result) = wait(&app, &v).await;
            assert_eq!(status, 1, "{result}");
            assert_eq!(result["virtualmachine"]["nic"][0]["ipaddress"], "10.1.1.11");
            assert_eq!(result["virtualmachine"]["nic"][0]["networkid"], *net);
        }
        let routers = call(&app, &alice, "listRouters", &[]).await;
        assert_eq!(routers["count"], 2);
        for r in routers["router"].as_array().unwrap() {
            assert_eq!(r["state"], "Running", "{r}");
        }
    }

    async fn result_ip(app: &App, alice: &Caller) -> String {
        let ips = call(
            app,
            alice,
            "listPublicIpAddresses",
            &[("issourcenat", "false")],
        )
        .await;
        assert_eq!(ips["count"], 1);
        ips["publicipaddress"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
