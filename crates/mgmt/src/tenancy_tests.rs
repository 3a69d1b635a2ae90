//! Tenancy through the real dispatcher: a second account walks every command of the catalogue
//! with the first account's ids, lists filtered by ids that name nothing, VM names per account,
//! and deleteNetwork while VMs use the network.

use std::collections::{BTreeMap, BTreeSet};

use api_types::catalogue::{self, ApiSpec, ParamKind, ParamSpec};
use api_types::error::{ApiError, ApiErrorCode};
use serde_json::Value;

use crate::app::App;
use crate::cmd::Entity;
use crate::testkit::{admin, app, call, on_postgres, try_call, user, wait};
use domain::actor::Caller;

/// Shared ids every account may use: the zone, an offering, a service offering, a template.
struct Shared {
    zone: String,
    offering: String,
    service_offering: String,
    template: String,
}

async fn shared(app: &App, root: &Caller) -> Shared {
    let id = |v: &Value, key: &str| v[key][0]["id"].as_str().unwrap().to_string();
    Shared {
        zone: app.site.zone_uuid.clone(),
        offering: id(
            &call(app, root, "listNetworkOfferings", &[]).await,
            "networkoffering",
        ),
        service_offering: id(
            &call(app, root, "listServiceOfferings", &[]).await,
            "serviceoffering",
        ),
        template: id(
            &call(
                app,
                root,
                "listTemplates",
                &[("templatefilter", "featured")],
            )
            .await,
            "template",
        ),
    }
}

async fn done(app: &App, job: &Value) -> Value {
    let (status, result) = wait(app, job).await;
    assert_eq!(status, 1, "{result}");
    result
}

async fn make_network(app: &App, who: &Caller, s: &Shared, name: &str) -> String {
    let net = call(
        app,
        who,
        "createNetwork",
        &[
            ("name", name),
            ("displaytext", name),
            ("zoneid", &s.zone),
            ("networkofferingid", &s.offering),
        ],
    )
    .await;
    net["network"]["id"].as_str().unwrap().to_string()
}

async fn make_vm(app: &App, who: &Caller, s: &Shared, net: &str, name: &str) -> String {
    let vm = call(
        app,
        who,
        "deployVirtualMachine",
        &[
            ("zoneid", &s.zone),
            ("serviceofferingid", &s.service_offering),
            ("templateid", &s.template),
            ("networkids", net),
            ("name", name),
        ],
    )
    .await;
    done(app, &vm).await;
    vm["id"].as_str().unwrap().to_string()
}

/// One object of every kind an account owns, by the "slot" a uuid parameter fills: the first
/// command its catalogue entry names as producing its values.
async fn populate(app: &App, who: &Caller, s: &Shared) -> BTreeMap<&'static str, String> {
    let mut ids = BTreeMap::new();
    let net = make_network(app, who, s, &format!("{}-net", who.account_name)).await;
    let ip = call(app, who, "associateIpAddress", &[("networkid", &net)]).await;
    done(app, &ip).await;
    let ip = ip["id"].as_str().unwrap().to_string();
    let vm = make_vm(app, who, s, &net, "web1").await;
    let listed = call(app, who, "listVirtualMachines", &[("id", &vm)]).await;
    let nic = listed["virtualmachine"][0]["nic"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let fw = call(
        app,
        who,
        "createFirewallRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("startport", "22"),
        ],
    )
    .await;
    done(app, &fw).await;
    let egress = call(
        app,
        who,
        "createEgressFirewallRule",
        &[
            ("networkid", &net),
            ("protocol", "tcp"),
            ("startport", "443"),
        ],
    )
    .await;
    done(app, &egress).await;
    let pf = call(
        app,
        who,
        "createPortForwardingRule",
        &[
            ("ipaddressid", &ip),
            ("protocol", "tcp"),
            ("publicport", "8080"),
            ("privateport", "80"),
            ("virtualmachineid", &vm),
        ],
    )
    .await;
    done(app, &pf).await;
    let lb = call(
        app,
        who,
        "createLoadBalancerRule",
        &[
            ("name", "lb"),
            ("algorithm", "roundrobin"),
            ("publicport", "80"),
            ("privateport", "80"),
            ("publicipid", &ip),
            ("networkid", &net),
        ],
    )
    .await;
    done(app, &lb).await;
    let lb = lb["id"].as_str().unwrap().to_string();
    let assign = call(
        app,
        who,
        "assignToLoadBalancerRule",
        &[("id", &lb), ("virtualmachineids", &vm)],
    )
    .await;
    done(app, &assign).await;
    let sticky = call(
        app,
        who,
        "createLBStickinessPolicy",
        &[("lbruleid", &lb), ("name", "s"), ("methodname", "LbCookie")],
    )
    .await;
    done(app, &sticky).await;
    let health = call(app, who, "createLBHealthCheckPolicy", &[("lbruleid", &lb)]).await;
    done(app, &health).await;
    let router = call(app, who, "listRouters", &[("networkid", &net)]).await;
    let event = call(app, who, "listEvents", &[]).await;
    let text = |v: &Value| v.as_str().unwrap().to_string();
    ids.insert("createNetwork", net);
    ids.insert("associateIpAddress", ip);
    ids.insert("deployVirtualMachine", vm);
    ids.insert("listNics", nic);
    ids.insert("createFirewallRule", text(&fw["id"]));
    ids.insert("createEgressFirewallRule", text(&egress["id"]));
    ids.insert("createPortForwardingRule", text(&pf["id"]));
    ids.insert("createLoadBalancerRule", lb);
    ids.insert("createLBStickinessPolicy", text(&sticky["id"]));
    ids.insert("createLBHealthCheckPolicy", text(&health["id"]));
    ids.insert("listRouters", text(&router["router"][0]["id"]));
    ids.insert("listEvents", text(&event["event"][0]["id"]));
    ids.insert("queryAsyncJobResult", text(&health["jobid"]));
    ids.insert("createAccount", who.account_uuid.clone());
    ids.insert("listUsers", who.user_uuid.clone());
    ids
}

/// The slot of a uuid parameter (see [`populate`]); `None` for what no account owns.
fn owned_slot(param: &ParamSpec) -> Option<&'static str> {
    let first = param.related.split(',').next()?;
    let owned = [
        "createNetwork",
        "associateIpAddress",
        "deployVirtualMachine",
        "listNics",
        "createFirewallRule",
        "createEgressFirewallRule",
        "createPortForwardingRule",
        "createLoadBalancerRule",
        "createLBStickinessPolicy",
        "createLBHealthCheckPolicy",
        "listRouters",
        "listEvents",
        "queryAsyncJobResult",
        "createAccount",
        "listUsers",
    ];
    owned.into_iter().find(|o| *o == first)
}

/// A value for a uuid parameter of something no account owns.
async fn shared_value(app: &App, root: &Caller, s: &Shared, param: &ParamSpec) -> Option<String> {
    Some(match Entity::of(param)? {
        Entity::Zone => s.zone.clone(),
        Entity::NetworkOffering => s.offering.clone(),
        Entity::ServiceOffering => s.service_offering.clone(),
        Entity::Template => s.template.clone(),
        Entity::Domain => root.domain_uuid.clone(),
        Entity::PhysicalNetwork => {
            let v = call(app, root, "listPhysicalNetworks", &[]).await;
            v["physicalnetwork"][0]["id"].as_str()?.to_string()
        }
        Entity::Vlan => {
            let v = call(app, root, "listVlanIpRanges", &[]).await;
            v["vlaniprange"][0]["id"].as_str()?.to_string()
        }
        Entity::Host => {
            let v = call(app, root, "listHosts", &[]).await;
            v["host"][0]["id"].as_str()?.to_string()
        }
        Entity::AgentToken => {
            let v = call(app, root, "createAgentToken", &[("host", "matrix-host")]).await;
            v["agenttoken"]["id"].as_str()?.to_string()
        }
        _ => return None,
    })
}

/// A valid value for a required parameter that is not a uuid, by name.
fn sample(command: &str, param: &ParamSpec) -> &'static str {
    match param.name {
        "protocol" => "tcp",
        "publicport" | "privateport" | "startport" => "9000",
        "name" | "displaytext" | "firstname" | "lastname" => "sample",
        "algorithm" => "roundrobin",
        "methodname" => "LbCookie",
        "templatefilter" => "executable",
        "username" => "sample",
        "password" => "sample-password",
        "email" => "sample@example.org",
        "host" => "matrix-host",
        "resourcetype" => "0",
        "url" => "file:///nonexistent/image.qcow2",
        "format" => "QCOW2",
        "option" => "protocolnumber",
        "resourceids" => "00000000-0000-4000-8000-000000000000",
        "tags" => "sample",
        other => panic!(
            "no sample value for required parameter {other} of {command}: add one to the \
             tenancy matrix"
        ),
    }
}

/// Everything an account owns, row by row.
async fn snapshot(app: &App, account_id: i64) -> BTreeSet<String> {
    store::testing::account_snapshot(&app.db, account_id)
        .await
        .unwrap()
}

/// The arguments of one call of `spec` by `bob`: required parameters, every parameter naming
/// something an account owns (bob's own object), `target` set to `value`.
async fn arguments(
    app: &App,
    root: &Caller,
    s: &Shared,
    spec: &ApiSpec,
    bob_ids: &BTreeMap<&'static str, String>,
    target: Option<(&str, &str)>,
) -> Vec<(String, String)> {
    let mut args = Vec::new();
    for param in spec.params {
        if let Some((name, value)) = target.filter(|(n, _)| *n == param.name) {
            args.push((name.to_string(), value.to_string()));
            continue;
        }
        if matches!(param.kind, ParamKind::Uuid | ParamKind::ListOfUuid) {
            assert!(
                Entity::of(param).is_some(),
                "{}: uuid parameter {} names nothing the server knows",
                spec.name,
                param.name
            );
            if let Some(slot) = owned_slot(param) {
                // Lists are not narrowed by bob's own ids: only the target filters them.
                if !spec.is_list() || param.required {
                    args.push((param.name.to_string(), bob_ids[slot].clone()));
                }
            } else if param.required {
                let v = shared_value(app, root, s, param)
                    .await
                    .unwrap_or_else(|| panic!("{}: no value for {}", spec.name, param.name));
                args.push((param.name.to_string(), v));
            }
        } else if param.required {
            args.push((param.name.to_string(), sample(spec.name, param).to_string()));
        }
    }
    args
}

async fn call_with(
    app: &App,
    who: &Caller,
    spec: &ApiSpec,
    args: &[(String, String)],
) -> Result<Value, ApiError> {
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    try_call(app, who, spec.name, &args).await
}

/// What the walk counted.
#[derive(Debug, Default)]
struct Counts {
    commands: usize,
    calls: usize,
    refused_unknown: usize,
    refused_admin_only: usize,
    lists_clean: usize,
    without_ids: Vec<&'static str>,
}

/// Walks every command of the catalogue as bob with alice's ids and checks that each call is
/// answered exactly as the same call with an id that names nothing, that no list shows anything
/// of alice's, and that nothing of alice's changed.
async fn matrix(app: &App) -> Counts {
    let root = admin(app).await;
    let s = shared(app, &root).await;
    let alice = user(app, &root, "alice").await;
    let bob = user(app, &root, "bob").await;
    let alice_ids = populate(app, &alice, &s).await;
    let bob_ids = populate(app, &bob, &s).await;
    let before = snapshot(app, alice.account_id).await;
    let alice_values: Vec<&String> = alice_ids.values().collect();
    let mut counts = Counts::default();

    for spec in catalogue::all() {
        counts.commands += 1;
        let targets: Vec<&ParamSpec> = spec
            .params
            .iter()
            .filter(|p| owned_slot(p).is_some())
            .collect();
        if targets.is_empty() {
            counts.without_ids.push(spec.name);
        }
        for param in &targets {
            let slot = owned_slot(param).unwrap_or_default();
            let theirs = alice_ids[slot].as_str();
            let nothing = uuid::Uuid::new_v4().to_string();
            let with_theirs =
                arguments(app, &root, &s, spec, &bob_ids, Some((param.name, theirs))).await;
            let with_nothing =
                arguments(app, &root, &s, spec, &bob_ids, Some((param.name, &nothing))).await;
            let theirs_answer = call_with(app, &bob, spec, &with_theirs).await;
            let nothing_answer = call_with(app, &bob, spec, &with_nothing).await;
            counts.calls += 2;
            let nothing_err = refusal(nothing_answer, || {
                format!("{} {}=<an id that names nothing>", spec.name, param.name)
            });
            let theirs_err = refusal(theirs_answer, || {
                format!("{} {}=<another account's id>", spec.name, param.name)
            });
            // Either refused before any lookup (admins-only commands), or refused for the id:
            // 431 naming the value.
            if nothing_err.code == ApiErrorCode::UnsupportedAction {
                counts.refused_admin_only += 1;
            } else {
                assert!(
                    nothing_err.code == ApiErrorCode::ParamError
                        && nothing_err.text.contains(&nothing),
                    "{} did not look {} up: {} {}",
                    spec.name,
                    param.name,
                    nothing_err.code.code(),
                    nothing_err.text
                );
                counts.refused_unknown += 1;
            }
            assert_eq!(
                (theirs_err.code, theirs_err.cs_code),
                (nothing_err.code, nothing_err.cs_code),
                "{} {}: another account's id answered otherwise than an unknown one: {} / {}",
                spec.name,
                param.name,
                theirs_err.text,
                nothing_err.text
            );
            assert_eq!(
                theirs_err.text.replace(theirs, &nothing),
                nothing_err.text,
                "{} {}",
                spec.name,
                param.name
            );
        }
        // Ids of what no account owns (zones, offerings, templates, domains, roles…), given
        // an id that names nothing: refused as unknown too, or before any lookup.
        for param in spec
            .params
            .iter()
            .filter(|p| !spec.is_list() && owned_slot(p).is_none() && Entity::of(p).is_some())
        {
            let nothing = uuid::Uuid::new_v4().to_string();
            let args =
                arguments(app, &root, &s, spec, &bob_ids, Some((param.name, &nothing))).await;
            let err = refusal(call_with(app, &bob, spec, &args).await, || {
                format!("{} {}=<an id that names nothing>", spec.name, param.name)
            });
            counts.calls += 1;
            if matches!(
                err.code,
                ApiErrorCode::UnsupportedAction | ApiErrorCode::AccountError
            ) {
                counts.refused_admin_only += 1;
            } else {
                assert!(
                    err.code == ApiErrorCode::ParamError && err.text.contains(&nothing),
                    "{} did not look {} up: {} {}",
                    spec.name,
                    param.name,
                    err.code.code(),
                    err.text
                );
                counts.refused_unknown += 1;
            }
        }
        if !spec.is_list() && !spec.params.iter().any(|p| Entity::of(p).is_some()) {
            // Nothing to aim at another account; the command must still be one the server
            // runs (the dispatcher answers an unknown command as an authentication failure).
            let args = arguments(app, &root, &s, spec, &bob_ids, None).await;
            counts.calls += 1;
            if let Err(e) = call_with(app, &bob, spec, &args).await {
                assert_ne!(
                    e,
                    ApiError::unknown_command(),
                    "{} is not dispatched",
                    spec.name
                );
            }
        }
        if spec.is_list() {
            // Unfiltered, and with everything the caller may see: nothing of alice's.
            let mut plain = arguments(app, &root, &s, spec, &bob_ids, None).await;
            let mut answers = vec![call_with(app, &bob, spec, &plain).await];
            if spec.param("listall").is_some() {
                plain.push(("listall".into(), "true".into()));
                answers.push(call_with(app, &bob, spec, &plain).await);
            }
            for answer in answers {
                counts.calls += 1;
                let text = match answer {
                    Ok(v) => v.to_string(),
                    Err(e) if e.code == ApiErrorCode::UnsupportedAction => continue,
                    Err(e) => panic!(
                        "{} as an ordinary user: {} {}",
                        spec.name,
                        e.code.code(),
                        e.text
                    ),
                };
                for id in &alice_values {
                    assert!(
                        !text.contains(id.as_str()),
                        "{} shows bob alice's {id}: {text}",
                        spec.name
                    );
                }
                counts.lists_clean += 1;
            }
        }
    }
    let after = snapshot(app, alice.account_id).await;
    let gone: Vec<_> = before.difference(&after).collect();
    let new: Vec<_> = after.difference(&before).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "alice's rows changed:\n  before: {gone:#?}\n  after: {new:#?}"
    );
    counts
}

/// The error of an answer that must be a refusal.
fn refusal(answer: Result<Value, ApiError>, what: impl FnOnce() -> String) -> ApiError {
    match answer {
        Err(e) => e,
        Ok(v) => panic!("{} was not refused: {v}", what()),
    }
}

fn report(db: &str, c: &Counts) {
    println!(
        "tenancy matrix on {db}: {} commands walked, {} calls, {} refused as an unknown id, {} \
         refused before any lookup (admins only), {} list answers without anything of the other account; \
         commands with no id of an account's object: {}",
        c.commands,
        c.calls,
        c.refused_unknown,
        c.refused_admin_only,
        c.lists_clean,
        c.without_ids.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_ids_are_answered_as_unknown_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let counts = matrix(&app).await;
    report("SQLite", &counts);
    assert_eq!(counts.commands, catalogue::all().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_ids_are_answered_as_unknown_by_every_command_on_postgres() {
    on_postgres("tenancy", async |app| {
        report("PostgreSQL", &matrix(app).await)
    })
    .await;
}

/// Every id filter of every list command, given an id that names nothing: 431 with
/// CloudStack's text, for a root admin and for an ordinary user alike. A required id of an
/// account's object (listNics' machine) names alice's, which both may see.
async fn unknown_filters(app: &App) -> usize {
    let root = admin(app).await;
    let alice = user(app, &root, "alice").await;
    let s = shared(app, &root).await;
    let alice_ids = populate(app, &alice, &s).await;
    let mut checked = 0;
    for spec in catalogue::all().iter().filter(|s| s.is_list()) {
        for param in spec
            .params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Uuid | ParamKind::ListOfUuid))
        {
            for who in [&root, &alice] {
                let nothing = uuid::Uuid::new_v4().to_string();
                let mut args = Vec::new();
                for p in spec
                    .params
                    .iter()
                    .filter(|p| p.required && p.name != param.name)
                {
                    let value = match owned_slot(p) {
                        Some(slot) => alice_ids[slot].clone(),
                        None => sample(spec.name, p).to_string(),
                    };
                    args.push((p.name.to_string(), value));
                }
                args.push((param.name.to_string(), nothing.clone()));
                let err = refusal(call_with(app, who, spec, &args).await, || {
                    format!("{} {}=<an id that names nothing>", spec.name, param.name)
                });
                if who.admin || err.code != ApiErrorCode::UnsupportedAction {
                    assert_eq!(
                        err,
                        ApiError::unknown_uuid(spec.name, param.name, &nothing),
                        "{} {} as {}",
                        spec.name,
                        param.name,
                        who.account_name
                    );
                }
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_naming_nothing_are_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let checked = unknown_filters(&app).await;
    println!("{checked} list filters with an unknown id answered 431 (SQLite)");
    assert!(checked > 50, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_naming_nothing_are_unknown_ids_on_postgres() {
    on_postgres("tenancy", async |app| {
        let checked = unknown_filters(app).await;
        println!("{checked} list filters with an unknown id answered 431 (PostgreSQL)");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_may_each_have_a_vm_called_web1() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let s = shared(&app, &root).await;
    let alice = user(&app, &root, "alice").await;
    let bob = user(&app, &root, "bob").await;
    let alice_net = make_network(&app, &alice, &s, "a").await;
    let bob_net = make_network(&app, &bob, &s, "b").await;
    let alice_vm = make_vm(&app, &alice, &s, &alice_net, "web1").await;
    let bob_vm = make_vm(&app, &bob, &s, &bob_net, "web1").await;
    assert_ne!(alice_vm, bob_vm);
    for (who, vm) in [(&alice, &alice_vm), (&bob, &bob_vm)] {
        let listed = call(&app, who, "listVirtualMachines", &[("name", "web1")]).await;
        assert_eq!(listed["count"], 1, "{listed}");
        assert_eq!(listed["virtualmachine"][0]["id"], vm.as_str());
    }
    // Within one account the name stays unique, on any of its networks.
    let second = make_network(&app, &alice, &s, "a2").await;
    let again = try_call(
        &app,
        &alice,
        "deployVirtualMachine",
        &[
            ("zoneid", &s.zone),
            ("serviceofferingid", &s.service_offering),
            ("templateid", &s.template),
            ("networkids", &second),
            ("name", "web1"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(again.code, ApiErrorCode::ParamError);
    assert_eq!(
        again.text,
        "The name web1 is already used by another VM of this account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_network_is_refused_while_vms_use_it_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let s = shared(&app, &root).await;
    let alice = user(&app, &root, "alice").await;
    let net = make_network(&app, &alice, &s, "a").await;
    let vm = make_vm(&app, &alice, &s, &net, "web1").await;
    let before = snapshot(&app, alice.account_id).await;

    let refused = try_call(&app, &alice, "deleteNetwork", &[("id", &net)])
        .await
        .unwrap_err();
    assert_eq!(refused.code, ApiErrorCode::InternalError);
    assert!(
        refused.text.starts_with("Failed to delete network a (")
            && refused
                .text
                .contains("1 virtual machine(s) still use it (web1)"),
        "{}",
        refused.text
    );
    // forced is for root admins: an ordinary user's is ignored.
    let still = try_call(
        &app,
        &alice,
        "deleteNetwork",
        &[("id", &net), ("forced", "true")],
    )
    .await
    .unwrap_err();
    assert_eq!(still, refused);
    assert_eq!(
        snapshot(&app, alice.account_id).await,
        before,
        "nothing written"
    );

    // Once its VM is destroyed, the network goes.
    let d = call(&app, &alice, "destroyVirtualMachine", &[("id", &vm)]).await;
    done(&app, &d).await;
    let del = call(&app, &alice, "deleteNetwork", &[("id", &net)]).await;
    done(&app, &del).await;
    let left = call(&app, &alice, "listNetworks", &[]).await;
    assert_eq!(left, serde_json::json!({}));

    // A root admin's forced delete takes the VMs with the network.
    let net = make_network(&app, &alice, &s, "b").await;
    make_vm(&app, &alice, &s, &net, "web2").await;
    let del = call(
        &app,
        &root,
        "deleteNetwork",
        &[("id", &net), ("forced", "true")],
    )
    .await;
    done(&app, &del).await;
    let vms = call(&app, &alice, "listVirtualMachines", &[]).await;
    assert_eq!(vms, serde_json::json!({}));
}
