"""Other real clients, reproduced request by request: legacy cloudmonkey 5.3 (Python 2) and
cmk (Go, whose cloudstack-go library the Terraform provider uses too) sign and parse
differently from cs. These tests sign requests their way, send them
with plain HTTP, and read the answers the way those clients do, including the command table
each one builds from listApis.
"""

import base64
import hashlib
import hmac
import string
from datetime import datetime, timedelta, timezone

import pytest
import requests

import support
from support import admin_key, admin_secret, endpoint, fresh_uuid, wait_for

UNRESERVED = frozenset(string.ascii_letters + string.digits + "._-")


def encode(value, keep=""):
    """Percent-encodes UTF-8 `value`, keeping letters, digits, `._-` and the characters in
    `keep`; a space becomes %20."""
    out = []
    for byte in str(value).encode("utf-8"):
        ch = chr(byte)
        out.append(ch if ch in UNRESERVED or ch in keep else f"%{byte:02X}")
    return "".join(out)


def signature(secret, pairs):
    text = "&".join(f"{k}={v}" for k, v in pairs).lower()
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sign_like_cloudmonkey(params, secret):
    """Legacy cloudmonkey: names sorted after lowercasing, values quoted as Python 2's
    quote_plus(safe="*") does (so `~` becomes %7E), spaces as %20."""
    pairs = sorted(params.items(), key=lambda kv: kv[0].lower())
    return signature(secret, [(k.lower(), encode(v, keep="*")) for k, v in pairs])


def sign_like_cmk(params, secret):
    """cmk: names sorted as they are, values escaped as Go's QueryEscape does (`~` kept),
    then `+` turned into %20 and %2A back into `*`."""
    pairs = sorted(params.items())
    return signature(secret, [(k, encode(v, keep="*~")) for k, v in pairs])


def in_ten_minutes(fmt):
    return (datetime.now(timezone.utc) + timedelta(minutes=10)).strftime(fmt)


def cloudmonkey_request(command, **args):
    """A GET as cloudmonkey 5.3 sends it; returns the requests response."""
    support.record(command)
    params = {k: str(v) for k, v in args.items()}
    params.update(
        command=command,
        response="json",
        signatureversion="3",
        expires=in_ten_minutes("%Y-%m-%dT%H:%M:%S+0000"),
        apiKey=admin_key(),
    )
    params["signature"] = sign_like_cloudmonkey(params, admin_secret())
    return requests.get(endpoint(), params=params, timeout=30)


def cmk_request(command, expires_style=None, **args):
    """A GET as cmk sends it: without expiry (6.4) or with an RFC 3339 expiry (later)."""
    support.record(command)
    params = {k: str(v) for k, v in args.items()}
    params.update(command=command, response="json", apiKey=admin_key())
    if expires_style == "rfc3339":
        params.update(signatureversion="3", expires=in_ten_minutes("%Y-%m-%dT%H:%M:%SZ"))
    params["signature"] = sign_like_cmk(params, admin_secret())
    return requests.get(endpoint(), params=params, timeout=30)


def only_response(http):
    """The single top-level `...response` key and its object, as these clients find it."""
    assert http.headers.get("Content-Type", "").startswith("application/json"), http.headers
    body = http.json()
    assert isinstance(body, dict) and len(body) == 1, body
    [(key, value)] = body.items()
    assert key.endswith("response"), key
    assert isinstance(value, dict), body
    return key, value


def verb_and_subject(name):
    """cloudmonkey's split of an API name: the leading lower-case letters are the verb."""
    i = 0
    while i < len(name) and name[i].islower():
        i += 1
    return name[:i].lower(), name[i:].lower()


def cloudmonkey_cache(answer):
    """The command table cloudmonkey's `sync` builds from a listApis answer; fails where
    cloudmonkey would crash or lose commands."""
    keys = [k for k in answer if "response" in k]
    assert len(keys) == 1, answer.keys()
    body = answer[keys[0]]
    cache = {"count": body["count"], "asyncapis": []}
    for api in body["api"]:
        verb, subject = verb_and_subject(api["name"])
        assert verb and subject, api["name"]
        params = []
        for p in api["params"]:
            params.append(
                {
                    "name": p["name"],
                    "description": p["description"],
                    "required": p["required"] is True,
                    # int(None) is where cloudmonkey 5.3 crashes.
                    "length": int(p["length"]),
                    "type": p["type"],
                    "related": [r for r in (p.get("related") or "").split(",") if r.strip()],
                }
            )
        if api["isasync"]:
            cache["asyncapis"].append(api["name"])
        entry = {
            "name": api["name"],
            "description": api["description"],
            "isasync": api["isasync"],
            "related": [r for r in (api.get("related") or "").split(",") if r.strip()],
            "params": params,
            "requiredparams": [p["name"] for p in params if p["required"]],
            "response": api["response"],
        }
        table = cache.setdefault(verb, {})
        assert subject not in table, f"{api['name']} and {table.get(subject, {}).get('name')}"
        table[subject] = entry
    return cache


def test_cloudmonkey_sync_builds_its_command_table():
    http = cloudmonkey_request("listApis")
    assert http.status_code == 200, http.text
    cache = cloudmonkey_cache(http.json())
    assert cache["count"] == sum(len(v) for k, v in cache.items() if isinstance(v, dict))
    assert cache["list"]["zones"]["name"] == "listZones"
    assert cache["create"]["firewallrule"]["name"] == "createFirewallRule"
    assert set(cache["create"]["firewallrule"]["requiredparams"]) >= {"ipaddressid", "protocol"}
    assert cache["assign"]["toloadbalancerrule"]["name"] == "assignToLoadBalancerRule"
    assert "createFirewallRule" in cache["asyncapis"]
    assert "listZones" not in cache["asyncapis"]


def test_cloudmonkey_signed_requests_are_accepted():
    http = cloudmonkey_request("listZones")
    assert http.status_code == 200, http.text
    key, value = only_response(http)
    assert key == "listzonesresponse"
    assert value["count"] >= 1 and value["zone"]


def test_cloudmonkey_signatures_with_tilde_are_accepted(cloud):
    # cloudmonkey encodes `~` as %7E, as the Java server does; cs and cmk leave it raw.
    network = cloud.network()
    http = cloudmonkey_request("listNetworks", id=network["id"], keyword="a~b*c d")
    assert http.status_code == 200, http.text


def test_cloudmonkey_prints_x_description_on_errors():
    http = cloudmonkey_request("listTemplates")
    assert http.status_code == 431
    key, value = only_response(http)
    assert key == "listtemplatesresponse"
    assert http.headers.get("X-Description") == value["errortext"]


@pytest.mark.parametrize("expires_style", [None, "rfc3339"])
def test_cmk_sync_parses_list_apis(expires_style):
    http = cmk_request("listApis", expires_style=expires_style, listall="true")
    assert http.status_code == 200, http.text
    key, value = only_response(http)
    assert key == "listapisresponse"
    assert value["count"] == len(value["api"])
    for api in value["api"]:
        # cmk type-asserts these and panics on anything else.
        assert isinstance(api["name"], str), api
        assert isinstance(api["isasync"], bool), api
        assert isinstance(api["description"], str), api
        assert isinstance(api["params"], list), api
        for p in api["params"]:
            for field in ("name", "type", "description"):
                assert isinstance(p[field], str), (api["name"], p)
            assert isinstance(p["required"], bool), (api["name"], p)
            if "related" in p:
                assert isinstance(p["related"], str), (api["name"], p)
        assert isinstance(api["response"], list), api
        for r in api["response"]:
            assert isinstance(r.get("name"), str), (api["name"], r)


def test_cmk_runs_an_async_command(cloud):
    ip = cloud.public_ip(cloud.network())
    http = cmk_request("createFirewallRule", ipaddressid=ip["id"], protocol="tcp", startport=22)
    assert http.status_code == 200, http.text
    key, value = only_response(http)
    assert key == "createfirewallruleresponse"
    jobid = value["jobid"]
    assert isinstance(jobid, str), value

    def finished():
        reply = cmk_request("queryAsyncJobResult", jobid=jobid)
        assert reply.status_code == 200, reply.text
        k, job = only_response(reply)
        assert k == "queryasyncjobresultresponse"
        assert isinstance(job["jobstatus"], int), job
        return job if job["jobstatus"] != 0 else None

    job = wait_for(finished, f"job {jobid}")
    assert job["jobstatus"] == 1, job
    assert isinstance(job["jobresult"], dict), job
    assert job["jobresult"]["firewallrule"]["id"] == value["id"]


def test_cmk_reads_errors_from_the_envelope():
    http = cmk_request("createFirewallRule", ipaddressid=fresh_uuid(), protocol="tcp")
    assert http.status_code == 431, http.text
    key, value = only_response(http)
    assert key == "createfirewallruleresponse"
    assert value["errorcode"] == 431
    assert isinstance(value["cserrorcode"], int)
    assert isinstance(value["errortext"], str)
    assert value["uuidList"] == []


def test_unknown_commands_are_answered_in_errorresponse():
    http = cmk_request("frobnicateWidgets")
    assert http.status_code == 401
    key, value = only_response(http)
    assert key == "errorresponse"
    assert value["errorcode"] == 401


def test_lowercase_apikey_name_is_accepted():
    # py-acs-sdk names the key `apikey` and signs without expiry.
    support.record("listZones")
    params = {"command": "listZones", "response": "json", "apikey": admin_key()}
    pairs = sorted(params.items(), key=lambda kv: kv[0].lower())
    params["signature"] = signature(admin_secret(), [(k, encode(v)) for k, v in pairs])
    http = requests.get(endpoint(), params=params, timeout=30)
    assert http.status_code == 200, http.text
    assert only_response(http)[0] == "listzonesresponse"


def cmk_job(http):
    """The result of an async command's job, polled as cloudstack-go (cmk, Terraform) polls."""
    assert http.status_code == 200, http.text
    _, value = only_response(http)
    jobid = value["jobid"]

    def finished():
        reply = cmk_request("queryAsyncJobResult", jobid=jobid)
        _, job = only_response(reply)
        return job if job["jobstatus"] != 0 else None

    job = wait_for(finished, f"job {jobid}")
    assert job["jobstatus"] == 1, job
    return job["jobresult"]


def test_terraform_static_nat_and_tags_as_cloudstack_go_sends_them(cloud):
    """The Terraform provider's cloudstack_static_nat and a resource's `tags`, through
    cloudstack-go's requests (cmk's signing): enableStaticNat is synchronous and answers
    `success`, the address's read finds `isstaticnat` and `virtualmachineid`, tags go through
    createTags with tags[i].key/value and come back in listTags and the address's `tags`."""
    network = cloud.network()
    vm = cloud.vm(network)
    ip = cloud.public_ip(network)
    http = cmk_request(
        "enableStaticNat", ipaddressid=ip["id"], virtualmachineid=vm["id"], networkid=network["id"]
    )
    assert http.status_code == 200, http.text
    key, value = only_response(http)
    assert key == "enablestaticnatresponse"
    assert value["success"] is True, value

    tagged = cmk_job(
        cmk_request(
            "createTags",
            resourcetype="PublicIpAddress",
            resourceids=ip["id"],
            **{"tags[0].key": "terraform", "tags[0].value": "managed"},
        )
    )
    assert tagged == {"success": True}, tagged

    key, value = only_response(cmk_request("listPublicIpAddresses", id=ip["id"]))
    [read] = value["publicipaddress"]
    assert read["isstaticnat"] is True and read["virtualmachineid"] == vm["id"], read
    assert read["tags"] == [
        {
            "key": "terraform",
            "value": "managed",
            "resourcetype": "PublicIpAddress",
            "resourceid": ip["id"],
        }
    ], read
    key, value = only_response(
        cmk_request("listTags", resourcetype="PublicIpAddress", resourceid=ip["id"])
    )
    assert [(t["key"], t["value"]) for t in value["tag"]] == [("terraform", "managed")], value

    # Terraform's delete: the tags, then the static NAT.
    gone = cmk_job(
        cmk_request(
            "deleteTags",
            resourcetype="PublicIpAddress",
            resourceids=ip["id"],
            **{"tags[0].key": "terraform", "tags[0].value": "managed"},
        )
    )
    assert gone == {"success": True}, gone
    assert cmk_job(cmk_request("disableStaticNat", ipaddressid=ip["id"])) == {"success": True}
    key, value = only_response(cmk_request("listPublicIpAddresses", id=ip["id"]))
    [read] = value["publicipaddress"]
    assert read["isstaticnat"] is False and read["tags"] == [], read
