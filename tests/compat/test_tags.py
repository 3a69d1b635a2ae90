"""Resource tags: createTags, deleteTags, listTags on every type guestnet tags, the `tags` each
tagged object shows, the tags[i].key/tags[i].value filter of their listings, and another
account's attempts."""

import pytest

from support import api_error, ids, listed
from test_tenancy import make_tenant


@pytest.fixture(scope="module")
def things(admin, cloud):
    network = cloud.network()
    vm = cloud.vm(network)
    ip = cloud.public_ip(network)
    fw = admin.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)[
        "firewallrule"
    ]
    pf = admin.createPortForwardingRule(
        ipaddressid=ip["id"],
        protocol="tcp",
        publicport=2222,
        privateport=22,
        virtualmachineid=vm["id"],
        openfirewall=False,
    )["portforwardingrule"]
    lb = admin.createLoadBalancerRule(
        publicipid=ip["id"], name=cloud.name("lb"), algorithm="roundrobin", publicport=80,
        privateport=8080,
    )["loadbalancer"]
    return {
        "Network": (network, lambda **kw: admin.listNetworks(**kw), "network"),
        "UserVm": (vm, lambda **kw: admin.listVirtualMachines(**kw), "virtualmachine"),
        "PublicIpAddress": (ip, lambda **kw: admin.listPublicIpAddresses(**kw), "publicipaddress"),
        "FirewallRule": (fw, lambda **kw: admin.listFirewallRules(**kw), "firewallrule"),
        "PortForwardingRule": (
            pf, lambda **kw: admin.listPortForwardingRules(**kw), "portforwardingrule"
        ),
        "LoadBalancer": (lb, lambda **kw: admin.listLoadBalancerRules(**kw), "loadbalancerrule"),
    }


def tag_filter(key, value):
    return {"tags[0].key": key, "tags[0].value": value}


@pytest.mark.parametrize(
    "kind",
    ["Network", "UserVm", "PublicIpAddress", "FirewallRule", "PortForwardingRule", "LoadBalancer"],
)
def test_every_type_is_tagged_shown_filtered_and_untagged(admin, things, kind):
    thing, lister, key = things[kind]
    assert admin.createTags(
        resourcetype=kind,
        resourceids=thing["id"],
        tags=[{"key": "env", "value": "prod"}, {"key": "owner", "value": kind}],
    ) == {"success": True}
    tags = listed(admin.listTags(resourcetype=kind, resourceid=thing["id"]), "tag")
    assert sorted((t["key"], t["value"]) for t in tags) == [("env", "prod"), ("owner", kind)]
    assert all(t["resourceid"] == thing["id"] and t["resourcetype"] == kind for t in tags)
    if lister is not None:
        [shown] = listed(lister(**tag_filter("owner", kind), listall=True), key)
        assert shown["id"] == thing["id"]
        assert sorted((t["key"], t["value"]) for t in shown["tags"]) == [
            ("env", "prod"),
            ("owner", kind),
        ]
        assert listed(lister(**tag_filter("owner", "someone-else"), listall=True), key) == []
    # A key the resource carries already is refused, and nothing is added.
    api_error(
        lambda: admin.createTags(
            resourcetype=kind, resourceids=thing["id"], tags=[{"key": "env", "value": "test"}]
        ),
        431,
        contains="env",
    )
    assert admin.deleteTags(
        resourcetype=kind, resourceids=thing["id"], tags=[{"key": "env"}]
    ) == {"success": True}
    tags = listed(admin.listTags(resourcetype=kind, resourceid=thing["id"]), "tag")
    assert [(t["key"], t["value"]) for t in tags] == [("owner", kind)]
    # Without tags[]: every tag of the resource goes.
    assert admin.deleteTags(resourcetype=kind, resourceids=thing["id"]) == {"success": True}
    assert listed(admin.listTags(resourcetype=kind, resourceid=thing["id"]), "tag") == []
    api_error(lambda: admin.deleteTags(resourcetype=kind, resourceids=thing["id"]), 431)


def test_bad_tags_are_refused(admin, things):
    ip = things["PublicIpAddress"][0]
    api_error(
        lambda: admin.createTags(
            resourcetype="Volume", resourceids=ip["id"], tags=[{"key": "a", "value": "b"}]
        ),
        431,
        contains="Volume",
    )
    api_error(
        lambda: admin.createTags(
            resourcetype="Network", resourceids=ip["id"], tags=[{"key": "a", "value": "b"}]
        ),
        431,
        contains=ip["id"],
    )
    api_error(
        lambda: admin.createTags(
            resourcetype="PublicIpAddress", resourceids=ip["id"], tags=[{"key": "a"}]
        ),
        431,
        contains="Value for the key a",
    )
    api_error(
        lambda: admin.listPublicIpAddresses(**{"tags[0].key": "a"}),
        431,
        contains="No value is passed in for key a",
    )
    assert listed(admin.listTags(resourceid=ip["id"]), "tag") == []


def test_a_deleted_rule_takes_its_tags(admin, things):
    ip = things["PublicIpAddress"][0]
    rule = admin.createFirewallRule(ipaddressid=ip["id"], protocol="udp", startport=53)[
        "firewallrule"
    ]
    admin.createTags(
        resourcetype="FirewallRule", resourceids=rule["id"], tags=[{"key": "k", "value": "v"}]
    )
    [shown] = listed(admin.listFirewallRules(id=rule["id"]), "firewallrule")
    assert shown["tags"] == [
        {"key": "k", "value": "v", "resourcetype": "FirewallRule", "resourceid": rule["id"]}
    ]
    admin.deleteFirewallRule(id=rule["id"])
    assert listed(admin.listTags(resourceid=rule["id"]), "tag") == []


def test_another_account_neither_sees_nor_touches_tags(admin, cloud):
    alice = make_tenant(admin, cloud)
    bob = make_tenant(admin, cloud)
    net = cloud.network(cs=alice.cs)
    alice.cs.createTags(
        resourcetype="Network", resourceids=net["id"], tags=[{"key": "team", "value": "a"}]
    )
    assert listed(bob.cs.listTags(), "tag") == []
    assert listed(bob.cs.listNetworks(**tag_filter("team", "a")), "network") == []
    api_error(
        lambda: bob.cs.createTags(
            resourcetype="Network", resourceids=net["id"], tags=[{"key": "x", "value": "y"}]
        ),
        431,
    )
    api_error(lambda: bob.cs.deleteTags(resourcetype="Network", resourceids=net["id"]), 431)
    [mine] = listed(alice.cs.listTags(), "tag")
    assert (mine["key"], mine["value"], mine["account"]) == ("team", "a", alice.account["name"])
    assert ids(listed(alice.cs.listNetworks(**tag_filter("team", "a")), "network")) == [net["id"]]
