"""Resource limits: listResourceLimits and updateResourceLimit as CloudStack answers them, and
one tenant stopped at its limit (535) while the admin still gets what it asks for."""

import pytest

from support import api_error, listed
from test_tenancy import make_tenant

# CloudStack's max.account.* defaults, and guestnet's own type for network rules.
DEFAULTS = {
    "0": ("user_vm", 20),
    "1": ("public_ip", 20),
    "6": ("network", 20),
    "1000": ("network_rule", 1000),
}


@pytest.fixture(scope="module")
def tenant(admin, cloud):
    return make_tenant(admin, cloud)


def test_a_tenant_sees_its_limits(tenant):
    rows = listed(tenant.cs.listResourceLimits(), "resourcelimit")
    got = {r["resourcetype"]: (r["resourcetypename"], r["max"]) for r in rows}
    assert got == DEFAULTS, rows
    for r in rows:
        assert r["account"] == tenant.account["name"], r
        assert r["domainid"] == tenant.account["domainid"], r

    [one] = listed(tenant.cs.listResourceLimits(resourcetypename="public_ip"), "resourcelimit")
    assert one["resourcetype"] == "1" and one["max"] == 20, one
    api_error(lambda: tenant.cs.listResourceLimits(resourcetype=2), 431)


def test_the_root_admin_and_root_domain_are_unlimited(admin):
    rows = listed(admin.listResourceLimits(), "resourcelimit")
    assert len(rows) == len(DEFAULTS)
    assert all(r["max"] == -1 and r["account"] == "admin" for r in rows), rows
    root = listed(admin.listAccounts(name="admin"), "account")[0]["domainid"]
    domain_rows = listed(admin.listResourceLimits(domainid=root), "resourcelimit")
    assert all(r["max"] == -1 and "account" not in r for r in domain_rows), domain_rows


def test_only_admins_set_limits(admin, cloud, tenant):
    api_error(lambda: tenant.cs.updateResourceLimit(resourcetype=1, max=100), 432)
    name, domain = tenant.account["name"], tenant.account["domainid"]
    answer = admin.updateResourceLimit(account=name, domainid=domain, resourcetype=6, max=1)
    assert set(answer) == {"resourcelimit"}, answer
    row = answer["resourcelimit"]
    assert row["account"] == name and row["max"] == 1, row
    assert row["resourcetype"] == "6" and row["resourcetypename"] == "network", row

    network = cloud.network(cs=tenant.cs)
    api_error(lambda: cloud.network(cs=tenant.cs), 535, "type 'network' for account")
    # Without max the limit is lifted.
    answer = admin.updateResourceLimit(account=name, domainid=domain, resourcetype=6)
    assert answer["resourcelimit"]["max"] == -1, answer
    tenant.cs.deleteNetwork(id=network["id"])

    api_error(
        lambda: admin.updateResourceLimit(account=name, domainid=domain, resourcetype=1, max=-5),
        431,
    )
    api_error(lambda: admin.updateResourceLimit(domainid=domain, resourcetype=1, max=5), 531)


def test_a_tenant_cannot_take_every_address(admin, cloud, tenant):
    network = cloud.network(cs=tenant.cs)
    taken = 1  # the network's source-NAT address
    while True:
        try:
            tenant.cs.associateIpAddress(networkid=network["id"])
        except Exception:
            break
        taken += 1
        assert taken <= 20, "the tenant got past its public_ip limit"
    e = api_error(
        lambda: tenant.cs.associateIpAddress(networkid=network["id"]),
        535,
        f"Maximum number of resources of type 'public_ip' for account name="
        f"{tenant.account['name']}",
    )
    assert e.error["cserrorcode"] == 4370, e.error
    assert taken == 20
    held = listed(tenant.cs.listPublicIpAddresses(), "publicipaddress")
    assert len(held) == 20, held

    # The admin is not limited, and the zone still has addresses for it.
    own = cloud.network()
    ip = cloud.public_ip(own)
    admin.disassociateIpAddress(id=ip["id"])
    admin.deleteNetwork(id=own["id"])
    tenant.cs.deleteNetwork(id=network["id"])
