//! `RouterConfig`: the complete desired state of one virtual router, as it travels from the
//! control plane to the router, and its validated form.
//!
//! The crate owns three things:
//! - the wire document ([`RouterConfig`], schema 1), a serde type that refuses unknown fields;
//! - [`validate`], which turns a document into a [`ValidConfig`] (parsed CIDRs, port ranges,
//!   rules sorted by id) or returns every problem at once, each naming the rule and the field;
//! - [`RouterDelta`], a change against a generation the router confirmed, which the router turns
//!   back into a complete config before doing anything with it.
//!
//! It also describes, in plain words, how two complete configs differ ([`differences`]), for an
//! operator comparing what a router should enforce with what it reports.
//!
//! It is pure: no I/O, no clock, no processes. Parsing from bytes is [`parse`], which reports the
//! JSON path of a malformed or unknown field.

mod delta;
mod diff;
mod incremental;
mod valid;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

pub use delta::{DeltaError, RouterDelta};
pub use diff::{differences, Difference, MAX_DIFFERENCES};
pub use incremental::{ApplyDeltaError, ConfigChange, Touched};
pub use valid::{
    Algorithm, CookieMode, Dhcp, EgressMatch, EgressRule, HealthCheck, IcmpMatch, IngressMatch,
    IngressRule, L4Proto, LbMode, LoadBalancer, Member, PortForward, PortRange, ProxyProtocol,
    RuleId, RuleKind, StaticNat, Stickiness, ValidConfig,
};
pub use validate::{
    is_dns_label, is_dns_name, is_host_in, validate, ConfigProblem, ConfigProblems,
};
pub use wire::{
    BadMac, DhcpLease, DhcpService, EgressPolicy, GuestSide, MacAddr, PublicAddress, PublicSide,
    RouterConfig, WireEgressRule, WireFirewallRule, WireHealthCheck, WireIcmp, WireLoadBalancer,
    WireMember, WirePortForward, WirePorts, WireStickiness, SCHEMA_VERSION,
};

/// A generation number: the version of a router's desired state. It only ever grows.
pub type Generation = u64;

/// Why a document could not be read as a `RouterConfig` or `RouterDelta`.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not a JSON document of the expected shape (unknown field, wrong type…).
    #[error("malformed document at `{path}`{}", rule.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Malformed {
        /// Where in the document the problem is, e.g. `firewall_rules[2].protocl`.
        path: String,
        /// The rule the path points into, by id, when it can be told (e.g. `firewall rule 7`).
        rule: Option<String>,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a document from JSON bytes, reporting the path of the first malformed field.
///
/// # Errors
/// [`ParseError::Malformed`] when the bytes are not JSON of type `T` (unknown fields included).
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ParseError::Malformed {
            rule: rule_at(bytes, &path),
            path,
            source: e.into_inner(),
        }
    })
}

/// Names the rule a JSON path such as `port_forwards[3].vm_ip` points into, by its id.
fn rule_at(bytes: &[u8], path: &str) -> Option<String> {
    let (list, rest) = path.split_once('[')?;
    let index: usize = rest.split_once(']')?.0.parse().ok()?;
    let kind = match list {
        "firewall_rules" | "upsert_firewall_rules" => "firewall rule",
        "egress_rules" | "upsert_egress_rules" => "egress rule",
        "port_forwards" | "upsert_port_forwards" => "port forward",
        _ => return None,
    };
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = doc.get(list)?.get(index)?.get("id")?.as_u64()?;
    Some(format!("{kind} {id}"))
}

/// Parses and validates a complete config in one step.
///
/// # Errors
/// A message naming the path of a malformed field, or every validation problem.
pub fn parse_and_validate(bytes: &[u8]) -> Result<ValidConfig, LoadError> {
    let raw: RouterConfig = parse(bytes).map_err(LoadError::Parse)?;
    validate(raw).map_err(LoadError::Invalid)
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a well-formed document.
    #[error("cannot parse router config")]
    Parse(#[source] ParseError),
    /// Well formed, but refused by validation.
    #[error("router config refused: {0}")]
    Invalid(ConfigProblems),
}
