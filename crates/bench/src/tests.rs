//! Unit tests of the pure parts: the mixes, the baseline's text, the statistics.

use std::collections::BTreeSet;

use crate::lb;
use crate::linear;
use crate::load::{self, LoadReport, Outcome};
use crate::mix::{self, Mix, PROBE_PORT};
use crate::report::{self, median};
use crate::rng::Rng;

#[test]
fn mixes_are_valid_and_the_same_every_time() {
    for mix in [Mix::A, Mix::B] {
        let cfg = mix::config(mix, 500);
        assert_eq!(cfg, mix::config(mix, 500));
        assert_eq!(cfg.firewall_rules.len(), 501);
        router_config::validate(cfg).expect("the mix validates");
    }
}

#[test]
fn mix_a_spreads_rules_over_a_tenth_as_many_public_ips() {
    let cfg = mix::config(Mix::A, 1000);
    assert_eq!(cfg.public.addresses.len(), 100);
    assert_eq!(
        cfg.public.addresses.iter().filter(|a| a.source_nat).count(),
        1
    );
}

#[test]
fn no_counted_rule_covers_the_probe_port() {
    for mix in [Mix::A, Mix::B] {
        let cfg = mix::config(mix, 2000);
        for r in &cfg.firewall_rules[1..] {
            let p = r.ports.expect("ports");
            assert!(!(p.start..=p.end).contains(&u32::from(PROBE_PORT)));
        }
    }
}

#[test]
fn a_change_moves_one_rule_and_the_generation() {
    for mix in [Mix::A, Mix::B] {
        let cfg = mix::config(mix, 300);
        let mut rng = Rng::new(7);
        let mut used = BTreeSet::new();
        let (next, change) = mix::change(&cfg, mix, &mut rng, &mut used).expect("a rule");
        assert_eq!(next.generation, cfg.generation + 1);
        let differing: Vec<usize> = (0..cfg.firewall_rules.len())
            .filter(|i| cfg.firewall_rules[*i] != next.firewall_rules[*i])
            .collect();
        assert_eq!(differing, vec![change.index]);
        assert!(used.contains(&change.index));
        router_config::validate(next).expect("the changed config validates");
    }
}

#[test]
fn changes_run_out_instead_of_looping() {
    let cfg = mix::config(Mix::A, 10);
    let mut rng = Rng::new(1);
    let mut used = BTreeSet::new();
    for _ in 0..10 {
        assert!(mix::change(&cfg, Mix::A, &mut rng, &mut used).is_some());
    }
    assert!(mix::change(&cfg, Mix::A, &mut rng, &mut used).is_none());
}

#[test]
fn the_linear_chain_has_one_rule_per_source_and_the_probe_last() {
    let cfg = mix::config(Mix::B, 200);
    let lin = linear::render(&cfg);
    let sources: usize = cfg
        .firewall_rules
        .iter()
        .map(|r| r.source_cidrs.len())
        .sum();
    // The conntrack rule, one per (rule, source) including the probe's, the final drop.
    assert_eq!(lin.chain_rules, 1 + sources + 1);
    assert_eq!(lin.position[0], lin.chain_rules - 2);
    let rules = lin
        .script
        .lines()
        .filter(|l| l.ends_with(" accept") || l.ends_with(" drop"))
        .count();
    assert_eq!(rules, lin.chain_rules);
}

#[test]
fn handles_are_read_in_chain_order() {
    let listing = "table ip linear { # handle 3\n\tchain ingress { # handle 1\n\t\ttype filter hook prerouting priority -140; policy accept;\n\t\tct state established,related accept # handle 2\n\t\tip daddr 1.2.3.4 tcp dport 22 counter packets 0 bytes 0 accept # handle 5\n\t}\n}\n";
    assert_eq!(linear::handles(listing), vec![2, 5]);
}

#[test]
fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&[]), None);
}

#[test]
fn lb_configs_are_valid_with_one_port_per_rule_all_opened() {
    for n in [1, 10, 1000] {
        let cfg = lb::config(n, 3);
        assert_eq!(cfg.generation, 3);
        assert_eq!(cfg.load_balancers.len(), n);
        let ports: BTreeSet<u32> = cfg.load_balancers.iter().map(|l| l.public_port).collect();
        assert_eq!(ports.len(), n);
        let open = cfg.firewall_rules[0].ports.expect("ports");
        assert!(ports.iter().all(|p| (open.start..=open.end).contains(p)));
        assert_eq!(open.end - open.start + 1, n as u32);
        router_config::validate(cfg).expect("the lb config validates");
    }
}

#[test]
fn a_member_toggle_adds_then_removes_one_member_of_one_rule() {
    let cfg = lb::config(100, 1);
    let index = lb::rule_for(6, 100);
    let added = lb::toggle_member(&cfg, index);
    assert_eq!(added.generation, 2);
    assert_eq!(added.load_balancers[index].members.len(), 3);
    let differing = (0..100)
        .filter(|i| cfg.load_balancers[*i] != added.load_balancers[*i])
        .count();
    assert_eq!(differing, 1);
    let removed = lb::toggle_member(&added, index);
    assert_eq!(removed.generation, 3);
    assert_eq!(removed.load_balancers, cfg.load_balancers);
    router_config::validate(added).expect("the changed config validates");
}

#[test]
fn an_algorithm_toggle_flips_between_roundrobin_and_leastconn() {
    let cfg = lb::config(10, 1);
    let once = lb::toggle_algorithm(&cfg, 4);
    assert_eq!(once.load_balancers[4].algorithm, "leastconn");
    let twice = lb::toggle_algorithm(&once, 4);
    assert_eq!(twice.load_balancers, cfg.load_balancers);
    assert_eq!(twice.generation, 3);
}

#[test]
fn changes_pair_up_on_rules_within_range() {
    for n in [1, 10, 1000] {
        for k in 0..40 {
            assert!(lb::rule_for(k, n) < n);
            assert_eq!(
                lb::rule_for(2 * (k / 2), n),
                lb::rule_for(2 * (k / 2) + 1, n)
            );
        }
    }
}

#[test]
fn splice_replaces_only_between_its_own_markers() {
    let old = format!(
        "# t\n{}\nrouter\n{}\n\nmiddle\n{}\nold lb\n{}\ntail\n",
        report::BEGIN,
        report::END,
        lb::BEGIN,
        lb::END
    );
    let new = report::splice(&old, lb::BEGIN, lb::END, Some("## LB"), "new lb\n");
    assert!(new.contains("router\n"));
    assert!(new.contains(&format!("{}\nnew lb\n{}\ntail\n", lb::BEGIN, lb::END)));
    assert!(!new.contains("old lb"));
    assert!(!new.contains("## LB"));
    let appended = report::splice("# t\n", lb::BEGIN, lb::END, Some("## LB"), "x\n");
    assert_eq!(
        appended,
        format!("# t\n\n## LB\n\n{}\nx\n{}\n", lb::BEGIN, lb::END)
    );
}

#[test]
fn outcomes_are_counted_once_each() {
    use std::io::{Error, ErrorKind};
    let mut r = LoadReport::default();
    for kind in [
        ErrorKind::ConnectionRefused,
        ErrorKind::ConnectionReset,
        ErrorKind::BrokenPipe,
        ErrorKind::TimedOut,
        ErrorKind::WouldBlock,
        ErrorKind::UnexpectedEof,
        ErrorKind::AddrNotAvailable,
    ] {
        r.count(load::classify(&Error::from(kind)));
    }
    r.count(Outcome::Success);
    assert_eq!(
        (
            r.attempted,
            r.succeeded,
            r.refused,
            r.reset,
            r.timed_out,
            r.short_reads,
            r.other
        ),
        (8, 1, 1, 2, 2, 1, 1)
    );
    assert_eq!(r.failed_otherwise(), 4);
    let mut total = LoadReport::default();
    load::merge(&mut total, r.clone());
    load::merge(&mut total, r);
    assert_eq!(total.attempted, 16);
    assert_eq!(total.reset, 4);
}

#[test]
fn host_rules_are_three_forwards_in_ten_and_never_share_a_port() {
    use crate::host::{rule_plan, RuleSpec};
    let plan = rule_plan(1000);
    assert_eq!(plan.len(), 1000);
    let forwards: Vec<u16> = plan
        .iter()
        .filter_map(|r| match r {
            RuleSpec::Forward { public_port } => Some(*public_port),
            RuleSpec::Firewall { .. } => None,
        })
        .collect();
    let firewall: Vec<u16> = plan
        .iter()
        .filter_map(|r| match r {
            RuleSpec::Firewall { port, .. } => Some(*port),
            RuleSpec::Forward { .. } => None,
        })
        .collect();
    assert_eq!(forwards.len(), 300);
    assert_eq!(firewall.len(), 700);
    let all: BTreeSet<u16> = forwards.iter().chain(&firewall).copied().collect();
    assert_eq!(all.len(), 1000, "a port is used twice");
    assert!(firewall.iter().all(|p| *p >= 1 && *p < 20_000));
    assert_eq!(plan, rule_plan(1000), "the same every time");
}

#[test]
fn host_rules_go_round_robin_over_the_networks() {
    let order = crate::host::send_order(3, 2);
    assert_eq!(order, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
}

#[test]
fn host_cpu_share_and_rss_are_read_right() {
    use crate::host::{core_share, vm_rss_kib};
    assert!((core_share(120, 100, 60.0) - 2.0).abs() < 1e-9);
    assert!(core_share(1, 0, 60.0).is_nan());
    let status = "Name:\tguestnet\nVmPeak:\t  900 kB\nVmRSS:\t   53412 kB\nThreads:\t9\n";
    assert_eq!(vm_rss_kib(status), Some(53_412));
    assert_eq!(vm_rss_kib("Name:\tx\n"), None);
}

#[test]
fn host_markdown_states_targets_and_verdicts() {
    use crate::host::{markdown, Deploy, Figures, Options, Routers};
    let o = Options {
        networks: 2,
        rules: 10,
        clients: 1,
        restarts: 2,
        idle_seconds: 60,
        deploys: 1,
        only: None,
        server: None,
        markdown: None,
    };
    let f = Figures {
        routers: Some(Routers {
            networks: 2,
            rules: 10,
            fill_s: 1.0,
            up_s: vec![0.5, 0.7],
            clean_start_s: vec![1.0, 1.2],
            clean_end_s: vec![12.0, 14.0],
            idle_seconds: 60.0,
            idle_cpu_pct: 0.5,
            ..Routers::default()
        }),
        deploys: vec![Deploy {
            job_s: 0.2,
            lease_s: 1.1,
            http_s: 1.5,
        }],
    };
    let text = markdown(&o, &f, &crate::report::Machine::default());
    assert!(text.contains("--networks 2 --rules 10"), "{text}");
    assert!(
        text.contains("≤ 10 s | 13.00 s (12.00–14.00) | **missed**"),
        "{text}"
    );
    assert!(text.contains("≤ 2 % | 0.50 % | met"), "{text}");
    assert!(text.contains("| 1.50 s (1.50–1.50) |"), "{text}");
}

#[test]
fn host_stat_splits_own_and_children_ticks() {
    let stat = "423 (guestnet (x)) S 1 423 423 0 -1 4194560 100 0 0 0 170 30 7 3 20 0 15 0 5000";
    assert_eq!(crate::host::own_and_children_ticks(stat), Some((200, 10)));
    assert_eq!(crate::host::own_and_children_ticks("1 (x) S 1"), None);
}
