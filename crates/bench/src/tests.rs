//! Unit tests of the pure parts: the mixes, the baseline's text, the statistics.

use std::collections::BTreeSet;

use crate::linear;
use crate::mix::{self, Mix, PROBE_PORT};
use crate::report::median;
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
