"""Shared helpers of the compatibility suite: clients, waiting, and response checks.

The suite talks to a running guestnet management server through the `cs` client, exactly
as a user would. The server's endpoint and admin keys come from the environment
(CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY, CLOUDSTACK_SECRET).
"""

import itertools
import os
import time
import uuid

import pytest
from cs import CloudStack, CloudStackApiException

# How often the clients poll asynchronous jobs (cs polls every 2 s by default).
POLL_INTERVAL = 0.05
# How long any single wait may take before the test fails.
DEADLINE = 30.0

# Every command the suite must exercise at least once (checked by test_zz_commands.py).
REQUIRED_COMMANDS = frozenset(
    """
    createFirewallRule deleteFirewallRule listFirewallRules updateFirewallRule
    createEgressFirewallRule deleteEgressFirewallRule listEgressFirewallRules
    updateEgressFirewallRule
    createPortForwardingRule deletePortForwardingRule listPortForwardingRules
    updatePortForwardingRule
    createLoadBalancerRule deleteLoadBalancerRule listLoadBalancerRules updateLoadBalancerRule
    assignToLoadBalancerRule removeFromLoadBalancerRule listLoadBalancerRuleInstances
    createLBStickinessPolicy deleteLBStickinessPolicy listLBStickinessPolicies
    createLBHealthCheckPolicy deleteLBHealthCheckPolicy listLBHealthCheckPolicies
    updateLBStickinessPolicy updateLBHealthCheckPolicy
    queryAsyncJobResult listAsyncJobs listApis
    listZones updateZone listPhysicalNetworks updatePhysicalNetwork
    listNetworkOfferings createNetwork listNetworks deleteNetwork updateNetwork restartNetwork
    associateIpAddress disassociateIpAddress listPublicIpAddresses
    createVlanIpRange listVlanIpRanges
    deployVirtualMachine listVirtualMachines destroyVirtualMachine listNics
    enableStaticNat disableStaticNat createIpForwardingRule deleteIpForwardingRule
    listIpForwardingRules createTags deleteTags listTags listAutoScaleVmGroups listAutoScalePolicies
    listDomains listProjects listCapabilities listNetworkProtocols
    listServiceOfferings listTemplates listRouters rebootRouter startRouter stopRouter listEvents
    addIpToNic removeIpFromNic
    createAccount listAccounts listUsers registerUserKeys
    listResourceLimits updateResourceLimit
    createAgentToken listAgentTokens revokeAgentToken listHosts
    """.split()
)

# The commands the suite sent, by name, whatever the answer was.
CALLED = set()


def record(command):
    """Notes that `command` was sent (for requests made without the cs client)."""
    CALLED.add(command)


def setting(name):
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set: run the suite through the guestnet compat test harness")
    return value


def endpoint():
    return setting("CLOUDSTACK_ENDPOINT")


def admin_key():
    return setting("CLOUDSTACK_KEY")


def admin_secret():
    return setting("CLOUDSTACK_SECRET")


class RecordingCloudStack(CloudStack):
    """The cs client, unchanged except that it notes every command it sends."""

    def _send(self, kind, params, headers, timeout):
        record(params.get("command"))
        return super()._send(kind, params, headers, timeout)


def client(key=None, secret=None, **options):
    """A cs client for the server; the admin's unless key and secret are given."""
    settings = {
        "timeout": 30,
        "poll_interval": POLL_INTERVAL,
        "job_timeout": 60,
        "fetch_result": True,
    }
    settings.update(options)
    return RecordingCloudStack(
        endpoint(),
        key if key is not None else admin_key(),
        secret if secret is not None else admin_secret(),
        **settings,
    )


def fresh_uuid():
    return str(uuid.uuid4())


def listed(answer, key):
    """The items of a list answer, checking CloudStack's list envelope on the way.

    A list answer holds `count` (the total over all pages) and one array named `key`,
    and nothing else; an empty list is answered with an empty object.
    """
    assert isinstance(answer, dict), answer
    extra = set(answer) - {"count", key}
    assert not extra, f"a list answer must carry only count and {key!r}, got {sorted(answer)}"
    if key not in answer:
        assert answer == {}, f"an empty list is answered with {{}}, got {answer}"
        return []
    items = answer[key]
    assert isinstance(items, list), answer
    assert isinstance(answer.get("count"), int), f"count must be an int: {answer}"
    assert answer["count"] >= len(items), answer
    return items


def ids(items):
    return [item["id"] for item in items]


def api_error(call, status, contains=None):
    """Runs `call`, which must fail synchronously with CloudStack error `status` (or one of
    the codes in a tuple), the HTTP status and the body's errorcode agreeing."""
    allowed = status if isinstance(status, tuple) else (status,)
    with pytest.raises(CloudStackApiException) as caught:
        call()
    e = caught.value
    assert e.response is not None, f"no HTTP response with the error: {e}"
    assert e.response.status_code in allowed, (
        f"HTTP {e.response.status_code} instead of {status}: {e.error}"
    )
    assert isinstance(e.error, dict), e.error
    assert e.error.get("errorcode") == e.response.status_code, e.error
    assert isinstance(e.error.get("errortext"), str) and e.error["errortext"], e.error
    if contains is not None:
        assert contains in e.error["errortext"], (
            f"{contains!r} not in the error text {e.error['errortext']!r}"
        )
    return e


def job_failure(call, contains=None):
    """Runs `call` (with fetch_result), which must be accepted and then fail in its job."""
    with pytest.raises(CloudStackApiException) as caught:
        call()
    e = caught.value
    assert e.args and e.args[0] == "Job failure", (
        f"expected the job to fail, but the request itself was refused: {e}"
    )
    assert isinstance(e.error, dict), e.error
    assert isinstance(e.error.get("errorcode"), int) and e.error["errorcode"] != 0, e.error
    assert isinstance(e.error.get("errortext"), str), e.error
    if contains is not None:
        assert contains in e.error["errortext"], e.error
    return e


def wait_for(predicate, what, deadline=DEADLINE):
    """Polls `predicate` until it returns a true value, which is returned; fails at the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            pytest.fail(f"gave up after {deadline} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def wait_job(cs, jobid):
    """Polls queryAsyncJobResult until the job is done; returns the last answer."""

    def done():
        answer = cs.queryAsyncJobResult(jobid=jobid, fetch_result=False)
        assert isinstance(answer.get("jobstatus"), int), answer
        assert "jobresultcode" in answer, f"jobresultcode must always be present: {answer}"
        return answer if answer["jobstatus"] != 0 else None

    return wait_for(done, f"job {jobid}")


class Cloud:
    """The server's initial inventory, and factories for networks, public IPs and VMs."""

    _subnets = itertools.count(1)
    _names = itertools.count(1)

    def __init__(self, admin):
        self.admin = admin
        zones = listed(admin.listZones(), "zone")
        assert zones, "the server must start with a zone"
        self.zone = zones[0]
        offerings = listed(admin.listNetworkOfferings(), "networkoffering")
        by_policy = {}
        for offering in offerings:
            if offering.get("guestiptype", "Isolated").lower() != "isolated":
                continue
            policy = offering.get("egressdefaultpolicy")
            assert isinstance(policy, bool), offering
            by_policy.setdefault(policy, offering)
        assert set(by_policy) == {True, False}, (
            f"expected an egress-deny and an egress-allow offering: {offerings}"
        )
        self.offering_deny = by_policy[False]
        self.offering_allow = by_policy[True]
        services = listed(admin.listServiceOfferings(), "serviceoffering")
        assert services, "the server must start with a service offering"
        self.service_offering = services[0]
        self.template = None
        for templatefilter in ("featured", "all", "executable"):
            templates = listed(admin.listTemplates(templatefilter=templatefilter), "template")
            if templates:
                self.template = templates[0]
                break
        assert self.template is not None, "the server must start with a template"

    # Names stay unique even when the suite runs twice against one server.
    _run = uuid.uuid4().hex[:6]

    def name(self, prefix):
        return f"{prefix}-{self._run}-{next(self._names)}"

    def network(self, cs=None, egress_allow=False, displaytext=None, **extra):
        """A new isolated network with its own 10.1.N.0/24; returns the network object."""
        cs = cs or self.admin
        taken = {
            net.get("cidr") for net in self.admin.listNetworks(listall=True, fetch_list=True)
        }
        n = next(self._subnets)
        while f"10.1.{n}.0/24" in taken:
            n = next(self._subnets)
        assert n < 255, "the suite ran out of guest subnets"
        name = self.name("net")
        offering = self.offering_allow if egress_allow else self.offering_deny
        answer = cs.createNetwork(
            name=name,
            displaytext=displaytext if displaytext is not None else f"compat network {name}",
            networkofferingid=offering["id"],
            zoneid=self.zone["id"],
            gateway=f"10.1.{n}.1",
            netmask="255.255.255.0",
            **extra,
        )
        assert set(answer) == {"network"}, answer
        network = answer["network"]
        assert network["cidr"] == f"10.1.{n}.0/24", network
        return network

    def public_ip(self, network, cs=None, **extra):
        """A public IP associated with `network`; returns the ipaddress object."""
        cs = cs or self.admin
        answer = cs.associateIpAddress(networkid=network["id"], **extra)
        assert set(answer) == {"ipaddress"}, answer
        return answer["ipaddress"]

    def vm(self, network, cs=None, **extra):
        """A VM with one NIC in `network`; returns the virtualmachine object."""
        cs = cs or self.admin
        extra.setdefault("name", self.name("vm"))
        answer = cs.deployVirtualMachine(
            zoneid=self.zone["id"],
            serviceofferingid=self.service_offering["id"],
            templateid=self.template["id"],
            networkids=[network["id"]],
            **extra,
        )
        assert set(answer) == {"virtualmachine"}, answer
        return answer["virtualmachine"]


def nic_in(vm, network):
    """The VM's NIC in `network`."""
    nics = [nic for nic in vm.get("nic", []) if nic.get("networkid") == network["id"]]
    assert len(nics) == 1, f"expected one NIC in network {network['id']}: {vm}"
    return nics[0]


def guest_prefix(network):
    """'10.1.N.' for a network whose CIDR is 10.1.N.0/24."""
    return network["cidr"].rsplit(".", 1)[0] + "."
