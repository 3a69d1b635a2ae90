//! The catalogue's consistency, and `listApis` in the shape cmk and cloudmonkey parse.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::error::ApiErrorCode;
use crate::params::TRANSPORT_PARAMS;

const EXPECTED: &[&str] = &[
    "createFirewallRule",
    "deleteFirewallRule",
    "listFirewallRules",
    "updateFirewallRule",
    "createEgressFirewallRule",
    "deleteEgressFirewallRule",
    "listEgressFirewallRules",
    "updateEgressFirewallRule",
    "createPortForwardingRule",
    "deletePortForwardingRule",
    "listPortForwardingRules",
    "updatePortForwardingRule",
    "createLoadBalancerRule",
    "deleteLoadBalancerRule",
    "listLoadBalancerRules",
    "updateLoadBalancerRule",
    "assignToLoadBalancerRule",
    "removeFromLoadBalancerRule",
    "listLoadBalancerRuleInstances",
    "createLBStickinessPolicy",
    "deleteLBStickinessPolicy",
    "listLBStickinessPolicies",
    "createLBHealthCheckPolicy",
    "deleteLBHealthCheckPolicy",
    "listLBHealthCheckPolicies",
    "updateLBStickinessPolicy",
    "updateLBHealthCheckPolicy",
    "queryAsyncJobResult",
    "listAsyncJobs",
    "listApis",
    "listZones",
    "updateZone",
    "listPhysicalNetworks",
    "updatePhysicalNetwork",
    "listNetworkOfferings",
    "createNetwork",
    "listNetworks",
    "deleteNetwork",
    "updateNetwork",
    "restartNetwork",
    "associateIpAddress",
    "disassociateIpAddress",
    "listPublicIpAddresses",
    "createVlanIpRange",
    "listVlanIpRanges",
    "deployVirtualMachine",
    "listVirtualMachines",
    "destroyVirtualMachine",
    "listNics",
    "addIpToNic",
    "removeIpFromNic",
    "enableStaticNat",
    "disableStaticNat",
    "createIpForwardingRule",
    "deleteIpForwardingRule",
    "listIpForwardingRules",
    "createTags",
    "deleteTags",
    "listTags",
    "listAutoScaleVmGroups",
    "listAutoScalePolicies",
    "listDomains",
    "listProjects",
    "listCapabilities",
    "listNetworkProtocols",
    "listServiceOfferings",
    "registerTemplate",
    "listTemplates",
    "rebootRouter",
    "startRouter",
    "stopRouter",
    "listRouters",
    "listEvents",
    "createAccount",
    "listAccounts",
    "listUsers",
    "registerUserKeys",
    "listResourceLimits",
    "updateResourceLimit",
    "createAgentToken",
    "listAgentTokens",
    "revokeAgentToken",
    "listHosts",
];

fn expected() -> BTreeSet<&'static str> {
    EXPECTED.iter().copied().collect()
}

#[test]
fn catalogue_has_exactly_the_commands_implemented() {
    let names: Vec<&str> = all().iter().map(|a| a.name).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate command names");
    assert_eq!(unique, expected());
    assert_eq!(all().len(), 83);
}

#[test]
fn find_is_exact_and_case_sensitive() {
    assert_eq!(
        find("createFirewallRule").map(|a| a.name),
        Some("createFirewallRule")
    );
    assert!(find("createfirewallrule").is_none());
    assert!(find("CreateFirewallRule").is_none());
    assert!(find("").is_none());
    assert!(find("login").is_none());
}

#[test]
fn every_entry_is_described_and_sane() {
    let allowed_kinds = [
        "string", "integer", "long", "boolean", "date", "list", "set", "map", "object",
    ];
    for api in all() {
        assert!(!api.description.trim().is_empty(), "{}", api.name);
        assert!(
            api.name.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            api.name
        );
        assert!(api.name.as_bytes()[0].is_ascii_lowercase(), "{}", api.name);
        assert!(
            !api.creates || api.is_async,
            "{} creates but is sync",
            api.name
        );
        assert!(
            !api.response.is_empty(),
            "{} has no response fields",
            api.name
        );

        let mut seen = BTreeSet::new();
        for p in api.params {
            assert!(seen.insert(p.name), "{}: {} twice", api.name, p.name);
            assert!(
                p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{}: {} not lowercase",
                api.name,
                p.name
            );
            assert!(
                !TRANSPORT_PARAMS.contains(&p.name),
                "{}: transport parameter {}",
                api.name,
                p.name
            );
            assert!(!p.description.trim().is_empty(), "{}.{}", api.name, p.name);
            assert!(
                p.length == 255 || p.length == 4096,
                "{}.{}",
                api.name,
                p.name
            );
            assert!(
                p.related.is_empty()
                    || p.kind == ParamKind::Uuid
                    || p.kind == ParamKind::ListOfUuid,
                "{}.{}: related on a non-uuid parameter",
                api.name,
                p.name
            );
            for r in p.related.split(',').filter(|r| !r.is_empty()) {
                assert!(
                    find(r).is_some(),
                    "{}.{}: related {r} unknown",
                    api.name,
                    p.name
                );
            }
        }

        let mut seen = BTreeSet::new();
        for f in api.response {
            assert!(
                seen.insert(f.name),
                "{}: response {} twice",
                api.name,
                f.name
            );
            assert!(!f.description.trim().is_empty(), "{}.{}", api.name, f.name);
            assert!(
                allowed_kinds.contains(&f.kind),
                "{}.{}: {}",
                api.name,
                f.name,
                f.kind
            );
        }

        for r in api.related {
            assert!(find(r).is_some(), "{}: related {r} unknown", api.name);
            assert_ne!(*r, api.name, "{} relates to itself", api.name);
        }
    }
}

#[test]
fn async_commands_are_cloudstacks() {
    let asynchronous: BTreeSet<&str> = all()
        .iter()
        .filter(|a| a.is_async)
        .map(|a| a.name)
        .collect();
    let expected: BTreeSet<&str> = [
        "updatePhysicalNetwork",
        "createFirewallRule",
        "deleteFirewallRule",
        "updateFirewallRule",
        "createEgressFirewallRule",
        "deleteEgressFirewallRule",
        "updateEgressFirewallRule",
        "createPortForwardingRule",
        "deletePortForwardingRule",
        "updatePortForwardingRule",
        "disableStaticNat",
        "createIpForwardingRule",
        "deleteIpForwardingRule",
        "createTags",
        "deleteTags",
        "createLoadBalancerRule",
        "deleteLoadBalancerRule",
        "updateLoadBalancerRule",
        "assignToLoadBalancerRule",
        "removeFromLoadBalancerRule",
        "createLBStickinessPolicy",
        "deleteLBStickinessPolicy",
        "createLBHealthCheckPolicy",
        "deleteLBHealthCheckPolicy",
        "updateLBStickinessPolicy",
        "updateLBHealthCheckPolicy",
        "associateIpAddress",
        "disassociateIpAddress",
        "deployVirtualMachine",
        "destroyVirtualMachine",
        "deleteNetwork",
        "updateNetwork",
        "restartNetwork",
        "rebootRouter",
        "startRouter",
        "stopRouter",
        "addIpToNic",
        "removeIpFromNic",
    ]
    .into_iter()
    .collect();
    assert_eq!(asynchronous, expected);

    let creating: BTreeSet<&str> = all().iter().filter(|a| a.creates).map(|a| a.name).collect();
    let expected: BTreeSet<&str> = [
        "createFirewallRule",
        "createEgressFirewallRule",
        "createPortForwardingRule",
        "createIpForwardingRule",
        "createLoadBalancerRule",
        "createLBStickinessPolicy",
        "createLBHealthCheckPolicy",
        "associateIpAddress",
        "deployVirtualMachine",
    ]
    .into_iter()
    .collect();
    assert_eq!(creating, expected);
    assert!(!find("createNetwork").unwrap().is_async);
}

#[test]
fn response_objects_are_cloudstacks_keys() {
    let cases = [
        ("createFirewallRule", Some("firewallrule")),
        ("listFirewallRules", Some("firewallrule")),
        ("listEgressFirewallRules", Some("firewallrule")),
        ("updateEgressFirewallRule", Some("firewallrule")),
        ("deleteFirewallRule", None),
        ("createPortForwardingRule", Some("portforwardingrule")),
        ("listPortForwardingRules", Some("portforwardingrule")),
        ("createLoadBalancerRule", Some("loadbalancer")),
        ("updateLoadBalancerRule", Some("loadbalancer")),
        ("listLoadBalancerRules", Some("loadbalancerrule")),
        ("assignToLoadBalancerRule", None),
        (
            "listLoadBalancerRuleInstances",
            Some("loadbalancerruleinstance"),
        ),
        ("createLBStickinessPolicy", Some("stickinesspolicies")),
        ("listLBStickinessPolicies", Some("stickinesspolicies")),
        ("createLBHealthCheckPolicy", Some("healthcheckpolicies")),
        ("listLBHealthCheckPolicies", Some("healthcheckpolicies")),
        ("updateLBStickinessPolicy", Some("stickinesspolicies")),
        ("updateLBHealthCheckPolicy", Some("healthcheckpolicies")),
        ("queryAsyncJobResult", None),
        ("listAsyncJobs", Some("asyncjobs")),
        ("listApis", Some("api")),
        ("listZones", Some("zone")),
        ("listNetworkOfferings", Some("networkoffering")),
        ("createNetwork", Some("network")),
        ("listNetworks", Some("network")),
        ("deleteNetwork", None),
        ("updateNetwork", Some("network")),
        ("restartNetwork", None),
        ("rebootRouter", Some("router")),
        ("startRouter", Some("router")),
        ("stopRouter", Some("router")),
        ("addIpToNic", Some("nicsecondaryip")),
        ("removeIpFromNic", None),
        ("associateIpAddress", Some("ipaddress")),
        ("listPublicIpAddresses", Some("publicipaddress")),
        ("createVlanIpRange", Some("vlan")),
        ("listVlanIpRanges", Some("vlaniprange")),
        ("deployVirtualMachine", Some("virtualmachine")),
        ("listVirtualMachines", Some("virtualmachine")),
        ("destroyVirtualMachine", Some("virtualmachine")),
        ("listNics", Some("nic")),
        ("enableStaticNat", None),
        ("disableStaticNat", None),
        ("createIpForwardingRule", Some("ipforwardingrule")),
        ("deleteIpForwardingRule", None),
        ("listIpForwardingRules", Some("ipforwardingrule")),
        ("createTags", None),
        ("deleteTags", None),
        ("listTags", Some("tag")),
        ("listAutoScaleVmGroups", Some("autoscalevmgroup")),
        ("listAutoScalePolicies", Some("autoscalepolicy")),
        ("listDomains", Some("domain")),
        ("listProjects", Some("project")),
        ("listCapabilities", Some("capability")),
        ("listNetworkProtocols", Some("networkprotocol")),
        ("listServiceOfferings", Some("serviceoffering")),
        ("listTemplates", Some("template")),
        ("listRouters", Some("router")),
        ("listEvents", Some("event")),
        ("createAccount", Some("account")),
        ("listAccounts", Some("account")),
        ("listUsers", Some("user")),
        ("registerUserKeys", Some("userkeys")),
        ("listResourceLimits", Some("resourcelimit")),
        ("updateResourceLimit", Some("resourcelimit")),
        ("createAgentToken", Some("agenttoken")),
        ("listAgentTokens", Some("agenttoken")),
        ("revokeAgentToken", None),
        ("listHosts", Some("host")),
    ];
    for (name, object) in cases {
        assert_eq!(find(name).unwrap().response_object, object, "{name}");
    }
    for api in all() {
        if api.is_list() {
            assert!(api.response_object.is_some(), "{}", api.name);
        }
        if api.response_object.is_none() && api.name != "queryAsyncJobResult" {
            assert_eq!(
                api.response.first().map(|f| f.name),
                Some("success"),
                "{}",
                api.name
            );
        }
    }
}

#[test]
fn list_commands_page_and_rule_lists_filter() {
    for api in all() {
        // As on CloudStack, these three answer everything at once.
        let unpaged = ["listApis", "listCapabilities", "listNetworkProtocols"];
        if api.is_list() && !unpaged.contains(&api.name) {
            for base in ["keyword", "page", "pagesize"] {
                let p = api
                    .param(base)
                    .unwrap_or_else(|| panic!("{} lacks {base}", api.name));
                assert!(!p.required);
            }
            assert!(api.is_paged());
        }
    }
    assert!(!find("listApis").unwrap().is_paged());
    for name in [
        "listFirewallRules",
        "listEgressFirewallRules",
        "listPortForwardingRules",
        "listLoadBalancerRules",
    ] {
        let api = find(name).unwrap();
        let kinds = [
            ("id", ParamKind::Uuid),
            ("networkid", ParamKind::Uuid),
            ("fordisplay", ParamKind::Boolean),
            ("tags", ParamKind::Map),
            ("listall", ParamKind::Boolean),
            ("domainid", ParamKind::Uuid),
            ("isrecursive", ParamKind::Boolean),
            ("account", ParamKind::String),
            ("projectid", ParamKind::Uuid),
        ];
        for (param, kind) in kinds {
            assert_eq!(
                api.param(param).map(|p| p.kind),
                Some(kind),
                "{name}.{param}"
            );
        }
    }
    for name in [
        "listFirewallRules",
        "listEgressFirewallRules",
        "listPortForwardingRules",
    ] {
        assert_eq!(
            find(name).unwrap().param("ipaddressid").map(|p| p.kind),
            Some(ParamKind::Uuid)
        );
    }
}

#[test]
fn rule_parameters_follow_cloudstack() {
    let required = |api: &str| -> BTreeSet<&str> {
        find(api)
            .unwrap()
            .params
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect()
    };
    let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        required("createFirewallRule"),
        set(&["ipaddressid", "protocol"])
    );
    assert_eq!(
        required("createEgressFirewallRule"),
        set(&["networkid", "protocol"])
    );
    assert_eq!(
        required("createPortForwardingRule"),
        set(&[
            "ipaddressid",
            "protocol",
            "publicport",
            "privateport",
            "virtualmachineid"
        ])
    );
    assert_eq!(
        required("createLoadBalancerRule"),
        set(&["name", "algorithm", "privateport", "publicport"])
    );
    assert_eq!(
        required("createLBStickinessPolicy"),
        set(&["lbruleid", "name", "methodname"])
    );
    assert_eq!(required("createLBHealthCheckPolicy"), set(&["lbruleid"]));
    assert_eq!(
        required("deployVirtualMachine"),
        set(&["zoneid", "serviceofferingid", "templateid"])
    );
    assert_eq!(
        required("createAccount"),
        set(&["username", "password", "email", "firstname", "lastname"])
    );
    assert_eq!(required("listTemplates"), set(&["templatefilter"]));
    assert_eq!(required("queryAsyncJobResult"), set(&["jobid"]));
    assert_eq!(required("registerUserKeys"), set(&["id"]));
    assert!(required("listResourceLimits").is_empty());
    assert_eq!(required("updateResourceLimit"), set(&["resourcetype"]));
    assert_eq!(required("createAgentToken"), set(&["host"]));
    assert_eq!(required("revokeAgentToken"), set(&["id"]));
    assert!(required("listAgentTokens").is_empty());
    assert!(required("listHosts").is_empty());
    assert_eq!(required("listLoadBalancerRuleInstances"), set(&["id"]));
    for delete in [
        "deleteFirewallRule",
        "deleteEgressFirewallRule",
        "deletePortForwardingRule",
        "deleteLoadBalancerRule",
        "deleteLBStickinessPolicy",
        "deleteLBHealthCheckPolicy",
    ] {
        assert_eq!(required(delete), set(&["id"]), "{delete}");
    }

    let kind = |api: &str, param: &str| find(api).unwrap().param(param).map(|p| p.kind);
    assert_eq!(
        kind("createFirewallRule", "cidrlist"),
        Some(ParamKind::List)
    );
    assert_eq!(
        kind("createFirewallRule", "startport"),
        Some(ParamKind::Integer)
    );
    assert_eq!(
        kind("createEgressFirewallRule", "destcidrlist"),
        Some(ParamKind::List)
    );
    assert_eq!(
        kind("assignToLoadBalancerRule", "virtualmachineids"),
        Some(ParamKind::ListOfUuid)
    );
    assert_eq!(
        kind("assignToLoadBalancerRule", "vmidipmap"),
        Some(ParamKind::Map)
    );
    assert_eq!(
        kind("removeFromLoadBalancerRule", "vmidipmap"),
        Some(ParamKind::Map)
    );
    assert_eq!(
        kind("createLBStickinessPolicy", "param"),
        Some(ParamKind::Map)
    );
    assert_eq!(
        kind("deployVirtualMachine", "networkids"),
        Some(ParamKind::ListOfUuid)
    );
    assert_eq!(kind("listAsyncJobs", "startdate"), Some(ParamKind::Date));
    assert_eq!(
        find("createLoadBalancerRule")
            .unwrap()
            .param("description")
            .map(|p| p.length),
        Some(4096)
    );
}

#[test]
fn param_kinds_use_cloudstacks_type_names() {
    let cases = [
        (ParamKind::Uuid, "uuid"),
        (ParamKind::String, "string"),
        (ParamKind::Integer, "integer"),
        (ParamKind::Long, "long"),
        (ParamKind::Boolean, "boolean"),
        (ParamKind::List, "list"),
        (ParamKind::ListOfUuid, "list"),
        (ParamKind::Map, "map"),
        (ParamKind::Date, "date"),
        (ParamKind::Short, "short"),
    ];
    for (kind, name) in cases {
        assert_eq!(kind.api_type(), name);
    }
}

/// What cmk's cache loader type-asserts (it panics on anything else), and what legacy
/// cloudmonkey's cache maker reads (`int(length)`, `required is True`, CSV `related`).
fn assert_client_shape(body: &Value) {
    let body = body.as_object().expect("object");
    assert_eq!(body.len(), 2, "only count and api");
    let apis = body["api"].as_array().expect("api array");
    assert_eq!(body["count"].as_u64(), Some(apis.len() as u64));
    for api in apis {
        let name = api["name"].as_str().expect("name string");
        assert!(api["isasync"].is_boolean(), "{name}: isasync");
        assert!(api["description"].is_string(), "{name}: description");
        assert!(api["since"].is_string(), "{name}: since");
        let related = api["related"].as_str().expect("related string");
        for r in related.split(',').filter(|r| !r.is_empty()) {
            assert!(find(r).is_some(), "{name}: related {r}");
        }
        for param in api["params"].as_array().expect("params array") {
            assert!(param["name"].is_string(), "{name}: param name");
            assert!(param["type"].is_string(), "{name}: param type");
            assert!(
                param["description"].is_string(),
                "{name}: param description"
            );
            assert!(param["required"].is_boolean(), "{name}: param required");
            assert!(param["length"].is_u64(), "{name}: param length");
            assert!(param["related"].is_string(), "{name}: param related");
            assert!(param["since"].is_string(), "{name}: param since");
        }
        for field in api["response"].as_array().expect("response array") {
            assert!(field["name"].is_string(), "{name}: response name");
            assert!(
                field["description"].is_string(),
                "{name}: response description"
            );
            assert!(field["type"].is_string(), "{name}: response type");
        }
        // No value anywhere is null.
        for (key, value) in api.as_object().unwrap() {
            assert!(!value.is_null(), "{name}.{key} is null");
        }
    }
}

#[test]
fn list_apis_lists_everything_in_the_clients_shape() {
    let body = list_apis_response(None).unwrap();
    assert_client_shape(&body);
    let names: BTreeSet<&str> = body["api"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected());
    // It survives serialization as a client would read it.
    let text = serde_json::to_string(&json!({"listapisresponse": body})).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_client_shape(&back["listapisresponse"]);
}

#[test]
fn list_apis_describes_a_command_field_by_field() {
    let body = list_apis_response(Some("createFirewallRule")).unwrap();
    assert_eq!(body["count"], 1);
    let api = &body["api"][0];
    assert_eq!(api["name"], "createFirewallRule");
    assert_eq!(api["isasync"], true);
    assert_eq!(
        api["related"],
        "listFirewallRules,updateFirewallRule,createEgressFirewallRule,listEgressFirewallRules,\
         updateEgressFirewallRule"
    );
    let params = api["params"].as_array().unwrap();
    let ip = params.iter().find(|p| p["name"] == "ipaddressid").unwrap();
    assert_eq!(ip["type"], "uuid");
    assert_eq!(ip["required"], true);
    assert_eq!(ip["length"], 255);
    assert_eq!(ip["related"], "associateIpAddress,listPublicIpAddresses");
    let cidr = params.iter().find(|p| p["name"] == "cidrlist").unwrap();
    assert_eq!(cidr["type"], "list");
    assert_eq!(cidr["required"], false);
    let response: Vec<&str> = api["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for field in [
        "id",
        "protocol",
        "startport",
        "state",
        "cidrlist",
        "jobid",
        "jobstatus",
    ] {
        assert!(response.contains(&field), "{field}");
    }
    let startport = api["response"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "startport")
        .unwrap();
    assert_eq!(startport["type"], "integer");

    // A sync command has no job fields.
    let body = list_apis_response(Some("listZones")).unwrap();
    let api = &body["api"][0];
    assert_eq!(api["isasync"], false);
    assert!(api["response"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["name"] != "jobid"));
}

#[test]
fn cloudmonkey_can_split_every_name_into_verb_and_noun() {
    // Legacy cloudmonkey and cmk split at the first non-lowercase character.
    let mut pairs = BTreeSet::new();
    for api in all() {
        let idx = api
            .name
            .find(|c: char| !c.is_ascii_lowercase())
            .expect("a noun");
        let (verb, noun) = api.name.split_at(idx);
        assert!(!verb.is_empty() && !noun.is_empty(), "{}", api.name);
        assert!(pairs.insert((verb, noun.to_lowercase())), "{}", api.name);
    }
}

#[test]
fn list_apis_with_an_unknown_name_fails() {
    let err = list_apis_response(Some("noSuchApi")).unwrap_err();
    assert_eq!(err.code, ApiErrorCode::InternalError);
    let err = list_apis_response(Some("createfirewallrule")).unwrap_err();
    assert_eq!(err.http_status(), 530);
}

#[test]
fn spec_helpers() {
    let api = find("listFirewallRules").unwrap();
    assert_eq!(api.response_name(), "listfirewallrulesresponse");
    assert!(api.is_list());
    assert!(api.param("ipaddressid").is_some());
    assert!(api.param("ipAddressId").is_none());
    assert!(!find("createFirewallRule").unwrap().is_list());
}

/// The README's list of the API's commands names exactly the catalogue's.
#[test]
fn the_readme_lists_every_command_of_the_catalogue() {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("## The API's commands")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a section \"The API's commands\"");
    let listed: BTreeSet<&str> = section
        .lines()
        .filter(|l| l.starts_with("- "))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .collect();
    let catalogue: BTreeSet<&str> = all().iter().map(|a| a.name).collect();
    assert_eq!(listed, catalogue);
}
