//! Resource limits end to end, through the real dispatcher on SQLite and PostgreSQL with the
//! dry-run agent: a tenant taking shared resources is stopped at its limits (and its
//! domains'), the admin is not, and concurrent takers never get past a limit.

use api_types::error::ApiError;
use serde_json::Value;

use crate::app::App;
use crate::testkit::{admin, app, app_on, call, on_postgres, postgres_database, try_call};
use domain::actor::Caller;
use store::db::Db;

/// A domain made directly in the database (guestnet has no createDomain).
struct Dom {
    id: i64,
    uuid: String,
    name: String,
    path: String,
}

fn root_domain(root: &Caller) -> Dom {
    Dom {
        id: root.domain_id,
        uuid: root.domain_uuid.clone(),
        name: root.domain_name.clone(),
        path: root.domain_path.clone(),
    }
}

async fn subdomain(app: &App, parent: &Dom, name: &str) -> Dom {
    let path = format!("{}/{name}", parent.path);
    let (id, uuid) = store::testing::add_subdomain(&app.db, parent.id, name, &path)
        .await
        .unwrap();
    Dom {
        id,
        uuid,
        name: name.to_string(),
        path,
    }
}

/// A user account made through createAccount in `domain`, as a caller.
async fn tenant(app: &App, root: &Caller, name: &str, domain: &Dom) -> Caller {
    let answer = call(
        app,
        root,
        "createAccount",
        &[
            ("username", name),
            ("password", "Tenant-passw0rd"),
            ("email", "tenant@example.org"),
            ("firstname", "Ten"),
            ("lastname", name),
            ("domainid", &domain.uuid),
        ],
    )
    .await;
    let ids = store::testing::user_ids(&app.db, name).await.unwrap();
    assert_eq!(answer["account"]["name"], name);
    Caller {
        user_id: ids.user_id,
        user_uuid: ids.user_uuid,
        account_id: ids.account_id,
        account_uuid: ids.account_uuid,
        account_name: name.to_string(),
        domain_id: domain.id,
        domain_uuid: domain.uuid.clone(),
        domain_name: domain.name.clone(),
        domain_path: domain.path.clone(),
        admin: false,
    }
}

async fn offering(app: &App, who: &Caller) -> String {
    let o = call(app, who, "listNetworkOfferings", &[]).await;
    o["networkoffering"][0]["id"].as_str().unwrap().to_string()
}

async fn network(app: &App, who: &Caller, name: &str) -> Result<String, ApiError> {
    let offering = offering(app, who).await;
    let zone = app.site.zone_uuid.clone();
    let n = try_call(
        app,
        who,
        "createNetwork",
        &[
            ("name", name),
            ("networkofferingid", &offering),
            ("zoneid", &zone),
        ],
    )
    .await?;
    Ok(n["network"]["id"].as_str().unwrap().to_string())
}

async fn associate(app: &App, who: &Caller, net: &str) -> Result<String, ApiError> {
    let a = try_call(app, who, "associateIpAddress", &[("networkid", net)]).await?;
    Ok(a["id"].as_str().unwrap().to_string())
}

async fn deploy(app: &App, who: &Caller, net: &str, name: &str) -> Result<String, ApiError> {
    let so = call(app, who, "listServiceOfferings", &[]).await;
    let so = so["serviceoffering"][0]["id"].as_str().unwrap().to_string();
    let t = call(
        app,
        who,
        "listTemplates",
        &[("templatefilter", "executable")],
    )
    .await;
    let template = t["template"][0]["id"].as_str().unwrap().to_string();
    let zone = app.site.zone_uuid.clone();
    let vm = try_call(
        app,
        who,
        "deployVirtualMachine",
        &[
            ("zoneid", &zone),
            ("serviceofferingid", &so),
            ("templateid", &template),
            ("networkids", net),
            ("name", name),
        ],
    )
    .await?;
    Ok(vm["id"].as_str().unwrap().to_string())
}

async fn set_limit(app: &App, root: &Caller, args: &[(&str, &str)]) -> Value {
    call(app, root, "updateResourceLimit", args).await
}

/// What the account holds of public IPs, as the database says.
async fn ips_held(app: &App, account_id: i64) -> i64 {
    store::testing::public_ips_held(&app.db, account_id)
        .await
        .unwrap()
}

/// Arguments of a refused request, the code it gets, and words its text has.
type Refusal<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);

fn assert_exceeded(e: &ApiError, text: &str) {
    assert_eq!(e.code.code(), 535, "{}", e.text);
    assert_eq!(e.cs_code.map(|c| c.code()), Some(4370), "{}", e.text);
    assert!(e.text.contains(text), "{text:?} not in {:?}", e.text);
    assert!(e.text.ends_with("has been exceeded."), "{}", e.text);
}

// ------------------------------------------------------------------------------------------
// One tenant cannot take what everyone shares.

/// Without limits one ordinary account could take every free public address, after which the
/// admin's associateIpAddress and createNetwork failed with 533. With CloudStack's default
/// limit the tenant is refused (535) at 20 addresses, its network's source-NAT address
/// included, and the admin still gets an address and a network.
async fn tenant_cannot_starve_the_admin(app: &App) {
    let root = admin(app).await;
    let t = tenant(app, &root, "greedy", &root_domain(&root)).await;
    let net = network(app, &t, "greedy-net").await.unwrap();
    let mut taken = 1; // the network's source-NAT address
    let refusal = loop {
        match associate(app, &t, &net).await {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
        assert!(
            taken <= 20,
            "the tenant got past its limit: {taken} addresses"
        );
    };
    assert_eq!(taken, 20);
    assert_exceeded(
        &refusal,
        &format!(
            "Maximum number of resources of type 'public_ip' for account name=greedy in domain \
             id={}",
            root.domain_uuid
        ),
    );
    assert_eq!(ips_held(app, t.account_id).await, 20);
    // A new network would need a source-NAT address too.
    let e = network(app, &t, "greedy-net-2").await.unwrap_err();
    assert_exceeded(&e, "type 'public_ip' for account name=greedy");

    // The admin is not limited, and the zone still has addresses for it.
    let own = network(app, &root, "admin-net").await.unwrap();
    associate(app, &root, &own).await.unwrap();
    network(app, &root, "admin-net-2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_stopped_at_its_public_ip_limit_and_the_admin_is_not() {
    let dir = tempfile::tempdir().unwrap();
    tenant_cannot_starve_the_admin(&app(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_stopped_at_its_public_ip_limit_and_the_admin_is_not_on_postgres() {
    on_postgres("limits", tenant_cannot_starve_the_admin).await;
}

// ------------------------------------------------------------------------------------------
// The commands.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_listed_with_cloudstack_defaults_and_set_by_admins() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let rootd = root_domain(&root);
    let t = tenant(&app, &root, "ten", &rootd).await;

    // A tenant sees its own account's limits: CloudStack's defaults, and ours for rules.
    let own = call(&app, &t, "listResourceLimits", &[]).await;
    assert_eq!(own["count"], 4, "{own}");
    let rows: Vec<(String, String, i64)> = own["resourcelimit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["account"], "ten", "{r}");
            assert_eq!(r["domainid"], root.domain_uuid.as_str(), "{r}");
            assert_eq!(r["domain"], "ROOT", "{r}");
            (
                r["resourcetype"].as_str().unwrap().to_string(),
                r["resourcetypename"].as_str().unwrap().to_string(),
                r["max"].as_i64().unwrap(),
            )
        })
        .collect();
    let expect = |t: &str, n: &str, m: i64| (t.to_string(), n.to_string(), m);
    assert_eq!(
        rows,
        vec![
            expect("0", "user_vm", 20),
            expect("1", "public_ip", 20),
            expect("6", "network", 20),
            expect("1000", "network_rule", 1000),
        ]
    );
    let one = call(&app, &t, "listResourceLimits", &[("resourcetype", "1")]).await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["resourcelimit"][0]["resourcetypename"], "public_ip");
    // The name wins over the number.
    let named = call(
        &app,
        &t,
        "listResourceLimits",
        &[("resourcetype", "1"), ("resourcetypename", "network")],
    )
    .await;
    assert_eq!(named["resourcelimit"][0]["resourcetype"], "6");
    for (k, v) in [
        ("resourcetype", "2"),
        ("resourcetype", "-1"),
        ("resourcetypename", "volume"),
    ] {
        let e = try_call(&app, &t, "listResourceLimits", &[(k, v)])
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 431, "{k}={v}: {}", e.text);
        assert!(e.text.contains("network_rule"), "{}", e.text);
    }
    // A tenant may not look at another account's limits.
    let e = try_call(&app, &t, "listResourceLimits", &[("account", "admin")])
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 531, "{}", e.text);

    // The root admin's account has no limits, nor has ROOT.
    let admin_own = call(&app, &root, "listResourceLimits", &[]).await;
    assert_eq!(admin_own["count"], 4);
    for r in admin_own["resourcelimit"].as_array().unwrap() {
        assert_eq!(r["account"], "admin", "{r}");
        assert_eq!(r["max"], -1, "{r}");
    }
    let root_rows = call(
        &app,
        &root,
        "listResourceLimits",
        &[("domainid", &root.domain_uuid)],
    )
    .await;
    assert_eq!(root_rows["count"], 4);
    for r in root_rows["resourcelimit"].as_array().unwrap() {
        assert!(r.get("account").is_none(), "{r}");
        assert_eq!(r["domainid"], root.domain_uuid.as_str(), "{r}");
        assert_eq!(r["max"], -1, "{r}");
    }

    // Only admins set limits.
    let e = try_call(
        &app,
        &t,
        "updateResourceLimit",
        &[("resourcetype", "1"), ("max", "100")],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.code(), 432, "{}", e.text);

    let set = set_limit(
        &app,
        &root,
        &[
            ("account", "ten"),
            ("domainid", &root.domain_uuid),
            ("resourcetype", "1"),
            ("max", "2"),
        ],
    )
    .await;
    let row = &set["resourcelimit"];
    assert_eq!(row["account"], "ten", "{set}");
    assert_eq!(row["resourcetype"], "1", "{set}");
    assert_eq!(row["resourcetypename"], "public_ip", "{set}");
    assert_eq!(row["max"], 2, "{set}");
    let listed = call(
        &app,
        &root,
        "listResourceLimits",
        &[
            ("account", "ten"),
            ("domainid", &root.domain_uuid),
            ("resourcetype", "1"),
        ],
    )
    .await;
    assert_eq!(listed["resourcelimit"][0]["max"], 2, "{listed}");

    // The new limit holds: the source-NAT address and one more.
    let net = network(&app, &t, "ten-net").await.unwrap();
    associate(&app, &t, &net).await.unwrap();
    let e = associate(&app, &t, &net).await.unwrap_err();
    assert_exceeded(&e, "type 'public_ip' for account name=ten");
    // Setting it again without max lifts it.
    let lifted = set_limit(&app, &root, &[("account", "ten"), ("resourcetype", "1")]).await;
    assert_eq!(lifted["resourcelimit"]["max"], -1);
    associate(&app, &t, &net).await.unwrap();
    assert_eq!(ips_held(&app, t.account_id).await, 3);

    // Refusals, each a clear 431 (or CloudStack's 531 for ROOT), and nothing stored.
    let refused: [Refusal<'_>; 6] = [
        (
            &[("account", "ten"), ("resourcetype", "1"), ("max", "-2")],
            431,
            "at least '0'",
        ),
        (
            &[("account", "ten"), ("resourcetype", "2"), ("max", "5")],
            431,
            "valid resource type",
        ),
        (
            &[("resourcetype", "1"), ("max", "5")],
            431,
            "have to be specified",
        ),
        (
            &[
                ("domainid", &root.domain_uuid),
                ("resourcetype", "1"),
                ("max", "5"),
            ],
            531,
            "ROOT domain",
        ),
        (
            &[("account", "admin"), ("resourcetype", "1"), ("max", "5")],
            431,
            "Root Admin",
        ),
        (
            &[("account", "nobody"), ("resourcetype", "1"), ("max", "5")],
            431,
            "Unable to find account nobody",
        ),
    ];
    for (args, code, text) in refused {
        let e = try_call(&app, &root, "updateResourceLimit", args)
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), code, "{args:?}: {}", e.text);
        assert!(e.text.contains(text), "{args:?}: {}", e.text);
    }
    let unknown_domain = uuid::Uuid::new_v4().to_string();
    let e = try_call(
        &app,
        &root,
        "updateResourceLimit",
        &[("domainid", &unknown_domain), ("resourcetype", "1")],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.code(), 431, "{}", e.text);
    let e = try_call(
        &app,
        &root,
        "listResourceLimits",
        &[("projectid", &unknown_domain)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.code(), 431, "{}", e.text);
    let stored = store::testing::resource_limit_count(&app.db).await.unwrap();
    assert_eq!(stored, 1, "only ten's public_ip limit is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_networks_and_rules_are_counted_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let t = tenant(&app, &root, "counted", &root_domain(&root)).await;
    for (ty, max) in [("0", "1"), ("6", "1"), ("1000", "3")] {
        set_limit(
            &app,
            &root,
            &[("account", "counted"), ("resourcetype", ty), ("max", max)],
        )
        .await;
    }
    let net = network(&app, &t, "counted-net").await.unwrap();
    let e = network(&app, &t, "counted-net-2").await.unwrap_err();
    assert_exceeded(&e, "type 'network' for account name=counted");

    let vm = deploy(&app, &t, &net, "counted-vm1").await.unwrap();
    let e = deploy(&app, &t, &net, "counted-vm2").await.unwrap_err();
    assert_exceeded(&e, "type 'user_vm' for account name=counted");

    let ip = associate(&app, &t, &net).await.unwrap();
    let fw = try_call(
        &app,
        &t,
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "22"),
        ],
    )
    .await
    .unwrap();
    // A forward that opens the firewall writes two rules: 1 + 2 = 3, the limit.
    try_call(
        &app,
        &t,
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &vm),
        ],
    )
    .await
    .unwrap();
    let egress = try_call(
        &app,
        &t,
        "createEgressFirewallRule",
        &[
            ("networkid", &net),
            ("protocol", "tcp"),
            ("startport", "443"),
        ],
    )
    .await
    .unwrap_err();
    assert_exceeded(&egress, "type 'network_rule' for account name=counted");
    let lb = try_call(
        &app,
        &t,
        "createLoadBalancerRule",
        &[
            ("publicipid", &ip),
            ("name", "web"),
            ("algorithm", "roundrobin"),
            ("publicport", "80"),
            ("privateport", "80"),
        ],
    )
    .await
    .unwrap_err();
    assert_exceeded(&lb, "type 'network_rule' for account name=counted");
    // A rule being deleted no longer counts.
    call(
        &app,
        &t,
        "deleteFirewallRule",
        &[("id", fw["id"].as_str().unwrap())],
    )
    .await;
    try_call(
        &app,
        &t,
        "createEgressFirewallRule",
        &[
            ("networkid", &net),
            ("protocol", "tcp"),
            ("startport", "443"),
        ],
    )
    .await
    .unwrap();

    // The admin, on the tenant's own network, is bound by the owner's limits: what is taken
    // belongs to the network's account (which holds 2 of 20 public IPs, 1 of 1 VM).
    associate(&app, &root, &net).await.unwrap();
    let e = deploy(&app, &root, &net, "counted-vm3").await.unwrap_err();
    assert_exceeded(&e, "type 'user_vm' for account name=counted");
    // On its own network the admin is not limited.
    let own = network(&app, &root, "admin-net").await.unwrap();
    let own_ip = associate(&app, &root, &own).await.unwrap();
    for port in ["1", "2", "3", "4"] {
        try_call(
            &app,
            &root,
            "createFirewallRule",
            &[
                ("ipaddressid", &own_ip),
                ("protocol", "tcp"),
                ("startport", port),
            ],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_limits_bound_every_account_below_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let rootd = root_domain(&root);
    let sub = subdomain(&app, &rootd, "sub").await;
    let leaf = subdomain(&app, &sub, "leaf").await;
    let a = tenant(&app, &root, "in-sub", &sub).await;
    let b = tenant(&app, &root, "in-leaf", &leaf).await;

    // A domain without limits of its own has CloudStack's domain defaults.
    let rows = call(
        &app,
        &root,
        "listResourceLimits",
        &[("domainid", &sub.uuid)],
    )
    .await;
    let maxes: Vec<(String, i64)> = rows["resourcelimit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r.get("account").is_none(), "{r}");
            assert_eq!(r["domain"], "sub", "{r}");
            (
                r["resourcetypename"].as_str().unwrap().to_string(),
                r["max"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        maxes,
        vec![
            ("user_vm".to_string(), 40),
            ("public_ip".to_string(), 40),
            ("network".to_string(), 40),
            ("network_rule".to_string(), 2000),
        ]
    );

    set_limit(
        &app,
        &root,
        &[("domainid", &sub.uuid), ("resourcetype", "6"), ("max", "2")],
    )
    .await;
    // A subdomain inherits it, and may not be set above it.
    let inherited = call(
        &app,
        &root,
        "listResourceLimits",
        &[("domainid", &leaf.uuid), ("resourcetype", "6")],
    )
    .await;
    assert_eq!(inherited["resourcelimit"][0]["max"], 2, "{inherited}");
    let e = try_call(
        &app,
        &root,
        "updateResourceLimit",
        &[
            ("domainid", &leaf.uuid),
            ("resourcetype", "6"),
            ("max", "3"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.code(), 431, "{}", e.text);
    assert!(e.text.contains("sub"), "{}", e.text);
    set_limit(
        &app,
        &root,
        &[
            ("domainid", &leaf.uuid),
            ("resourcetype", "6"),
            ("max", "1"),
        ],
    )
    .await;

    network(&app, &a, "a-1").await.unwrap();
    network(&app, &b, "b-1").await.unwrap();
    // Both accounts are far below their own limit (20), but sub holds 2 of 2.
    let e = network(&app, &a, "a-2").await.unwrap_err();
    assert_exceeded(
        &e,
        &format!(
            "Maximum number of resources of type 'network' for domain id={}",
            sub.uuid
        ),
    );
    // leaf is checked first: it holds 1 of 1.
    let e = network(&app, &b, "b-2").await.unwrap_err();
    assert_exceeded(&e, &format!("type 'network' for domain id={}", leaf.uuid));
    // The admin, in ROOT, is untouched.
    network(&app, &root, "admin-net").await.unwrap();
}

// ------------------------------------------------------------------------------------------
// Concurrency.

/// Many takers at once, on networks of their own (so that no network lock orders them) and
/// through two servers' connection pools: exactly as many succeed as the limit leaves room
/// for, and the rest get 535.
async fn racing_takers_stop_at_the_limit(first: &App, second: &App) {
    let root = admin(first).await;
    let t = tenant(first, &root, "racer", &root_domain(&root)).await;
    let mut nets = Vec::new();
    for i in 0..4 {
        nets.push(network(first, &t, &format!("racer-{i}")).await.unwrap());
    }
    // 4 source-NAT addresses held; room for 5 more.
    set_limit(
        first,
        &root,
        &[("account", "racer"), ("resourcetype", "1"), ("max", "9")],
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let t = t.clone();
        let net = nets[i % nets.len()].clone();
        tasks.push(tokio::spawn(async move { associate(&app, &t, &net).await }));
    }
    let mut won = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => {
                assert_exceeded(&e, "type 'public_ip' for account name=racer");
                refused += 1;
            }
        }
    }
    assert_eq!(
        (won, refused),
        (5, 19),
        "racing associateIpAddress: {won} taken, {refused} refused"
    );
    assert_eq!(ips_held(first, t.account_id).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_takers_never_pass_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    racing_takers_stop_at_the_limit(&app, &app).await;
}

/// Two servers on one PostgreSQL database: each its own pool (and its own in-process write
/// lock, which PostgreSQL does not use), so only the database's row locks order the takers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_takers_on_two_servers_never_pass_a_limit_on_postgres() {
    let pg = postgres_database("limits").await;
    let dir = tempfile::tempdir().unwrap();
    let first = app_on(dir.path(), &pg.url).await;
    let mut second = first.clone();
    second.db = Db::connect(&pg.url).await.unwrap();
    racing_takers_stop_at_the_limit(&first, &second).await;
    second.db.pool().close().await;
    first.db.pool().close().await;
    pg.drop().await;
}
