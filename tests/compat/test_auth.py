"""Authentication and transport: signatures, expiry, unknown commands, GET and POST, and
values that are hard to sign (`~`, `*`, spaces, non-ASCII)."""

from datetime import datetime, timedelta, timezone

import pytest
import requests

from support import api_error, client, endpoint, listed

UNVERIFIED = "unable to verify user credentials and/or request signature"
# Characters that signing implementations disagree on, and some that need UTF-8.
TRICKY = "tilde~star*plus+ space & amp=eq %25 üñïçødé €✓"


def test_wrong_secret_is_401():
    cs = client(secret="not-the-secret")
    api_error(lambda: cs.listZones(), 401, contains=UNVERIFIED)


def test_unknown_api_key_is_401():
    cs = client(key="no-such-key", secret="no-such-secret")
    api_error(lambda: cs.listZones(), 401, contains=UNVERIFIED)


def test_unsigned_request_is_401():
    # With an empty secret cs sends the apiKey without any signature.
    cs = client(secret="")
    api_error(lambda: cs.listZones(), 401)


def test_expired_request_is_401(admin):
    api_error(
        lambda: admin.listZones(signatureVersion="3", expires="2020-01-01T00:00:00+0000"),
        401,
        contains=UNVERIFIED,
    )


@pytest.mark.parametrize("style", ["+0000", "Z", "+00:00", "-0500"])
def test_expiry_formats_of_real_clients_are_accepted(admin, style):
    later = datetime.now(timezone.utc) + timedelta(minutes=10)
    if style == "-0500":
        stamp = (later - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S") + "-0500"
    else:
        stamp = later.strftime("%Y-%m-%dT%H:%M:%S") + style
    zones = listed(admin.listZones(signatureVersion="3", expires=stamp), "zone")
    assert zones


def test_expires_is_checked_even_without_signature_version_3(admin):
    # CloudStack looks at expires only with signatureVersion=3; guestnet always does, so that
    # a stale request cannot be replayed by dropping its signature version.
    api_error(
        lambda: admin.listZones(expires="2020-01-01T00:00:00+0000"),
        401,
        contains=UNVERIFIED,
    )
    later = (datetime.now(timezone.utc) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed(admin.listZones(expires=later), "zone")


def test_signature_version_3_needs_expires(admin):
    # cs adds expires itself unless told not to sign with an expiry (a negative expiration).
    cs = client(expiration=-1)
    assert listed(cs.listZones(), "zone"), "no signature version, no expires: accepted"
    api_error(lambda: cs.listZones(signatureVersion="3"), 401, contains=UNVERIFIED)


def test_a_name_holding_eq_and_amp_cannot_replay_a_stale_request():
    # A request signed by cs with a past expiry, re-sent with `expires` and `keyword` fused
    # into one name (`expires%3D…%26keyword=x`): the signed text of the two stays the same if
    # names are signed as written, and the server then sees no `expires` at all.
    cs = client(expiration=-1)
    params = {
        "apiKey": cs.key,
        "command": "listZones",
        "expires": "2020-01-01T00:00:00+0000",
        "keyword": "x",
        "response": "json",
        "signatureVersion": "3",
    }
    cs._sign(params)
    fused = {k: v for k, v in params.items() if k not in ("expires", "keyword")}
    fused["expires=2020-01-01T00%3A00%3A00%2B0000&keyword"] = "x"
    answer = requests.get(endpoint(), params=fused, timeout=30)
    assert answer.status_code == 401, answer.text
    assert UNVERIFIED in answer.text


def test_unknown_command_is_401(admin):
    api_error(lambda: admin.frobnicateWidgets(), 401)


def test_errors_carry_x_description_and_json(admin):
    e = api_error(lambda: admin.listTemplates(), 431, contains="templatefilter")
    assert e.response.headers.get("Content-Type", "").startswith("application/json")
    assert e.response.headers.get("X-Description") == e.error["errortext"]


def test_parameter_names_are_case_insensitive(admin, cloud):
    network = cloud.network()
    items = listed(admin.listNetworks(ID=network["id"]), "network")
    assert [n["id"] for n in items] == [network["id"]]


@pytest.mark.parametrize("method", ["get", "post"])
def test_hard_values_round_trip_through_signing(cloud, method):
    cs = client(method=method)
    network = cloud.network(cs=cs, displaytext=TRICKY)
    assert network["displaytext"] == TRICKY
    [listed_network] = listed(cs.listNetworks(id=network["id"]), "network")
    assert listed_network["displaytext"] == TRICKY

    ip = cloud.public_ip(network, cs=cs)
    lb = cs.createLoadBalancerRule(
        name="tricky",
        description=TRICKY,
        algorithm="roundrobin",
        publicport=80,
        privateport=80,
        publicipid=ip["id"],
    )["loadbalancer"]
    assert lb["description"] == TRICKY
    [listed_lb] = listed(cs.listLoadBalancerRules(id=lb["id"]), "loadbalancerrule")
    assert listed_lb["description"] == TRICKY


def test_post_requests_work_for_every_kind_of_command(cloud):
    cs = client(method="post")
    assert listed(cs.listZones(), "zone")
    network = cloud.network(cs=cs)
    ip = cloud.public_ip(network, cs=cs)
    rule = cs.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=22)
    assert rule["firewallrule"]["state"] == "Active"
    assert cs.deleteFirewallRule(id=rule["firewallrule"]["id"]) == {"success": True}
    api_error(lambda: cs.createFirewallRule(ipaddressid=ip["id"]), 431)
