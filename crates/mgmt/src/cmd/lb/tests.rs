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
