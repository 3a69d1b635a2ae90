"""Every parameter a list command declares, as listApis shows it, is applied or refused.

For each list command the walk lists everything first (as the admin, with `listall=true` where
the command takes it), over objects of the admin and of a tenant. Then, for each parameter the
command declares, it sends values that match none of those objects: a fresh id, a name nobody
has, a port nobody uses, a date outside the run, both booleans, a tag nobody carries. The
command must then answer fewer items than the full listing, or refuse the value with 431 naming
the parameter. A parameter that leaves the listing as it was is ignored, and the walk fails
naming it. The few parameters that select nothing by their nature (paging, and what changes an
answer's shape) are checked in their own way, listed below with why.
"""

import json
import uuid

import pytest
from cs import CloudStackApiException

from support import REQUIRED_COMMANDS
from test_tenancy import make_tenant

LIST_COMMANDS = sorted(c for c in REQUIRED_COMMANDS if c.startswith("list"))

# Commands whose answer is always empty here: guestnet has none of their objects.
EMPTY_BY_DESIGN = {"listAutoScaleVmGroups", "listAutoScalePolicies", "listProjects"}

# Commands that answer one fixed object, with nothing to choose among.
SINGLE_OBJECT = {"listCapabilities"}

# Parameters that select no subset, and why; each is checked by `special_check` below, by
# parameter name or by (command, parameter).
SPECIAL = {
    "page": "paging: one-item pages hold one item each, another on each page, none past the end",
    "pagesize": "paging: a page of size 1 holds one item",
    "isrecursive": (
        "guestnet has one domain, ROOT, with every account in it, so the subtree it widens a "
        "listing to is the whole domain: with listall it lists everything, and without it the "
        "admin still sees only its own, as on CloudStack"
    ),
    ("listAccounts", "listall"): (
        "accounts belong to no account: the admin lists every account of its domain with or "
        "without listall, as on CloudStack"
    ),
    ("listUsers", "listall"): "users, as accounts: every user of the admin's domain",
    ("listDomains", "listall"): "the one domain, ROOT, is the admin's own",
    ("listDomains", "showicon"): "guestnet keeps no icons: the answer is the same either way",
    ("listZones", "available"): (
        "the one zone is public and every account may deploy in it: listed either way"
    ),
    ("listApis", "name"): "an unknown name is refused with 530, as CloudStack refuses it",
    ("listLoadBalancerRuleInstances", "lbvmips"): (
        "changes the items' shape: each member with the addresses it is balanced on"
    ),
}

# Commands of objects no account owns, whose listall selects nothing.
NOT_OWNED = {"listAccounts", "listUsers", "listDomains"}

# Parameters the walk gives every listing of a command: what it lists within.
WITHIN = {
    "listLBStickinessPolicies": "lbruleid",
    "listLBHealthCheckPolicies": "lbruleid",
}


@pytest.fixture(scope="module")
def world(admin, cloud):
    """Objects of every kind the listings show, owned by a tenant and by the admin."""
    tenant = make_tenant(admin, cloud)
    cs = tenant.cs
    net = cloud.network(cs=cs)
    vm = cloud.vm(net, cs=cs)
    vm2 = cloud.vm(net, cs=cs)
    ip = cloud.public_ip(net, cs=cs)
    cs.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    cs.createFirewallRule(ipaddressid=ip["id"], protocol="udp", startport=53)
    cs.createEgressFirewallRule(networkid=net["id"], protocol="tcp", startport=80)
    cs.createEgressFirewallRule(networkid=net["id"], protocol="udp", startport=53)
    cs.createPortForwardingRule(
        ipaddressid=ip["id"], protocol="tcp", publicport=8080, privateport=80,
        virtualmachineid=vm["id"],
    )
    cs.createPortForwardingRule(
        ipaddressid=ip["id"], protocol="udp", publicport=5353, privateport=53,
        virtualmachineid=vm2["id"],
    )
    lbs = []
    for port in (80, 443):
        lb_ip = cloud.public_ip(net, cs=cs)
        lb = cs.createLoadBalancerRule(
            publicipid=lb_ip["id"], name=cloud.name("lb"), algorithm="roundrobin",
            publicport=port, privateport=port,
        )["loadbalancer"]
        cs.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=f"{vm['id']},{vm2['id']}")
        cs.createLBStickinessPolicy(lbruleid=lb["id"], name="cookie", methodname="LbCookie")
        cs.createLBHealthCheckPolicy(lbruleid=lb["id"], pingpath="/health")
        lbs.append(lb)
    for target in (vm, vm2):
        nat_ip = cloud.public_ip(net, cs=cs)
        cs.enableStaticNat(ipaddressid=nat_ip["id"], virtualmachineid=target["id"])
        cs.createIpForwardingRule(ipaddressid=nat_ip["id"], protocol="tcp", startport=22)
    for target in (vm, vm2):
        cs.createTags(
            resourcetype="UserVm", resourceids=target["id"], tags=[{"key": "tier", "value": "web"}]
        )
    nic = cs.listNics(virtualmachineid=vm["id"])["nic"][0]
    cs.addIpToNic(nicid=nic["id"])
    # The admin's own, so that listall and the owner filters divide the listings.
    admin_net = cloud.network()
    admin_ip = cloud.public_ip(admin_net)
    admin.createFirewallRule(ipaddressid=admin_ip["id"], protocol="tcp", startport=22)
    admin.createEgressFirewallRule(networkid=admin_net["id"], protocol="tcp", startport=80)
    admin.createTags(
        resourcetype="Network", resourceids=admin_net["id"], tags=[{"key": "tier", "value": "db"}]
    )
    admin.createAgentToken(host=cloud.name("host"))
    admin.createAgentToken(host=cloud.name("host"))
    return {"vm": vm, "lb": lbs[0], "net": net}


def required_values(world, command, params):
    """Values of the command's required parameters (the walk fails on one it does not know)."""
    known = {
        ("listNics", "virtualmachineid"): world["vm"]["id"],
        ("listLoadBalancerRuleInstances", "id"): world["lb"]["id"],
        ("listLBStickinessPolicies", "lbruleid"): world["lb"]["id"],
        ("listLBHealthCheckPolicies", "lbruleid"): world["lb"]["id"],
        ("listTemplates", "templatefilter"): "all",
        ("listNetworkProtocols", "option"): "protocolnumber",
    }
    out = {}
    for p in params:
        if p["required"]:
            key = (command, p["name"])
            assert key in known, f"the walk has no value for {command}'s required {p['name']}"
            out[p["name"]] = known[key]
    return out


# Commands that answer one group per balancer, whose filters choose among the group's items.
NESTED = {
    "listLBStickinessPolicies": "stickinesspolicy",
    "listLBHealthCheckPolicies": "healthcheckpolicy",
}


def items(command, answer):
    """The items of a list answer (its one array, or its one object), as comparable texts:
    each item's id, or the whole item when it has none."""
    arrays = [v for k, v in answer.items() if k != "count"]
    assert len(arrays) <= 1, answer
    found = arrays[0] if arrays else []
    if isinstance(found, dict):
        found = [found]
    if command in NESTED:
        found = [p for group in found for p in group.get(NESTED[command], [])]
    return frozenset(
        item["id"] if isinstance(item, dict) and "id" in item else json.dumps(item, sort_keys=True)
        for item in found
    )


def call(admin, command, params):
    """The answer's items (see `items`), or the refusal as (code, text)."""
    try:
        return items(command, getattr(admin, command)(**params)), None
    except CloudStackApiException as e:
        error = e.error if isinstance(e.error, dict) else {}
        return None, (error.get("errorcode"), error.get("errortext", str(e)))


def probes(param):
    """Values of `param` that match no object of the run."""
    name, kind = param["name"], param["type"]
    if kind == "uuid":
        return [str(uuid.uuid4())]
    if kind == "boolean":
        return ["true", "false"]
    if kind in ("integer", "long", "short"):
        return ["64999"]
    if kind == "date":
        return ["2000-01-01"] if "end" in name else ["2099-12-31"]
    if kind == "map":
        return [[{"key": "nokey", "value": "novalue"}]] if name == "tags" else [[{"zz": "zz"}]]
    if kind == "list" and name.endswith("ids"):
        return [str(uuid.uuid4())]
    return ["zz-matches-nothing"]


def refused_naming(error, name):
    return error is not None and error[0] == 431 and name.lower() in error[1].lower()


@pytest.mark.parametrize("command", LIST_COMMANDS)
def test_every_parameter_of_a_list_command_is_applied_or_refused(admin, world, command):
    [api] = admin.listApis(name=command)["api"]
    params = api["params"]
    base = required_values(world, command, params)
    if command in WITHIN:
        base[WITHIN[command]] = world["lb"]["id"]
    if any(p["name"] == "listall" for p in params):
        base["listall"] = "true"
    everything, error = call(admin, command, base)
    assert error is None, f"{command} as the walk lists everything: {error}"
    total = len(everything)
    if command in EMPTY_BY_DESIGN:
        assert total == 0, f"{command} answers {total} items; guestnet has none"
    elif command in SINGLE_OBJECT:
        assert total == 1
    else:
        assert total >= 1, f"{command} lists nothing: the walk cannot tell"
    ignored, broken = [], []
    for param in params:
        name = param["name"]
        if param["required"]:
            continue
        if name in SPECIAL or (command, name) in SPECIAL:
            problem = special_check(admin, command, base, everything, name)
            if problem:
                ignored.append(f"{name}: {problem}")
            continue
        outcomes = []
        for value in probes(param):
            got, error = call(admin, command, {**base, name: value})
            outcomes.append((value, got, error))
        if any(error and error[0] != 431 for _, _, error in outcomes):
            broken.append(f"{name}: {outcomes}")
            continue
        if any(refused_naming(error, name) for _, _, error in outcomes):
            continue
        if any(error for _, _, error in outcomes):
            broken.append(f"{name}: refused without naming it: {outcomes}")
            continue
        if total == 0 or command in SINGLE_OBJECT:
            # Nothing to leave out: the parameter only must not break the command.
            continue
        if all(got == everything for _, got, _ in outcomes):
            ignored.append(f"{name} ({param['type']}): {[v for v, _, _ in outcomes]}")
    assert not broken, f"{command}: parameters answered with another error: {broken}"
    assert not ignored, f"{command}: parameters ignored (the listing stayed at {total}): {ignored}"


def special_check(admin, command, base, everything, name):
    """The special parameters' own checks; what is wrong, or None."""
    total = len(everything)
    if name == "page":
        # Pages of one item: the second holds another item than the first, and a page far
        # past the end holds none.
        first, error = call(admin, command, {**base, "page": "1", "pagesize": "1"})
        second, error2 = call(admin, command, {**base, "page": "2", "pagesize": "1"})
        if error or error2:
            return f"one-item pages refused: {error or error2}"
        if total >= 2 and (len(second) != 1 or second == first):
            return f"page 2 of one-item pages holds {second}, page 1 {first}"
        far, error = call(admin, command, {**base, "page": "1000000", "pagesize": "1"})
        if error:
            return f"page=1000000 refused: {error}"
        return None if not far else f"page 1000000 of one-item pages holds {len(far)} items"
    if name == "pagesize":
        got, error = call(admin, command, {**base, "page": "1", "pagesize": "1"})
        if error:
            return f"pagesize=1 refused: {error}"
        return None if len(got) == min(total, 1) else f"a page of size 1 holds {len(got)} items"
    if name == "isrecursive":
        got, error = call(admin, command, {**base, "isrecursive": "false"})
        if error or got != everything:
            return f"isrecursive=false with listall answers {got} of {total}: {error}"
        own = {k: v for k, v in base.items() if k != "listall"}
        mine, error = call(admin, command, own)
        widened, error2 = call(admin, command, {**own, "isrecursive": "true"})
        if error or error2 or mine != widened:
            return f"isrecursive=true without listall answers {widened}, the admin's own {mine}"
        return None
    if name == "listall" and command in NOT_OWNED:
        got, error = call(admin, command, {**base, "listall": "false"})
        return None if got == everything else f"listall=false answers {got}: {error}"
    if (command, name) == ("listApis", "name"):
        got, error = call(admin, command, {"name": "zzNoSuchCommand"})
        ok = error and error[0] == 530 and "zzNoSuchCommand" in error[1]
        return None if ok else f"an unknown name answers {got} / {error}"
    if (command, name) == ("listLoadBalancerRuleInstances", "lbvmips"):
        shaped = admin.listLoadBalancerRuleInstances(**base, lbvmips="true")
        plain = admin.listLoadBalancerRuleInstances(**base, lbvmips="false")
        ok = "lbrulevmidip" in shaped and all(
            "lbvmipaddresses" in m for m in shaped["lbrulevmidip"]
        ) and "loadbalancerruleinstance" in plain
        return None if ok else f"lbvmips changes nothing: {shaped} / {plain}"
    if name in ("showicon", "available"):
        # Nothing to show or choose: the answer is the full one, without error.
        for value in ("true", "false"):
            got, error = call(admin, command, {**base, name: value})
            if got != everything:
                return f"{name}={value} answers {got} / {error}"
        return None
    return f"no check for {name}"
