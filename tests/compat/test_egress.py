"""Egress firewall rules: createEgressFirewallRule, listEgressFirewallRules,
updateEgressFirewallRule, deleteEgressFirewallRule."""

import pytest

from support import api_error, guest_prefix, ids, listed


@pytest.fixture
def network(cloud):
    return cloud.network()


def test_egress_rule_lifecycle(admin, network):
    subnet = guest_prefix(network) + "0/25"
    answer = admin.createEgressFirewallRule(
        networkid=network["id"], protocol="tcp", startport=80, endport=80, cidrlist=subnet
    )
    assert set(answer) == {"firewallrule"}, answer
    rule = answer["firewallrule"]
    assert rule["traffictype"] == "Egress"
    assert rule["networkid"] == network["id"]
    assert rule["protocol"] == "tcp"
    assert rule["startport"] == 80 and rule["endport"] == 80
    assert rule["cidrlist"] == subnet
    assert rule["state"] == "Active"
    assert "ipaddressid" not in rule, "egress rules belong to a network, not to an IP"

    items = listed(admin.listEgressFirewallRules(networkid=network["id"]), "firewallrule")
    assert ids(items) == [rule["id"]]
    ingress = listed(admin.listFirewallRules(networkid=network["id"]), "firewallrule")
    assert rule["id"] not in ids(ingress), "listFirewallRules shows ingress rules only"

    updated = admin.updateEgressFirewallRule(id=rule["id"], fordisplay=False)
    assert updated["firewallrule"]["id"] == rule["id"]
    assert updated["firewallrule"]["fordisplay"] is False

    assert admin.deleteEgressFirewallRule(id=rule["id"]) == {"success": True}
    assert listed(admin.listEgressFirewallRules(networkid=network["id"]), "firewallrule") == []


def test_protocol_all_and_default_source(admin, network):
    rule = admin.createEgressFirewallRule(networkid=network["id"], protocol="all")
    rule = rule["firewallrule"]
    assert rule["protocol"] == "all"
    assert rule["cidrlist"] == network["cidr"], "no cidrlist means the guest CIDR"


def test_source_outside_the_guest_cidr_is_431(admin, network):
    api_error(
        lambda: admin.createEgressFirewallRule(
            networkid=network["id"], protocol="tcp", startport=80, cidrlist="192.0.2.0/24"
        ),
        431,
        contains="is not within the guest CIDR",
    )


def test_protocol_all_with_ports_is_431(admin, network):
    api_error(
        lambda: admin.createEgressFirewallRule(
            networkid=network["id"], protocol="all", startport=1, endport=1024
        ),
        431,
    )


def test_duplicate_egress_rule_conflicts(admin, network):
    admin.createEgressFirewallRule(
        networkid=network["id"], protocol="udp", startport=53, cidrlist=network["cidr"]
    )
    api_error(
        lambda: admin.createEgressFirewallRule(
            networkid=network["id"], protocol="udp", startport=53, cidrlist=network["cidr"]
        ),
        537,
    )


def test_egress_rules_on_an_allow_network(admin, cloud):
    network = cloud.network(egress_allow=True)
    [listed_network] = listed(admin.listNetworks(id=network["id"]), "network")
    assert listed_network["egressdefaultpolicy"] is True
    rule = admin.createEgressFirewallRule(
        networkid=network["id"], protocol="tcp", startport=25, cidrlist=network["cidr"]
    )
    assert rule["firewallrule"]["state"] == "Active"
