"""Ingress firewall rules: createFirewallRule, listFirewallRules, updateFirewallRule,
deleteFirewallRule, with CloudStack's validation and conflict errors."""

import pytest

from support import api_error, fresh_uuid, ids, listed


@pytest.fixture(scope="module")
def network(cloud):
    return cloud.network()


@pytest.fixture
def ip(cloud, network):
    """A fresh public IP per test, so that each test sees only its own rules."""
    return cloud.public_ip(network)


def test_rule_lifecycle(admin, network, ip):
    answer = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=22, endport=22
    )
    assert set(answer) == {"firewallrule"}, answer
    rule = answer["firewallrule"]
    assert isinstance(rule["id"], str)
    assert rule["protocol"] == "tcp"
    assert rule["startport"] == 22 and rule["endport"] == 22, "ports are ints in firewallrule"
    assert rule["ipaddressid"] == ip["id"]
    assert rule["ipaddress"] == ip["ipaddress"]
    assert rule["networkid"] == network["id"]
    assert rule["state"] == "Active"
    assert rule["cidrlist"] == "0.0.0.0/0", "no cidrlist means 0.0.0.0/0"
    assert rule["traffictype"] == "Ingress"

    items = listed(admin.listFirewallRules(id=rule["id"]), "firewallrule")
    assert ids(items) == [rule["id"]]
    assert items[0]["startport"] == 22 and items[0]["state"] == "Active"
    assert items[0]["cidrlist"] == "0.0.0.0/0"

    updated = admin.updateFirewallRule(id=rule["id"], fordisplay=False)
    assert set(updated) == {"firewallrule"}, updated
    assert updated["firewallrule"]["id"] == rule["id"]
    assert updated["firewallrule"]["fordisplay"] is False
    [again] = listed(admin.listFirewallRules(id=rule["id"]), "firewallrule")
    assert again["fordisplay"] is False

    assert admin.deleteFirewallRule(id=rule["id"]) == {"success": True}
    remaining = listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")
    assert rule["id"] not in ids(remaining)


def test_create_answers_the_rule_and_job_ids_at_once(admin, ip):
    answer = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="udp", startport=53, fetch_result=False
    )
    assert set(answer) == {"id", "jobid"}, answer
    assert isinstance(answer["id"], str) and isinstance(answer["jobid"], str), answer
    # The rule exists from the moment the request is answered.
    [rule] = listed(admin.listFirewallRules(id=answer["id"]), "firewallrule")
    assert rule["startport"] == 53 and rule["endport"] == 53, "endport defaults to startport"


def test_paging_collects_every_rule(admin, ip):
    created = []
    for port in range(1001, 1008):
        rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=port)
        created.append(rule["firewallrule"]["id"])

    everything = admin.listFirewallRules(ipaddressid=ip["id"], pagesize=3, fetch_list=True)
    assert sorted(ids(everything)) == sorted(created)

    first = admin.listFirewallRules(ipaddressid=ip["id"], page=1, pagesize=3)
    assert first["count"] == 7, "count is the total over all pages"
    assert len(listed(first, "firewallrule")) == 3

    third = admin.listFirewallRules(ipaddressid=ip["id"], page=3, pagesize=3)
    assert third["count"] == 7
    assert len(listed(third, "firewallrule")) == 1


def test_rules_are_listed_newest_first(admin, ip):
    created = []
    for port in (2001, 2002, 2003):
        rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=port)
        created.append(rule["firewallrule"]["id"])
    items = listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")
    assert ids(items) == list(reversed(created))


def test_overlapping_duplicate_conflicts_with_537(admin, ip):
    existing = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=3000, endport=3010
    )["firewallrule"]
    e = api_error(
        lambda: admin.createFirewallRule(
            ipaddressid=ip["id"], protocol="tcp", startport=3005, endport=3020
        ),
        537,
        contains="conflicts with rule",
    )
    assert isinstance(e.error.get("cserrorcode"), int), e.error
    assert e.error.get("uuidList") == [], e.error
    rules = listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")
    assert ids(rules) == [existing["id"]], "a refused rule leaves nothing behind"


def test_overlap_is_allowed_with_another_protocol_or_cidr_list(admin, ip):
    admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=4000, endport=4010)
    udp = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="udp", startport=4000, endport=4010
    )
    assert udp["firewallrule"]["state"] == "Active"
    # CloudStack compares CIDR lists as strings: a different list is no duplicate.
    other = admin.createFirewallRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        startport=4005,
        endport=4005,
        cidrlist="198.51.100.0/24",
    )
    assert other["firewallrule"]["cidrlist"] == "198.51.100.0/24"


def test_cidr_list_is_comma_joined(admin, ip):
    rule = admin.createFirewallRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        startport=443,
        cidrlist=["198.51.100.0/24", "192.0.2.0/28"],
    )["firewallrule"]
    assert sorted(rule["cidrlist"].split(",")) == ["192.0.2.0/28", "198.51.100.0/24"]


def test_port_out_of_range_is_431(admin, ip):
    api_error(
        lambda: admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=70000),
        431,
    )


def test_start_port_above_end_port_is_431(admin, ip):
    api_error(
        lambda: admin.createFirewallRule(
            ipaddressid=ip["id"], protocol="tcp", startport=90, endport=80
        ),
        431,
    )


def test_missing_protocol_is_431(admin, ip):
    api_error(
        lambda: admin.createFirewallRule(ipaddressid=ip["id"], startport=22),
        431,
        contains="due to missing parameter protocol",
    )


def test_malformed_cidr_is_431(admin, ip):
    api_error(
        lambda: admin.createFirewallRule(
            ipaddressid=ip["id"], protocol="tcp", startport=22, cidrlist="198.51.100.300/24"
        ),
        431,
    )


def test_unknown_ip_is_431(admin):
    missing = fresh_uuid()
    api_error(
        lambda: admin.createFirewallRule(ipaddressid=missing, protocol="tcp", startport=22),
        431,
        contains=f"Invalid parameter ipaddressid value={missing}",
    )


def test_icmp_rules(admin, ip):
    echo = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="icmp", icmptype=8, icmpcode=0
    )["firewallrule"]
    assert echo["protocol"] == "icmp"
    assert echo["icmptype"] == 8 and echo["icmpcode"] == 0
    assert echo["state"] == "Active"
    every = admin.createFirewallRule(
        ipaddressid=ip["id"], protocol="icmp", cidrlist="192.0.2.0/24"
    )["firewallrule"]
    assert every["icmptype"] == -1 and every["icmpcode"] == -1, "absent icmp type/code mean all"
    [listed_echo] = listed(admin.listFirewallRules(id=echo["id"]), "firewallrule")
    assert listed_echo["icmptype"] == 8 and listed_echo["icmpcode"] == 0
