//! The baseline: the same ingress rules as a naive implementation writes them, one chain rule
//! per (rule, source CIDR) in one base chain of a separate table, ending in a drop
//! (performance-facts §7.1, §7.4). The probe's accepting rule is placed last, so the probe's SYN
//! walks the whole chain: the worst case, as in §7.4.
//!
//! A changed rule is applied the cheapest correct way we found for nft 1.0.6: delete the old
//! chain rule by handle and insert the new one at the top of the chain (every rule accepts, so
//! the order among them does not matter). Inserting at a position (`insert rule … handle H`)
//! would make nft read every rule of the chain back first: 31 s at 145k rules.

use std::fmt::Write as _;

use router_config::{RouterConfig, WireFirewallRule, WirePorts};

/// The baseline's table (family `ip`).
pub(crate) const TABLE: &str = "linear";
/// Its one base chain.
pub(crate) const CHAIN: &str = "ingress";

/// A rendered baseline: the script that creates it, and where each rule's chain rules sit.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `nft -f` text creating the table in one transaction.
    pub(crate) script: String,
    /// For each entry of `firewall_rules`, the position of its first chain rule in the chain
    /// (position 0 is the conntrack rule); the probe's position is that of its rule, last.
    pub(crate) position: Vec<usize>,
    /// The number of rules in the chain.
    pub(crate) chain_rules: usize,
}

/// The chain rule of one (rule, source CIDR).
fn rule_text(r: &WireFirewallRule, source: &str, ports: WirePorts) -> String {
    let mut s = format!("ip daddr {}", r.public_ip);
    if source != "0.0.0.0/0" {
        let _ = write!(s, " ip saddr {source}");
    }
    if ports.start == ports.end {
        let _ = write!(s, " {} dport {}", r.protocol, ports.start);
    } else {
        let _ = write!(s, " {} dport {}-{}", r.protocol, ports.start, ports.end);
    }
    s.push_str(" counter accept");
    s
}

/// Renders the baseline of `cfg`, whose first firewall rule is the probe (placed last).
pub(crate) fn render(cfg: &RouterConfig) -> Linear {
    let mut script = String::with_capacity(cfg.firewall_rules.len() * 96);
    let _ = writeln!(script, "table ip {TABLE} {{");
    let _ = writeln!(script, "\tchain {CHAIN} {{");
    // Before DNAT (priority -100), like the router's own ingress chain (-150).
    let _ = writeln!(
        script,
        "\t\ttype filter hook prerouting priority -140; policy accept;"
    );
    script.push_str("\t\tct state established,related accept\n");
    let mut position = vec![0; cfg.firewall_rules.len()];
    let mut at = 1;
    let rules = cfg.firewall_rules.iter().enumerate();
    for (i, r) in rules.clone().skip(1).chain(rules.take(1)) {
        position[i] = at;
        let ports = r.ports.unwrap_or(WirePorts {
            start: 1,
            end: 65_535,
        });
        for source in &r.source_cidrs {
            let _ = writeln!(script, "\t\t{}", rule_text(r, source, ports));
            at += 1;
        }
    }
    let public: Vec<String> = cfg
        .public
        .addresses
        .iter()
        .map(|a| a.ip.to_string())
        .collect();
    let _ = writeln!(
        script,
        "\t\tip daddr {{ {} }} counter drop",
        public.join(", ")
    );
    script.push_str("\t}\n}\n");
    Linear {
        script,
        position,
        chain_rules: at + 1,
    }
}

/// The handles of the chain's rules in chain order, from `nft -a list chain` output.
pub(crate) fn handles(listing: &str) -> Vec<u64> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("table ") && !l.starts_with("chain "))
        .filter_map(|l| l.rsplit_once("# handle "))
        .filter_map(|(_, h)| h.trim().parse().ok())
        .collect()
}

/// One changed rule as a naive implementation applies it, in one transaction: delete the old
/// chain rule by handle, insert the new one at the top (the probe's rule stays last).
pub(crate) fn change_script(
    lin: &Linear,
    handles: &[u64],
    cfg: &RouterConfig,
    index: usize,
) -> Option<String> {
    let rule = cfg.firewall_rules.get(index)?;
    let [source] = rule.source_cidrs.as_slice() else {
        return None;
    };
    let old = *handles.get(*lin.position.get(index)?)?;
    let ports = rule.ports?;
    Some(format!(
        "delete rule ip {TABLE} {CHAIN} handle {old}\ninsert rule ip {TABLE} {CHAIN} {}\n",
        rule_text(rule, source, ports)
    ))
}
