//! The catalogue's data: every command, its parameters and its response fields.

use super::{ApiSpec, ParamKind, ParamSpec, ResponseField};
use ParamKind::{Boolean, Date, Integer, List, ListOfUuid, Long, Map, Short, Uuid};

/// The usual length limit of a parameter.
const DEFAULT_LENGTH: u32 = 255;
/// The length limit of description-like text.
const LONG_TEXT: u32 = 4096;

const fn p(name: &'static str, kind: ParamKind, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        length: DEFAULT_LENGTH,
        description,
        related: "",
        since: "",
    }
}

const fn s(name: &'static str, description: &'static str) -> ParamSpec {
    p(name, ParamKind::String, description)
}

impl ParamSpec {
    const fn req(mut self) -> Self {
        self.required = true;
        self
    }
    const fn rel(mut self, related: &'static str) -> Self {
        self.related = related;
        self
    }
    const fn since_v(mut self, since: &'static str) -> Self {
        self.since = since;
        self
    }
    const fn len(mut self, length: u32) -> Self {
        self.length = length;
        self
    }
}

const fn f(name: &'static str, kind: &'static str, description: &'static str) -> ResponseField {
    ResponseField {
        name,
        description,
        kind,
    }
}

// Commands whose results name each kind of entity: the `related` of uuid parameters.
const R_IP: &str = "associateIpAddress,listPublicIpAddresses";
const R_NETWORK: &str = "createNetwork,listNetworks";
const R_ZONE: &str = "listZones";
const R_PHYSICAL_NETWORK: &str = "listPhysicalNetworks";
const R_VM: &str = "deployVirtualMachine,listVirtualMachines";
const R_FW: &str = "createFirewallRule,listFirewallRules,updateFirewallRule";
const R_EGRESS: &str = "createEgressFirewallRule,listEgressFirewallRules,updateEgressFirewallRule";
const R_PF: &str = "createPortForwardingRule,listPortForwardingRules,updatePortForwardingRule";
const R_IPF: &str = "createIpForwardingRule,listIpForwardingRules";
const R_LB: &str = "createLoadBalancerRule,listLoadBalancerRules,updateLoadBalancerRule";
const R_STICKY: &str = "createLBStickinessPolicy,listLBStickinessPolicies";
const R_HEALTH: &str = "createLBHealthCheckPolicy,listLBHealthCheckPolicies";
const R_NET_OFFERING: &str = "listNetworkOfferings";
const R_SVC_OFFERING: &str = "listServiceOfferings";
const R_TEMPLATE: &str = "listTemplates";
const R_VLAN: &str = "createVlanIpRange,listVlanIpRanges";
const R_ROUTER: &str = "listRouters";
const R_EVENT: &str = "listEvents";
const R_ACCOUNT: &str = "createAccount,listAccounts";
const R_USER: &str = "listUsers";
const R_JOB: &str = "queryAsyncJobResult,listAsyncJobs";
const R_AGENT_TOKEN: &str = "createAgentToken,listAgentTokens";
const R_HOST: &str = "listHosts";

// ------------------------------------------------------------------------------------------
// Parameters shared by many commands.

const KEYWORD: ParamSpec = s(
    "keyword",
    "Only items whose name or text contains this word",
);
const PAGE: ParamSpec = p(
    "page",
    Integer,
    "Which page to return, counting from 1; give pagesize with it",
);
const PAGESIZE: ParamSpec = p(
    "pagesize",
    Integer,
    "Items per page, at most 500; -1 returns every item on one page (then page must be absent)",
);
const LISTALL: ParamSpec = p(
    "listall",
    Boolean,
    "true lists everything the caller may see, not only the caller's own; false by default",
);
const DOMAINID_FILTER: ParamSpec = p("domainid", Uuid, "Only items owned in this domain");
const ISRECURSIVE: ParamSpec = p(
    "isrecursive",
    Boolean,
    "With domainid, also include the domain's subdomains; false by default",
);
const ACCOUNT_FILTER: ParamSpec = s(
    "account",
    "Only items owned by the account of this name; give domainid with it",
);
const PROJECTID_FILTER: ParamSpec = p("projectid", Uuid, "Only items of this project");
const TAGS_FILTER: ParamSpec = p(
    "tags",
    Map,
    "Only items carrying one of these tags (key and value both equal, as CloudStack matches \
     them), given as tags[i].key and tags[i].value",
);
const FORDISPLAY_FILTER: ParamSpec = p(
    "fordisplay",
    Boolean,
    "Only items whose display flag has this value",
)
.since_v("4.4");
const FORDISPLAY: ParamSpec = p(
    "fordisplay",
    Boolean,
    "Whether end users are shown the item (settable by root admins); true by default",
)
.since_v("4.4");
const CUSTOMID: ParamSpec = s(
    "customid",
    "A new uuid for the item, replacing the one the server gave it (root admins only)",
)
.since_v("4.4");
const OWNER_ACCOUNT: ParamSpec = s(
    "account",
    "The account that will own the item; give domainid with it",
);
const OWNER_DOMAINID: ParamSpec = p("domainid", Uuid, "The domain of the owning account");

/// Own parameters, then the paging parameters every list command has.
macro_rules! base_list {
    ($($param:expr),* $(,)?) => {
        &[$($param,)* KEYWORD, PAGE, PAGESIZE]
    };
}

/// Own parameters, then the ownership filters of account-owned lists and paging.
macro_rules! account_list {
    ($($param:expr),* $(,)?) => {
        &[$($param,)* LISTALL, DOMAINID_FILTER, ISRECURSIVE, ACCOUNT_FILTER, PROJECTID_FILTER,
          KEYWORD, PAGE, PAGESIZE]
    };
}

/// Own parameters, then the tag filter, the ownership filters and paging.
macro_rules! tagged_list {
    ($($param:expr),* $(,)?) => {
        &[$($param,)* TAGS_FILTER, LISTALL, DOMAINID_FILTER, ISRECURSIVE, ACCOUNT_FILTER,
          PROJECTID_FILTER, KEYWORD, PAGE, PAGESIZE]
    };
}

// ------------------------------------------------------------------------------------------
// Response objects.

const TAGS_FIELD: ResponseField = f("tags", "set", "The tags attached to the item");

const SUCCESS: &[ResponseField] = &[
    f("success", "boolean", "true when the command succeeded"),
    f(
        "displaytext",
        "string",
        "Details of the outcome, when there are any",
    ),
];

const FIREWALL: &[ResponseField] = &[
    f("id", "string", "The rule's id"),
    f("protocol", "string", "tcp, udp, icmp or all"),
    f("startport", "integer", "First port of the range"),
    f("endport", "integer", "Last port of the range"),
    f(
        "ipaddressid",
        "string",
        "Id of the public address (ingress rules)",
    ),
    f("ipaddress", "string", "The public address (ingress rules)"),
    f("networkid", "string", "Id of the guest network"),
    f("state", "string", "Add, Active or Deleting"),
    f("cidrlist", "string", "Source CIDRs, comma-separated"),
    f("icmptype", "integer", "ICMP type; -1 for all"),
    f("icmpcode", "integer", "ICMP code; -1 for all"),
    TAGS_FIELD,
    f(
        "fordisplay",
        "boolean",
        "Whether end users are shown the rule",
    ),
    f(
        "destcidrlist",
        "string",
        "Destination CIDRs, comma-separated (egress rules)",
    ),
    f("traffictype", "string", "Ingress or Egress"),
];

const PORT_FORWARDING: &[ResponseField] = &[
    f("id", "string", "The rule's id"),
    f("privateport", "string", "First port on the virtual machine"),
    f(
        "privateendport",
        "string",
        "Last port on the virtual machine",
    ),
    f("publicport", "string", "First public port"),
    f("publicendport", "string", "Last public port"),
    f("protocol", "string", "tcp or udp"),
    f(
        "virtualmachineid",
        "string",
        "Id of the destination virtual machine",
    ),
    f(
        "virtualmachinename",
        "string",
        "Name of the destination virtual machine",
    ),
    f(
        "virtualmachinedisplayname",
        "string",
        "Display name of the destination virtual machine",
    ),
    f("ipaddressid", "string", "Id of the public address"),
    f("ipaddress", "string", "The public address"),
    f("state", "string", "Add, Active or Deleting"),
    f("cidrlist", "string", "Source CIDRs, comma-separated"),
    TAGS_FIELD,
    f(
        "vmguestip",
        "string",
        "The guest address traffic is sent to",
    ),
    f("networkid", "string", "Id of the guest network"),
    f(
        "fordisplay",
        "boolean",
        "Whether end users are shown the rule",
    ),
];

const LOAD_BALANCER: &[ResponseField] = &[
    f("id", "string", "The rule's id"),
    f("name", "string", "The rule's name"),
    f("description", "string", "The rule's description"),
    f("publicipid", "string", "Id of the public address"),
    f("publicip", "string", "The public address"),
    f("publicport", "string", "The public port"),
    f("privateport", "string", "The port on the members"),
    f("algorithm", "string", "roundrobin, leastconn or source"),
    f("networkid", "string", "Id of the guest network"),
    f("cidrlist", "string", "Source CIDRs allowed, as stored"),
    f("account", "string", "The owning account"),
    f("projectid", "string", "Id of the owning project"),
    f("project", "string", "Name of the owning project"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("domainpath", "string", "Path of the owner's domain"),
    f("state", "string", "Add, Active or Deleting"),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f(
        "protocol",
        "string",
        "The balancing protocol: tcp, udp, tcp-proxy or ssl",
    ),
    TAGS_FIELD,
    f(
        "fordisplay",
        "boolean",
        "Whether end users are shown the rule",
    ),
];

const IP_ADDRESS: &[ResponseField] = &[
    f("id", "string", "The address's id"),
    f("ipaddress", "string", "The address"),
    f("allocated", "date", "When the address was acquired"),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f(
        "issourcenat",
        "boolean",
        "Whether the network's outbound traffic leaves from it",
    ),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f(
        "forvirtualnetwork",
        "boolean",
        "Whether it belongs to a routed range",
    ),
    f("vlanid", "string", "Id of the range it comes from"),
    f("vlanname", "string", "VLAN of the range it comes from"),
    f(
        "isstaticnat",
        "boolean",
        "Whether it is mapped one-to-one to a virtual machine",
    ),
    f("issystem", "boolean", "Whether the system holds it"),
    f(
        "virtualmachineid",
        "string",
        "Id of the static NAT virtual machine",
    ),
    f(
        "vmipaddress",
        "string",
        "Guest address of the static NAT virtual machine",
    ),
    f(
        "associatednetworkid",
        "string",
        "Id of the network it is associated with",
    ),
    f(
        "associatednetworkname",
        "string",
        "Name of the network it is associated with",
    ),
    f(
        "networkid",
        "string",
        "Id of the public network it comes from",
    ),
    f(
        "state",
        "string",
        "Allocating, Allocated, Releasing, Reserved or Free",
    ),
    f("physicalnetworkid", "string", "Id of the physical network"),
    f("purpose", "string", "What the address is used for"),
    f("vpcid", "string", "Id of the VPC it is associated with"),
    TAGS_FIELD,
    f("isportable", "boolean", "Whether it can move between zones"),
    f(
        "fordisplay",
        "boolean",
        "Whether end users are shown the address",
    ),
    f("hasrules", "boolean", "Whether rules use it"),
    f(
        "forsystemvms",
        "boolean",
        "Whether it is reserved for system machines",
    ),
];

const NETWORK: &[ResponseField] = &[
    f("id", "string", "The network's id"),
    f("name", "string", "The network's name"),
    f("displaytext", "string", "The network's description"),
    f(
        "state",
        "string",
        "Allocated, Implemented, Setup, Shutdown or Destroy",
    ),
    f("type", "string", "Isolated, Shared or L2"),
    f(
        "traffictype",
        "string",
        "Guest, Public, Management or Storage",
    ),
    f("gateway", "string", "The guest gateway"),
    f("netmask", "string", "The guest netmask"),
    f("cidr", "string", "The guest CIDR"),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f(
        "networkofferingid",
        "string",
        "Id of the offering it was made from",
    ),
    f(
        "networkofferingname",
        "string",
        "Name of the offering it was made from",
    ),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("vpcid", "string", "Id of the VPC it belongs to"),
    f(
        "service",
        "list",
        "The services it provides, with providers and capabilities",
    ),
    f(
        "restartrequired",
        "boolean",
        "Whether it must be restarted to apply changes",
    ),
    f(
        "egressdefaultpolicy",
        "boolean",
        "true when outbound traffic is allowed unless a rule denies it",
    ),
    f(
        "ispersistent",
        "boolean",
        "Whether it is set up before any machine uses it",
    ),
    f(
        "redundantrouter",
        "boolean",
        "Whether it has a redundant router pair",
    ),
    f("publicmtu", "integer", "MTU on the public side"),
    f("privatemtu", "integer", "MTU on the guest side"),
    f("networkdomain", "string", "The network's DNS domain"),
    f("dns1", "string", "First DNS server of the network"),
    f("dns2", "string", "Second DNS server of the network"),
    f("vlan", "string", "The network's VLAN (root admins only)"),
    f(
        "broadcasturi",
        "string",
        "The network's broadcast URI, vlan://N (root admins only)",
    ),
    f(
        "isolationmethods",
        "string",
        "How the network is isolated (root admins only)",
    ),
    TAGS_FIELD,
];

const PHYSICAL_NETWORK: &[ResponseField] = &[
    f("id", "string", "The physical network's id"),
    f("name", "string", "The physical network's name"),
    f("zoneid", "string", "Id of its zone"),
    f("zonename", "string", "Name of its zone"),
    f("state", "string", "Enabled or Disabled"),
    f(
        "isolationmethods",
        "string",
        "How its guest networks are isolated",
    ),
    f(
        "broadcastdomainrange",
        "string",
        "Where its broadcast domains reach: ZONE or POD",
    ),
    f(
        "vlan",
        "string",
        "The VLANs its guest networks are given, e.g. 100-199,300-349",
    ),
    f(
        "networkspeed",
        "string",
        "The speed of the physical network",
    ),
    f("tags", "string", "Its tags"),
];

const ZONE: &[ResponseField] = &[
    f("id", "string", "The zone's id"),
    f("name", "string", "The zone's name"),
    f("description", "string", "The zone's description"),
    f("networktype", "string", "Basic or Advanced"),
    f("allocationstate", "string", "Enabled or Disabled"),
    f("dns1", "string", "First public DNS server"),
    f("dns2", "string", "Second public DNS server"),
    f("internaldns1", "string", "First internal DNS server"),
    f("guestcidraddress", "string", "Default guest CIDR"),
    f(
        "securitygroupsenabled",
        "boolean",
        "Whether security groups are used",
    ),
    f(
        "localstorageenabled",
        "boolean",
        "Whether local storage is used",
    ),
    TAGS_FIELD,
];

const NETWORK_OFFERING: &[ResponseField] = &[
    f("id", "string", "The offering's id"),
    f("name", "string", "The offering's name"),
    f("displaytext", "string", "The offering's description"),
    f(
        "traffictype",
        "string",
        "The traffic type of networks made from it",
    ),
    f("guestiptype", "string", "Isolated, Shared or L2"),
    f("state", "string", "Enabled or Disabled"),
    f("isdefault", "boolean", "Whether it is a system default"),
    f(
        "specifyvlan",
        "boolean",
        "Whether networks made from it take a VLAN",
    ),
    f(
        "availability",
        "string",
        "Required, Optional or Unavailable",
    ),
    f(
        "conservemode",
        "boolean",
        "Whether one public address may serve several rule types",
    ),
    f(
        "egressdefaultpolicy",
        "boolean",
        "true when its networks allow outbound traffic unless a rule denies it",
    ),
    f(
        "ispersistent",
        "boolean",
        "Whether its networks are set up before use",
    ),
    f("forvpc", "boolean", "Whether it is for VPC tiers"),
    f("service", "list", "The services its networks provide"),
    f(
        "serviceofferingid",
        "string",
        "Id of the system offering its networks' routers are made from",
    ),
    f("created", "date", "When it was created"),
];

const SERVICE_OFFERING: &[ResponseField] = &[
    f("id", "string", "The offering's id"),
    f("name", "string", "The offering's name"),
    f("displaytext", "string", "The offering's description"),
    f("cpunumber", "integer", "Number of CPUs"),
    f("cpuspeed", "integer", "CPU speed in MHz"),
    f("memory", "integer", "Memory in MiB"),
    f("created", "date", "When it was created"),
    f("storagetype", "string", "shared or local"),
    f(
        "offerha",
        "boolean",
        "Whether machines are restarted elsewhere on host failure",
    ),
    f("issystem", "boolean", "Whether it is for system machines"),
    f(
        "systemvmtype",
        "string",
        "The kind of system machine a system offering is for: domainrouter",
    ),
];

const TEMPLATE: &[ResponseField] = &[
    f("id", "string", "The template's id"),
    f("name", "string", "The template's name"),
    f("displaytext", "string", "The template's description"),
    f("ispublic", "boolean", "Whether every account may use it"),
    f("isready", "boolean", "Whether it can be deployed"),
    f("isfeatured", "boolean", "Whether it is featured"),
    f(
        "passwordenabled",
        "boolean",
        "Whether it supports password reset",
    ),
    f("ostypeid", "string", "Id of its guest OS type"),
    f("ostypename", "string", "Name of its guest OS type"),
    f("account", "string", "The owning account"),
    f("zoneid", "string", "Id of the zone it is in"),
    f("zonename", "string", "Name of the zone it is in"),
    f("status", "string", "Download or install status"),
    f("size", "long", "Size in bytes"),
    f("templatetype", "string", "USER, BUILTIN, SYSTEM, …"),
    f("hypervisor", "string", "The hypervisor it runs on"),
    f("format", "string", "Image format"),
    f("created", "date", "When it was created"),
];

const VIRTUAL_MACHINE: &[ResponseField] = &[
    f("id", "string", "The machine's id"),
    f("name", "string", "The machine's host name"),
    f("displayname", "string", "The machine's display name"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("created", "date", "When it was created"),
    f("state", "string", "Running, Stopped, Destroyed, …"),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f(
        "templateid",
        "string",
        "Id of the template it was made from",
    ),
    f(
        "templatename",
        "string",
        "Name of the template it was made from",
    ),
    f("serviceofferingid", "string", "Id of its service offering"),
    f(
        "serviceofferingname",
        "string",
        "Name of its service offering",
    ),
    f(
        "nic",
        "set",
        "Its network interfaces, with network ids and addresses",
    ),
    TAGS_FIELD,
];

const IP_FORWARDING: &[ResponseField] = &[
    f("id", "string", "The rule's id"),
    f("protocol", "string", "tcp or udp"),
    f("startport", "integer", "First port"),
    f("endport", "integer", "Last port"),
    f(
        "ipaddressid",
        "string",
        "Id of the static-NAT public address",
    ),
    f("ipaddress", "string", "The static-NAT public address"),
    f("virtualmachineid", "string", "Id of the virtual machine"),
    f(
        "virtualmachinename",
        "string",
        "Name of the virtual machine",
    ),
    f(
        "virtualmachinedisplayname",
        "string",
        "Display name of the virtual machine",
    ),
    f(
        "vmguestip",
        "string",
        "The guest address the public address is 1:1 NAT to",
    ),
    f("state", "string", "Add, Active or Deleting"),
];

const AUTOSCALE_VM_GROUP: &[ResponseField] = &[
    f("id", "string", "The group's id"),
    f("name", "string", "The group's name"),
    f(
        "lbruleid",
        "string",
        "Id of the load balancer rule it scales",
    ),
    f("minmembers", "integer", "Fewest machines the group keeps"),
    f("maxmembers", "integer", "Most machines the group keeps"),
    f(
        "interval",
        "integer",
        "Seconds between two evaluations of its conditions",
    ),
    f("state", "string", "enabled, disabled, …"),
    f(
        "vmprofileid",
        "string",
        "Id of the profile its machines are made from",
    ),
    f("scaleuppolicies", "list", "The policies that add machines"),
    f(
        "scaledownpolicies",
        "list",
        "The policies that remove machines",
    ),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
];

const AUTOSCALE_POLICY: &[ResponseField] = &[
    f("id", "string", "The policy's id"),
    f("name", "string", "The policy's name"),
    f("action", "string", "scaleup or scaledown"),
    f("duration", "integer", "Seconds its conditions must hold"),
    f("quiettime", "integer", "Seconds to wait after it acted"),
    f("conditions", "list", "The conditions it evaluates"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
];

const TAG: &[ResponseField] = &[
    f("key", "string", "The tag's key"),
    f("value", "string", "The tag's value"),
    f("resourcetype", "string", "The type of the tagged resource"),
    f("resourceid", "string", "Id of the tagged resource"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("customer", "string", "The customer the tag was made for"),
];

const DOMAIN: &[ResponseField] = &[
    f("id", "string", "The domain's id"),
    f("name", "string", "The domain's name"),
    f("path", "string", "The domain's path, e.g. ROOT/sales"),
    f("level", "integer", "How deep it is: 0 for ROOT"),
    f("parentdomainid", "string", "Id of the domain above it"),
    f("parentdomainname", "string", "Name of the domain above it"),
    f("haschild", "boolean", "Whether domains lie below it"),
    f("state", "string", "Active"),
    f(
        "vmlimit",
        "string",
        "How many user VMs its accounts may hold (Unlimited or a number; details all or \
         resource)",
    ),
    f("vmtotal", "long", "How many user VMs its accounts hold"),
    f("vmavailable", "string", "How many more they may take"),
    f(
        "iplimit",
        "string",
        "How many public IPs its accounts may hold",
    ),
    f("iptotal", "long", "How many public IPs its accounts hold"),
    f("ipavailable", "string", "How many more they may take"),
    f(
        "networklimit",
        "string",
        "How many networks its accounts may hold",
    ),
    f(
        "networktotal",
        "long",
        "How many networks its accounts hold",
    ),
    f("networkavailable", "string", "How many more they may take"),
];

const PROJECT: &[ResponseField] = &[
    f("id", "string", "The project's id"),
    f("name", "string", "The project's name"),
    f("displaytext", "string", "Words shown for it"),
    f("state", "string", "Active, Disabled or Suspended"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
];

const CAPABILITY: &[ResponseField] = &[
    f(
        "cloudstackversion",
        "string",
        "The CloudStack version whose API this server speaks",
    ),
    f(
        "securitygroupsenabled",
        "boolean",
        "Whether security groups exist (never: isolated networks only)",
    ),
    f(
        "dynamicrolesenabled",
        "boolean",
        "Whether roles are checked per API (here fixed: root admin or user)",
    ),
    f(
        "userpublictemplateenabled",
        "boolean",
        "Whether users may share templates",
    ),
    f(
        "supportELB",
        "string",
        "Whether elastic load balancing exists",
    ),
    f(
        "projectinviterequired",
        "boolean",
        "Whether joining a project takes an invitation",
    ),
    f(
        "allowusercreateprojects",
        "boolean",
        "Whether users may create projects",
    ),
    f(
        "regionsecondaryenabled",
        "boolean",
        "Whether secondary storage spans a region",
    ),
    f(
        "kvmsnapshotenabled",
        "boolean",
        "Whether KVM VM snapshots are supported",
    ),
    f(
        "allowuserviewdestroyedvm",
        "boolean",
        "Whether users see destroyed VMs",
    ),
    f(
        "allowuserexpungerecovervm",
        "boolean",
        "Whether users may expunge or recover VMs",
    ),
    f(
        "allowuserexpungerecovervolume",
        "boolean",
        "Whether users may expunge or recover volumes",
    ),
    f(
        "allowuserviewalldomainaccounts",
        "boolean",
        "Whether users see every account of their domain",
    ),
    f(
        "kubernetesserviceenabled",
        "boolean",
        "Whether the Kubernetes service exists",
    ),
    f(
        "kubernetesclusterexperimentalfeaturesenabled",
        "boolean",
        "Whether the Kubernetes service's experimental features are on",
    ),
    f(
        "defaultuipagesize",
        "long",
        "The page size a console should ask for",
    ),
];

const NETWORK_PROTOCOL: &[ResponseField] = &[
    f("index", "integer", "The protocol number, or the ICMP type"),
    f("name", "string", "The protocol's keyword"),
    f("description", "string", "What it is"),
    f(
        "details",
        "map",
        "For an ICMP type: its codes and what each means",
    ),
];

const NIC: &[ResponseField] = &[
    f("id", "string", "The interface's id"),
    f(
        "virtualmachineid",
        "string",
        "Id of the machine it belongs to",
    ),
    f("networkid", "string", "Id of the network it is on"),
    f("networkname", "string", "Name of the network it is on"),
    f("ipaddress", "string", "Its address on the network"),
    f("netmask", "string", "The network's netmask"),
    f("gateway", "string", "The network's gateway"),
    f(
        "isdefault",
        "boolean",
        "Whether it is the machine's default interface",
    ),
    f("type", "string", "The network's guest type"),
    f("traffictype", "string", "The network's traffic type"),
    f("macaddress", "string", "Its MAC address"),
    f("deviceid", "string", "Its device number in the machine"),
    f(
        "broadcasturi",
        "string",
        "The network's VLAN, for administrators",
    ),
    f(
        "isolationuri",
        "string",
        "The network's VLAN, for administrators",
    ),
    f(
        "secondaryip",
        "set",
        "Its secondary addresses (id, ipaddress), when it has any",
    ),
];

const NIC_SECONDARY_IP: &[ResponseField] = &[
    f("id", "string", "The secondary address's id"),
    f("ipaddress", "string", "The address"),
    f("nicid", "string", "Id of the interface it belongs to"),
    f("networkid", "string", "Id of the interface's network"),
    f(
        "virtualmachineid",
        "string",
        "Id of the machine the interface belongs to",
    ),
];

const LB_INSTANCE: &[ResponseField] = &[
    f("id", "string", "The machine's id"),
    f("name", "string", "The machine's host name"),
    f("displayname", "string", "The machine's display name"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("state", "string", "Running, Stopped, …"),
    f("zoneid", "string", "Id of the zone"),
    f(
        "nic",
        "set",
        "Its network interfaces, with network ids and addresses",
    ),
    f(
        "servicestate",
        "string",
        "Whether the balancer sees it as healthy",
    ),
];

const VLAN_IP_RANGE: &[ResponseField] = &[
    f("id", "string", "The range's id"),
    f(
        "forvirtualnetwork",
        "boolean",
        "Whether routed networks draw addresses from it",
    ),
    f("zoneid", "string", "Id of the zone"),
    f("vlan", "string", "The VLAN of the range"),
    f("account", "string", "The account it is dedicated to"),
    f("domainid", "string", "Id of the domain it is dedicated to"),
    f("domain", "string", "Name of the domain it is dedicated to"),
    f("gateway", "string", "The range's gateway"),
    f("netmask", "string", "The range's netmask"),
    f("startip", "string", "First address of the range"),
    f("endip", "string", "Last address of the range"),
    f("networkid", "string", "Id of the network it serves"),
    f("physicalnetworkid", "string", "Id of the physical network"),
    f(
        "forsystemvms",
        "boolean",
        "Whether it is reserved for system machines",
    ),
];

const ROUTER: &[ResponseField] = &[
    f("id", "string", "The router's id"),
    f("name", "string", "The router's name"),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f("state", "string", "Running, Stopped, Starting, …"),
    f("guestipaddress", "string", "The router's guest address"),
    f(
        "guestnetworkid",
        "string",
        "Id of the guest network it serves",
    ),
    f("publicip", "string", "The router's public address"),
    f("linklocalip", "string", "The router's control address"),
    f("role", "string", "The router's role"),
    f("version", "string", "The router software version"),
    f(
        "requiresupgrade",
        "boolean",
        "Whether it runs an old version",
    ),
    f(
        "redundantstate",
        "string",
        "PRIMARY, BACKUP or UNKNOWN for redundant pairs",
    ),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("created", "date", "When it was created"),
];

const EVENT: &[ResponseField] = &[
    f("id", "string", "The event's id"),
    f("username", "string", "Who caused it"),
    f("type", "string", "The event type, such as FIREWALL.OPEN"),
    f("level", "string", "INFO, WARN or ERROR"),
    f("description", "string", "What happened"),
    f("account", "string", "The account it concerns"),
    f("domainid", "string", "Id of that account's domain"),
    f("domain", "string", "Name of that account's domain"),
    f("created", "date", "When it happened"),
    f(
        "state",
        "string",
        "Created, Scheduled, Started or Completed",
    ),
    f("parentid", "string", "Id of the event that started it"),
    f("resourceid", "string", "Id of the resource it concerns"),
    f("resourcetype", "string", "Type of the resource it concerns"),
];

const ACCOUNT: &[ResponseField] = &[
    f("id", "string", "The account's id"),
    f("name", "string", "The account's name"),
    f(
        "accounttype",
        "integer",
        "0 user, 1 root admin, 2 domain admin",
    ),
    f("roleid", "string", "Id of the account's role"),
    f("rolename", "string", "Name of the account's role"),
    f("roletype", "string", "Admin, DomainAdmin or User"),
    f("domainid", "string", "Id of the account's domain"),
    f("domain", "string", "Name of the account's domain"),
    f("state", "string", "enabled, disabled or locked"),
    f("user", "list", "The account's users"),
    f("created", "date", "When it was created"),
];

const USER: &[ResponseField] = &[
    f("id", "string", "The user's id"),
    f("username", "string", "The login name"),
    f("firstname", "string", "First name"),
    f("lastname", "string", "Last name"),
    f("email", "string", "E-mail address"),
    f("created", "date", "When it was created"),
    f("state", "string", "enabled, disabled or locked"),
    f("account", "string", "Name of the user's account"),
    f("accountid", "string", "Id of the user's account"),
    f(
        "accounttype",
        "integer",
        "0 user, 1 root admin, 2 domain admin",
    ),
    f("roleid", "string", "Id of the account's role"),
    f("rolename", "string", "Name of the account's role"),
    f("roletype", "string", "Admin, DomainAdmin or User"),
    f("domainid", "string", "Id of the account's domain"),
    f("domain", "string", "Name of the account's domain"),
    f("apikey", "string", "The user's API key"),
    f(
        "isdefault",
        "boolean",
        "Whether the user was made by the system",
    ),
];

const RESOURCE_LIMIT: &[ResponseField] = &[
    f(
        "account",
        "string",
        "The account the limit applies to; absent for a domain's limit",
    ),
    f(
        "domainid",
        "string",
        "Id of the domain the limit applies to, or of the account's domain",
    ),
    f("domain", "string", "Name of that domain"),
    f(
        "resourcetype",
        "string",
        "The resource type's number: 0 user VMs, 1 public IPs, 6 networks, 1000 network rules",
    ),
    f(
        "resourcetypename",
        "string",
        "The resource type's name: user_vm, public_ip, network or network_rule",
    ),
    f(
        "max",
        "long",
        "The most of the resource the owner may hold; -1 means no limit",
    ),
];

const USER_KEYS: &[ResponseField] = &[
    f("apikey", "string", "The new API key"),
    f("secretkey", "string", "The new secret key"),
];

const NEW_AGENT_TOKEN: &[ResponseField] = &[
    f("id", "string", "The token's id"),
    f(
        "host",
        "string",
        "Name of the host whose agent the token admits",
    ),
    f("hostid", "string", "Id of that host"),
    f(
        "token",
        "string",
        "The token itself, for the agent's configuration; shown only in this answer",
    ),
    f("created", "date", "When it was created"),
];

const AGENT_TOKEN: &[ResponseField] = &[
    f("id", "string", "The token's id"),
    f(
        "host",
        "string",
        "Name of the host whose agent the token admits",
    ),
    f("hostid", "string", "Id of that host"),
    f("created", "date", "When it was created"),
    f(
        "revoked",
        "date",
        "When it was revoked; absent while it is active",
    ),
    f(
        "lastused",
        "date",
        "When an agent last presented it; absent if none has",
    ),
    f("state", "string", "Active or Revoked"),
];

const HOST: &[ResponseField] = &[
    f("id", "string", "The host's id"),
    f("name", "string", "The host's name"),
    f(
        "state",
        "string",
        "Up while its agent is connected to a live management server, otherwise Disconnected",
    ),
    f(
        "type",
        "string",
        "Routing: the host runs guest networks' routers",
    ),
    f("zoneid", "string", "Id of the zone"),
    f("zonename", "string", "Name of the zone"),
    f(
        "managementserverid",
        "string",
        "Name of the management server that holds (or last held) its agent's connection",
    ),
    f(
        "managementserveraddress",
        "string",
        "Address of that management server",
    ),
    f(
        "lastpinged",
        "date",
        "When a management server last recorded its agent connecting, disconnecting or \
         applying a change",
    ),
    f("created", "date", "When it was first known"),
    f(
        "agentdriver",
        "string",
        "The driver its agent runs routers with, as reported when it connected",
    ),
    f("routers", "integer", "How many routers are placed on it"),
    f(
        "epoch",
        "long",
        "Counts its agent's connections and changes of server; fences stale writes",
    ),
];

const ASYNC_JOB: &[ResponseField] = &[
    f(
        "accountid",
        "string",
        "Id of the account that started the job",
    ),
    f(
        "account",
        "string",
        "Name of the account that started the job",
    ),
    f("domainid", "string", "Id of that account's domain"),
    f("domainpath", "string", "Path of that account's domain"),
    f("userid", "string", "Id of the user that started the job"),
    f("cmd", "string", "The command the job carries out"),
    f("jobprocstatus", "integer", "Progress detail; normally 0"),
    f(
        "jobresultcode",
        "integer",
        "0 while pending or on success; the error code on failure",
    ),
    f(
        "jobresulttype",
        "string",
        "object or text; absent while pending",
    ),
    f(
        "jobresult",
        "object",
        "The result: the entity, {success: true}, or the error",
    ),
    f(
        "jobinstancetype",
        "string",
        "Type of the entity the job created",
    ),
    f(
        "jobinstanceid",
        "string",
        "Id of the entity the job created",
    ),
    f("created", "date", "When the job was created"),
    f("completed", "date", "When the job finished"),
    f("jobid", "string", "The job's id"),
    f("jobstatus", "integer", "0 pending, 1 succeeded, 2 failed"),
];

const STICKINESS: &[ResponseField] = &[
    f("lbruleid", "string", "Id of the load balancer rule"),
    f("name", "string", "Name of the policy"),
    f("description", "string", "Description of the policy"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("state", "string", "State of the rule's policies"),
    f("zoneid", "string", "Id of the zone"),
    f(
        "stickinesspolicy",
        "list",
        "The policies: id, name, methodname, description, state, fordisplay, params",
    ),
];

const HEALTH_CHECK: &[ResponseField] = &[
    f("lbruleid", "string", "Id of the load balancer rule"),
    f("account", "string", "The owning account"),
    f("domainid", "string", "Id of the owner's domain"),
    f("domain", "string", "Name of the owner's domain"),
    f("zoneid", "string", "Id of the zone"),
    f(
        "healthcheckpolicy",
        "list",
        "The policies: id, pingpath, description, state, responsetime, healthcheckinterval, \
         healthcheckthresshold, unhealthcheckthresshold, fordisplay",
    ),
];

const API_DISCOVERY: &[ResponseField] = &[
    f("name", "string", "The command's name"),
    f("description", "string", "What the command does"),
    f("since", "string", "The version that added it"),
    f("isasync", "boolean", "Whether it finishes in a job"),
    f("related", "string", "Related commands, comma-separated"),
    f("params", "set", "The parameters it accepts"),
    f("response", "set", "The fields it answers with"),
];

// ------------------------------------------------------------------------------------------
// Parameters of the rule commands.

const CIDRLIST_SOURCE: ParamSpec = p(
    "cidrlist",
    List,
    "Source CIDRs allowed, comma-separated; everything (0.0.0.0/0) when absent",
);
const ICMPTYPE: ParamSpec = p(
    "icmptype",
    Integer,
    "ICMP type for icmp rules; -1 (all) when absent",
);
const ICMPCODE: ParamSpec = p(
    "icmpcode",
    Integer,
    "ICMP code for icmp rules; -1 (all) when absent",
);
const STARTPORT: ParamSpec = p("startport", Integer, "First port of the range");
const ENDPORT: ParamSpec = p(
    "endport",
    Integer,
    "Last port of the range; startport when absent",
);
const RULE_TYPE: ParamSpec = s(
    "type",
    "system makes a rule the system owns (root admins only); anything else a user rule",
);

const FW_LIST_OWN: [ParamSpec; 4] = [
    p("id", Uuid, "Only the rule with this id").rel(R_FW),
    p("ipaddressid", Uuid, "Only rules on this public address").rel(R_IP),
    p("networkid", Uuid, "Only rules of this network")
        .rel(R_NETWORK)
        .since_v("4.3"),
    FORDISPLAY_FILTER,
];

// ------------------------------------------------------------------------------------------
// The catalogue.

/// Every command, grouped by what it works on.
pub(super) static APIS: &[ApiSpec] = &[
    // Ingress firewall.
    ApiSpec {
        name: "createFirewallRule",
        description: "Opens a public address to inbound traffic from the given sources",
        is_async: true,
        creates: true,
        since: "",
        related: &[
            "listFirewallRules",
            "updateFirewallRule",
            "createEgressFirewallRule",
            "listEgressFirewallRules",
            "updateEgressFirewallRule",
        ],
        params: &[
            p("ipaddressid", Uuid, "The public address the rule opens")
                .req()
                .rel(R_IP),
            s("protocol", "tcp, udp or icmp").req(),
            STARTPORT,
            ENDPORT,
            CIDRLIST_SOURCE,
            ICMPTYPE,
            ICMPCODE,
            RULE_TYPE,
            FORDISPLAY,
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    ApiSpec {
        name: "deleteFirewallRule",
        description: "Removes an inbound firewall rule",
        is_async: true,
        creates: false,
        since: "",
        related: &["createFirewallRule", "listFirewallRules"],
        params: &[p("id", Uuid, "The rule to remove").req().rel(R_FW)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listFirewallRules",
        description: "Lists inbound firewall rules, newest first",
        is_async: false,
        creates: false,
        since: "",
        related: &[
            "createFirewallRule",
            "updateFirewallRule",
            "createEgressFirewallRule",
            "listEgressFirewallRules",
            "updateEgressFirewallRule",
        ],
        params: tagged_list![
            FW_LIST_OWN[0],
            FW_LIST_OWN[1],
            FW_LIST_OWN[2],
            FW_LIST_OWN[3]
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    ApiSpec {
        name: "updateFirewallRule",
        description: "Changes an inbound firewall rule's uuid or display flag",
        is_async: true,
        creates: false,
        since: "4.4",
        related: &[
            "createFirewallRule",
            "listFirewallRules",
            "createEgressFirewallRule",
            "listEgressFirewallRules",
            "updateEgressFirewallRule",
        ],
        params: &[
            p("id", Uuid, "The rule to change").req().rel(R_FW),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    // Egress firewall.
    ApiSpec {
        name: "createEgressFirewallRule",
        description: "Adds an outbound firewall rule to a guest network; whether it allows or \
                      denies follows the network's default outbound policy",
        is_async: true,
        creates: true,
        since: "",
        related: &[
            "createFirewallRule",
            "listFirewallRules",
            "updateFirewallRule",
            "listEgressFirewallRules",
            "updateEgressFirewallRule",
        ],
        params: &[
            p("networkid", Uuid, "The isolated guest network")
                .req()
                .rel(R_NETWORK),
            s("protocol", "tcp, udp, icmp or all").req(),
            STARTPORT,
            ENDPORT,
            p(
                "cidrlist",
                List,
                "Guest source CIDRs, comma-separated; the whole guest network when absent",
            ),
            p(
                "destcidrlist",
                List,
                "Destination CIDRs, comma-separated; any destination when absent",
            )
            .since_v("4.10"),
            ICMPTYPE,
            ICMPCODE,
            RULE_TYPE,
            FORDISPLAY,
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    ApiSpec {
        name: "deleteEgressFirewallRule",
        description: "Removes an outbound firewall rule",
        is_async: true,
        creates: false,
        since: "",
        related: &["createEgressFirewallRule", "listEgressFirewallRules"],
        params: &[p("id", Uuid, "The rule to remove").req().rel(R_EGRESS)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listEgressFirewallRules",
        description: "Lists outbound firewall rules, newest first",
        is_async: false,
        creates: false,
        since: "",
        related: &[
            "createFirewallRule",
            "listFirewallRules",
            "updateFirewallRule",
            "createEgressFirewallRule",
            "updateEgressFirewallRule",
        ],
        params: tagged_list![
            p("id", Uuid, "Only the rule with this id").rel(R_EGRESS),
            FW_LIST_OWN[1],
            p("networkid", Uuid, "Only rules of this network").rel(R_NETWORK),
            FORDISPLAY_FILTER,
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    ApiSpec {
        name: "updateEgressFirewallRule",
        description: "Changes an outbound firewall rule's uuid or display flag",
        is_async: true,
        creates: false,
        since: "4.4",
        related: &[
            "createFirewallRule",
            "listFirewallRules",
            "updateFirewallRule",
            "createEgressFirewallRule",
            "listEgressFirewallRules",
        ],
        params: &[
            p("id", Uuid, "The rule to change").req().rel(R_EGRESS),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: FIREWALL,
        response_object: Some("firewallrule"),
    },
    // Port forwarding.
    ApiSpec {
        name: "createPortForwardingRule",
        description: "Forwards a public port or port range to a virtual machine",
        is_async: true,
        creates: true,
        since: "",
        related: &["listPortForwardingRules", "updatePortForwardingRule"],
        params: &[
            p("ipaddressid", Uuid, "The public address traffic arrives on")
                .req()
                .rel(R_IP),
            s("protocol", "tcp or udp").req(),
            p("publicport", Integer, "First public port").req(),
            p(
                "publicendport",
                Integer,
                "Last public port; publicport when absent",
            ),
            p("privateport", Integer, "First port on the virtual machine").req(),
            p(
                "privateendport",
                Integer,
                "Last port on the virtual machine; privateport when absent",
            ),
            p(
                "virtualmachineid",
                Uuid,
                "The virtual machine traffic goes to",
            )
            .req()
            .rel(R_VM),
            s(
                "vmguestip",
                "The machine's guest address to send to; its primary address when absent",
            ),
            p(
                "networkid",
                Uuid,
                "The network, needed only when the address is not yet associated",
            )
            .rel(R_NETWORK),
            p(
                "openfirewall",
                Boolean,
                "Also open the public port in the firewall; true by default",
            ),
            p("cidrlist", List, "Source CIDRs allowed, comma-separated"),
            FORDISPLAY,
        ],
        response: PORT_FORWARDING,
        response_object: Some("portforwardingrule"),
    },
    ApiSpec {
        name: "deletePortForwardingRule",
        description: "Removes a port forwarding rule and the firewall rule opened with it",
        is_async: true,
        creates: false,
        since: "",
        related: &["createPortForwardingRule", "listPortForwardingRules"],
        params: &[p("id", Uuid, "The rule to remove").req().rel(R_PF)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listPortForwardingRules",
        description: "Lists port forwarding rules, newest first",
        is_async: false,
        creates: false,
        since: "",
        related: &["createPortForwardingRule", "updatePortForwardingRule"],
        params: tagged_list![
            p("id", Uuid, "Only the rule with this id").rel(R_PF),
            p("ipaddressid", Uuid, "Only rules on this public address").rel(R_IP),
            p("networkid", Uuid, "Only rules of this network")
                .rel(R_NETWORK)
                .since_v("4.3"),
            FORDISPLAY_FILTER,
        ],
        response: PORT_FORWARDING,
        response_object: Some("portforwardingrule"),
    },
    // Static NAT.
    ApiSpec {
        name: "enableStaticNat",
        description:
            "Makes a public address 1:1 NAT to a virtual machine: every new connection to \
                      it that the ingress firewall admits goes to the machine, and the machine's \
                      own traffic leaves from it. Answers once the router enforces it",
        is_async: false,
        creates: false,
        since: "",
        related: &["disableStaticNat", "listPublicIpAddresses"],
        params: &[
            p(
                "ipaddressid",
                Uuid,
                "The public address; not the source-NAT one",
            )
            .req()
            .rel(R_IP),
            p(
                "virtualmachineid",
                Uuid,
                "The virtual machine, on the address's network",
            )
            .req()
            .rel(R_VM),
            p(
                "networkid",
                Uuid,
                "The address's network (it is associated already, so this only checks)",
            )
            .rel(R_NETWORK),
            s(
                "vmguestip",
                "The machine's guest address; its only address when absent",
            ),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "disableStaticNat",
        description: "Ends a public address's static NAT, with its IP forwarding rules and the \
                      firewall rules they opened",
        is_async: true,
        creates: false,
        since: "",
        related: &["enableStaticNat", "listPublicIpAddresses"],
        params: &[p("ipaddressid", Uuid, "The static-NAT public address")
            .req()
            .rel(R_IP)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "createIpForwardingRule",
        description: "Records ports of a static-NAT address (the router sends every port to the \
                      machine already) and, with openfirewall, opens them in the firewall",
        is_async: true,
        creates: true,
        since: "",
        related: &["listIpForwardingRules", "deleteIpForwardingRule"],
        params: &[
            p("ipaddressid", Uuid, "The static-NAT public address")
                .req()
                .rel(R_IP),
            s("protocol", "tcp or udp").req(),
            p("startport", Integer, "First port").req(),
            p("endport", Integer, "Last port; startport when absent"),
            p(
                "openfirewall",
                Boolean,
                "Also open the ports in the firewall; true by default",
            ),
            p(
                "cidrlist",
                List,
                "Refused, as CloudStack refuses it: open a firewall rule for chosen sources",
            ),
        ],
        response: IP_FORWARDING,
        response_object: Some("ipforwardingrule"),
    },
    ApiSpec {
        name: "deleteIpForwardingRule",
        description: "Removes an IP forwarding rule and the firewall rule opened with it",
        is_async: true,
        creates: false,
        since: "",
        related: &["createIpForwardingRule", "listIpForwardingRules"],
        params: &[p("id", Uuid, "The rule to remove").req().rel(R_IPF)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listIpForwardingRules",
        description: "Lists the IP forwarding rules of static-NAT addresses, newest first",
        is_async: false,
        creates: false,
        since: "",
        related: &["createIpForwardingRule", "deleteIpForwardingRule"],
        params: account_list![
            p("id", Uuid, "Only the rule with this id").rel(R_IPF),
            p("ipaddressid", Uuid, "Only rules on this public address").rel(R_IP),
            p(
                "virtualmachineid",
                Uuid,
                "Only rules of addresses NAT to this virtual machine"
            )
            .rel(R_VM),
            FORDISPLAY_FILTER,
        ],
        response: IP_FORWARDING,
        response_object: Some("ipforwardingrule"),
    },
    ApiSpec {
        name: "updatePortForwardingRule",
        description: "Changes where a port forwarding rule sends traffic",
        is_async: true,
        creates: false,
        since: "",
        related: &["createPortForwardingRule", "listPortForwardingRules"],
        params: &[
            p("id", Uuid, "The rule to change").req().rel(R_PF),
            p(
                "privateport",
                Integer,
                "New first port on the virtual machine",
            ),
            p(
                "privateendport",
                Integer,
                "New last port on the virtual machine",
            ),
            p("virtualmachineid", Uuid, "New destination virtual machine").rel(R_VM),
            s(
                "vmguestip",
                "New guest address to send to; needs virtualmachineid",
            )
            .since_v("4.5"),
            p("cidrlist", List, "New source CIDRs, comma-separated"),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: PORT_FORWARDING,
        response_object: Some("portforwardingrule"),
    },
    // Load balancing.
    ApiSpec {
        name: "createLoadBalancerRule",
        description: "Balances a public port across virtual machines assigned later",
        is_async: true,
        creates: true,
        since: "",
        related: &["listLoadBalancerRules", "updateLoadBalancerRule"],
        params: &[
            s("name", "The rule's name").req(),
            s("algorithm", "roundrobin, leastconn or source").req(),
            p("privateport", Integer, "The port on the members").req(),
            p(
                "publicport",
                Integer,
                "The public port; ranges are not supported",
            )
            .req(),
            p("publicipid", Uuid, "The public address to listen on").rel(R_IP),
            p("networkid", Uuid, "The guest network of the members").rel(R_NETWORK),
            p("zoneid", Uuid, "The zone").rel(R_ZONE),
            OWNER_ACCOUNT,
            OWNER_DOMAINID,
            p(
                "openfirewall",
                Boolean,
                "Also open the public port in the firewall; true by default",
            ),
            s("protocol", "tcp, udp, tcp-proxy or ssl"),
            p("cidrlist", List, "Source CIDRs allowed, comma-separated").since_v("4.18"),
            s("description", "The rule's description").len(LONG_TEXT),
            FORDISPLAY,
        ],
        response: LOAD_BALANCER,
        response_object: Some("loadbalancer"),
    },
    ApiSpec {
        name: "deleteLoadBalancerRule",
        description: "Removes a load balancer rule and the firewall rule opened with it",
        is_async: true,
        creates: false,
        since: "",
        related: &["createLoadBalancerRule", "listLoadBalancerRules"],
        params: &[p("id", Uuid, "The rule to remove").req().rel(R_LB)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listLoadBalancerRules",
        description: "Lists load balancer rules, oldest first",
        is_async: false,
        creates: false,
        since: "",
        related: &["createLoadBalancerRule", "updateLoadBalancerRule"],
        params: tagged_list![
            p("id", Uuid, "Only the rule with this id").rel(R_LB),
            s("name", "Only rules with this name"),
            p("publicipid", Uuid, "Only rules on this public address").rel(R_IP),
            p(
                "virtualmachineid",
                Uuid,
                "Only rules balancing to this machine"
            )
            .rel(R_VM),
            p("zoneid", Uuid, "Only rules in this zone").rel(R_ZONE),
            p("networkid", Uuid, "Only rules of this network")
                .rel(R_NETWORK)
                .since_v("4.3"),
            FORDISPLAY_FILTER,
        ],
        response: LOAD_BALANCER,
        response_object: Some("loadbalancerrule"),
    },
    ApiSpec {
        name: "updateLoadBalancerRule",
        description: "Changes a load balancer rule's name, description, algorithm, protocol or \
                      allowed sources",
        is_async: true,
        creates: false,
        since: "",
        related: &["createLoadBalancerRule", "listLoadBalancerRules"],
        params: &[
            p("id", Uuid, "The rule to change").req().rel(R_LB),
            s("name", "New name"),
            s("description", "New description").len(LONG_TEXT),
            s(
                "algorithm",
                "New algorithm: roundrobin, leastconn or source",
            ),
            s("protocol", "New protocol: tcp, udp, tcp-proxy or ssl"),
            p(
                "cidrlist",
                List,
                "New source CIDRs allowed, comma-separated",
            )
            .since_v("4.22"),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: LOAD_BALANCER,
        response_object: Some("loadbalancer"),
    },
    ApiSpec {
        name: "assignToLoadBalancerRule",
        description: "Adds virtual machines (or given guest addresses of them) to a load \
                      balancer rule's members",
        is_async: true,
        creates: false,
        since: "",
        related: &[
            "listLoadBalancerRuleInstances",
            "removeFromLoadBalancerRule",
        ],
        params: &[
            p("id", Uuid, "The load balancer rule").req().rel(R_LB),
            p(
                "virtualmachineids",
                ListOfUuid,
                "Machines to add, by their primary guest address; comma-separated",
            )
            .rel(R_VM),
            p(
                "vmidipmap",
                Map,
                "Machines to add at given guest addresses: vmidipmap[i].vmid and \
                 vmidipmap[i].vmip",
            )
            .since_v("4.4"),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "removeFromLoadBalancerRule",
        description: "Takes virtual machines (or given guest addresses of them) out of a load \
                      balancer rule's members",
        is_async: true,
        creates: false,
        since: "",
        related: &["listLoadBalancerRuleInstances", "assignToLoadBalancerRule"],
        params: &[
            p("id", Uuid, "The load balancer rule").req().rel(R_LB),
            p(
                "virtualmachineids",
                ListOfUuid,
                "Machines to remove, comma-separated",
            )
            .rel(R_VM),
            p(
                "vmidipmap",
                Map,
                "Machine addresses to remove: vmidipmap[i].vmid and vmidipmap[i].vmip",
            )
            .since_v("4.4"),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listLoadBalancerRuleInstances",
        description: "Lists the virtual machines a load balancer rule balances to",
        is_async: false,
        creates: false,
        since: "",
        related: &["assignToLoadBalancerRule", "removeFromLoadBalancerRule"],
        params: base_list![
            p("id", Uuid, "The load balancer rule").req().rel(R_LB),
            p(
                "applied",
                Boolean,
                "true (default) lists the members; false lists none",
            ),
            p(
                "lbvmips",
                Boolean,
                "Also give each member's balanced guest addresses; false by default",
            ),
        ],
        response: LB_INSTANCE,
        response_object: Some("loadbalancerruleinstance"),
    },
    ApiSpec {
        name: "createLBStickinessPolicy",
        description: "Makes a load balancer rule keep each client on one member",
        is_async: true,
        creates: true,
        since: "3.0.0",
        related: &["listLBStickinessPolicies"],
        params: &[
            p("lbruleid", Uuid, "The load balancer rule")
                .req()
                .rel(R_LB),
            s("name", "The policy's name").req(),
            s("methodname", "LbCookie, AppCookie or SourceBased").req(),
            p(
                "param",
                Map,
                "Method settings as param[i].name and param[i].value",
            ),
            s("description", "The policy's description").len(LONG_TEXT),
            FORDISPLAY,
        ],
        response: STICKINESS,
        response_object: Some("stickinesspolicies"),
    },
    ApiSpec {
        name: "deleteLBStickinessPolicy",
        description: "Removes a stickiness policy from its load balancer rule",
        is_async: true,
        creates: false,
        since: "3.0.0",
        related: &["createLBStickinessPolicy", "listLBStickinessPolicies"],
        params: &[p("id", Uuid, "The policy to remove").req().rel(R_STICKY)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listLBStickinessPolicies",
        description: "Lists the stickiness policies of a load balancer rule",
        is_async: false,
        creates: false,
        since: "3.0.0",
        related: &["createLBStickinessPolicy"],
        params: base_list![
            p("lbruleid", Uuid, "The load balancer rule").rel(R_LB),
            p("id", Uuid, "Only the policy with this id")
                .rel(R_STICKY)
                .since_v("4.4"),
            FORDISPLAY_FILTER,
        ],
        response: STICKINESS,
        response_object: Some("stickinesspolicies"),
    },
    ApiSpec {
        name: "createLBHealthCheckPolicy",
        description: "Adds a member health check to a load balancer rule",
        is_async: true,
        creates: true,
        since: "4.2.0",
        related: &["listLBHealthCheckPolicies"],
        params: &[
            p("lbruleid", Uuid, "The load balancer rule")
                .req()
                .rel(R_LB),
            s("pingpath", "HTTP path to probe; / when absent"),
            p(
                "responsetimeout",
                Integer,
                "Seconds to wait for a probe's answer; 2 when absent or 0",
            ),
            p(
                "intervaltime",
                Integer,
                "Seconds between probes; 5 when absent or 0",
            ),
            p(
                "healthythreshold",
                Integer,
                "Successes before a member counts as healthy; 2 when absent or 0",
            ),
            p(
                "unhealthythreshold",
                Integer,
                "Failures before a member counts as unhealthy; 1 when absent or 0",
            ),
            s("description", "The policy's description").len(LONG_TEXT),
            FORDISPLAY,
        ],
        response: HEALTH_CHECK,
        response_object: Some("healthcheckpolicies"),
    },
    ApiSpec {
        name: "deleteLBHealthCheckPolicy",
        description: "Removes a health check policy from its load balancer rule",
        is_async: true,
        creates: false,
        since: "4.2.0",
        related: &["createLBHealthCheckPolicy", "listLBHealthCheckPolicies"],
        params: &[p("id", Uuid, "The policy to remove").req().rel(R_HEALTH)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "updateLBStickinessPolicy",
        description: "Changes a stickiness policy's display flag (its uuid stays: a customid \
                      other than its own is refused)",
        is_async: true,
        creates: false,
        since: "4.4",
        related: &["createLBStickinessPolicy", "listLBStickinessPolicies"],
        params: &[
            p("id", Uuid, "The policy to change").req().rel(R_STICKY),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: STICKINESS,
        response_object: Some("stickinesspolicies"),
    },
    ApiSpec {
        name: "updateLBHealthCheckPolicy",
        description: "Changes a health check policy's display flag (its uuid stays: a customid \
                      other than its own is refused)",
        is_async: true,
        creates: false,
        since: "4.4",
        related: &["createLBHealthCheckPolicy", "listLBHealthCheckPolicies"],
        params: &[
            p("id", Uuid, "The policy to change").req().rel(R_HEALTH),
            CUSTOMID,
            FORDISPLAY,
        ],
        response: HEALTH_CHECK,
        response_object: Some("healthcheckpolicies"),
    },
    ApiSpec {
        name: "listLBHealthCheckPolicies",
        description: "Lists the health check policies of a load balancer rule",
        is_async: false,
        creates: false,
        since: "4.2.0",
        related: &["createLBHealthCheckPolicy"],
        params: base_list![
            p("lbruleid", Uuid, "The load balancer rule").rel(R_LB),
            p("id", Uuid, "Only the policy with this id")
                .rel(R_HEALTH)
                .since_v("4.4"),
            FORDISPLAY_FILTER,
        ],
        response: HEALTH_CHECK,
        response_object: Some("healthcheckpolicies"),
    },
    // Jobs and discovery.
    ApiSpec {
        name: "queryAsyncJobResult",
        description: "Tells whether a job is pending, succeeded or failed, with its result",
        is_async: false,
        creates: false,
        since: "",
        related: &["listAsyncJobs"],
        params: &[p("jobid", Uuid, "The job").req().rel(R_JOB)],
        response: ASYNC_JOB,
        response_object: None,
    },
    ApiSpec {
        name: "listAsyncJobs",
        description: "Lists the caller's jobs",
        is_async: false,
        creates: false,
        since: "",
        related: &["queryAsyncJobResult"],
        params: &[
            p(
                "startdate",
                Date,
                "Only jobs created at or after this time (yyyy-MM-dd'T'HH:mm:ssZ)",
            ),
            LISTALL,
            DOMAINID_FILTER,
            ISRECURSIVE,
            ACCOUNT_FILTER,
            KEYWORD,
            PAGE,
            PAGESIZE,
        ],
        response: ASYNC_JOB,
        response_object: Some("asyncjobs"),
    },
    ApiSpec {
        name: "listApis",
        description: "Describes the commands this server implements, their parameters and \
                      their responses",
        is_async: false,
        creates: false,
        since: "4.1.0",
        related: &[],
        params: &[s("name", "Describe only the command of this name")],
        response: API_DISCOVERY,
        response_object: Some("api"),
    },
    // What the rules stand on: zones, offerings, networks, addresses, machines, accounts.
    ApiSpec {
        name: "listZones",
        description: "Lists zones",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: base_list![
            p("id", Uuid, "Only the zone with this id").rel(R_ZONE),
            s("name", "Only the zone with this name"),
            p(
                "available",
                Boolean,
                "true lists every zone the caller may use; false only zones where it has \
                 machines",
            ),
        ],
        response: ZONE,
        response_object: Some("zone"),
    },
    ApiSpec {
        name: "updateZone",
        description: "Updates a zone: the DNS servers its guests are given (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["listZones"],
        params: &[
            p("id", Uuid, "The zone").req().rel(R_ZONE),
            s(
                "dns1",
                "First DNS server for the zone's guests (an IPv4 address)",
            ),
            s(
                "dns2",
                "Second DNS server for the zone's guests (an IPv4 address)",
            ),
        ],
        response: ZONE,
        response_object: Some("zone"),
    },
    ApiSpec {
        name: "listPhysicalNetworks",
        description: "Lists physical networks (admins only)",
        is_async: false,
        creates: false,
        since: "3.0.0",
        related: &[],
        params: base_list![
            p("id", Uuid, "Only the physical network with this id").rel(R_PHYSICAL_NETWORK),
            s("name", "Only physical networks with this name"),
            p("zoneid", Uuid, "Only physical networks of this zone").rel(R_ZONE),
        ],
        response: PHYSICAL_NETWORK,
        response_object: Some("physicalnetwork"),
    },
    ApiSpec {
        name: "updatePhysicalNetwork",
        description: "Updates a physical network: the VLANs its guest networks are given \
                      (admins only)",
        is_async: true,
        creates: false,
        since: "3.0.0",
        related: &["listPhysicalNetworks"],
        params: &[
            p("id", Uuid, "The physical network")
                .req()
                .rel(R_PHYSICAL_NETWORK),
            s(
                "vlan",
                "The VLANs guest networks are given, e.g. 100-199 or 100-199,300-349; \
                 replaces the ranges it had",
            ),
        ],
        response: PHYSICAL_NETWORK,
        response_object: Some("physicalnetwork"),
    },
    ApiSpec {
        name: "listNetworkOfferings",
        description: "Lists network offerings",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: base_list![
            p("id", Uuid, "Only the offering with this id").rel(R_NET_OFFERING),
            s("name", "Only offerings with this name"),
            p("zoneid", Uuid, "Only offerings available in this zone").rel(R_ZONE),
            s(
                "guestiptype",
                "Only offerings of this guest type: Isolated, Shared or L2"
            ),
            s("state", "Only offerings in this state: Enabled or Disabled"),
        ],
        response: NETWORK_OFFERING,
        response_object: Some("networkoffering"),
    },
    ApiSpec {
        name: "createNetwork",
        description: "Creates a guest network from an offering",
        is_async: false,
        creates: false,
        since: "",
        related: &["listNetworks"],
        params: &[
            s("name", "The network's name").req(),
            s("displaytext", "The network's description"),
            p("networkofferingid", Uuid, "The offering to make it from")
                .req()
                .rel(R_NET_OFFERING),
            p("zoneid", Uuid, "The zone to make it in")
                .req()
                .rel(R_ZONE),
            s("gateway", "The guest gateway"),
            s("netmask", "The guest netmask"),
            s("startip", "First guest address to hand out"),
            s("endip", "Last guest address to hand out"),
            s(
                "networkdomain",
                "The network's DNS domain; cs<account id in hex>cloud.internal when absent",
            ),
            OWNER_ACCOUNT,
            OWNER_DOMAINID,
        ],
        response: NETWORK,
        response_object: Some("network"),
    },
    ApiSpec {
        name: "listNetworks",
        description: "Lists networks",
        is_async: false,
        creates: false,
        since: "",
        related: &["createNetwork"],
        params: &[
            p("id", Uuid, "Only the network with this id").rel(R_NETWORK),
            s("name", "Only networks with this name").since_v("4.22"),
            p("zoneid", Uuid, "Only networks in this zone").rel(R_ZONE),
            s("type", "Only networks of this type: Isolated, Shared or L2"),
            s(
                "traffictype",
                "Only networks of this traffic type: Guest (every network here), Public, \
                 Management, Control, Storage or Vpn",
            ),
            p(
                "issystem",
                Boolean,
                "Only system networks (none here), or only others",
            ),
            s(
                "acltype",
                "Only networks of this scope: Account (every network here) or Domain",
            ),
            p(
                "canusefordeploy",
                Boolean,
                "Only networks VMs can be deployed on (every network here), or only others",
            ),
            p(
                "supportedservices",
                List,
                "Only networks that provide all these services (SourceNat, Firewall, \
                 PortForwarding, Lb, Dhcp, Dns)",
            ),
            p(
                "networkofferingid",
                Uuid,
                "Only networks made from this offering",
            )
            .rel(R_NET_OFFERING)
            .since_v("4.22"),
            p(
                "vpcid",
                Uuid,
                "Only tiers of this VPC (guestnet has no VPCs)",
            ),
            p(
                "forvpc",
                Boolean,
                "Only VPC tiers (none here), or only others",
            ),
            p(
                "restartrequired",
                Boolean,
                "Only networks that need a restart (none here: a change reaches the router \
                 at once), or only others",
            ),
            p(
                "specifyipranges",
                Boolean,
                "Only networks with ranges of their own (none here), or only others",
            ),
            p(
                "physicalnetworkid",
                Uuid,
                "Only networks of this physical network",
            )
            .rel(R_PHYSICAL_NETWORK),
            p(
                "displaynetwork",
                Boolean,
                "Only networks shown to users (every network here), or only hidden ones",
            )
            .since_v("4.4"),
            TAGS_FILTER,
            PROJECTID_FILTER,
            ACCOUNT_FILTER,
            DOMAINID_FILTER,
            LISTALL,
            ISRECURSIVE,
            KEYWORD,
            PAGE,
            PAGESIZE,
        ],
        response: NETWORK,
        response_object: Some("network"),
    },
    ApiSpec {
        name: "deleteNetwork",
        description: "Deletes a guest network and its router",
        is_async: true,
        creates: false,
        since: "",
        related: &["createNetwork", "listNetworks"],
        params: &[
            p("id", Uuid, "The network to delete").req().rel(R_NETWORK),
            p(
                "forced",
                Boolean,
                "Delete even if cleaning up its resources fails (admins only)",
            ),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "updateNetwork",
        description: "Renames a guest network or changes its description; guestnet changes \
                      nothing else of a network (each other parameter is refused, naming it)",
        is_async: true,
        creates: false,
        since: "",
        related: &["createNetwork", "listNetworks"],
        params: &[
            p("id", Uuid, "The network to update").req().rel(R_NETWORK),
            s("name", "The network's new name"),
            s("displaytext", "The network's new description"),
            p(
                "networkofferingid",
                Uuid,
                "A new offering (refused: guestnet keeps a network's offering)",
            )
            .rel(R_NET_OFFERING),
            s(
                "networkdomain",
                "A new DNS domain for the guests (refused: set it at creation)",
            ),
            s(
                "guestvmcidr",
                "A new guest CIDR for VMs (refused: guestnet keeps a network's CIDR)",
            ),
            s(
                "changecidr",
                "Whether to change the CIDR (refused with guestvmcidr)",
            ),
            p(
                "displaynetwork",
                Boolean,
                "Whether end users are shown the network (refused: every network is shown)",
            )
            .since_v("4.4"),
            s(
                "customid",
                "A new id for the network (refused: guestnet keeps the ids it gives)",
            )
            .since_v("4.4"),
            p(
                "forced",
                Boolean,
                "Force an offering change (refused with networkofferingid)",
            )
            .since_v("4.13"),
            p(
                "updateinsequence",
                Boolean,
                "Update redundant routers one after the other (refused: one router per network)",
            )
            .since_v("4.10"),
        ],
        response: NETWORK,
        response_object: Some("network"),
    },
    ApiSpec {
        name: "restartNetwork",
        description: "Restarts a network's router: sends it its whole config again, or with \
                      cleanup=true makes it again from nothing first (the job ends when the \
                      router enforces every rule again)",
        is_async: true,
        creates: false,
        since: "",
        related: &[],
        params: &[
            p("id", Uuid, "The network to restart").req().rel(R_NETWORK),
            p(
                "cleanup",
                Boolean,
                "true makes the router again from nothing (its namespace, processes and kernel \
                 state) before sending it its config; false by default",
            ),
            p(
                "makeredundant",
                Boolean,
                "Make the network's routers redundant (refused when true: one router per \
                 network)",
            )
            .since_v("4.11.1"),
            p(
                "livepatch",
                Boolean,
                "Patch the router's software in place (refused when true: the router is the \
                 host's own software)",
            )
            .since_v("4.17.0"),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "associateIpAddress",
        description: "Acquires a public address for a guest network",
        is_async: true,
        creates: true,
        since: "",
        related: &["listPublicIpAddresses"],
        params: &[
            p("networkid", Uuid, "The network to associate it with").rel(R_NETWORK),
            p("zoneid", Uuid, "The zone to take it from").rel(R_ZONE),
            s("ipaddress", "The address wanted; any free one when absent").since_v("4.13"),
            OWNER_ACCOUNT,
            OWNER_DOMAINID,
        ],
        response: IP_ADDRESS,
        response_object: Some("ipaddress"),
    },
    ApiSpec {
        name: "disassociateIpAddress",
        description: "Releases a public address, removing the rules on it",
        is_async: true,
        creates: false,
        since: "",
        related: &["associateIpAddress", "listPublicIpAddresses"],
        params: &[
            p("id", Uuid, "The address to release").rel(R_IP),
            s(
                "ipaddress",
                "The address to release, given as the address itself",
            ),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listPublicIpAddresses",
        description: "Lists public addresses",
        is_async: false,
        creates: false,
        since: "",
        related: &["associateIpAddress"],
        params: tagged_list![
            p("id", Uuid, "Only the address with this id").rel(R_IP),
            s("ipaddress", "Only this address"),
            p(
                "associatednetworkid",
                Uuid,
                "Only addresses associated with this network",
            )
            .rel(R_NETWORK),
            p("networkid", Uuid, "Only addresses of this public network")
                .rel(R_NETWORK)
                .since_v("4.13"),
            p(
                "allocatedonly",
                Boolean,
                "true (default) lists only acquired addresses; false also free ones",
            ),
            p(
                "issourcenat",
                Boolean,
                "Only source NAT addresses, or only others"
            ),
            p("zoneid", Uuid, "Only addresses in this zone").rel(R_ZONE),
            p("vlanid", Uuid, "Only addresses of this range").rel(R_VLAN),
            s("state", "Only addresses in this state"),
            p(
                "isstaticnat",
                Boolean,
                "Only static-NAT addresses (none here: guestnet has no static NAT yet), or only \
                 others"
            ),
            p(
                "forloadbalancing",
                Boolean,
                "true lists only addresses that carry a load balancer"
            ),
            p(
                "forvirtualnetwork",
                Boolean,
                "Only addresses of ranges for guest networks (every range here), or only of \
                 direct ranges (none)"
            ),
            p(
                "vpcid",
                Uuid,
                "Only addresses of this VPC (guestnet has no VPCs)"
            ),
            p(
                "physicalnetworkid",
                Uuid,
                "Only addresses of this physical network"
            )
            .rel(R_PHYSICAL_NETWORK),
            p(
                "forsystemvms",
                Boolean,
                "Only addresses of ranges for system VMs (none here), or only others"
            )
            .since_v("4.12"),
            FORDISPLAY_FILTER,
        ],
        response: IP_ADDRESS,
        response_object: Some("publicipaddress"),
    },
    ApiSpec {
        name: "createVlanIpRange",
        description: "Adds a range of public addresses to a zone (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["listVlanIpRanges"],
        params: &[
            p("zoneid", Uuid, "The zone").rel(R_ZONE),
            s("startip", "First address of the range"),
            s("endip", "Last address of the range; startip when absent"),
            s("gateway", "The range's gateway"),
            s("netmask", "The range's netmask"),
            p(
                "forvirtualnetwork",
                Boolean,
                "true when routed guest networks draw addresses from it",
            ),
            s("vlan", "The range's VLAN, or untagged"),
            p("networkid", Uuid, "The network the range serves").rel(R_NETWORK),
            s(
                "account",
                "The account to dedicate the range to; give domainid with it",
            ),
            p("domainid", Uuid, "The domain to dedicate the range to"),
        ],
        response: VLAN_IP_RANGE,
        response_object: Some("vlan"),
    },
    ApiSpec {
        name: "listVlanIpRanges",
        description: "Lists public address ranges (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["createVlanIpRange"],
        params: base_list![
            p("id", Uuid, "Only the range with this id").rel(R_VLAN),
            p("zoneid", Uuid, "Only ranges in this zone").rel(R_ZONE),
            p("networkid", Uuid, "Only ranges of this network").rel(R_NETWORK),
        ],
        response: VLAN_IP_RANGE,
        response_object: Some("vlaniprange"),
    },
    ApiSpec {
        name: "deployVirtualMachine",
        description: "Creates and starts a virtual machine on guest networks",
        is_async: true,
        creates: true,
        since: "",
        related: &["listVirtualMachines", "destroyVirtualMachine"],
        params: &[
            p("zoneid", Uuid, "The zone").req().rel(R_ZONE),
            p("serviceofferingid", Uuid, "The machine's size")
                .req()
                .rel(R_SVC_OFFERING),
            p("templateid", Uuid, "The image to boot")
                .req()
                .rel(R_TEMPLATE),
            p(
                "networkids",
                ListOfUuid,
                "Guest networks to attach, comma-separated; the first is the default",
            )
            .rel(R_NETWORK),
            s(
                "ipaddress",
                "Guest address on the default network; any free one when absent",
            ),
            s("name", "Host name; generated when absent"),
            s("displayname", "Display name; the host name when absent"),
            s(
                "macaddress",
                "MAC address of the NIC on the default network; generated when absent",
            )
            .since_v("4.9"),
            OWNER_ACCOUNT,
            OWNER_DOMAINID,
        ],
        response: VIRTUAL_MACHINE,
        response_object: Some("virtualmachine"),
    },
    ApiSpec {
        name: "listVirtualMachines",
        description: "Lists virtual machines",
        is_async: false,
        creates: false,
        since: "",
        related: &["deployVirtualMachine", "destroyVirtualMachine"],
        params: account_list![
            p("id", Uuid, "Only the machine with this id").rel(R_VM),
            s("name", "Only machines with this name"),
            p("networkid", Uuid, "Only machines on this network").rel(R_NETWORK),
            p("zoneid", Uuid, "Only machines in this zone").rel(R_ZONE),
            s("state", "Only machines in this state"),
            TAGS_FILTER,
        ],
        response: VIRTUAL_MACHINE,
        response_object: Some("virtualmachine"),
    },
    ApiSpec {
        name: "destroyVirtualMachine",
        description: "Stops and destroys a virtual machine, taking it out of load balancers",
        is_async: true,
        creates: false,
        since: "",
        related: &["deployVirtualMachine", "listVirtualMachines"],
        params: &[
            p("id", Uuid, "The machine to destroy").req().rel(R_VM),
            p(
                "expunge",
                Boolean,
                "Remove it at once instead of keeping it recoverable; false by default",
            )
            .since_v("4.2.1"),
        ],
        response: VIRTUAL_MACHINE,
        response_object: Some("virtualmachine"),
    },
    ApiSpec {
        name: "listNics",
        description: "Lists the network interfaces of a virtual machine",
        is_async: false,
        creates: false,
        since: "",
        related: &["listVirtualMachines"],
        params: base_list![
            p(
                "virtualmachineid",
                Uuid,
                "The machine whose interfaces to list"
            )
            .req()
            .rel(R_VM),
            p("nicid", Uuid, "Only the interface with this id").rel("listNics"),
            p("networkid", Uuid, "Only the interface on this network").rel(R_NETWORK),
            p(
                "fordisplay",
                Boolean,
                "Only interfaces shown to users (true) or hidden from them (false); every \
                 interface is shown"
            )
            .since_v("4.4"),
        ],
        response: NIC,
        response_object: Some("nic"),
    },
    ApiSpec {
        name: "addIpToNic",
        description: "Reserves a secondary address on a machine's interface, in the \
                      interface's network; the machine configures it itself. A forward, a \
                      balancer member or a static NAT may then send to it (vmguestip)",
        is_async: true,
        creates: false,
        since: "",
        related: &["listNics", "removeIpFromNic"],
        params: &[
            p("nicid", Uuid, "The interface").req().rel("listNics"),
            s(
                "ipaddress",
                "The address; the lowest free one of the network when not given",
            ),
        ],
        response: NIC_SECONDARY_IP,
        response_object: Some("nicsecondaryip"),
    },
    ApiSpec {
        name: "removeIpFromNic",
        description: "Frees a secondary address of a machine's interface; refused while a \
                      forward, a balancer member or a static NAT sends to it",
        is_async: true,
        creates: false,
        since: "",
        related: &["addIpToNic"],
        params: &[p("id", Uuid, "The secondary address")
            .req()
            .rel("addIpToNic")],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listAutoScaleVmGroups",
        description: "Lists autoscale groups of virtual machines (guestnet has no autoscaling: \
                      the list is empty)",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: account_list![
            p("id", Uuid, "Only the group with this id").rel("listAutoScaleVmGroups"),
            s("name", "Only groups with this name").since_v("4.18"),
            p(
                "lbruleid",
                Uuid,
                "Only the groups of this load balancer rule"
            )
            .rel(R_LB),
            p("policyid", Uuid, "Only groups using this policy").rel("listAutoScalePolicies"),
            p("vmprofileid", Uuid, "Only groups using this profile"),
            p("zoneid", Uuid, "Only groups in this zone").rel(R_ZONE),
            FORDISPLAY_FILTER,
        ],
        response: AUTOSCALE_VM_GROUP,
        response_object: Some("autoscalevmgroup"),
    },
    ApiSpec {
        name: "listAutoScalePolicies",
        description: "Lists autoscale policies (guestnet has no autoscaling: the list is empty)",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: account_list![
            p("id", Uuid, "Only the policy with this id").rel("listAutoScalePolicies"),
            s("name", "Only policies with this name").since_v("4.18"),
            s(
                "action",
                "Only policies with this action: scaleup or scaledown"
            ),
            p("conditionid", Uuid, "Only policies using this condition"),
            p("vmgroupid", Uuid, "Only the policies of this group").rel("listAutoScaleVmGroups"),
            FORDISPLAY_FILTER,
        ],
        response: AUTOSCALE_POLICY,
        response_object: Some("autoscalepolicy"),
    },
    ApiSpec {
        name: "createTags",
        description: "Tags resources of one type (FirewallRule, PortForwardingRule, LoadBalancer, \
                      PublicIpAddress, Network or UserVm) with key and value pairs",
        is_async: true,
        creates: false,
        since: "4.0.0",
        related: &["listTags", "deleteTags"],
        params: &[
            s(
                "resourcetype",
                "The resources' type, as CloudStack names it",
            )
            .req(),
            p("resourceids", List, "The resources' ids, comma-separated").req(),
            p(
                "tags",
                Map,
                "The tags, as tags[i].key and tags[i].value; a key a resource has already is \
                 refused",
            )
            .req(),
            s("customer", "The customer the tags are made for"),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "deleteTags",
        description: "Removes tags from resources of one type: those matching tags[i].key (and \
                      tags[i].value when given), or all of their tags",
        is_async: true,
        creates: false,
        since: "4.0.0",
        related: &["createTags", "listTags"],
        params: &[
            s(
                "resourcetype",
                "The resources' type, as CloudStack names it",
            )
            .req(),
            p("resourceids", List, "The resources' ids, comma-separated").req(),
            p(
                "tags",
                Map,
                "Only the tags with these keys (and values, when given)",
            ),
        ],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listTags",
        description: "Lists resource tags",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: account_list![
            s("resourcetype", "Only tags of resources of this type"),
            s("resourceid", "Only tags of the resource with this id"),
            s("key", "Only tags with this key"),
            s("value", "Only tags with this value"),
            s("customer", "Only tags made for this customer"),
        ],
        response: TAG,
        response_object: Some("tag"),
    },
    ApiSpec {
        name: "listDomains",
        description: "Lists domains: a root admin's own (every domain with listall=true), a \
                      user's own",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: base_list![
            p("id", Uuid, "Only the domain with this id").rel("listDomains"),
            s("name", "Only domains with this name"),
            p("level", Integer, "Only domains this deep (0 is ROOT)"),
            LISTALL,
            p(
                "details",
                List,
                "Which details to show: all (the default), resource (with the domain's \
                 resource counts and limits) or min"
            ),
            p(
                "showicon",
                Boolean,
                "Whether to show the domain's icon (domains have none here)"
            )
            .since_v("4.16"),
        ],
        response: DOMAIN,
        response_object: Some("domain"),
    },
    ApiSpec {
        name: "listProjects",
        description: "Lists projects (guestnet has no projects: the list is empty)",
        is_async: false,
        creates: false,
        since: "3.0.0",
        related: &[],
        params: &[
            p("id", Uuid, "Only the project with this id").rel("listProjects"),
            s("name", "Only projects with this name"),
            s("displaytext", "Only projects with this display text"),
            s("state", "Only projects in this state"),
            TAGS_FILTER,
            p(
                "details",
                List,
                "Which details to show: all, resource or min",
            ),
            s("username", "Only projects this user belongs to").since_v("4.15"),
            p("showicon", Boolean, "Whether to show the project's icon").since_v("4.16"),
            LISTALL,
            DOMAINID_FILTER,
            ISRECURSIVE,
            ACCOUNT_FILTER,
            KEYWORD,
            PAGE,
            PAGESIZE,
        ],
        response: PROJECT,
        response_object: Some("project"),
    },
    ApiSpec {
        name: "listCapabilities",
        description: "Lists what this cloud offers its clients: the API version and its \
                      switches",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: &[],
        response: CAPABILITY,
        response_object: Some("capability"),
    },
    ApiSpec {
        name: "listNetworkProtocols",
        description: "Lists the protocols rules may name (option=protocolnumber) or the ICMP \
                      types and codes (option=icmptype)",
        is_async: false,
        creates: false,
        since: "4.19.0",
        related: &[],
        params: &[s("option", "What to list: protocolnumber or icmptype").req()],
        response: NETWORK_PROTOCOL,
        response_object: Some("networkprotocol"),
    },
    ApiSpec {
        name: "listServiceOfferings",
        description: "Lists service offerings (virtual machine sizes)",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: base_list![
            p("id", Uuid, "Only the offering with this id").rel(R_SVC_OFFERING),
            s("name", "Only offerings with this name"),
            p(
                "issystem",
                Boolean,
                "true lists system offerings (root admins only) instead of VM offerings"
            ),
            s(
                "systemvmtype",
                "Only system offerings for this kind of system machine: domainrouter, \
                 consoleproxy or secondarystoragevm (root admins only)"
            ),
        ],
        response: SERVICE_OFFERING,
        response_object: Some("serviceoffering"),
    },
    ApiSpec {
        name: "registerTemplate",
        description: "Registers a template from a file on the hosts: a disk image, or a \
                      kernel with details[0].initrd (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["listTemplates"],
        params: &[
            s("name", "The template's name").req(),
            s(
                "displaytext",
                "The template's description; the name when absent",
            ),
            s(
                "url",
                "file:// URL of the disk image (or of the kernel, with details[0].initrd), \
                 a readable regular file at the same path on every host",
            )
            .req(),
            s("format", "QCOW2 or RAW (of a disk image)").req(),
            s("hypervisor", "The hypervisor it runs on (KVM)"),
            p("zoneid", Uuid, "The zone").rel(R_ZONE),
            p(
                "details",
                Map,
                "details[0].initrd: file:// URL of a kernel's initial RAM disk; \
                 details[0].cmdline: the kernel's command line",
            ),
        ],
        response: TEMPLATE,
        response_object: Some("template"),
    },
    ApiSpec {
        name: "listTemplates",
        description: "Lists templates (virtual machine images)",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: base_list![
            s(
                "templatefilter",
                "Which templates: featured, self, selfexecutable, sharedexecutable, \
                 executable, community or all",
            )
            .req(),
            p("id", Uuid, "Only the template with this id").rel(R_TEMPLATE),
            s("name", "Only templates with this name"),
            p("zoneid", Uuid, "Only templates in this zone").rel(R_ZONE),
        ],
        response: TEMPLATE,
        response_object: Some("template"),
    },
    ApiSpec {
        name: "rebootRouter",
        description: "Makes a network's router again from nothing on its host (admins only); \
                      the job ends when it enforces every rule of its network again",
        is_async: true,
        creates: false,
        since: "",
        related: &["listRouters"],
        params: &[
            p("id", Uuid, "The router").req().rel(R_ROUTER),
            p(
                "forced",
                Boolean,
                "A reboot here is always forced: the old router is removed at once and made \
                 again (it holds nothing but its config, which it gets again)",
            )
            .since_v("4.16.0"),
        ],
        response: ROUTER,
        response_object: Some("router"),
    },
    ApiSpec {
        name: "startRouter",
        description: "Starts a stopped router (admins only): it is made again from nothing on \
                      its host, and the job ends when it enforces every rule of its network; \
                      a running router is sent its whole config again",
        is_async: true,
        creates: false,
        since: "",
        related: &["listRouters", "stopRouter"],
        params: &[p("id", Uuid, "The router").req().rel(R_ROUTER)],
        response: ROUTER,
        response_object: Some("router"),
    },
    ApiSpec {
        name: "stopRouter",
        description: "Stops a router (admins only): it goes from its host, and its network's \
                      rules are enforced nowhere until it starts again; rule changes meanwhile \
                      end in the database and reach the router when it starts",
        is_async: true,
        creates: false,
        since: "",
        related: &["listRouters", "startRouter"],
        params: &[
            p("id", Uuid, "The router").req().rel(R_ROUTER),
            p(
                "forced",
                Boolean,
                "A stop here is always forced: the router is removed at once (it holds nothing \
                 but its config, which it gets again when it starts)",
            ),
        ],
        response: ROUTER,
        response_object: Some("router"),
    },
    ApiSpec {
        name: "listRouters",
        description: "Lists virtual routers (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: account_list![
            p("id", Uuid, "Only the router with this id").rel(R_ROUTER),
            s("name", "Only the router with this name"),
            p("networkid", Uuid, "Only the routers of this network").rel(R_NETWORK),
            p("zoneid", Uuid, "Only routers in this zone").rel(R_ZONE),
            s("state", "Only routers in this state"),
        ],
        response: ROUTER,
        response_object: Some("router"),
    },
    ApiSpec {
        name: "listEvents",
        description: "Lists events: what was done, by whom, when",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: account_list![
            p("id", Uuid, "Only the event with this id").rel(R_EVENT),
            s("type", "Only events of this type, such as FIREWALL.OPEN"),
            s("level", "Only events of this level: INFO, WARN or ERROR"),
            p(
                "startdate",
                Date,
                "Only events at or after this time (yyyy-MM-dd or yyyy-MM-dd HH:mm:ss)",
            ),
            p(
                "enddate",
                Date,
                "Only events at or before this time (yyyy-MM-dd or yyyy-MM-dd HH:mm:ss)",
            ),
        ],
        response: EVENT,
        response_object: Some("event"),
    },
    ApiSpec {
        name: "createAccount",
        description: "Creates an account with its first user (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["listAccounts"],
        params: &[
            s("username", "The first user's login name").req(),
            s("password", "The first user's password").req(),
            s("email", "The first user's e-mail address").req(),
            s("firstname", "The first user's first name").req(),
            s("lastname", "The first user's last name").req(),
            p(
                "accounttype",
                Short,
                "0 user, 1 root admin, 2 domain admin; prefer roleid",
            ),
            p("roleid", Uuid, "The account's role"),
            s("account", "The account's name; the user name when absent"),
            p("domainid", Uuid, "The account's domain; ROOT when absent"),
        ],
        response: ACCOUNT,
        response_object: Some("account"),
    },
    ApiSpec {
        name: "listAccounts",
        description: "Lists accounts",
        is_async: false,
        creates: false,
        since: "",
        related: &["createAccount"],
        params: &[
            p("id", Uuid, "Only the account with this id").rel(R_ACCOUNT),
            s("name", "Only the account with this name"),
            DOMAINID_FILTER,
            LISTALL,
            ISRECURSIVE,
            KEYWORD,
            PAGE,
            PAGESIZE,
        ],
        response: ACCOUNT,
        response_object: Some("account"),
    },
    ApiSpec {
        name: "listUsers",
        description: "Lists users",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: &[
            p("id", Uuid, "Only the user with this id").rel(R_USER),
            s("username", "Only the user with this login name"),
            ACCOUNT_FILTER,
            DOMAINID_FILTER,
            LISTALL,
            ISRECURSIVE,
            KEYWORD,
            PAGE,
            PAGESIZE,
        ],
        response: USER,
        response_object: Some("user"),
    },
    ApiSpec {
        name: "registerUserKeys",
        description: "Issues a user a new API key and secret key, replacing any old pair",
        is_async: false,
        creates: false,
        since: "",
        related: &[],
        params: &[p("id", Uuid, "The user").req().rel(R_USER)],
        response: USER_KEYS,
        response_object: Some("userkeys"),
    },
    // Resource limits.
    ApiSpec {
        name: "listResourceLimits",
        description: "Lists resource limits: an account's (the caller's own by default) or, \
                      with domainid alone, a domain's",
        is_async: false,
        creates: false,
        since: "",
        related: &["updateResourceLimit"],
        params: account_list![
            p("id", Long, "Only the limit with this id"),
            p(
                "resourcetype",
                Integer,
                "Only this type: 0 user VMs, 1 public IPs, 6 networks, 1000 network rules",
            ),
            s(
                "resourcetypename",
                "Only this type, by name (wins over resourcetype): user_vm, public_ip, network \
                 or network_rule",
            ),
        ],
        response: RESOURCE_LIMIT,
        response_object: Some("resourcelimit"),
    },
    ApiSpec {
        name: "updateResourceLimit",
        description: "Sets the limit of a resource type for an account (account and domainid) \
                      or a domain (domainid alone); admins only",
        is_async: false,
        creates: false,
        since: "",
        related: &["listResourceLimits"],
        params: &[
            s(
                "account",
                "The account whose limit is set; give domainid with it",
            ),
            p(
                "domainid",
                Uuid,
                "The domain whose limit is set, or the domain of the account",
            ),
            p("projectid", Uuid, "The project whose limit is set"),
            p(
                "max",
                Long,
                "The most the owner may hold, at least 0; -1 (the default) for no limit",
            ),
            p(
                "resourcetype",
                Integer,
                "The type: 0 user VMs, 1 public IPs, 6 networks, 1000 network rules",
            )
            .req(),
        ],
        response: RESOURCE_LIMIT,
        response_object: Some("resourcelimit"),
    },
    // Hosts and their agents.
    ApiSpec {
        name: "createAgentToken",
        description: "Creates a token an agent connects with as the named host, creating the \
                      host if it is new (admins only). The token is shown once, in this \
                      answer: only its digest is kept",
        is_async: false,
        creates: false,
        since: "",
        related: &["listAgentTokens", "revokeAgentToken", "listHosts"],
        params: &[s(
            "host",
            "Name of the host the agent runs: 1 to 64 letters, digits, '.', '_' or '-'",
        )
        .req()],
        response: NEW_AGENT_TOKEN,
        response_object: Some("agenttoken"),
    },
    ApiSpec {
        name: "listAgentTokens",
        description: "Lists agent tokens, without the tokens themselves (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["createAgentToken", "revokeAgentToken"],
        params: base_list![
            p("id", Uuid, "Only the token with this id").rel(R_AGENT_TOKEN),
            s("host", "Only the tokens of the host with this name"),
        ],
        response: AGENT_TOKEN,
        response_object: Some("agenttoken"),
    },
    ApiSpec {
        name: "revokeAgentToken",
        description: "Revokes an agent token (admins only): its next connection is refused. An \
                      agent already connected with it stays connected until it reconnects. \
                      Revoking a revoked token succeeds and keeps the first revocation time",
        is_async: false,
        creates: false,
        since: "",
        related: &["createAgentToken", "listAgentTokens"],
        params: &[p("id", Uuid, "The token to revoke")
            .req()
            .rel(R_AGENT_TOKEN)],
        response: SUCCESS,
        response_object: None,
    },
    ApiSpec {
        name: "listHosts",
        description: "Lists the hosts that run routers, each with its agent's state and the \
                      management server holding its connection (admins only)",
        is_async: false,
        creates: false,
        since: "",
        related: &["createAgentToken", "listRouters"],
        params: base_list![
            p("id", Uuid, "Only the host with this id").rel(R_HOST),
            s("name", "Only the host with this name"),
            s("state", "Only hosts in this state: Up or Disconnected"),
            p("zoneid", Uuid, "Only hosts in this zone").rel(R_ZONE),
            s(
                "type",
                "Only hosts of this type; every host here is Routing, so another type lists \
                 nothing",
            ),
        ],
        response: HOST,
        response_object: Some("host"),
    },
];
