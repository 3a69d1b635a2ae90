"""Hosts and their agents: createAgentToken, listAgentTokens, revokeAgentToken and listHosts,
all for root admins only. The suite's server runs its own, in-process agent as host `local`,
on which every network's router is placed."""

import json

import pytest

from support import api_error, client, fresh_uuid, ids, listed


def tokens(admin, **filters):
    return listed(admin.listAgentTokens(**filters), "agenttoken")


def hosts(admin, **filters):
    return listed(admin.listHosts(**filters), "host")


@pytest.fixture(scope="module")
def user_cs(admin, cloud):
    """A cs client of a user account of its own (not an admin)."""
    name = cloud.name("hostsuser")
    answer = admin.createAccount(
        account=name,
        username=name,
        password="Compat-Passw0rd!",
        email=f"{name}@example.org",
        firstname="Compat",
        lastname=name,
        accounttype=0,
    )
    users = [u for u in answer["account"].get("user", []) if u.get("username") == name]
    if not users:
        users = listed(admin.listUsers(username=name), "user")
    assert len(users) == 1, answer
    keys = admin.registerUserKeys(id=users[0]["id"])["userkeys"]
    return client(key=keys["apikey"], secret=keys["secretkey"])


def test_agent_token_lifecycle(admin, cloud):
    host = cloud.name("host")
    answer = admin.createAgentToken(host=host)
    assert set(answer) == {"agenttoken"}, answer
    created = answer["agenttoken"]
    assert created["host"] == host
    for field in ("id", "hostid", "token", "created"):
        assert isinstance(created[field], str) and created[field], (field, created)
    secret = created["token"]

    # The token is shown once: never again in a list (nor its digest).
    [item] = tokens(admin, id=created["id"])
    assert item["state"] == "Active", item
    assert item["host"] == host and item["hostid"] == created["hostid"]
    assert "token" not in item and "digest" not in item, item
    assert "revoked" not in item, item
    everything = admin.listAgentTokens(fetch_list=True)
    assert created["id"] in ids(everything)
    assert all("token" not in t for t in everything), everything
    assert secret not in json.dumps(everything)
    assert ids(tokens(admin, host=host)) == [created["id"]]

    assert admin.revokeAgentToken(id=created["id"]) == {"success": True}
    [item] = tokens(admin, id=created["id"])
    assert item["state"] == "Revoked", item
    assert isinstance(item["revoked"], str), item

    # Revoking again succeeds and keeps the first revocation.
    assert admin.revokeAgentToken(id=created["id"]) == {"success": True}
    [again] = tokens(admin, id=created["id"])
    assert again["state"] == "Revoked" and again["revoked"] == item["revoked"], again

    # The event log records both, without the token.
    events = admin.listEvents(fetch_list=True)
    types = [e["type"] for e in events]
    assert "AGENT.TOKEN.CREATE" in types and "AGENT.TOKEN.REVOKE" in types, types
    assert secret not in json.dumps(events)


def test_revoking_an_unknown_token_is_an_unknown_id(admin):
    api_error(
        lambda: admin.revokeAgentToken(id=fresh_uuid()), 431, contains="Invalid parameter id"
    )


def test_bad_host_names_are_refused(admin):
    for bad in ("two words", "a/b", "x" * 65):
        api_error(lambda bad=bad: admin.createAgentToken(host=bad), 431, contains="host name")


def test_the_host_of_a_new_token_is_disconnected_until_its_agent_connects(admin, cloud):
    host = cloud.name("host")
    created = admin.createAgentToken(host=host)["agenttoken"]
    [listed_host] = hosts(admin, name=host)
    assert listed_host["id"] == created["hostid"]
    assert listed_host["state"] == "Disconnected", listed_host
    assert listed_host["type"] == "Routing"
    assert listed_host["zoneid"] == cloud.zone["id"]
    assert listed_host["routers"] == 0
    assert [h["name"] for h in hosts(admin, id=created["hostid"])] == [host]
    assert host not in [h["name"] for h in hosts(admin, state="Up")]
    assert host in [h["name"] for h in hosts(admin, state="Disconnected")]


def test_the_embedded_host_is_up_and_runs_the_routers(admin, cloud):
    network = cloud.network()
    [router] = listed(admin.listRouters(networkid=network["id"]), "router")
    assert router["hostname"] == "local", router

    [local] = hosts(admin, name="local")
    assert local["state"] == "Up", local
    assert local["type"] == "Routing"
    assert local["zoneid"] == cloud.zone["id"]
    assert local["zonename"] == cloud.zone["name"]
    assert isinstance(local["routers"], int) and local["routers"] >= 1, local
    assert isinstance(local["managementserverid"], str), local
    assert isinstance(local["lastpinged"], str) and isinstance(local["created"], str), local
    assert isinstance(local["epoch"], int), local

    assert "local" in [h["name"] for h in hosts(admin, state="Up")]
    assert "local" in [h["name"] for h in hosts(admin, zoneid=cloud.zone["id"], type="Routing")]
    assert local["id"] in ids(admin.listHosts(fetch_list=True))
    assert hosts(admin, type="Storage") == []
    api_error(lambda: admin.listHosts(zoneid=fresh_uuid()), 431)


def test_users_cannot_manage_hosts(admin, cloud, user_cs):
    created = admin.createAgentToken(host=cloud.name("host"))["agenttoken"]
    # As for the other admin-only commands, the code depends on the CloudStack version.
    denied = (401, 432)
    api_error(lambda: user_cs.createAgentToken(host=cloud.name("host")), denied)
    api_error(lambda: user_cs.listAgentTokens(), denied)
    api_error(lambda: user_cs.revokeAgentToken(id=created["id"]), denied)
    api_error(lambda: user_cs.listHosts(), denied)
    [item] = tokens(admin, id=created["id"])
    assert item["state"] == "Active", item
