//! Drift: someone else changed the router's ruleset; the router notices and puts it back.

use vrouterd::serve::status_of;
use vrouterd::{chain, Drift};

use crate::support::*;

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn flushed_table_is_reported_as_drift_and_repair_restores_enforcement() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["198.51.100.0/24"])
            .forward(20, PUBLIC_IP, "tcp", "80", "8080", WEB1, &["0.0.0.0/0"]),
    );
    net.http_server(&vm("web1"), WEB1, 8080, "web1");
    assert_eq!(net.router.drift().unwrap(), Drift::InSync);
    let enforced = |net: &Net| {
        assert_eq!(
            net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
            answer("web1", NET_A1)
        );
        assert_eq!(
            net.http_get_short(&outside(), Some(NET_C), PUBLIC_IP, 80),
            Reply::TimedOut
        );
        assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));
    };
    enforced(&net);

    net.in_router(&["nft", "flush", "ruleset"]);

    let drift = net.router.drift().unwrap();
    assert!(matches!(drift, Drift::Drifted { .. }), "{drift:?}");
    let report = status_of(&mut net.router, false).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.drift, drift);
    assert_eq!(report.repaired, None);
    // Nothing is enforced any more: no forward (the router itself resets the connection), no
    // firewall (anyone may ping).
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::Refused
    );
    assert!(net.pings(&outside(), Some(NET_C), PUBLIC_IP));

    let report = status_of(&mut net.router, true).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.repaired, Some(1));
    assert_eq!(report.drift, Drift::InSync);
    assert_eq!(report.generation, Some(1));
    enforced(&net);

    // Once more, through `repair` itself.
    net.in_router(&["nft", "flush", "ruleset"]);
    assert!(matches!(net.router.drift().unwrap(), Drift::Drifted { .. }));
    assert_eq!(net.router.repair().unwrap(), Some(1));
    assert_eq!(net.router.drift().unwrap(), Drift::InSync);
    enforced(&net);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn the_same_generation_sent_again_to_a_drifted_router_repairs_it() {
    let mut net = Net::up();
    let cfg = Config::new(1)
        .firewall(1, PUBLIC_IP, "tcp", "80", &["198.51.100.0/24"])
        .forward(20, PUBLIC_IP, "tcp", "80", "8080", WEB1, &["0.0.0.0/0"]);
    net.apply(&cfg);
    net.http_server(&vm("web1"), WEB1, 8080, "web1");
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));

    net.in_router(&["nft", "flush", "ruleset"]);
    assert!(net.pings(&outside(), Some(NET_C), PUBLIC_IP));

    // Level-triggered: re-sending what the router should hold puts it back.
    assert_eq!(
        net.apply(&cfg),
        vrouterd::ApplyOutcome::Unchanged { generation: 1 }
    );
    assert_eq!(net.router.drift().unwrap(), Drift::InSync);
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web1", NET_A1)
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn the_skeleton_of_a_staged_load_is_closed_until_its_elements_arrive() {
    let mut net = Net::up();
    net.apply(
        &Config::new(1)
            .firewall(1, PUBLIC_IP, "tcp", "80", &["198.51.100.0/24"])
            .forward(20, PUBLIC_IP, "tcp", "80", "8080", WEB1, &["0.0.0.0/0"]),
    );
    net.http_server(&vm("web1"), WEB1, 8080, "web1");
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web1", NET_A1)
    );

    // What a router that stopped between the two transactions of a staged load leaves: the
    // skeleton alone, in a namespace that had lost its ruleset.
    let model = net.router.model().expect("a model").clone();
    let staged = render::render_staged(&model).expect("a typed form");
    net.in_router(&["nft", "flush", "ruleset"]);
    sys::nft::apply(net.router.netns(), &staged.skeleton).expect("the skeleton loads");
    // Closed: the allowed source's connection is dropped by the ingress chain (a timeout, not
    // the router's own reset, which an open table would give without the forward), and nobody
    // may ping.
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        Reply::TimedOut
    );
    assert!(!net.pings_short(&outside(), Some(NET_A1), PUBLIC_IP));
    assert!(!net.pings_short(&outside(), Some(NET_C), PUBLIC_IP));

    // The table is there, so the repair replaces it in one transaction, and enforcement is back.
    assert!(matches!(net.router.drift().unwrap(), Drift::Drifted { .. }));
    assert_eq!(net.router.repair().unwrap(), Some(1));
    assert_eq!(
        net.http_get(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web1", NET_A1)
    );
    assert_eq!(
        net.http_get_short(&outside(), Some(NET_C), PUBLIC_IP, 80),
        Reply::TimedOut
    );
}
