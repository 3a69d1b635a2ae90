//! Parameter checking: names, types, maps, dates and paging.

use super::*;
use crate::catalogue::find;
use crate::error::{ApiErrorCode, CsErrorCode};

const IP: &str = "6f1c5b8e-3a2d-4c1e-9b7a-1234567890ab";
const VM: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn raw(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(command: &str, pairs: &[(&str, &str)]) -> Result<Params, ApiError> {
    check_and_normalize(find(command).unwrap(), &raw(pairs))
}

#[test]
fn names_match_in_any_case_and_transport_and_unknown_names_are_skipped() {
    let p = check(
        "createFirewallRule",
        &[
            ("command", "createFirewallRule"),
            ("apiKey", "k"),
            ("response", "json"),
            ("signatureVersion", "3"),
            ("expires", "2026-11-25T19:48:22+0000"),
            ("signature", "s"),
            ("ipAddressId", IP),
            ("PROTOCOL", "tcp"),
            ("startPort", "22"),
            ("someoneElsesParam", "x"),
        ],
    )
    .unwrap();
    assert_eq!(p.spec().name, "createFirewallRule");
    assert_eq!(p.uuid("ipaddressid"), Some(IP));
    assert_eq!(p.str("protocol"), Some("tcp"));
    assert_eq!(p.int("startport"), Some(22));
    assert_eq!(p.str("startport"), Some("22"));
    assert!(!p.has("endport"));
    assert_eq!(p.int("endport"), None);
    assert_eq!(p.int("protocol"), None);
}

#[test]
fn the_first_of_repeated_names_wins() {
    let p = check(
        "createFirewallRule",
        &[
            ("ipaddressid", IP),
            ("protocol", "udp"),
            ("Protocol", "tcp"),
        ],
    )
    .unwrap();
    assert_eq!(p.str("protocol"), Some("udp"));
}

#[test]
fn missing_and_empty_required_parameters() {
    let e = check("createFirewallRule", &[("protocol", "tcp")]).unwrap_err();
    assert_eq!(e.code, ApiErrorCode::ParamError);
    assert_eq!(e.cs_code, Some(CsErrorCode::ServerApi));
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to missing parameter ipaddressid"
    );
    let e = check(
        "createFirewallRule",
        &[("ipaddressid", IP), ("protocol", "")],
    )
    .unwrap_err();
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to missing parameter protocol"
    );
    let e = check("listTemplates", &[]).unwrap_err();
    assert!(e.text.ends_with("missing parameter templatefilter"));
}

#[test]
fn numbers_are_checked_against_their_width() {
    let ok = |v: &str| {
        check(
            "createFirewallRule",
            &[("ipaddressid", IP), ("protocol", "tcp"), ("startport", v)],
        )
    };
    assert_eq!(ok("-1").unwrap().int("startport"), Some(-1));
    assert_eq!(ok("+80").unwrap().int("startport"), Some(80));
    assert_eq!(
        ok("2147483647").unwrap().int("startport"),
        Some(2_147_483_647)
    );
    let e = ok("ssh").unwrap_err();
    assert_eq!(e.http_status(), 431);
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to invalid value ssh for parameter \
         startport"
    );
    assert!(ok("2147483648").is_err());
    assert!(ok(" 22").is_err());
    assert!(ok("22.0").is_err());
    // An empty optional number is "not given".
    assert!(!ok("").unwrap().has("startport"));

    let short = |v: &str| {
        check(
            "createAccount",
            &[
                ("username", "u"),
                ("password", "p"),
                ("email", "e"),
                ("firstname", "f"),
                ("lastname", "l"),
                ("accounttype", v),
            ],
        )
    };
    assert_eq!(short("2").unwrap().int("accounttype"), Some(2));
    assert!(short("40000").is_err());
}

#[test]
fn booleans_are_true_in_any_case_and_anything_else_is_false() {
    let b = |v: &str| check("destroyVirtualMachine", &[("id", VM), ("expunge", v)]);
    assert_eq!(b("true").unwrap().bool("expunge"), Some(true));
    assert_eq!(b("TRUE").unwrap().bool("expunge"), Some(true));
    assert_eq!(b("False").unwrap().bool("expunge"), Some(false));
    assert!(!b("").unwrap().has("expunge"));
    // As CloudStack's Boolean.valueOf: libcloud sends `forced=None`.
    for other in ["None", "yes", "1", "t"] {
        assert_eq!(b(other).unwrap().bool("expunge"), Some(false), "{other}");
    }
}

#[test]
fn uuids_are_checked_for_form_and_lowercased() {
    let upper = IP.to_uppercase();
    let p = check("deleteFirewallRule", &[("id", &upper)]).unwrap();
    assert_eq!(p.uuid("id"), Some(IP));
    assert_eq!(p.str("id"), Some(IP));

    for bad in [
        "42",
        "not-a-uuid",
        &IP[1..],
        &format!("{IP}0"),
        "6f1c5b8e_3a2d_4c1e_9b7a_1234567890ab",
    ] {
        let e = check("deleteFirewallRule", &[("id", bad)]).unwrap_err();
        assert_eq!(e.http_status(), 431, "{bad}");
        assert_eq!(
            e.text,
            format!(
                "Unable to execute API command deletefirewallrule due to invalid value. Invalid \
                 parameter id value={bad} due to incorrect long value format, or entity does not \
                 exist or due to incorrect parameter annotation for the field in api cmd class."
            )
        );
    }
    // -1 is passed through, as CloudStack does for "all".
    let p = check("listFirewallRules", &[("projectid", "-1")]).unwrap();
    assert_eq!(p.uuid("projectid"), Some("-1"));
    // An empty optional uuid is "not given".
    assert!(!check("listFirewallRules", &[("id", "")]).unwrap().has("id"));
    // uuid() is for uuid parameters only.
    let p = check(
        "createFirewallRule",
        &[("ipaddressid", IP), ("protocol", "tcp")],
    )
    .unwrap();
    assert_eq!(p.uuid("protocol"), None);
}

#[test]
fn lists_split_on_commas() {
    let p = check(
        "createFirewallRule",
        &[
            ("ipaddressid", IP),
            ("protocol", "tcp"),
            ("cidrlist", "10.0.0.0/8,,192.168.0.0/16"),
        ],
    )
    .unwrap();
    assert_eq!(
        p.list("cidrlist"),
        Some(vec!["10.0.0.0/8".to_string(), "192.168.0.0/16".to_string()])
    );
    assert_eq!(p.str("cidrlist"), Some("10.0.0.0/8,,192.168.0.0/16"));
    let p = check(
        "createFirewallRule",
        &[("ipaddressid", IP), ("protocol", "tcp"), ("cidrlist", "")],
    )
    .unwrap();
    assert_eq!(p.list("cidrlist"), Some(vec![]));

    let ids = format!("{},{VM}", IP.to_uppercase());
    let p = check(
        "assignToLoadBalancerRule",
        &[("id", IP), ("virtualmachineids", &ids)],
    )
    .unwrap();
    assert_eq!(
        p.list("virtualmachineids"),
        Some(vec![IP.to_string(), VM.to_string()])
    );
    let e = check(
        "assignToLoadBalancerRule",
        &[("id", IP), ("virtualmachineids", "1,2")],
    )
    .unwrap_err();
    assert!(e
        .text
        .contains("Invalid parameter virtualmachineids value=1"));
}

#[test]
fn maps_group_by_index_in_numeric_order() {
    let p = check(
        "assignToLoadBalancerRule",
        &[
            ("id", IP),
            ("vmidipmap[10].vmid", VM),
            ("vmidipmap[10].vmip", "10.1.1.10"),
            ("vmidipmap[2].vmid", VM),
            ("vmidipmap[2].vmip", "10.1.1.2"),
            ("VMIDIPMAP[2].VmIp", "kept as sent"),
        ],
    )
    .unwrap();
    let map = p.map("vmidipmap");
    assert_eq!(map.len(), 2);
    assert_eq!(map[0]["vmip"], "10.1.1.2");
    assert_eq!(map[0]["VmIp"], "kept as sent");
    assert_eq!(map[1]["vmip"], "10.1.1.10");
    assert_eq!(map[1]["vmid"], VM);
    assert_eq!(p.str("vmidipmap"), None);
    assert!(p.has("vmidipmap"));

    let p = check(
        "listFirewallRules",
        &[("tags[0].key", "env"), ("tags[0].value", "prod")],
    )
    .unwrap();
    assert_eq!(p.map("tags")[0]["key"], "env");
    assert!(check("listFirewallRules", &[])
        .unwrap()
        .map("tags")
        .is_empty());

    // A map sent as a plain value is not a map.
    let e = check("listFirewallRules", &[("tags", "env=prod")]).unwrap_err();
    assert_eq!(e.http_status(), 431);
}

#[test]
fn malformed_map_keys_fail_with_430_whatever_their_name() {
    for key in [
        "tags[0]key",
        "tags[0][1].key",
        "tags[a].key",
        "tags]0[.key",
        "tags[0.key",
        "tags.x[0]",
        "unknown[1]",
        "unknown[x].y",
        "tags[99999999999].key",
    ] {
        let e = check("listFirewallRules", &[(key, "v")]).unwrap_err();
        assert_eq!(e.code, ApiErrorCode::MalformedParameter, "{key}");
        assert_eq!(e.http_status(), 430);
        assert!(
            e.text
                .starts_with(&format!("Unable to decode parameter {key}")),
            "{key}"
        );
    }
    // A key starting with a bracket is just an unknown name, and so are keys without `[`.
    assert!(check("listFirewallRules", &[("[0].x", "v"), ("a]b", "v")]).is_ok());
    // Negative and signed indices parse, as Java's parseInt does.
    let p = check(
        "listFirewallRules",
        &[("tags[-1].key", "a"), ("tags[+1].key", "b")],
    )
    .unwrap();
    assert_eq!(p.map("tags").len(), 2);
}

#[test]
fn strings_are_limited_to_their_length() {
    let name = "n".repeat(255);
    let ok = check(
        "createLoadBalancerRule",
        &[
            ("name", &name),
            ("algorithm", "roundrobin"),
            ("privateport", "80"),
            ("publicport", "80"),
            ("description", &"d".repeat(4096)),
        ],
    );
    assert!(ok.is_ok());
    let too_long = "n".repeat(256);
    let e = check(
        "createLoadBalancerRule",
        &[
            ("name", &too_long),
            ("algorithm", "roundrobin"),
            ("privateport", "80"),
            ("publicport", "80"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.http_status(), 431);
    assert_eq!(
        e.text,
        "Unable to execute API command createloadbalancerrule due to invalid value. Value greater \
         than max allowed length 255 for param: name"
    );
    // Length counts UTF-16 units, as Java does: 255 two-byte characters fit.
    let wide = "é".repeat(255);
    assert!(check(
        "createLoadBalancerRule",
        &[
            ("name", &wide),
            ("algorithm", "roundrobin"),
            ("privateport", "80"),
            ("publicport", "80"),
        ],
    )
    .is_ok());
}

#[test]
fn dates_in_the_accepted_forms() {
    assert_eq!(parse_date("1970-01-01"), Some(0));
    assert_eq!(parse_date("2026-11-25"), Some(1_795_564_800));
    assert_eq!(parse_date("2026-11-25 19:48:22"), Some(1_795_636_102));
    assert_eq!(parse_date("2026-11-25T19:48:22"), Some(1_795_636_102));
    assert_eq!(parse_date("2026-11-25T19:48:22Z"), Some(1_795_636_102));
    assert_eq!(parse_date("2026-11-25T19:48:22+0000"), Some(1_795_636_102));
    assert_eq!(parse_date("2026-11-25T20:48:22+01:00"), Some(1_795_636_102));
    assert_eq!(parse_date("2026-11-25T18:48:22-0100"), Some(1_795_636_102));
    assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800));
    for bad in [
        "",
        "2026-11-25 19:48",
        "2026-13-01",
        "2026-02-29",
        "2026-04-31",
        "2026/11/25",
        "25-11-2026",
        "2026-11-25T24:00:00",
        "2026-11-25 19:48:22+0000",
        "2026-11-25T19:48:22+00",
        "2026-11-25T19:48:22 UTC",
        "2026-11-25x",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }

    let p = check("listEvents", &[("startdate", "2026-11-25")]).unwrap();
    assert_eq!(p.date("startdate"), Some(1_795_564_800));
    assert_eq!(p.str("startdate"), Some("2026-11-25"));
    let e = check("listAsyncJobs", &[("startdate", "yesterday")]).unwrap_err();
    assert_eq!(e.http_status(), 431);
    assert!(e
        .text
        .starts_with("Unable to parse date yesterday for command listasyncjobs"));
}

#[test]
fn paging_follows_cloudstacks_rules() {
    let paging = |pairs: &[(&str, &str)]| check("listFirewallRules", pairs).map(|p| p.paging());
    assert_eq!(paging(&[]).unwrap(), Paging::DEFAULT);
    assert_eq!(Paging::DEFAULT.size, Some(500));
    assert_eq!(
        paging(&[("page", "1"), ("pagesize", "500")]).unwrap(),
        Paging {
            start: 0,
            size: Some(500)
        }
    );
    assert_eq!(
        paging(&[("page", "3"), ("pagesize", "10")]).unwrap(),
        Paging {
            start: 20,
            size: Some(10)
        }
    );
    assert_eq!(
        paging(&[("page", "0"), ("pagesize", "10")]).unwrap(),
        Paging {
            start: 0,
            size: Some(10)
        }
    );
    assert_eq!(paging(&[("pagesize", "-1")]).unwrap(), Paging::ALL);

    let e = paging(&[("page", "1"), ("pagesize", "501")]).unwrap_err();
    assert_eq!(e.http_status(), 431);
    assert_eq!(e.cs_code, Some(CsErrorCode::InvalidParameterValue));
    assert_eq!(
        e.text,
        "Page size can't exceed max allowed page size value: 500"
    );
    let e = paging(&[("page", "1"), ("pagesize", "-1")]).unwrap_err();
    assert_eq!(
        e.text,
        "Can't specify page parameter when pagesize is -1 (Unlimited)"
    );
    let e = paging(&[("pagesize", "10")]).unwrap_err();
    assert_eq!(
        e.text,
        "\"page\" parameter is required when \"pagesize\" is specified"
    );
    let e = paging(&[("page", "2")]).unwrap_err();
    assert_eq!(
        e.text,
        "\"pagesize\" parameter is required when \"page\" is specified"
    );
    let e = paging(&[("page", "1"), ("pagesize", "-2")]).unwrap_err();
    assert_eq!(e.http_status(), 431);
    let e = paging(&[("page", "1"), ("pagesize", "ten")]).unwrap_err();
    assert!(e.text.ends_with("invalid value ten for parameter pagesize"));

    // Commands that do not page get the default.
    let p = check("deleteFirewallRule", &[("id", IP)]).unwrap();
    assert_eq!(p.paging(), Paging::DEFAULT);
}

#[test]
fn paging_slices() {
    let items: Vec<u32> = (0..25).collect();
    let page = |start, size| Paging { start, size };
    assert_eq!(page(20, Some(10)).slice(&items), &items[20..25]);
    assert_eq!(page(0, Some(10)).slice(&items), &items[..10]);
    assert!(page(30, Some(10)).slice(&items).is_empty());
    assert_eq!(Paging::ALL.slice(&items).len(), 25);
    assert!(page(0, Some(0)).slice(&items).is_empty());
    assert_eq!(page(usize::MAX, Some(usize::MAX)).range(25), 25..25);
    let big = check(
        "listFirewallRules",
        &[("page", "2147483647"), ("pagesize", "500")],
    )
    .unwrap()
    .paging();
    assert!(big.slice(&items).is_empty());
}

#[test]
fn every_catalogue_command_accepts_its_required_parameters() {
    // A request carrying only well-formed values for the required parameters passes.
    for spec in crate::catalogue::all() {
        let pairs: Vec<(String, String)> = spec
            .params
            .iter()
            .filter(|p| p.required)
            .flat_map(|p| {
                let v = match p.kind {
                    // A map is given entry by entry: name[0].field=value.
                    ParamKind::Map => {
                        return vec![
                            (format!("{}[0].key", p.name), "x".to_string()),
                            (format!("{}[0].value", p.name), "y".to_string()),
                        ]
                    }
                    ParamKind::Uuid | ParamKind::ListOfUuid => IP.to_string(),
                    ParamKind::Integer | ParamKind::Long | ParamKind::Short => "1".into(),
                    ParamKind::Boolean => "true".into(),
                    ParamKind::Date => "2026-01-01".into(),
                    ParamKind::String | ParamKind::List => "x".into(),
                };
                vec![(p.name.to_string(), v)]
            })
            .collect();
        let p = check_and_normalize(spec, &pairs).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        for param in spec.params.iter().filter(|p| p.required) {
            assert!(p.has(param.name), "{}.{}", spec.name, param.name);
        }
    }
}

proptest::proptest! {
    #[test]
    fn date_parsing_never_panics(s in "\\PC{0,40}") {
        let _ = parse_date(&s);
    }

    #[test]
    fn date_like_text_never_panics(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9:]{8}[-+Z:0-9é]{0,7}") {
        let _ = parse_date(&s);
    }

    #[test]
    fn checking_arbitrary_requests_never_panics(
        pairs in proptest::collection::vec(("[a-zA-Z\\[\\]\\.0-9é-]{0,12}", "\\PC{0,12}"), 0..8),
    ) {
        for spec in crate::catalogue::all() {
            let _ = check_and_normalize(spec, &pairs);
        }
    }
}

fn lb(extra: &[(&str, &str)]) -> Result<Params, ApiError> {
    let mut pairs = vec![
        ("publicipid", IP),
        ("name", "web"),
        ("algorithm", "roundrobin"),
        ("publicport", "80"),
        ("privateport", "80"),
    ];
    pairs.extend_from_slice(extra);
    let mut seen = std::collections::HashSet::new();
    let pairs: Vec<_> = pairs
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(*k))
        .collect();
    check("createLoadBalancerRule", &pairs)
}

#[test]
fn control_characters_are_refused_in_any_name_or_value() {
    assert!(lb(&[]).is_ok());
    for (name, value) in [
        ("name", "\u{0}web"),
        ("description", "a\u{7}b"),
        ("name", "tab\there"),
        ("unknownparam", "x\u{7f}"),
        ("response", "json\u{0}"),
    ] {
        let e = lb(&[(name, value)]).unwrap_err();
        assert_eq!(e.code, ApiErrorCode::ParamError, "{name}={value:?}");
        assert_eq!(
            e.text,
            format!(
                "Received value containing illegal ASCII non-printable characters for parameter \
                 {name}"
            )
        );
    }
    // A control character in a name is named escaped.
    let e = lb(&[("na\u{0}me", "x")]).unwrap_err();
    assert!(e.text.ends_with("for parameter na\\u{0}me"), "{}", e.text);
    // Line feed and carriage return pass, as in CloudStack.
    let p = lb(&[("description", "two\r\nlines")]).unwrap();
    assert_eq!(p.str("description"), Some("two\r\nlines"));
}

#[test]
fn lists_maps_and_requests_are_bounded() {
    let rule = |cidrs: &str| {
        check(
            "createFirewallRule",
            &[
                ("ipaddressid", IP),
                ("protocol", "tcp"),
                ("cidrlist", cidrs),
            ],
        )
    };
    let most = vec!["10.0.0.0/8"; MAX_LIST_ITEMS].join(",");
    assert_eq!(rule(&most).unwrap().list("cidrlist").unwrap().len(), 1000);
    let e = rule(&format!("{most},10.0.0.0/8")).unwrap_err();
    assert_eq!(e.code, ApiErrorCode::ParamError);
    assert_eq!(
        e.text,
        "Unable to execute API command createfirewallrule due to invalid value. cidrlist has \
         1001 items, more than the 1000 a list parameter may hold"
    );
    // 90,000 entries, as a client sent once: refused without splitting them up first.
    let e = rule(&vec!["10.0.0.0/8"; 90_000].join(",")).unwrap_err();
    assert!(e.text.contains("cidrlist has 90000 items"), "{}", e.text);
    let e = rule(&"1".repeat(256)).unwrap_err();
    assert!(
        e.text
            .ends_with("max allowed length 255 for param: cidrlist"),
        "{}",
        e.text
    );

    let mut members: Vec<(String, String)> = (0..=MAX_LIST_ITEMS)
        .map(|i| (format!("vmidipmap[{i}].vmid"), VM.to_string()))
        .collect();
    members.push(("id".into(), IP.into()));
    let spec = find("assignToLoadBalancerRule").unwrap();
    let e = check_and_normalize(spec, &members).unwrap_err();
    assert!(e.text.contains("vmidipmap has 1001 items"), "{}", e.text);
    let long = "x".repeat(MAX_MAP_VALUE_CHARS + 1);
    let e = check(
        "assignToLoadBalancerRule",
        &[("id", IP), ("vmidipmap[0].vmip", &long)],
    )
    .unwrap_err();
    assert!(e.text.contains("for param: vmidipmap"), "{}", e.text);

    let many: Vec<(String, String)> = (0..=MAX_PARAMS)
        .map(|i| (format!("p{i}"), "1".to_string()))
        .collect();
    let e = check_and_normalize(find("listZones").unwrap(), &many).unwrap_err();
    assert_eq!(e.code, ApiErrorCode::ParamError);
    assert_eq!(
        e.text,
        "The request's parameter list has 5001 parameters, more than the 5000 allowed"
    );
}
