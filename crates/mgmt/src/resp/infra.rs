//! The responses of zones, offerings, templates, public ranges, VMs and routers.

use serde_json::{json, Map, Value};

use std::net::Ipv4Addr;

use domain::guest::vlan_uri;
use store::catalogue::{NetworkOffering, ServiceOffering, Template};
use store::ranges::RangeRecord;
use store::router_views::RouterRecord;
use store::vms::VmRecord;

use super::{date, services, Owner};

/// The zone a server serves: its uuid and name.
pub type Zone<'a> = (&'a str, &'a str);

/// The server's one zone, with its DNS servers (`dns1`, then `dns2`): ZoneResponse.
pub fn zone(zone: Zone<'_>, dns: &[Ipv4Addr]) -> Value {
    let mut m = json!({
        "id": zone.0,
        "name": zone.1,
        "description": "guestnet zone: isolated guest networks, each served by its own router",
        "networktype": "Advanced",
        "allocationstate": "Enabled",
        "dns1": dns.first().map(|a| a.to_string()).unwrap_or_default(),
        "guestcidraddress": "10.1.0.0/16",
        "securitygroupsenabled": false,
        "localstorageenabled": false,
        "tags": [],
    });
    if let Some(dns2) = dns.get(1) {
        m["dns2"] = json!(dns2.to_string());
    }
    m
}

/// A zone's physical network: PhysicalNetworkResponse.
pub fn physical_network(pn: &store::zones::PhysicalNetwork, zone: Zone<'_>) -> Value {
    json!({
        "id": pn.uuid,
        "name": pn.name,
        "zoneid": zone.0,
        "zonename": zone.1,
        "state": "Enabled",
        "isolationmethods": "VLAN",
        "broadcastdomainrange": "ZONE",
        "vlan": pn.vlans.to_string(),
    })
}

/// A network offering: NetworkOfferingResponse; `router_offering` is the id of the system
/// offering its routers are made from (CloudStack fills it for every offering).
pub fn network_offering(o: &NetworkOffering, router_offering: &str) -> Value {
    json!({
        "id": o.uuid,
        "name": o.name,
        "displaytext": o.display_text,
        "traffictype": "Guest",
        "guestiptype": "Isolated",
        "state": "Enabled",
        "isdefault": o.is_default,
        "specifyvlan": false,
        "specifyipranges": false,
        "conservemode": true,
        "availability": "Optional",
        // The lab does not shape traffic: -1, no limit.
        "networkrate": -1,
        "ispersistent": false,
        "egressdefaultpolicy": o.egress_default_allow,
        "forvpc": false,
        "service": services(),
        "serviceofferingid": router_offering,
        "created": date(o.created),
    })
}

/// A service offering: ServiceOfferingResponse.
pub fn service_offering(o: &ServiceOffering) -> Value {
    let mut v = json!({
        "id": o.uuid,
        "name": o.name,
        "displaytext": o.display_text,
        "cpunumber": o.cpu_number,
        "cpuspeed": o.cpu_speed,
        "memory": o.memory,
        "created": date(o.created),
        "storagetype": "shared",
        "offerha": false,
        "limitcpuuse": false,
        "isvolatile": false,
        "iscustomized": false,
        "issystem": o.system_vm_type.is_some(),
        "defaultuse": false,
    });
    if let Some(t) = &o.system_vm_type {
        v["systemvmtype"] = json!(t);
    }
    v
}

/// A template (the built-in one, or one registered from a file), featured and public, owned
/// by the admin: TemplateResponse.
pub fn template(t: &Template, admin: &Owner, zone: Zone<'_>) -> Value {
    let mut v = json!({
        "id": t.uuid,
        "name": t.name,
        "displaytext": t.display_text,
        "ispublic": true,
        "isready": true,
        "isfeatured": true,
        "crossZones": false,
        "isextractable": false,
        "passwordenabled": false,
        "sshkeyenabled": false,
        "isdynamicallyscalable": false,
        "ostypename": t.os_type,
        "account": admin.account,
        "domainid": admin.domain_id,
        "domain": admin.domain,
        "zoneid": zone.0,
        "zonename": zone.1,
        "status": "Download Complete",
        "templatetype": "BUILTIN",
        "hypervisor": "Lab",
        // The built-in template boots no image: a lab VM is a network namespace over the
        // host's own file tree, which is what CloudStack's format DIR names.
        "format": "DIR",
        "created": date(t.created),
        "tags": [],
    });
    if let Some(image) = &t.image {
        v["templatetype"] = json!("USER");
        v["hypervisor"] = json!("KVM");
        v["format"] = json!(image.format);
    }
    v
}

/// A public range: VlanIpRangeResponse.
pub fn range(r: &RangeRecord, zone_uuid: &str) -> Value {
    let (start, end) = (r.range.start.to_string(), r.range.end.to_string());
    json!({
        "id": r.uuid,
        "forvirtualnetwork": true,
        "zoneid": zone_uuid,
        "vlan": r.range.vlan,
        "gateway": r.range.gateway.to_string(),
        "netmask": r.range.netmask.to_string(),
        "startip": start,
        "endip": end,
        "description": format!("{start}-{end}"),
        "forsystemvms": false,
    })
}

/// A VM in UserVmResponse's shape (the fields that apply to a lab VM), in `state` (its own,
/// or `Destroyed` for the answer of its destruction); `admin` (CloudStack's full view) adds
/// its NIC's VLAN as `broadcasturi` and `isolationuri`.
pub fn vm(vm: &VmRecord, owner: &Owner, zone: Zone<'_>, state: &str, admin: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(vm.uuid));
    m.insert("name".into(), json!(vm.name));
    m.insert("displayname".into(), json!(vm.display_name));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert("created".into(), json!(date(vm.created)));
    m.insert("state".into(), json!(state));
    m.insert("haenable".into(), json!(false));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    m.insert("templateid".into(), json!(vm.t_uuid));
    m.insert("templatename".into(), json!(vm.t_name));
    m.insert("templatedisplaytext".into(), json!(vm.t_display));
    m.insert("passwordenabled".into(), json!(false));
    m.insert("serviceofferingid".into(), json!(vm.so_uuid));
    m.insert("serviceofferingname".into(), json!(vm.so_name));
    m.insert("cpunumber".into(), json!(vm.cpu_number));
    m.insert("cpuspeed".into(), json!(vm.cpu_speed));
    m.insert("memory".into(), json!(vm.memory));
    m.insert("hypervisor".into(), json!("Lab"));
    m.insert("nic".into(), json!([nic(vm, admin)]));
    m.insert("isdynamicallyscalable".into(), json!(false));
    m.insert("tags".into(), json!([]));
    Value::Object(m)
}

/// A VM's one interface, as NicResponse in a VM's `nic` list; `admin` adds its VLAN as
/// `broadcasturi` and `isolationuri`.
pub fn nic(vm: &VmRecord, admin: bool) -> Value {
    let mut nic = json!({
        "id": vm.nic_uuid,
        "networkid": vm.net_uuid,
        "networkname": vm.net_name,
        "ipaddress": vm.ip.to_string(),
        "netmask": vm.cidr.netmask().to_string(),
        "gateway": vm.gateway,
        "isdefault": true,
        "type": "Isolated",
        "traffictype": "Guest",
        "macaddress": vm.mac.to_string(),
        "deviceid": "0",
    });
    if let (true, Some(vlan)) = (admin, vm.vlan) {
        nic["broadcasturi"] = json!(vlan_uri(vlan));
        nic["isolationuri"] = json!(vlan_uri(vlan));
    }
    nic
}

/// A router: DomainRouterResponse, with guestnet's generations and driver.
pub fn router(r: &RouterRecord, owner: &Owner, zone: Zone<'_>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.uuid));
    m.insert("name".into(), json!(r.name));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    m.insert("state".into(), json!(r.state.as_str()));
    m.insert("host".into(), json!(r.host));
    m.insert("hostname".into(), json!(r.host));
    if let Some(id) = &r.host_uuid {
        m.insert("hostid".into(), json!(id));
    }
    m.insert("guestipaddress".into(), json!(r.gateway));
    m.insert("guestnetmask".into(), json!(r.cidr.netmask().to_string()));
    m.insert("guestnetworkid".into(), json!(r.net_uuid));
    m.insert("guestnetworkname".into(), json!(r.net_name));
    if let Some(ip) = &r.public_ip {
        m.insert("publicip".into(), json!(ip));
    }
    if let Some(id) = &r.public_ip_uuid {
        m.insert("publicipid".into(), json!(id));
    }
    m.insert("role".into(), json!("VIRTUAL_ROUTER"));
    m.insert("isredundantrouter".into(), json!(false));
    m.insert("redundantstate".into(), json!("UNKNOWN"));
    m.insert("requiresupgrade".into(), json!(false));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert("created".into(), json!(date(r.created)));
    if let Some(d) = &r.host_driver {
        m.insert("guestnetdriver".into(), json!(d));
    }
    m.insert(
        "enforced".into(),
        json!(r.host_driver.as_deref() == Some("lab")),
    );
    m.insert("desiredgeneration".into(), json!(r.desired_generation));
    m.insert("appliedgeneration".into(), json!(r.applied_generation));
    if let Some(at) = r.applied_at {
        m.insert("appliedat".into(), json!(date(at)));
    }
    if let Some(e) = &r.last_error {
        m.insert("lasterror".into(), json!(e));
    }
    Value::Object(m)
}
