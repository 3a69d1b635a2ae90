//! RouterConfig → nftables: one table that the router owns, `ip guestnet`, rendered as a
//! complete replacement or as the delta between two configs, each one transaction.
//!
//! Entry points: [`plan`] (config → [`Ruleset`] model), [`render_full`] (model → script that
//! replaces the table atomically), [`render_staged`] (the same load, for a namespace without our
//! table, as a skeleton script and one netlink batch of elements), [`Ruleset::update`] (move a model to a new config and get the
//! delta script), [`Ruleset::apply_change`] (the same from a `router_config::ConfigChange`, at
//! the cost of the change).
//!
//! Layout of the table (see ARCHITECTURE.md for the reasoning):
//! - ingress tcp/udp rules and port forwards are *tuple-space* lookups: for each source prefix
//!   length, most specific first, an exact-key hash set (`in_x_<len>`, `pf_x_<len>`) holds
//!   single ports, and an exact-key verdict map (`in_r_<len>`, `pf_r_<len>`) jumps to a small
//!   per-(public IP, protocol, source CIDR) bucket whose one-field interval set holds port
//!   ranges. No concatenation contains an interval field, so every lookup stays flat.
//! - overlapping ingress rules are split so that each packet is counted by exactly one element,
//!   owned by the lowest matching rule id;
//! - ICMP ingress rules and egress rules are chain rules in id order (first match counts);
//! - every counted element and rule has its own counter.
//!
//! [`haproxy`] renders the router's `haproxy.cfg` from the same config and decides whether a
//! change can go through haproxy's runtime API or needs a reload; [`dnsmasq`] renders the files
//! of the router's DHCP and DNS service; [`libvirt`] renders a guest's libvirt domain XML and the
//! configuration of a libvirt daemon.
//!
//! The crate is pure: no I/O, no processes, no clock. The same config always renders to the
//! same bytes, whatever the order of its rules.

mod change;
pub mod dnsmasq;
pub mod haproxy;
pub mod libvirt;
mod model;
mod nft;
mod owners;

#[cfg(test)]
mod tests;

pub use model::{
    plan, Bucket, Chain, ElemValue, Element, ExactKey, Fragment, PartKey, PartKind, Ruleset,
    Skeleton,
};
pub use nft::{
    render_full, render_staged, ElementChange, FastUpdate, KeyField, StagedLoad, Update,
};

/// The name of the table the router owns (family `ip`).
pub const TABLE: &str = "guestnet";

/// The text of the comment that ties a chain rule to a rule id (`rule <id>`).
pub fn rule_comment_text(id: router_config::RuleId) -> String {
    format!("rule {id}")
}
