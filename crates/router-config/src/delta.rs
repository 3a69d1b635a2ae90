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
