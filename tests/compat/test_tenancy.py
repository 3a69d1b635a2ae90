"""Accounts and isolation: createAccount, listAccounts, listUsers, registerUserKeys; what one
account owns is invisible to another, and asking for it by id is answered as for an id that
does not exist."""

from dataclasses import dataclass

import pytest
from cs import CloudStackApiException

from support import api_error, client, fresh_uuid, ids, listed


@dataclass
class Tenant:
    account: dict
    user: dict
    cs: object


def make_tenant(admin, cloud):
    name = cloud.name("tenant")
    answer = admin.createAccount(
        account=name,
        username=name,
        password="Compat-Passw0rd!",
        email=f"{name}@example.org",
        firstname="Compat",
        lastname=name,
        accounttype=0,
    )
    assert set(answer) == {"account"}, answer
    account = answer["account"]
    assert account["name"] == name
    assert account["accounttype"] == 0
    users = [u for u in account.get("user", []) if u.get("username") == name]
    if not users:
        users = listed(admin.listUsers(username=name), "user")
    assert len(users) == 1, account
    user = users[0]
    keys = admin.registerUserKeys(id=user["id"])
    assert set(keys) == {"userkeys"}, keys
    apikey, secretkey = keys["userkeys"]["apikey"], keys["userkeys"]["secretkey"]
    assert isinstance(apikey, str) and isinstance(secretkey, str) and apikey != secretkey
    return Tenant(account=account, user=user, cs=client(key=apikey, secret=secretkey))


@pytest.fixture(scope="module")
def alice(admin, cloud):
    return make_tenant(admin, cloud)


@pytest.fixture(scope="module")
def bob(admin, cloud):
    return make_tenant(admin, cloud)


@pytest.fixture(scope="module")
def alices_things(cloud, alice):
    network = cloud.network(cs=alice.cs)
    ip = cloud.public_ip(network, cs=alice.cs)
    rule = alice.cs.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    return {"network": network, "ip": ip, "rule": rule["firewallrule"]}


def test_accounts_and_users_are_listed(admin, alice, bob):
    accounts = listed(admin.listAccounts(listall=True), "account")
    names = [a["name"] for a in accounts]
    assert alice.account["name"] in names and bob.account["name"] in names
    assert "admin" in names
    [root_admin] = [a for a in accounts if a["name"] == "admin"]
    assert root_admin["accounttype"] == 1

    users = listed(admin.listUsers(listall=True), "user")
    assert alice.user["id"] in ids(users) and bob.user["id"] in ids(users)

    own = listed(alice.cs.listAccounts(), "account")
    assert [a["name"] for a in own] == [alice.account["name"]]


def test_owner_sees_their_things(alice, alices_things):
    nets = listed(alice.cs.listNetworks(), "network")
    assert alices_things["network"]["id"] in ids(nets)
    rules = listed(
        alice.cs.listFirewallRules(ipaddressid=alices_things["ip"]["id"]), "firewallrule"
    )
    assert ids(rules) == [alices_things["rule"]["id"]]


def test_others_do_not_see_them(bob, alices_things):
    assert alices_things["network"]["id"] not in ids(listed(bob.cs.listNetworks(), "network"))
    assert alices_things["ip"]["id"] not in ids(
        listed(bob.cs.listPublicIpAddresses(), "publicipaddress")
    )
    assert alices_things["rule"]["id"] not in ids(
        listed(bob.cs.listFirewallRules(), "firewallrule")
    )


def outcome(call, uuid):
    """How a call was answered, with the uuid it named replaced by a placeholder."""
    try:
        answer = call()
    except CloudStackApiException as e:
        error = e.error if isinstance(e.error, dict) else {"errortext": str(e.error)}
        return (
            e.response.status_code if e.response is not None else None,
            error.get("errorcode"),
            str(error.get("errortext", "")).replace(uuid, "<uuid>"),
        )
    return ("answered", answer)


@pytest.mark.parametrize(
    "command,param,thing",
    [
        ("listNetworks", "id", "network"),
        ("listPublicIpAddresses", "id", "ip"),
        ("listFirewallRules", "id", "rule"),
        ("listFirewallRules", "ipaddressid", "ip"),
        ("createFirewallRule", "ipaddressid", "ip"),
        ("deleteFirewallRule", "id", "rule"),
        ("associateIpAddress", "networkid", "network"),
    ],
)
def test_asking_for_anothers_thing_is_like_asking_for_nothing(
    alice, bob, alices_things, command, param, thing
):
    real = alices_things[thing]["id"]
    made_up = fresh_uuid()
    extra = {"protocol": "tcp", "startport": 23} if command == "createFirewallRule" else {}
    call = getattr(bob.cs, command)
    for_real = outcome(lambda: call(**{param: real}, **extra), real)
    for_nothing = outcome(lambda: call(**{param: made_up}, **extra), made_up)
    assert for_real == for_nothing, "another account's id must be answered as an unknown one"
    # And nothing of Alice's changed.
    [rule] = listed(alice.cs.listFirewallRules(id=alices_things["rule"]["id"]), "firewallrule")
    assert rule["state"] == "Active"
    # CloudStack answers an id that names nothing with 431, list commands included.
    status, errorcode, text = (for_nothing + (None, None))[:3]
    assert status == 431 and errorcode == 431, (
        f"{command} {param}=<unknown uuid> must fail with 431 as in CloudStack, got {for_nothing}"
    )
    assert f"Invalid parameter {param} value=<uuid>" in text, text


def test_admin_sees_everyones_networks_with_listall(admin, cloud, bob, alices_things):
    bobs = cloud.network(cs=bob.cs)
    everything = ids(listed(admin.listNetworks(listall=True), "network"))
    assert alices_things["network"]["id"] in everything and bobs["id"] in everything
    assert alices_things["network"]["id"] not in ids(listed(bob.cs.listNetworks(), "network"))
    assert bobs["id"] not in ids(listed(admin.listNetworks(), "network")), (
        "without listall the admin lists only its own account's networks"
    )


def test_users_cannot_call_admin_commands(admin, cloud, bob):
    # CloudStack refuses a command the caller's role lacks before it runs (its API checker);
    # the code it answers with depends on the version (401 or 432).
    api_error(
        lambda: bob.cs.createVlanIpRange(
            zoneid=cloud.zone["id"],
            gateway="198.51.100.1",
            netmask="255.255.255.0",
            startip="198.51.100.100",
            endip="198.51.100.110",
            forvirtualnetwork=True,
        ),
        (401, 432),
    )
    starts = [r["startip"] for r in listed(admin.listVlanIpRanges(), "vlaniprange")]
    assert "198.51.100.100" not in starts


@pytest.mark.parametrize(
    "command,param",
    [
        ("listNetworks", "zoneid"),
        ("listNetworks", "domainid"),
        ("listVirtualMachines", "projectid"),
        ("listVirtualMachines", "networkid"),
        ("listRouters", "networkid"),
        ("listPublicIpAddresses", "associatednetworkid"),
        ("listEgressFirewallRules", "networkid"),
        ("listLoadBalancerRules", "virtualmachineid"),
        ("listEvents", "id"),
        ("listUsers", "id"),
    ],
)
def test_list_filters_naming_nothing_are_refused(bob, command, param):
    # CloudStack resolves every id parameter before the command runs: an id that names
    # nothing is 431, never an empty list.
    made_up = fresh_uuid()
    api_error(
        lambda: getattr(bob.cs, command)(**{param: made_up}),
        431,
        contains=f"Invalid parameter {param} value={made_up}",
    )


def test_two_accounts_may_give_their_vms_one_name(cloud, alice, bob):
    name = cloud.name("same")
    mine = cloud.vm(cloud.network(cs=alice.cs), cs=alice.cs, name=name)
    theirs = cloud.vm(cloud.network(cs=bob.cs), cs=bob.cs, name=name)
    assert mine["name"] == theirs["name"] == name and mine["id"] != theirs["id"]
    [listed_mine] = listed(alice.cs.listVirtualMachines(name=name), "virtualmachine")
    assert listed_mine["id"] == mine["id"]
    # Within one account a name stays unique.
    api_error(
        lambda: cloud.vm(cloud.network(cs=alice.cs), cs=alice.cs, name=name),
        431,
        contains="already used by another VM of this account",
    )
