//! The balancer commands' pure checks: targets, stickiness methods and params, health-check
//! numbers, the router's objections, and the stored forms of a policy's params.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use router_config::{WireHealthCheck, WireStickiness};

use super::members::targets;
use super::policies::{
    health_json, health_numbers, router_objections, stickiness_json, stickiness_method,
    stickiness_params, Trial,
};
use domain::plan::{HealthNumbers, StickinessParams};
fn entry(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn trial() -> Trial {
    Trial {
        lb_id: 7,
        public_ip: Ipv4Addr::new(203, 0, 113, 10),
        public_port: 80,
        private_port: 8080,
        cidr: "10.1.1.0/24".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 1, 1, 1),
    }
}

fn sticky(method: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let params = stickiness_params(method, &[]).unwrap();
    let mut params = params;
    for (k, v) in pairs {
        params.insert(k.to_string(), v.to_string());
    }
    router_objections(
        trial(),
        Some(WireStickiness {
            method: method.into(),
            params,
        }),
        None,
    )
}

#[test]
fn methods_are_matched_case_insensitively() {
    assert_eq!(stickiness_method("lbcookie").unwrap(), "LbCookie");
    assert_eq!(stickiness_method("SOURCEBASED").unwrap(), "SourceBased");
    assert!(stickiness_method("Cookie").is_err());
}

#[test]
fn params_follow_the_method() {
    let p = stickiness_params(
        "LbCookie",
        &[
            entry(&[("name", "cookie-name"), ("value", "sid")]),
            entry(&[("name", "nocache"), ("value", "")]),
        ],
    )
    .unwrap();
    assert_eq!(p.get("cookie-name").map(String::as_str), Some("sid"));
    assert_eq!(p.get("nocache").map(String::as_str), Some(""));
    // Not a parameter of the method.
    assert!(stickiness_params(
        "SourceBased",
        &[entry(&[("name", "length"), ("value", "5")])]
    )
    .is_err());
    // A non-flag needs a value.
    assert!(stickiness_params("AppCookie", &[entry(&[("name", "length")])]).is_err());
    // A name is needed.
    assert!(stickiness_params("AppCookie", &[entry(&[("value", "5")])]).is_err());
}

#[test]
fn repeated_params_are_joined() {
    let p = stickiness_params(
        "LbCookie",
        &[
            entry(&[("name", "domain"), ("value", "a.example")]),
            entry(&[("name", "Domain"), ("value", "b.example")]),
            entry(&[("name", "mode"), ("value", "insert")]),
            entry(&[("name", "mode"), ("value", "rewrite")]),
        ],
    )
    .unwrap();
    assert_eq!(
        p.get("domain").map(String::as_str),
        Some("a.example,b.example")
    );
    assert_eq!(p.get("mode").map(String::as_str), Some("insert:rewrite"));
    // The router accepts the domains and refuses the joined mode.
    let mut ok = p.clone();
    ok.remove("mode");
    assert!(router_objections(
        trial(),
        Some(WireStickiness {
            method: "LbCookie".into(),
            params: ok
        }),
        None
    )
    .is_empty());
    assert!(!sticky("LbCookie", &[("mode", "insert:rewrite")]).is_empty());
}

#[test]
fn the_router_decides_what_values_pass() {
    assert!(sticky("LbCookie", &[]).is_empty());
    assert!(sticky("LbCookie", &[("cookie-name", "SERVERID")]).is_empty());
    assert!(!sticky("LbCookie", &[("cookie-name", "bad name")]).is_empty());
    assert!(!sticky("LbCookie", &[("nocache", "maybe")]).is_empty());
    assert!(sticky("AppCookie", &[("length", "4096"), ("holdtime", "24d")]).is_empty());
    assert!(!sticky("AppCookie", &[("length", "4097")]).is_empty());
    assert!(!sticky("AppCookie", &[("length", "0")]).is_empty());
    assert!(!sticky("AppCookie", &[("holdtime", "30d")]).is_empty());
    assert!(!sticky("AppCookie", &[("prefix", "")]).is_empty());
    assert!(!sticky("AppCookie", &[("mode", "")]).is_empty());
    assert!(sticky("SourceBased", &[("tablesize", "3g"), ("expire", "3h")]).is_empty());
    // 4g is 2^32 entries, one more than haproxy counts.
    assert!(!sticky("SourceBased", &[("tablesize", "4g")]).is_empty());
    assert!(sticky("SourceBased", &[("tablesize", "4194303k")]).is_empty());
    assert!(!sticky("SourceBased", &[("tablesize", "200x")]).is_empty());
    assert!(!sticky("SourceBased", &[("expire", "25d")]).is_empty());
    let texts = sticky("AppCookie", &[("length", "abc")]);
    assert!(texts[0].starts_with("param length:"), "{texts:?}");
}

#[test]
fn health_defaults_and_limits() {
    let n = health_numbers(None, Some(0), None, None).unwrap();
    assert_eq!(
        n,
        HealthNumbers {
            response_time: 2,
            interval: 5,
            healthy: 2,
            unhealthy: 1
        }
    );
    assert!(health_numbers(Some(10), Some(5), None, None).is_err());
    assert!(health_numbers(Some(5), Some(5), None, None).is_ok());
    assert!(health_numbers(Some(-1), None, None, None).is_err());
    let check = |n: HealthNumbers, path: &str| {
        router_objections(
            trial(),
            None,
            Some(WireHealthCheck {
                ping_path: Some(path.into()),
                interval_s: n.interval,
                response_timeout_s: n.response_time,
                healthy_threshold: n.healthy,
                unhealthy_threshold: n.unhealthy,
            }),
        )
    };
    assert!(check(n, "/").is_empty());
    assert!(!check(n, "health").is_empty());
    assert!(!check(n, "/a b").is_empty());
    let slow = health_numbers(Some(61), Some(100), Some(11), None).unwrap();
    let texts = check(slow, "/");
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("responsetimeout:")));
    assert!(texts.iter().any(|t| t.starts_with("healthythreshold:")));
}

#[test]
fn targets_need_one_of_the_two_params() {
    let err = targets("assignToLoadBalancerRule", None, &[]).unwrap_err();
    assert_eq!(err.text, "Both instanceids and vmidipmap  can't be null");
    assert!(targets("assignToLoadBalancerRule", Some(Vec::new()), &[]).is_err());
    let vm = "0b7f3c1e-6a55-4d5e-9d8e-2c1f0a9b8c7d";
    let t = targets(
        "assignToLoadBalancerRule",
        Some(vec![vm.into()]),
        &[entry(&[("vmid", vm), ("vmip", "10.1.1.5")])],
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].ip, Some(Ipv4Addr::new(10, 1, 1, 5)));
    assert!(targets(
        "assignToLoadBalancerRule",
        None,
        &[entry(&[("vmid", vm), ("vmip", "10.1.1")])]
    )
    .is_err());
    assert!(targets(
        "assignToLoadBalancerRule",
        None,
        &[entry(&[("vmip", "10.1.1.5")])]
    )
    .is_err());
}

#[test]
fn stored_params_are_what_serde_writes() {
    let n = HealthNumbers {
        response_time: 3,
        interval: 10,
        healthy: 4,
        unhealthy: 2,
    };
    assert_eq!(health_json(&n), serde_json::to_string(&n).unwrap());
    let p = stickiness_params(
        "LbCookie",
        &[
            entry(&[("name", "domain"), ("value", "a.example")]),
            entry(&[("name", "cookie-name"), ("value", "s\"id")]),
            entry(&[("name", "nocache")]),
        ],
    )
    .unwrap();
    assert_eq!(stickiness_json(&p), serde_json::to_string(&p).unwrap());
    assert_eq!(
        stickiness_json(&StickinessParams::new()),
        serde_json::to_string(&StickinessParams::new()).unwrap()
    );
}

/// Through the commands: a balancer with a member and its policies, the refusals of a
/// second mapping, a third stickiness policy, a second health check and an unmapped
/// removal, and the listings in between.
mod flow {
    use serde_json::Value;

    use crate::app::App;
    use crate::testkit::{admin, app, call, try_call, wait};
    use domain::actor::Caller;

    async fn run(app: &App, c: &Caller, cmd: &str, args: &[(&str, &str)]) -> Value {
        let job = call(app, c, cmd, args).await;
        let (status, result) = wait(app, &job).await;
        assert_eq!(status, 1, "{cmd}: {result}");
        result
    }

    fn first(v: &Value, list: &str) -> String {
        v[list][0]["id"].as_str().unwrap().to_string()
    }

    async fn refused(app: &App, c: &Caller, cmd: &str, args: &[(&str, &str)]) -> String {
        match try_call(app, c, cmd, args).await {
            Ok(v) => panic!("{cmd} was accepted: {v}"),
            Err(e) => {
                assert_eq!(e.code.code(), 431, "{cmd}: {}", e.text);
                e.text
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_balancer_its_member_and_its_policies() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let zone = app.site.zone_uuid.clone();
        let offering = first(
            &call(&app, &root, "listNetworkOfferings", &[]).await,
            "networkoffering",
        );
        let service = first(
            &call(&app, &root, "listServiceOfferings", &[]).await,
            "serviceoffering",
        );
        let template = first(
            &call(
                &app,
                &root,
                "listTemplates",
                &[("templatefilter", "featured")],
            )
            .await,
            "template",
        );
        let net = call(
            &app,
            &root,
            "createNetwork",
            &[
                ("name", "lbnet"),
                ("displaytext", "lbnet"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
            ],
        )
        .await["network"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let ip = first(
            &call(
                &app,
                &root,
                "listPublicIpAddresses",
                &[("associatednetworkid", &net)],
            )
            .await,
            "publicipaddress",
        );
        let vm = run(
            &app,
            &root,
            "deployVirtualMachine",
            &[
                ("zoneid", &zone),
                ("serviceofferingid", &service),
                ("templateid", &template),
                ("networkids", &net),
                ("name", "lbvm"),
            ],
        )
        .await["virtualmachine"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let lb = run(
            &app,
            &root,
            "createLoadBalancerRule",
            &[
                ("publicipid", &ip),
                ("name", "web"),
                ("algorithm", "roundrobin"),
                ("publicport", "80"),
                ("privateport", "8080"),
            ],
        )
        .await["loadbalancer"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let listed = call(&app, &root, "listLoadBalancerRules", &[("name", "web")]).await;
        assert_eq!(listed["count"], 1, "{listed}");
        assert_eq!(listed["loadbalancerrule"][0]["id"], lb.as_str());
        let none = call(&app, &root, "listLoadBalancerRules", &[("name", "other")]).await;
        assert_eq!(none, serde_json::json!({}));

        let assign = [("id", lb.as_str()), ("virtualmachineids", vm.as_str())];
        run(&app, &root, "assignToLoadBalancerRule", &assign).await;
        let text = refused(&app, &root, "assignToLoadBalancerRule", &assign).await;
        assert!(text.contains("is already mapped"), "{text}");
        let by_vm = call(
            &app,
            &root,
            "listLoadBalancerRules",
            &[("virtualmachineid", &vm)],
        )
        .await;
        assert_eq!(by_vm["count"], 1, "{by_vm}");
        let members = call(&app, &root, "listLoadBalancerRuleInstances", &[("id", &lb)]).await;
        assert_eq!(members["loadbalancerruleinstance"][0]["id"], vm.as_str());
        assert_eq!(
            members["loadbalancerruleinstance"][0]["servicestate"],
            "Active"
        );

        let sticky = [
            ("lbruleid", lb.as_str()),
            ("name", "s"),
            ("methodname", "lbcookie"),
        ];
        run(&app, &root, "createLBStickinessPolicy", &sticky).await;
        let result = run(&app, &root, "createLBStickinessPolicy", &sticky).await;
        let policies = &result["stickinesspolicies"]["stickinesspolicy"];
        assert_eq!(policies.as_array().unwrap().len(), 2, "{result}");
        assert_eq!(policies[0]["methodname"], "LbCookie");
        let text = refused(&app, &root, "createLBStickinessPolicy", &sticky).await;
        assert!(text.contains("Already two policies attached"), "{text}");

        let check = [("lbruleid", lb.as_str()), ("pingpath", "/health")];
        let result = run(&app, &root, "createLBHealthCheckPolicy", &check).await;
        let hc = &result["healthcheckpolicies"]["healthcheckpolicy"][0];
        assert_eq!(hc["pingpath"], "/health", "{result}");
        assert_eq!(hc["responsetime"], 2);
        let text = refused(&app, &root, "createLBHealthCheckPolicy", &check).await;
        assert!(text.contains("already has one"), "{text}");
        let listed = call(
            &app,
            &root,
            "listLBHealthCheckPolicies",
            &[("lbruleid", &lb)],
        )
        .await;
        let id = listed["healthcheckpolicies"][0]["healthcheckpolicy"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        run(&app, &root, "deleteLBHealthCheckPolicy", &[("id", &id)]).await;
        run(&app, &root, "createLBHealthCheckPolicy", &check).await;

        run(&app, &root, "removeFromLoadBalancerRule", &assign).await;
        let text = refused(&app, &root, "removeFromLoadBalancerRule", &assign).await;
        assert!(text.contains("is not mapped"), "{text}");
        // The removal pending or done, the same mapping comes back.
        run(&app, &root, "assignToLoadBalancerRule", &assign).await;
    }
}
