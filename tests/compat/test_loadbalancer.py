"""Load balancing: createLoadBalancerRule, listLoadBalancerRules, updateLoadBalancerRule,
assignToLoadBalancerRule, removeFromLoadBalancerRule, listLoadBalancerRuleInstances,
deleteLoadBalancerRule, and the stickiness and health-check policies."""

import pytest

from support import api_error, ids, listed


@pytest.fixture(scope="module")
def network(cloud):
    return cloud.network()


@pytest.fixture(scope="module")
def vms(cloud, network):
    return [cloud.vm(network), cloud.vm(network)]


@pytest.fixture
def ip(cloud, network):
    return cloud.public_ip(network)


def create_lb(admin, ip, name="web", publicport=80, privateport=8080, **extra):
    answer = admin.createLoadBalancerRule(
        name=name,
        algorithm="roundrobin",
        publicport=publicport,
        privateport=privateport,
        publicipid=ip["id"],
        **extra,
    )
    assert set(answer) == {"loadbalancer"}, answer
    return answer["loadbalancer"]


def members(admin, lb):
    answer = admin.listLoadBalancerRuleInstances(id=lb["id"])
    return sorted(ids(listed(answer, "loadbalancerruleinstance")))


def test_load_balancer_lifecycle(admin, network, vms, ip):
    lb = create_lb(admin, ip)
    assert lb["name"] == "web"
    assert lb["algorithm"] == "roundrobin"
    # Ports are strings in load balancer objects.
    assert lb["publicport"] == "80" and lb["privateport"] == "8080"
    assert lb["publicipid"] == ip["id"] and lb["publicip"] == ip["ipaddress"]
    assert lb["networkid"] == network["id"]
    assert lb["state"] == "Add", "a load balancer without members is not applied yet"
    assert members(admin, lb) == []

    [opened] = listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule")
    assert opened["startport"] == 80 and opened["protocol"] == "tcp"

    vm_ids = [vm["id"] for vm in vms]
    assert admin.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=vm_ids) == {
        "success": True
    }
    [listed_lb] = listed(admin.listLoadBalancerRules(id=lb["id"]), "loadbalancerrule")
    assert listed_lb["state"] == "Active"
    assert listed_lb["publicport"] == "80"
    assert members(admin, lb) == sorted(vm_ids)

    assert admin.removeFromLoadBalancerRule(id=lb["id"], virtualmachineids=[vm_ids[1]]) == {
        "success": True
    }
    assert members(admin, lb) == [vm_ids[0]]

    renamed = admin.updateLoadBalancerRule(id=lb["id"], name="web-renamed")
    assert set(renamed) == {"loadbalancer"}, renamed
    assert renamed["loadbalancer"]["name"] == "web-renamed"
    assert renamed["loadbalancer"]["algorithm"] == "roundrobin"
    [listed_lb] = listed(admin.listLoadBalancerRules(id=lb["id"]), "loadbalancerrule")
    assert listed_lb["name"] == "web-renamed"

    assert admin.deleteLoadBalancerRule(id=lb["id"]) == {"success": True}
    assert lb["id"] not in ids(
        listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule")
    )
    assert listed(admin.listFirewallRules(ipaddressid=ip["id"]), "firewallrule") == [], (
        "the load balancer's firewall rule goes with it"
    )


def test_second_balancer_on_the_same_port_conflicts(admin, vms, ip):
    create_lb(admin, ip, name="first")
    api_error(lambda: create_lb(admin, ip, name="second"), 537)
    api_error(
        lambda: admin.createPortForwardingRule(
            ipaddressid=ip["id"],
            protocol="udp",
            publicport=80,
            privateport=80,
            virtualmachineid=vms[0]["id"],
        ),
        537,
    )


def test_unknown_algorithm_is_431(admin, ip):
    api_error(
        lambda: admin.createLoadBalancerRule(
            name="bad",
            algorithm="fastest",
            publicport=81,
            privateport=81,
            publicipid=ip["id"],
        ),
        431,
    )


def test_stickiness_policy(admin, ip):
    lb = create_lb(admin, ip, name="sticky")
    answer = admin.createLBStickinessPolicy(
        lbruleid=lb["id"],
        name="cookie",
        methodname="LbCookie",
        param=[{"name": "cookie-name", "value": "SRVID"}],
    )
    assert set(answer) == {"stickinesspolicies"}, answer
    group = answer["stickinesspolicies"]
    assert group["lbruleid"] == lb["id"]
    [policy] = group["stickinesspolicy"]
    assert policy["name"] == "cookie"
    assert policy["methodname"] == "LbCookie"
    assert policy["params"] == {"cookie-name": "SRVID"}

    listing = listed(admin.listLBStickinessPolicies(lbruleid=lb["id"]), "stickinesspolicies")
    found = [p["id"] for g in listing for p in g["stickinesspolicy"]]
    assert found == [policy["id"]]

    # What an update may change: the display flag; guestnet keeps its ids.
    updated = admin.updateLBStickinessPolicy(id=policy["id"], fordisplay=False)
    assert set(updated) == {"stickinesspolicies"}, updated
    [shown] = updated["stickinesspolicies"]["stickinesspolicy"]
    assert shown["id"] == policy["id"] and shown["fordisplay"] is False
    api_error(
        lambda: admin.updateLBStickinessPolicy(id=policy["id"], customid="my-cookie"),
        431,
        contains="customid",
    )

    assert admin.deleteLBStickinessPolicy(id=policy["id"]) == {"success": True}
    listing = listed(admin.listLBStickinessPolicies(lbruleid=lb["id"]), "stickinesspolicies")
    assert policy["id"] not in [p["id"] for g in listing for p in g["stickinesspolicy"]]


def test_unknown_stickiness_method_is_refused(admin, ip):
    lb = create_lb(admin, ip, name="sticky-bad")
    api_error(
        lambda: admin.createLBStickinessPolicy(lbruleid=lb["id"], name="x", methodname="Telepathy"),
        (430, 431),
    )


def test_health_check_policy(admin, ip):
    lb = create_lb(admin, ip, name="checked")
    answer = admin.createLBHealthCheckPolicy(lbruleid=lb["id"], pingpath="/health")
    assert set(answer) == {"healthcheckpolicies"}, answer
    group = answer["healthcheckpolicies"]
    assert group["lbruleid"] == lb["id"]
    [policy] = group["healthcheckpolicy"]
    assert policy["pingpath"] == "/health"
    # CloudStack's defaults, under CloudStack's (misspelt) field names.
    assert policy["responsetime"] == 2
    assert policy["healthcheckinterval"] == 5
    assert policy["healthcheckthresshold"] == 2
    assert policy["unhealthcheckthresshold"] == 1

    listing = listed(admin.listLBHealthCheckPolicies(lbruleid=lb["id"]), "healthcheckpolicies")
    found = [p["id"] for g in listing for p in g["healthcheckpolicy"]]
    assert found == [policy["id"]]

    updated = admin.updateLBHealthCheckPolicy(id=policy["id"], fordisplay=False)
    [shown] = updated["healthcheckpolicies"]["healthcheckpolicy"]
    assert shown["id"] == policy["id"] and shown["fordisplay"] is False
    assert shown["pingpath"] == "/health", "an update changes nothing the router holds"

    assert admin.deleteLBHealthCheckPolicy(id=policy["id"]) == {"success": True}
    listing = listed(admin.listLBHealthCheckPolicies(lbruleid=lb["id"]), "healthcheckpolicies")
    assert policy["id"] not in [p["id"] for g in listing for p in g["healthcheckpolicy"]]


def test_terraform_reads_a_balancer_with_its_autoscale_groups(admin, ip):
    """Terraform's load balancer resource lists the rule's autoscale groups on every read and
    uses the answer even after an error: it must be a list answer, here an empty one."""
    lb = create_lb(admin, ip, name="tf", publicport=8443)
    answer = admin.listAutoScaleVmGroups(lbruleid=lb["id"], listall=True)
    assert listed(answer, "autoscalevmgroup") == []
    assert listed(admin.listAutoScalePolicies(), "autoscalepolicy") == []
    api_error(lambda: admin.listAutoScaleVmGroups(lbruleid=ip["id"]), 431, contains="lbruleid")
    api_error(lambda: admin.listAutoScalePolicies(vmgroupid=lb["id"]), 431, contains="vmgroupid")
    admin.deleteLoadBalancerRule(id=lb["id"], fetch_result=True)


def test_tcp_proxy_is_served_and_udp_and_ssl_are_refused(admin, ip):
    """tcp-proxy balancers send the PROXY protocol (version 2) to their members; udp and ssl
    balancing are refused with the protocol named, and nothing is made."""
    lb = create_lb(admin, ip, name="proxied", publicport=8090, protocol="tcp-proxy")
    assert lb["protocol"] == "tcp-proxy"
    [shown] = listed(admin.listLoadBalancerRules(id=lb["id"]), "loadbalancerrule")
    assert shown["protocol"] == "tcp-proxy"
    changed = admin.updateLoadBalancerRule(id=lb["id"], protocol="tcp")["loadbalancer"]
    assert changed["protocol"] == "tcp"
    before = ids(listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule"))
    for refused in ("udp", "ssl"):
        api_error(
            lambda refused=refused: create_lb(
                admin, ip, name=refused, publicport=8091, protocol=refused
            ),
            431,
            contains=refused,
        )
    api_error(lambda: create_lb(admin, ip, name="x", publicport=8092, protocol="sctp"), 431)
    after = ids(listed(admin.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule"))
    assert after == before
