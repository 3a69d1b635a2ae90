use std::collections::BTreeMap;

use api_types::catalogue;

use super::*;

#[test]
fn every_catalogued_command_has_exactly_one_row_and_every_row_a_catalogue_entry() {
    let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
    for c in all() {
        *rows.entry(c.name).or_default() += 1;
    }
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "commands with more than one row: {twice:?}"
    );
    let missing: Vec<&str> = catalogue::all()
        .iter()
        .map(|a| a.name)
        .filter(|n| !rows.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "catalogued commands without a row: {missing:?}"
    );
    let unknown: Vec<&str> = rows
        .keys()
        .copied()
        .filter(|n| catalogue::find(n).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "rows for commands not in the catalogue: {unknown:?}"
    );
}

#[test]
fn a_row_is_async_exactly_when_the_catalogue_says_so() {
    let wrong: Vec<&str> = all()
        .iter()
        .filter(|c| catalogue::find(c.name).is_some_and(|a| a.is_async != c.is_async()))
        .map(|c| c.name)
        .collect();
    assert!(
        wrong.is_empty(),
        "rows whose job disagrees with the catalogue: {wrong:?}"
    );
}

#[test]
fn event_types_come_from_the_table() {
    assert_eq!(event_type("createPortForwardingRule"), "NET.RULEADD");
    assert_eq!(event_type("updateEgressFirewallRule"), "FIREWALL.UPDATE");
    assert_eq!(event_type("listZones"), "API.CALL");
    assert_eq!(event_type("noSuchCommand"), "API.CALL");
}

#[test]
fn agent_tokens_hosts_public_ranges_and_router_reboots_are_for_root_admins_only() {
    let admin: Vec<&str> = all()
        .iter()
        .filter(|c| c.admin_only)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        admin,
        [
            "updateZone",
            "listPhysicalNetworks",
            "updatePhysicalNetwork",
            "createVlanIpRange",
            "listVlanIpRanges",
            "registerTemplate",
            "rebootRouter",
            "startRouter",
            "stopRouter",
            "createAgentToken",
            "listAgentTokens",
            "revokeAgentToken",
            "listHosts"
        ]
    );
}
