"""Port forwarding: createPortForwardingRule, listPortForwardingRules,
updatePortForwardingRule, deletePortForwardingRule, and the firewall rule each one opens."""

import pytest

from support import api_error, ids, listed, nic_in


@pytest.fixture(scope="module")
def network(cloud):
    return cloud.network()


@pytest.fixture(scope="module")
def vm(cloud, network):
    return cloud.vm(network)


@pytest.fixture
def ip(cloud, network):
    return cloud.public_ip(network)


def firewall_rules(admin, ip):
    return listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")


def test_port_forwarding_lifecycle(admin, network, vm, ip):
    answer = admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=2222,
        privateport=22,
        virtualmachineid=vm["id"],
    )
    assert set(answer) == {"portforwardingrule"}, answer
    rule = answer["portforwardingrule"]
    # Unlike firewall rules, port forwarding rules carry their ports as strings.
    assert rule["publicport"] == "2222" and rule["publicendport"] == "2222"
    assert rule["privateport"] == "22" and rule["privateendport"] == "22"
    assert rule["protocol"] == "tcp"
    assert rule["virtualmachineid"] == vm["id"]
    assert rule["ipaddressid"] == ip["id"]
    assert rule["ipaddress"] == ip["ipaddress"]
    assert rule["vmguestip"] == nic_in(vm, network)["ipaddress"]
    assert rule["networkid"] == network["id"]
    assert rule["state"] == "Active"

    # openfirewall defaults to true: a firewall rule for the public port comes with it.
    [opened] = firewall_rules(admin, ip)
    assert opened["protocol"] == "tcp"
    assert opened["startport"] == 2222 and opened["endport"] == 2222

    items = listed(admin.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule")
    assert ids(items) == [rule["id"]]
    assert items[0]["publicport"] == "2222" and items[0]["privateport"] == "22"

    updated = admin.updatePortForwardingRule(id=rule["id"], privateport=2022)
    assert set(updated) == {"portforwardingrule"}, updated
    assert updated["portforwardingrule"]["privateport"] == "2022"
    assert updated["portforwardingrule"]["publicport"] == "2222"
    [again] = listed(admin.listPortForwardingRules(id=rule["id"]), "portforwardingrule")
    assert again["privateport"] == "2022"

    assert admin.deletePortForwardingRule(id=rule["id"]) == {"success": True}
    assert listed(admin.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule") == []
    assert firewall_rules(admin, ip) == [], "the rule's firewall rule goes with it"


def test_overlapping_forwarding_conflicts_with_537(admin, vm, ip):
    admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=2300,
        privateport=22,
        virtualmachineid=vm["id"],
    )
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="tcp",
            publicport=2300,
            privateport=23,
            virtualmachineid=vm["id"],
        ),
        537,
        contains="conflicts with rule",
    )
    # The same public port with another protocol is no conflict.
    udp = admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="udp",
        publicport=2300,
        privateport=23,
        virtualmachineid=vm["id"],
    )
    assert udp["portforwardingrule"]["protocol"] == "udp"


def test_openfirewall_false_opens_nothing(admin, vm, ip):
    admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=8022,
        privateport=22,
        virtualmachineid=vm["id"],
        openfirewall=False,
    )
    assert firewall_rules(admin, ip) == []


def test_port_ranges_cannot_be_shifted(admin, vm, ip):
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="tcp",
            publicport=3000,
            publicendport=3010,
            privateport=4000,
            privateendport=4010,
            virtualmachineid=vm["id"],
        ),
        431,
    )
    same = admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=3000,
        publicendport=3010,
        privateport=3000,
        privateendport=3010,
        virtualmachineid=vm["id"],
    )["portforwardingrule"]
    assert same["publicendport"] == "3010" and same["privateendport"] == "3010"


def test_vm_outside_the_network_is_431(admin, cloud, ip):
    elsewhere = cloud.vm(cloud.network())
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="tcp",
            publicport=2500,
            privateport=22,
            virtualmachineid=elsewhere["id"],
        ),
        431,
    )


def test_ip_forwarding_rules_are_an_empty_list_without_static_nat(admin, cloud, network):
    """libcloud lists them with its nodes and forwards: an address without static NAT has
    none, and a filter by an id of another kind is refused as an unknown id."""
    ip = cloud.public_ip(network)
    vm = cloud.vm(network)
    assert (
        listed(
            admin.listIpForwardingRules(
                ipaddressid=ip["id"], virtualmachineid=vm["id"], listall=True
            ),
            "ipforwardingrule",
        )
        == []
    )
    api_error(
        lambda: admin.listIpForwardingRules(ipaddressid=vm["id"]), 431, contains="ipaddressid"
    )
    api_error(lambda: admin.listIpForwardingRules(id=ip["id"]), 431, contains="id")
