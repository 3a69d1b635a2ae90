//! What the cloud tells clients about itself: listCapabilities and listNetworkProtocols.
//!
//! Both answer facts fixed in this program, not rows: the API version guestnet speaks and the
//! switches a client reads to decide what to offer, and the protocols and ICMP types its rules
//! can name.

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::{json, Map, Value};

use super::required;
use crate::app::ApiResult;

/// The CloudStack version whose API guestnet speaks (the commands, parameters and answers of
/// its catalogue).
pub(crate) const CLOUDSTACK_VERSION: &str = "4.22.0.0";

/// listCapabilities: one `capability` object. Every switch is false where guestnet has no
/// such feature (security groups, projects, Kubernetes, volumes, snapshots) and says what
/// guestnet does where it has one: destroyed VMs are expunged at once, so users never see
/// them; users see their own account only.
pub(crate) fn list_capabilities() -> Value {
    json!({
        "capability": {
            "cloudstackversion": CLOUDSTACK_VERSION,
            "securitygroupsenabled": false,
            "dynamicrolesenabled": false,
            "userpublictemplateenabled": false,
            "supportELB": "false",
            "projectinviterequired": false,
            "allowusercreateprojects": false,
            "regionsecondaryenabled": false,
            "kvmsnapshotenabled": false,
            "allowuserviewdestroyedvm": false,
            "allowuserexpungerecovervm": false,
            "allowuserexpungerecovervolume": false,
            "allowuserviewalldomainaccounts": false,
            "kubernetesserviceenabled": false,
            "kubernetesclusterexperimentalfeaturesenabled": false,
            "defaultuipagesize": 20,
        }
    })
}

/// The IP protocols a guestnet rule can name (`protocol=tcp|udp|icmp`; `all` is every one):
/// number, IANA keyword, IANA name.
const PROTOCOLS: &[(u8, &str, &str)] = &[
    (1, "ICMP", "Internet Control Message"),
    (6, "TCP", "Transmission Control"),
    (17, "UDP", "User Datagram"),
];

/// An ICMP code and what it means.
type IcmpCode = (u8, &'static str);

/// ICMP types of IANA's registry that CloudStack's rules know, each with its codes.
const ICMP_TYPES: &[(u8, &str, &[IcmpCode])] = &[
    (0, "Echo Reply", &[(0, "Echo reply")]),
    (
        3,
        "Destination Unreachable",
        &[
            (0, "Net unreachable"),
            (1, "Host unreachable"),
            (2, "Protocol unreachable"),
            (3, "Port unreachable"),
            (4, "Fragmentation needed and DF set"),
            (5, "Source route failed"),
            (6, "Destination network unknown"),
            (7, "Destination host unknown"),
            (9, "Network administratively prohibited"),
            (10, "Host administratively prohibited"),
            (11, "Network unreachable for ToS"),
            (12, "Host unreachable for ToS"),
            (13, "Communication administratively prohibited"),
            (14, "Host precedence violation"),
            (15, "Precedence cutoff in effect"),
        ],
    ),
    (
        5,
        "Redirect",
        &[
            (0, "Redirect for the network"),
            (1, "Redirect for the host"),
            (2, "Redirect for the ToS and network"),
            (3, "Redirect for the ToS and host"),
        ],
    ),
    (8, "Echo", &[(0, "Echo request")]),
    (
        9,
        "Router Advertisement",
        &[
            (0, "Router advertisement"),
            (16, "Does not route common traffic"),
        ],
    ),
    (10, "Router Solicitation", &[(0, "Router solicitation")]),
    (
        11,
        "Time Exceeded",
        &[
            (0, "TTL expired in transit"),
            (1, "Fragment reassembly time exceeded"),
        ],
    ),
    (
        12,
        "Parameter Problem",
        &[
            (0, "The pointer indicates the error"),
            (1, "A required option is missing"),
            (2, "Bad length"),
        ],
    ),
    (13, "Timestamp", &[(0, "Timestamp")]),
    (14, "Timestamp Reply", &[(0, "Timestamp reply")]),
    (
        40,
        "Photuris",
        &[
            (0, "Security failures"),
            (1, "Authentication failed"),
            (2, "Decompression failed"),
            (3, "Decryption failed"),
            (4, "Need authentication"),
            (5, "Need authorization"),
        ],
    ),
    (42, "Extended Echo Request", &[]),
    (43, "Extended Echo Reply", &[]),
];

/// listNetworkProtocols: `option=protocolnumber` lists the protocols guestnet's rules can
/// name (CloudStack lists IANA's whole registry, though its firewall rules take the same
/// three); `option=icmptype` lists the ICMP types and their codes.
///
/// # Errors
/// 431 for a missing or unknown option.
pub(crate) fn list_network_protocols(p: &Params) -> ApiResult<Value> {
    let option = required(p, "option")?;
    let items: Vec<Value> = match option.to_ascii_lowercase().as_str() {
        "protocolnumber" => PROTOCOLS
            .iter()
            .map(|(n, keyword, name)| json!({"index": n, "name": keyword, "description": name}))
            .collect(),
        "icmptype" => ICMP_TYPES
            .iter()
            .map(|(t, name, codes)| {
                let mut v = json!({"index": t, "description": name});
                if !codes.is_empty() {
                    let details: Map<String, Value> = codes
                        .iter()
                        .map(|(c, what)| (c.to_string(), json!(what)))
                        .collect();
                    v["details"] = Value::Object(details);
                }
                v
            })
            .collect(),
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Option {other} is not supported. Supported values are protocolnumber and \
                 icmptype"
            )))
        }
    };
    Ok(crate::resp::list("networkprotocol", items.len(), items))
}
