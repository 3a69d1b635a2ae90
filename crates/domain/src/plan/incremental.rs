//! A generation's delta planned from the rows its jobs changed, against the config the router
//! confirmed last, instead of planning the whole config and comparing it with that one.
//!
//! [`desired`](super::desired) plans every row; this plans only the rows whose job is pending
//! (the rows a worker reads again for a step) and the balancers those rows belong to, and
//! compares each with its wire form in the [`Planned`] config. Every other row is what it was
//! when that config was planned, so its wire form is too: its job is not pending, and the
//! only writes to it since were the records of confirmed generations (a row a carried job
//! added is Active now and still present; a revoked one is gone and still absent). The public
//! side, the guest side and the egress policy are planned whole (a network has few IPs); when
//! any of them differs from the base, rules' presence may follow, and [`delta`] declines.

use std::collections::{BTreeMap, BTreeSet};

use router_config::{
    DeltaError, DhcpService, EgressPolicy, GuestSide, PublicSide, RouterConfig, RouterDelta,
    WireEgressRule, WireFirewallRule, WireLoadBalancer, WirePortForward, SCHEMA_VERSION,
};

use super::{
    dhcp, egress_default, find, guest_side, network_of, plan_member, plan_policy, plan_rule,
    public_side, Batch, Commit, NetworkState, Wire,
};
use crate::ids::{JobId, MemberId, PolicyId, RuleId};
use crate::model::{MemberRow, PolicyRow, Purpose};

/// A router config in the form a worker keeps it between generations: each rule's wire form by
/// id, so that a delta is applied to it, and compared with, at the cost of what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The config's generation.
    pub generation: u64,
    /// The public side.
    pub public: PublicSide,
    /// The guest side.
    pub guest: GuestSide,
    /// The default egress policy.
    pub egress_default: EgressPolicy,
    /// Ingress rules by id.
    pub firewall_rules: BTreeMap<u64, WireFirewallRule>,
    /// Egress rules by id.
    pub egress_rules: BTreeMap<u64, WireEgressRule>,
    /// Port forwards by id.
    pub port_forwards: BTreeMap<u64, WirePortForward>,
    /// Load balancers by id.
    pub load_balancers: BTreeMap<u64, WireLoadBalancer>,
    /// DHCP and DNS.
    pub dhcp: Option<DhcpService>,
}

impl Planned {
    /// The config's rules by id.
    pub fn new(config: &RouterConfig) -> Planned {
        fn by_id<T: Clone>(rules: &[T], id: impl Fn(&T) -> u64) -> BTreeMap<u64, T> {
            rules.iter().map(|r| (id(r), r.clone())).collect()
        }
        Planned {
            generation: config.generation,
            public: config.public.clone(),
            guest: config.guest.clone(),
            egress_default: config.egress_default,
            firewall_rules: by_id(&config.firewall_rules, |r| r.id),
            egress_rules: by_id(&config.egress_rules, |r| r.id),
            port_forwards: by_id(&config.port_forwards, |r| r.id),
            load_balancers: by_id(&config.load_balancers, |r| r.id),
            dhcp: config.dhcp.clone(),
        }
    }

    /// The complete config, rules in id order.
    pub fn config(&self) -> RouterConfig {
        RouterConfig {
            schema: SCHEMA_VERSION,
            generation: self.generation,
            public: self.public.clone(),
            guest: self.guest.clone(),
            egress_default: self.egress_default,
            firewall_rules: self.firewall_rules.values().cloned().collect(),
            egress_rules: self.egress_rules.values().cloned().collect(),
            port_forwards: self.port_forwards.values().cloned().collect(),
            load_balancers: self.load_balancers.values().cloned().collect(),
            dhcp: self.dhcp.clone(),
        }
    }

    fn holds(&self, id: u64) -> bool {
        self.firewall_rules.contains_key(&id)
            || self.egress_rules.contains_key(&id)
            || self.port_forwards.contains_key(&id)
            || self.load_balancers.contains_key(&id)
    }

    /// Moves this config to what `delta` makes of it, as a router's
    /// [`RouterDelta::apply_to`] does; nothing changes when the delta does not apply.
    ///
    /// # Errors
    /// [`DeltaError`] when the delta's schema is unknown, its base is another generation, or it
    /// removes a rule this config does not hold.
    pub fn apply(&mut self, delta: &RouterDelta) -> Result<(), DeltaError> {
        if delta.schema != SCHEMA_VERSION {
            return Err(DeltaError::Schema(delta.schema));
        }
        if delta.base_generation != self.generation {
            return Err(DeltaError::BaseMismatch {
                base: delta.base_generation,
                held: self.generation,
            });
        }
        if let Some(id) = delta.remove.iter().find(|id| !self.holds(**id)) {
            return Err(DeltaError::UnknownRule(*id));
        }
        self.generation = delta.generation;
        if let Some(p) = &delta.public {
            self.public = p.clone();
        }
        if let Some(g) = &delta.guest {
            self.guest = g.clone();
        }
        if let Some(e) = delta.egress_default {
            self.egress_default = e;
        }
        if delta.dhcp_off {
            self.dhcp = None;
        }
        if let Some(d) = &delta.dhcp {
            self.dhcp = Some(d.clone());
        }
        for id in &delta.remove {
            self.firewall_rules.remove(id);
            self.egress_rules.remove(id);
            self.port_forwards.remove(id);
            self.load_balancers.remove(id);
        }
        for r in &delta.upsert_firewall_rules {
            self.firewall_rules.insert(r.id, r.clone());
        }
        for r in &delta.upsert_egress_rules {
            self.egress_rules.insert(r.id, r.clone());
        }
        for r in &delta.upsert_port_forwards {
            self.port_forwards.insert(r.id, r.clone());
        }
        for r in &delta.upsert_load_balancers {
            self.load_balancers.insert(r.id, r.clone());
        }
        Ok(())
    }
}

/// The rows of a network whose job is pending: the rows a delta plans again. A worker keeps
/// it beside its copy of the rows: the rows it reads for a step, plus those it named before
/// whose job is still pending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Rules.
    pub rules: BTreeSet<RuleId>,
    /// Balancer members.
    pub members: BTreeSet<MemberId>,
    /// Balancer policies.
    pub policies: BTreeSet<PolicyId>,
}

impl Touched {
    /// Every row of `state` whose job is one of `pending` (a pass over all of them).
    pub fn of(state: &NetworkState, pending: &BTreeSet<JobId>) -> Touched {
        let busy = |job: Option<JobId>| job.is_some_and(|j| pending.contains(&j));
        Touched {
            rules: state
                .rules
                .iter()
                .filter(|r| busy(r.job_id))
                .map(|r| r.id)
                .collect(),
            members: state
                .members
                .iter()
                .filter(|m| busy(m.job_id))
                .map(|m| m.id)
                .collect(),
            policies: state
                .policies
                .iter()
                .filter(|p| busy(p.job_id))
                .map(|p| p.id)
                .collect(),
        }
    }

    /// Keeps the rows whose job, in `state`, is still one of `pending`; forgets the others
    /// (their job ended, and what it changed is recorded).
    pub fn keep_pending(&mut self, state: &NetworkState, pending: &BTreeSet<JobId>) {
        let busy = |job: Option<JobId>| job.is_some_and(|j| pending.contains(&j));
        self.rules
            .retain(|id| find(&state.rules, *id, |r| r.id).is_some_and(|r| busy(r.job_id)));
        self.members
            .retain(|id| find(&state.members, *id, |m| m.id).is_some_and(|m| busy(m.job_id)));
        self.policies
            .retain(|id| find(&state.policies, *id, |p| p.id).is_some_and(|p| busy(p.job_id)));
    }
}

/// The delta from `base` to the config of `state` carrying the changes of `batch`, stamped
/// `generation`, with the bookkeeping to do once a router has applied it: the same config and
/// the same [`Commit`] as [`desired`](super::desired), at the cost of the rows `touched` names
/// rather than of every row.
///
/// `base` must be the config planned for the network's rows as they were when it was planned,
/// `state` those rows since moved only by the records of the generations confirmed since (and
/// rows read again for pending jobs), and `touched` must name every row of `state` whose job
/// is one of `batch.pending`. Declines (`None`) when the delta cannot be formed so: no network,
/// or the public side, the guest side or the egress policy changed (the rules that depend on
/// them are then planned whole).
pub fn delta(
    base: &Planned,
    state: &NetworkState,
    batch: &Batch,
    touched: &Touched,
    generation: u64,
) -> Option<(RouterDelta, Commit)> {
    let network = state.network.as_ref().map(|_| network_of(state))?;
    let mut commit = Commit::default();
    let (public, present_ips) = public_side(state, batch, &mut commit);
    if public != base.public
        || guest_side(&network) != base.guest
        || egress_default(&network) != base.egress_default
    {
        return None;
    }
    let dhcp = dhcp(state, batch, &mut commit);

    // The rules to plan again: the touched ones, and the balancers of touched members and
    // policies.
    let mut dirty: BTreeSet<RuleId> = touched.rules.clone();
    let touched_members: Vec<&MemberRow> = touched
        .members
        .iter()
        .filter_map(|id| find(&state.members, *id, |m| m.id))
        .collect();
    let touched_policies: Vec<&PolicyRow> = touched
        .policies
        .iter()
        .filter_map(|id| find(&state.policies, *id, |p| p.id))
        .collect();
    dirty.extend(touched_members.iter().map(|m| m.lb_id));
    dirty.extend(touched_policies.iter().map(|p| p.lb_id));
    let mut rules = Vec::with_capacity(dirty.len());
    for id in &dirty {
        match find(&state.rules, *id, |r| r.id) {
            Some(rule) => rules.push(rule),
            // A touched rule the rows do not hold: they are not what `touched` was made
            // from.
            None if touched.rules.contains(id) => return None,
            // A member or policy of a balancer gone with its rows.
            None => {}
        }
    }
    // Balancers planned again need all their members and policies, touched or not.
    let balancers: BTreeSet<RuleId> = rules
        .iter()
        .filter(|r| r.purpose == Purpose::LoadBalancing)
        .map(|r| r.id)
        .collect();
    let mut members_of: BTreeMap<RuleId, Vec<&MemberRow>> = BTreeMap::new();
    let mut policies_of: BTreeMap<RuleId, Vec<&PolicyRow>> = BTreeMap::new();
    if !balancers.is_empty() {
        for m in state
            .members
            .iter()
            .filter(|m| balancers.contains(&m.lb_id))
        {
            members_of.entry(m.lb_id).or_default().push(m);
        }
        for p in state
            .policies
            .iter()
            .filter(|p| balancers.contains(&p.lb_id))
        {
            policies_of.entry(p.lb_id).or_default().push(p);
        }
    }

    let mut out = RouterDelta {
        schema: SCHEMA_VERSION,
        base_generation: base.generation,
        generation,
        public: None,
        guest: None,
        egress_default: None,
        upsert_firewall_rules: Vec::new(),
        upsert_egress_rules: Vec::new(),
        upsert_port_forwards: Vec::new(),
        upsert_load_balancers: Vec::new(),
        remove: Vec::new(),
        dhcp: match (&base.dhcp, &dhcp) {
            (b, Some(n)) if b.as_ref() != Some(n) => Some(n.clone()),
            _ => None,
        },
        dhcp_off: base.dhcp.is_some() && dhcp.is_none(),
    };
    for rule in rules {
        let members = members_of.get(&rule.id).map_or(&[][..], Vec::as_slice);
        let policies = policies_of.get(&rule.id).map_or(&[][..], Vec::as_slice);
        let wire = plan_rule(rule, batch, &present_ips, members, policies, &mut commit);
        let id = u64::try_from(rule.id.get()).unwrap_or(0);
        // Where the base holds the rule, if anywhere; a rule held under another kind than
        // it is planned as now is removed there and upserted here (a router's delta does
        // both).
        let held_as_other = |same: bool| !same && base.holds(id);
        match wire {
            Some(Wire::Firewall(r)) => {
                let old = base.firewall_rules.get(&id);
                if held_as_other(old.is_some()) {
                    out.remove.push(id);
                }
                if old != Some(&r) {
                    out.upsert_firewall_rules.push(r);
                }
            }
            Some(Wire::Egress(r)) => {
                let old = base.egress_rules.get(&id);
                if held_as_other(old.is_some()) {
                    out.remove.push(id);
                }
                if old != Some(&r) {
                    out.upsert_egress_rules.push(r);
                }
            }
            Some(Wire::Forward(r)) => {
                let old = base.port_forwards.get(&id);
                if held_as_other(old.is_some()) {
                    out.remove.push(id);
                }
                if old != Some(&r) {
                    out.upsert_port_forwards.push(r);
                }
            }
            Some(Wire::Balancer(r)) => {
                let old = base.load_balancers.get(&id);
                if held_as_other(old.is_some()) {
                    out.remove.push(id);
                }
                if old != Some(&r) {
                    out.upsert_load_balancers.push(r);
                }
            }
            None => {
                if base.holds(id) {
                    out.remove.push(id);
                }
            }
        }
    }
    for m in touched_members {
        plan_member(m, batch, &mut commit);
    }
    for p in touched_policies {
        plan_policy(p, batch, &mut commit);
    }
    Some((out, commit))
}
