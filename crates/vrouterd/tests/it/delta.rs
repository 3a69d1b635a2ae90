//! A delta leaves the kernel holding exactly what a full load of the same config gives.

use vrouterd::{ApplyMode, ApplyOutcome, Drift};

use crate::support::*;

const EVERYONE: &[&str] = &["0.0.0.0/0"];

fn config_a() -> Config {
    Config::new(1)
        .egress_default("deny")
        .firewall(1, SNAT_IP, "tcp", "22", &["203.0.113.0/24"])
        .firewall(2, PUBLIC_IP, "tcp", "80", EVERYONE)
        .firewall(3, PUBLIC_IP, "tcp", "8000-8100", EVERYONE)
        .firewall(4, PUBLIC_IP, "tcp", "8080", &["198.51.100.0/24"])
        .firewall(5, PUBLIC_IP, "udp", "5000-5010", &["198.51.100.0/25"])
        .firewall_ping(6, PUBLIC_IP, EVERYONE)
        .firewall(13, PUBLIC_IP, "tcp", "9000-9100", &["192.0.2.0/24"])
        .firewall(14, PUBLIC_IP, "tcp", "7000-7010", &["198.51.100.0/24"])
        .egress(10, "tcp", "80", &[], &[])
        .egress(11, "icmp", "", &[], &[])
        .forward(20, SNAT_IP, "tcp", "22", "22", WEB1, EVERYONE)
        .forward(
            21,
            PUBLIC_IP,
            "tcp",
            "80",
            "8080",
            WEB2,
            &["198.51.100.0/24", "203.0.113.0/24"],
        )
        .forward(
            22,
            PUBLIC_IP,
            "tcp",
            "8000-8100",
            "8000-8100",
            WEB1,
            EVERYONE,
        )
        .forward(
            23,
            PUBLIC_IP,
            "udp",
            "5000-5010",
            "5000-5010",
            WEB2,
            &["198.51.100.0/25"],
        )
        .forward(
            25,
            PUBLIC_IP,
            "tcp",
            "9000-9100",
            "9000-9100",
            WEB2,
            &["192.0.2.0/24"],
        )
}

/// B against A: rules removed (1, 5, 6, 11, 20, 23: whole partitions and range buckets go),
/// changed (2: sources, 3 and 22: ranges, 10: ports and destinations, 14: moved to the other
/// public IP, 21: target), kept (4, 13, 25) and added (7, 8, 9, 12, 24, 30, nested inside or
/// overlapping kept rules), a new public IP, and the other egress policy.
fn config_b() -> Config {
    Config::new(2)
        .egress_default("allow")
        .public_address("203.0.113.12")
        .firewall(
            2,
            PUBLIC_IP,
            "tcp",
            "80",
            &["198.51.100.0/24", "192.0.2.0/24"],
        )
        .firewall(3, PUBLIC_IP, "tcp", "8000-8200", EVERYONE)
        .firewall(4, PUBLIC_IP, "tcp", "8080", &["198.51.100.0/24"])
        .firewall(7, PUBLIC_IP, "tcp", "8050", &["198.51.100.0/25"])
        .firewall(
            8,
            SNAT_IP,
            "udp",
            "6000-6100",
            &["192.0.2.0/24", "198.51.100.1/32"],
        )
        .firewall_ping(9, SNAT_IP, &["203.0.113.0/24"])
        .firewall(13, PUBLIC_IP, "tcp", "9000-9100", &["192.0.2.0/24"])
        .firewall(14, SNAT_IP, "tcp", "7000-7010", &["198.51.100.0/24"])
        .firewall(30, "203.0.113.12", "tcp", "443", EVERYONE)
        .egress(10, "tcp", "80-443", &[], &["198.51.100.0/24"])
        .egress(12, "udp", "53", &["10.1.1.0/25"], &[])
        .forward(
            21,
            PUBLIC_IP,
            "tcp",
            "80",
            "8081",
            WEB1,
            &["198.51.100.0/24"],
        )
        .forward(
            22,
            PUBLIC_IP,
            "tcp",
            "8000-8200",
            "8000-8200",
            WEB1,
            EVERYONE,
        )
        .forward(
            24,
            SNAT_IP,
            "udp",
            "6000-6100",
            "6000-6100",
            WEB1,
            &["192.0.2.0/24"],
        )
        .forward(
            25,
            PUBLIC_IP,
            "tcp",
            "9000-9100",
            "9000-9100",
            WEB2,
            &["192.0.2.0/24"],
        )
}

/// `nft list table ip guestnet` in a form that two listings of the same ruleset share: counter
/// values removed, and the parts whose order nft does not promise sorted (blocks by their
/// header line, set elements within a set). Rules keep their order inside each chain.
fn normalized_listing(net: &Net) -> String {
    let out = net.in_router(&["nft", "list", "table", "ip", render::TABLE]);
    normalize(&String::from_utf8(out.stdout).expect("nft prints text"))
}

fn normalize(listing: &str) -> String {
    let text = strip_counter_values(listing);
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut elements: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(acc) = elements.as_mut() {
            acc.push(' ');
            acc.push_str(trimmed);
            if trimmed.ends_with('}') {
                current.push(sorted_elements(acc));
                elements = None;
            }
            continue;
        }
        if trimmed.starts_with("elements = {") {
            if trimmed.ends_with('}') {
                current.push(sorted_elements(trimmed));
            } else {
                elements = Some(trimmed.to_string());
            }
            continue;
        }
        // A block of the table starts one tab in and ends with `}` one tab in.
        if line.starts_with("\t}") && !line.starts_with("\t\t") {
            current.push(trimmed.to_string());
            blocks.push(current.join("\n"));
            current.clear();
            continue;
        }
        if line.starts_with("table ") || (trimmed == "}" && !line.starts_with('\t')) {
            continue;
        }
        if !trimmed.is_empty() {
            current.push(trimmed.to_string());
        }
    }
    assert!(current.is_empty(), "unterminated block in {listing}");
    blocks.sort();
    blocks.join("\n\n")
}

/// Replaces `counter packets N bytes M` by `counter`.
fn strip_counter_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("counter packets ") {
        out.push_str(&rest[..at]);
        out.push_str("counter");
        let after = &rest[at + "counter packets ".len()..];
        let after = after.trim_start_matches(|c: char| c.is_ascii_digit());
        let after = after
            .strip_prefix(" bytes ")
            .expect("nft prints `counter packets N bytes M`");
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// `elements = { a, b, c }` with its elements sorted.
fn sorted_elements(line: &str) -> String {
    let inner = line
        .trim()
        .strip_prefix("elements = {")
        .and_then(|s| s.strip_suffix('}'))
        .expect("an elements line");
    let mut items: Vec<&str> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    items.sort_unstable();
    format!("elements = {{ {} }}", items.join(", "))
}

#[test]
fn normalize_sorts_blocks_and_elements_and_drops_counter_values() {
    let a = "table ip guestnet {\n\tset b {\n\t\ttype inet_service\n\t\telements = { 2 counter packets 3 bytes 180,\n\t\t\t     1 counter packets 0 bytes 0 }\n\t}\n\n\tchain a {\n\t\tx counter packets 1 bytes 60 accept\n\t\ty\n\t}\n}\n";
    let b = "table ip guestnet {\n\tchain a {\n\t\tx counter packets 0 bytes 0 accept\n\t\ty\n\t}\n\n\tset b {\n\t\ttype inet_service\n\t\telements = { 1 counter packets 9 bytes 9, 2 counter packets 0 bytes 0 }\n\t}\n}\n";
    assert_eq!(normalize(a), normalize(b));
    assert_eq!(
        normalize(a),
        "chain a {\nx counter accept\ny\n}\n\nset b {\ntype inet_service\nelements = { 1 counter, 2 counter }\n}"
    );
    // Rule order inside a chain matters.
    let c = b.replace(
        "\t\tx counter packets 0 bytes 0 accept\n\t\ty\n",
        "\t\ty\n\t\tx accept\n",
    );
    assert_ne!(normalize(a), normalize(&c));
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn delta_leaves_the_kernel_holding_exactly_what_a_full_load_gives() {
    let mut net = Net::up();
    assert!(matches!(
        net.apply(&config_a()),
        ApplyOutcome::Applied {
            generation: 1,
            mode: ApplyMode::Full,
            ..
        }
    ));
    let full_a = normalized_listing(&net);

    assert!(matches!(
        net.apply(&config_b()),
        ApplyOutcome::Applied {
            generation: 2,
            mode: ApplyMode::Delta,
            ..
        }
    ));
    let after_delta = normalized_listing(&net);
    assert_ne!(after_delta, full_a, "B must change the ruleset");

    assert_eq!(net.router.repair().expect("repair"), Some(2));
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);
    let full_b = normalized_listing(&net);
    if after_delta != full_b {
        let delta_lines: Vec<&str> = after_delta.lines().collect();
        let full_lines: Vec<&str> = full_b.lines().collect();
        let only_delta: Vec<&&str> = delta_lines
            .iter()
            .filter(|l| !full_lines.contains(l))
            .collect();
        let only_full: Vec<&&str> = full_lines
            .iter()
            .filter(|l| !delta_lines.contains(l))
            .collect();
        panic!(
            "the delta left a different ruleset than a full load of B\n\
             only after the delta: {only_delta:#?}\nonly after the full load: {only_full:#?}"
        );
    }

    // And back: B → A by delta equals a full load of A.
    assert!(matches!(
        net.apply(&config_a().generation(3)),
        ApplyOutcome::Applied {
            generation: 3,
            mode: ApplyMode::Delta,
            ..
        }
    ));
    assert_eq!(normalized_listing(&net), full_a);
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn single_port_changes_committed_as_a_netlink_batch_equal_a_full_load() {
    let mut net = Net::up();
    let base = config_a();
    net.apply(&base);
    // Element-only changes: a single-port rule's source, a new single-port rule, a removed one,
    // and a port forward's target port.
    let changed = config_a()
        .generation(2)
        .without(4)
        .firewall(4, PUBLIC_IP, "tcp", "8080", &["192.0.2.0/24"])
        .firewall(30, PUBLIC_IP, "udp", "53", EVERYONE)
        .without(1)
        .without(21)
        .forward(
            21,
            PUBLIC_IP,
            "tcp",
            "80",
            "8081",
            WEB2,
            &["198.51.100.0/24", "203.0.113.0/24"],
        );
    let outcome = net.apply(&changed);
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 2,
                mode: ApplyMode::Delta,
                via: vrouterd::CommitPath::Netlink,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);
    let after_batch = normalized_listing(&net);
    assert_eq!(net.router.repair().expect("repair"), Some(2));
    assert_eq!(normalized_listing(&net), after_batch);
    // And the change is enforced: port 80 now goes to web2:8081, where nothing listens here,
    // while the old target would have answered.
    net.http_server(&vm("web2"), WEB2, 8080, "web2");
    assert_ne!(
        net.http_get_short(&outside(), Some(NET_A1), PUBLIC_IP, 80),
        answer("web2", NET_A1)
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by cargo xtask test"]
fn range_changes_new_and_removed_buckets_go_as_one_netlink_batch_and_equal_a_full_load() {
    let mut net = Net::up();
    net.apply(&config_a());
    let full_a = normalized_listing(&net);
    // Rule 3's range shrinks (interval elements change owner and bounds), rule 13's bucket
    // (192.0.2.0/24) disappears, rule 31 makes a new bucket for 198.51.100.0/25 that overlaps
    // rule 14's (198.51.100.0/24) and a range ending at the last port.
    let changed = config_a()
        .generation(2)
        .without(3)
        .firewall(3, PUBLIC_IP, "tcp", "8000-8050", EVERYONE)
        .without(13)
        .firewall(31, PUBLIC_IP, "tcp", "7005-65535", &["198.51.100.0/25"]);
    let outcome = net.apply(&changed);
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                generation: 2,
                mode: ApplyMode::Delta,
                via: vrouterd::CommitPath::Netlink,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(net.router.drift().expect("drift"), Drift::InSync);
    let after_batch = normalized_listing(&net);
    assert_ne!(after_batch, full_a);
    assert_eq!(net.router.repair().expect("repair"), Some(2));
    let full_b = normalized_listing(&net);
    assert_eq!(after_batch, full_b);

    // And back again, removing the new bucket through the batch.
    let outcome = net.apply(&config_a().generation(3));
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                via: vrouterd::CommitPath::Netlink,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(normalized_listing(&net), full_a);
}
