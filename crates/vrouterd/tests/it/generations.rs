//! Generations and refused configs: what the router does not apply leaves the packets alone.

use router_config::RuleKind;
use vrouterd::{chain, ApplyError, ApplyMode, ApplyOutcome};

use crate::support::*;

/// Port 80 of the public IP forwarded to web1, port 2222 to web2, pings answered.
fn serving(generation: u64) -> Config {
    Config::new(generation)
        .firewall(1, PUBLIC_IP, "tcp", "80", &["0.0.0.0/0"])
        .firewall(2, PUBLIC_IP, "tcp", "2222", &["0.0.0.0/0"])
        .firewall_ping(3, PUBLIC_IP, &["0.0.0.0/0"])
        .forward(20, PUBLIC_IP, "tcp", "80", "8080", WEB1, &["0.0.0.0/0"])
        .forward(21, PUBLIC_IP, "tcp", "2222", "8080", WEB2, &["0.0.0.0/0"])
}

fn start_servers(net: &mut Net) {
    net.http_server(&vm("web1"), WEB1, 8080, "web1");
    net.http_server(&vm("web2"), WEB2, 8080, "web2");
}

/// The packets say `serving(_)` is what the kernel enforces.
fn assert_serving(net: &Net) {
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web1", NET_A1)
    );
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 2222),
        answer("web2", NET_A1)
    );
    assert!(net.pings(&outside(), Some(NET_A1), PUBLIC_IP));
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn older_same_reused_and_refused_generations_leave_the_enforced_rules_alone() {
    let mut net = Net::up();
    assert!(matches!(
        net.apply(&serving(5)),
        ApplyOutcome::Applied {
            generation: 5,
            mode: ApplyMode::Full,
            ..
        }
    ));
    start_servers(&mut net);
    assert_serving(&net);

    // Older: not applied, whatever it says (here: port 80 closed, pings refused).
    let older = serving(4).without(1).without(3);
    assert_eq!(
        net.apply(&older),
        ApplyOutcome::Superseded {
            applied_generation: 5
        }
    );
    assert_eq!(net.router.generation(), Some(5));
    assert_serving(&net);

    // The same generation with the same content, in any rule order: nothing to do.
    assert_eq!(
        net.apply(&serving(5)),
        ApplyOutcome::Unchanged { generation: 5 }
    );
    assert_eq!(
        net.apply(&serving(5).reordered()),
        ApplyOutcome::Unchanged { generation: 5 }
    );

    // The same generation with other content: refused.
    let err = net.try_apply(&serving(5).without(1)).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::GenerationReused {
                generation: 5,
                applied: 5
            }
        ),
        "{}",
        chain(&err)
    );
    assert_serving(&net);

    // A refused generation (invalid) is burnt: the same number is never accepted again, even
    // with a valid config.
    let invalid = serving(6)
        .without(1)
        .firewall(9, PUBLIC_IP, "tcp", "1-70000", &["0.0.0.0/0"]);
    let err = net.try_apply(&invalid).unwrap_err();
    assert!(
        matches!(err, ApplyError::Invalid { generation: 6, .. }),
        "{}",
        chain(&err)
    );
    let err = net.try_apply(&serving(6).without(1)).unwrap_err();
    assert!(
        matches!(
            err,
            ApplyError::GenerationReused {
                generation: 6,
                applied: 5
            }
        ),
        "{}",
        chain(&err)
    );
    assert_eq!(net.router.generation(), Some(5));
    assert_serving(&net);

    // The next new generation is applied, and the packets follow it.
    assert!(matches!(
        net.apply(&serving(7).without(1)),
        ApplyOutcome::Applied { generation: 7, .. }
    ));
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::TimedOut
    );
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 2222),
        answer("web2", NET_A1)
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn invalid_config_is_refused_naming_rule_and_field_and_the_previous_rules_stay_enforced() {
    let mut net = Net::up();
    net.apply(&serving(1));
    start_servers(&mut net);
    assert_serving(&net);

    // A port out of range. The config also drops port 2222 and pings, which must not happen.
    let bad_port = serving(2).without(2).without(3).firewall(
        4,
        PUBLIC_IP,
        "tcp",
        "8000-70000",
        &["0.0.0.0/0"],
    );
    let err = net.try_apply(&bad_port).unwrap_err();
    let ApplyError::Invalid {
        generation: 2,
        problems,
    } = &err
    else {
        panic!("expected an invalid config: {}", chain(&err));
    };
    assert_eq!(problems.0.len(), 1, "{problems}");
    let p = &problems.0[0];
    assert_eq!(p.rule, Some((RuleKind::Firewall, 4)), "{problems}");
    assert_eq!(p.field, "ports.end", "{problems}");
    assert!(p.message.contains("70000"), "{problems}");
    assert!(
        chain(&err).contains("firewall rule 4: field `ports.end`: 70000 is not a port"),
        "{}",
        chain(&err)
    );
    assert_eq!(net.router.generation(), Some(1));
    assert_serving(&net);

    // A port forward whose range takes port 2222, already forwarded to web2, from overlapping
    // sources. Again the rest of the config would change the packets.
    let conflict = serving(3)
        .without(3)
        .firewall(5, PUBLIC_IP, "tcp", "2200-2300", &["0.0.0.0/0"])
        .forward(
            22,
            PUBLIC_IP,
            "tcp",
            "2200-2300",
            "2200-2300",
            WEB1,
            &["198.51.100.0/24"],
        );
    let err = net.try_apply(&conflict).unwrap_err();
    let ApplyError::Invalid {
        generation: 3,
        problems,
    } = &err
    else {
        panic!("expected an invalid config: {}", chain(&err));
    };
    assert_eq!(problems.0.len(), 1, "{problems}");
    let p = &problems.0[0];
    assert_eq!(p.rule, Some((RuleKind::PortForward, 22)), "{problems}");
    assert_eq!(p.field, "public_ports", "{problems}");
    assert!(
        p.message.contains("already forwarded by port forward 21"),
        "{problems}"
    );
    assert_eq!(net.router.generation(), Some(1));
    assert_serving(&net);

    // The router still takes a good config afterwards.
    assert!(matches!(
        net.apply(&serving(4).without(3)),
        ApplyOutcome::Applied { generation: 4, .. }
    ));
    assert!(!net.pings_short(&outside(), Some(NET_A1), PUBLIC_IP));
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web1", NET_A1)
    );
}
