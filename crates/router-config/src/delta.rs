//! A change against a confirmed generation. The router always rebuilds the complete config from
//! it before validating, so everything downstream sees complete state.

use serde::{Deserialize, Serialize};

use crate::wire::*;
use crate::Generation;

/// Changes to apply on top of the config of `base_generation`, producing `generation`.
///
/// Rules are replaced by id (`upsert_*`) or removed by id (`remove`); the optional sections
/// replace the corresponding parts of the config whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterDelta {
    /// Schema version; must be [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The generation this delta was computed against; the router must hold it.
    pub base_generation: Generation,
    /// The generation the result has.
    pub generation: Generation,
    /// Replaces the public side when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicSide>,
    /// Replaces the guest side when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestSide>,
    /// Replaces the default egress policy when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_default: Option<EgressPolicy>,
    /// Ingress rules added or replaced.
    #[serde(default)]
    pub upsert_firewall_rules: Vec<WireFirewallRule>,
    /// Egress rules added or replaced.
    #[serde(default)]
    pub upsert_egress_rules: Vec<WireEgressRule>,
    /// Port forwards added or replaced.
    #[serde(default)]
    pub upsert_port_forwards: Vec<WirePortForward>,
    /// Load balancers added or replaced.
    #[serde(default)]
    pub upsert_load_balancers: Vec<WireLoadBalancer>,
    /// Ids of rules (of any kind) to remove.
    #[serde(default)]
    pub remove: Vec<u64>,
    /// Replaces the DHCP and DNS service (all its leases) when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<DhcpService>,
    /// The router stops serving DHCP and DNS (the result has no `dhcp`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp_off: bool,
}

/// Why a delta cannot be turned into a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The router does not hold the base generation.
    #[error("delta is against generation {base} but the router holds generation {held}")]
    BaseMismatch {
        /// The delta's base.
        base: Generation,
        /// What the router holds.
        held: Generation,
    },
    /// A removed id is not in the base config.
    #[error("delta removes rule {0}, which generation's config does not hold")]
    UnknownRule(u64),
    /// The schema is not one this router reads.
    #[error("delta schema {0} is not supported")]
    Schema(u32),
}

impl RouterDelta {
    /// The delta that turns `base` into `next`: rules new or changed in `next` are upserted,
    /// rules of `base` missing from `next` are removed, and each side, or the egress policy,
    /// is carried only when it changed. Rules are matched by id; the cost is one pass over
    /// both configs.
    pub fn between(base: &RouterConfig, next: &RouterConfig) -> RouterDelta {
        let mut remove = Vec::new();
        let upsert_firewall_rules = changed(
            &base.firewall_rules,
            &next.firewall_rules,
            |r| r.id,
            &mut remove,
        );
        let upsert_egress_rules = changed(
            &base.egress_rules,
            &next.egress_rules,
            |r| r.id,
            &mut remove,
        );
        let upsert_port_forwards = changed(
            &base.port_forwards,
            &next.port_forwards,
            |r| r.id,
            &mut remove,
        );
        let upsert_load_balancers = changed(
            &base.load_balancers,
            &next.load_balancers,
            |r| r.id,
            &mut remove,
        );
        remove.sort_unstable();
        RouterDelta {
            schema: SCHEMA_VERSION,
            base_generation: base.generation,
            generation: next.generation,
            public: (base.public != next.public).then(|| next.public.clone()),
            guest: (base.guest != next.guest).then(|| next.guest.clone()),
            egress_default: (base.egress_default != next.egress_default)
                .then_some(next.egress_default),
            upsert_firewall_rules,
            upsert_egress_rules,
            upsert_port_forwards,
            upsert_load_balancers,
            remove,
            dhcp: match (&base.dhcp, &next.dhcp) {
                (b, Some(n)) if b.as_ref() != Some(n) => Some(n.clone()),
                _ => None,
            },
            dhcp_off: base.dhcp.is_some() && next.dhcp.is_none(),
        }
    }

    /// How many rules the delta upserts or removes.
    pub fn size(&self) -> usize {
        self.upsert_firewall_rules.len()
            + self.upsert_egress_rules.len()
            + self.upsert_port_forwards.len()
            + self.upsert_load_balancers.len()
            + self.remove.len()
    }

    /// Builds the complete config this delta describes, from the config it was computed against.
    ///
    /// # Errors
    /// [`DeltaError`] when `base` is not the delta's base generation or a removed id is unknown.
    pub fn apply_to(&self, base: &RouterConfig) -> Result<RouterConfig, DeltaError> {
        if self.schema != SCHEMA_VERSION {
            return Err(DeltaError::Schema(self.schema));
        }
        if base.generation != self.base_generation {
            return Err(DeltaError::BaseMismatch {
                base: self.base_generation,
                held: base.generation,
            });
        }
        let mut out = base.clone();
        out.generation = self.generation;
        if let Some(p) = &self.public {
            out.public = p.clone();
        }
        if let Some(g) = &self.guest {
            out.guest = g.clone();
        }
        if let Some(e) = self.egress_default {
            out.egress_default = e;
        }
        if self.dhcp_off {
            out.dhcp = None;
        }
        if let Some(d) = &self.dhcp {
            out.dhcp = Some(d.clone());
        }
        let removed: std::collections::BTreeSet<u64> = self.remove.iter().copied().collect();
        for id in &removed {
            let known = out.firewall_rules.iter().any(|r| r.id == *id)
                || out.egress_rules.iter().any(|r| r.id == *id)
                || out.port_forwards.iter().any(|r| r.id == *id)
                || out.load_balancers.iter().any(|r| r.id == *id);
            if !known {
                return Err(DeltaError::UnknownRule(*id));
            }
        }
        upsert(
            &mut out.firewall_rules,
            &self.upsert_firewall_rules,
            &removed,
            |r| r.id,
        );
        upsert(
            &mut out.egress_rules,
            &self.upsert_egress_rules,
            &removed,
            |r| r.id,
        );
        upsert(
            &mut out.port_forwards,
            &self.upsert_port_forwards,
            &removed,
            |r| r.id,
        );
        upsert(
            &mut out.load_balancers,
            &self.upsert_load_balancers,
            &removed,
            |r| r.id,
        );
        Ok(out)
    }
}

/// Rules of `next` that `base` lacks or holds otherwise; ids of `base` that `next` lacks go to
/// `remove`.
/// The rules of `next` that are new or differ from `base`, in `next`'s order; the ids of
/// `base` missing from `next` go to `remove`. Lists sorted by id (as validated documents and the
/// server's plans are) take one merge walk; any other order is matched through a hash map.
fn changed<T: Clone + PartialEq>(
    base: &[T],
    next: &[T],
    id: impl Fn(&T) -> u64,
    remove: &mut Vec<u64>,
) -> Vec<T> {
    let sorted = |l: &[T]| l.windows(2).all(|w| id(&w[0]) < id(&w[1]));
    if sorted(base) && sorted(next) {
        return walk(base, next, id, remove);
    }
    let old: std::collections::HashMap<u64, &T> = base.iter().map(|r| (id(r), r)).collect();
    let new_ids: std::collections::HashSet<u64> = next.iter().map(&id).collect();
    remove.extend(base.iter().map(&id).filter(|i| !new_ids.contains(i)));
    next.iter()
        .filter(|r| old.get(&id(r)).is_none_or(|o| *o != *r))
        .cloned()
        .collect()
}

fn walk<T: Clone + PartialEq>(
    base: &[T],
    next: &[T],
    id: impl Fn(&T) -> u64,
    remove: &mut Vec<u64>,
) -> Vec<T> {
    let mut upsert = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        match (base.get(i), next.get(j)) {
            (Some(b), Some(n)) if id(b) == id(n) => {
                if b != n {
                    upsert.push(n.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(b), Some(n)) if id(b) < id(n) => {
                remove.push(id(b));
                i += 1;
            }
            (Some(b), None) => {
                remove.push(id(b));
                i += 1;
            }
            (_, Some(n)) => {
                upsert.push(n.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    upsert
}

fn upsert<T: Clone>(
    list: &mut Vec<T>,
    new: &[T],
    removed: &std::collections::BTreeSet<u64>,
    id: impl Fn(&T) -> u64,
) {
    let replaced: std::collections::BTreeSet<u64> = new.iter().map(&id).collect();
    list.retain(|r| !removed.contains(&id(r)) && !replaced.contains(&id(r)));
    list.extend(new.iter().cloned());
}
