//! A delta applied to a validated config in place, checking only what it changes.
//!
//! [`ValidConfig::apply_delta`] moves a config to the one a [`RouterDelta`] describes without
//! rebuilding or re-validating the rules it leaves alone: each upserted rule gets the same field
//! checks as in [`validate`](crate::validate), and is checked for conflicts against its
//! neighbours only (port forwards and load balancers of the same public IP, through
//! [`Neighbours`]), since the rules it leaves alone passed those checks together already. Rule
//! ids are looked up in the id-sorted rule lists. The result is exactly what a whole validation
//! of `delta.apply_to(document)` gives; a property test checks it.
//!
//! Two cases take the whole road: a delta that changes the public side, the guest side, the
//! egress policy or the DHCP service (every rule may depend on them; rare), and a delta that is
//! refused: its problems are listed by a whole validation of the result, so they are word for
//! word those a whole document would get.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::delta::{DeltaError, RouterDelta};
use crate::valid::*;
use crate::validate::{
    check_forward_conflicts, check_static_nat_conflicts, cidrs_intersect, validate,
    validate_egress, validate_forward, validate_ingress, validate_lb, ConfigProblems, Problems,
};
use crate::wire::*;
use crate::Generation;

/// Why a delta could not be applied to a config. The config is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyDeltaError {
    /// The delta does not fit the config (base generation, schema, unknown removed rule).
    #[error("delta refused")]
    Delta(#[source] DeltaError),
    /// The config the delta describes is invalid.
    #[error("config of generation {generation} refused: {problems}")]
    Invalid {
        /// The generation the delta would have produced.
        generation: Generation,
        /// Every problem, as a whole validation of the result lists them.
        problems: ConfigProblems,
    },
}

/// One rule a change touched: its value before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched<T> {
    /// The rule's id.
    pub id: RuleId,
    /// The rule before the change.
    pub before: Option<T>,
    /// The rule after the change.
    pub after: Option<T>,
}

impl<T: Clone> Touched<T> {
    fn inverse(&self) -> Touched<T> {
        Touched {
            id: self.id,
            before: self.after.clone(),
            after: self.before.clone(),
        }
    }
}

/// What [`ValidConfig::apply_delta`] changed: every touched rule before and after, in validated
/// and wire form, or the whole previous config when the delta changed more than rules. It is
/// what [`ValidConfig::undo`] needs to put the config back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The generation before the change.
    pub generation_before: Generation,
    /// The generation after the change.
    pub generation_after: Generation,
    /// Ingress rules touched, in id order.
    pub ingress: Vec<Touched<IngressRule>>,
    /// Egress rules touched, in id order.
    pub egress: Vec<Touched<EgressRule>>,
    /// Port forwards touched, in id order.
    pub port_forwards: Vec<Touched<PortForward>>,
    /// Load balancers touched, in id order.
    pub load_balancers: Vec<Touched<LoadBalancer>>,
    wire: WireTouched,
    /// The whole config before the change, when the delta changed a side, the egress policy or
    /// the DHCP service (the rule lists above are then empty).
    previous: Option<Box<ValidConfig>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WireTouched {
    firewall: Vec<Touched<WireFirewallRule>>,
    egress: Vec<Touched<WireEgressRule>>,
    forwards: Vec<Touched<WirePortForward>>,
    balancers: Vec<Touched<WireLoadBalancer>>,
}

impl ConfigChange {
    /// The whole config before the change, when the change was not rule by rule.
    pub fn previous(&self) -> Option<&ValidConfig> {
        self.previous.as_deref()
    }

    /// Whether the change touched nothing (only the generation moved).
    pub fn is_empty(&self) -> bool {
        self.previous.is_none()
            && self.ingress.is_empty()
            && self.egress.is_empty()
            && self.port_forwards.is_empty()
            && self.load_balancers.is_empty()
    }

    /// The change that undoes this one, rule by rule; `None` for a change that was not rule by
    /// rule (see [`ConfigChange::previous`]).
    pub fn inverse(&self) -> Option<ConfigChange> {
        if self.previous.is_some() {
            return None;
        }
        Some(ConfigChange {
            generation_before: self.generation_after,
            generation_after: self.generation_before,
            ingress: self.ingress.iter().map(Touched::inverse).collect(),
            egress: self.egress.iter().map(Touched::inverse).collect(),
            port_forwards: self.port_forwards.iter().map(Touched::inverse).collect(),
            load_balancers: self.load_balancers.iter().map(Touched::inverse).collect(),
            wire: WireTouched {
                firewall: self.wire.firewall.iter().map(Touched::inverse).collect(),
                egress: self.wire.egress.iter().map(Touched::inverse).collect(),
                forwards: self.wire.forwards.iter().map(Touched::inverse).collect(),
                balancers: self.wire.balancers.iter().map(Touched::inverse).collect(),
            },
            previous: None,
        })
    }

    /// The load balancers before the change, from the config after it (`after`): the list to
    /// compare haproxy's configuration with. Costs a copy of the load balancers only.
    pub fn balancers_before(&self, after: &ValidConfig) -> Vec<LoadBalancer> {
        if let Some(p) = &self.previous {
            return p.load_balancers.clone();
        }
        let mut out = after.load_balancers.clone();
        for t in &self.load_balancers {
            put(&mut out, t.id.0, |l| l.id.0, t.before.clone());
        }
        out
    }
}

/// Port ranges of one group, for the ranges that intersect a given one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PortIndex {
    /// (start, rule) → end.
    ranges: BTreeMap<(u16, RuleId), u16>,
    /// How many ranges have each width (end - start): the widest bounds a search.
    widths: BTreeMap<u16, usize>,
}

impl PortIndex {
    fn insert(&mut self, ports: PortRange, id: RuleId) {
        self.ranges.insert((ports.start, id), ports.end);
        *self.widths.entry(ports.end - ports.start).or_default() += 1;
    }

    fn remove(&mut self, ports: PortRange, id: RuleId) {
        if self.ranges.remove(&(ports.start, id)).is_some() {
            let w = ports.end - ports.start;
            if let Some(n) = self.widths.get_mut(&w) {
                *n -= 1;
                if *n == 0 {
                    self.widths.remove(&w);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Rules whose range shares a port with `ports`.
    fn intersecting(&self, ports: PortRange) -> impl Iterator<Item = RuleId> + '_ {
        let widest = self.widths.keys().next_back().copied().unwrap_or(0);
        let low = ports.start.saturating_sub(widest);
        self.ranges
            .range((low, RuleId(0))..=(ports.end, RuleId(u64::MAX)))
            .filter(move |(_, end)| **end >= ports.start)
            .map(|((_, id), _)| *id)
    }
}

/// Port forwards by (public IP, protocol) and load balancers by (public IP, port): what a
/// changed forward or balancer is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Neighbours {
    forwards: BTreeMap<(Ipv4Addr, L4Proto), PortIndex>,
    balancers: BTreeMap<(Ipv4Addr, u16), BTreeSet<RuleId>>,
}

impl Neighbours {
    pub(crate) fn of(forwards: &[PortForward], balancers: &[LoadBalancer]) -> Neighbours {
        let mut n = Neighbours::default();
        for f in forwards {
            n.add_forward(f);
        }
        for l in balancers {
            n.add_balancer(l);
        }
        n
    }

    fn add_forward(&mut self, f: &PortForward) {
        self.forwards
            .entry((f.public_ip, f.proto))
            .or_default()
            .insert(f.public_ports, f.id);
    }

    fn remove_forward(&mut self, f: &PortForward) {
        let key = (f.public_ip, f.proto);
        if let Some(ix) = self.forwards.get_mut(&key) {
            ix.remove(f.public_ports, f.id);
            if ix.is_empty() {
                self.forwards.remove(&key);
            }
        }
    }

    fn add_balancer(&mut self, l: &LoadBalancer) {
        self.balancers
            .entry((l.public_ip, l.public_port))
            .or_default()
            .insert(l.id);
    }

    fn remove_balancer(&mut self, l: &LoadBalancer) {
        let key = (l.public_ip, l.public_port);
        if let Some(ids) = self.balancers.get_mut(&key) {
            ids.remove(&l.id);
            if ids.is_empty() {
                self.balancers.remove(&key);
            }
        }
    }

    /// Forwards of `ip` (and `proto`, or any protocol) whose public ports share a port with
    /// `ports`.
    fn forwards_at(
        &self,
        ip: Ipv4Addr,
        proto: Option<L4Proto>,
        ports: PortRange,
    ) -> impl Iterator<Item = RuleId> + '_ {
        let protos: &[L4Proto] = match proto {
            Some(L4Proto::Tcp) => &[L4Proto::Tcp],
            Some(L4Proto::Udp) => &[L4Proto::Udp],
            None => &[L4Proto::Tcp, L4Proto::Udp],
        };
        protos
            .iter()
            .filter_map(move |p| self.forwards.get(&(ip, *p)))
            .flat_map(move |ix| ix.intersecting(ports))
    }

    /// Load balancers of `ip` whose port is in `ports`.
    fn balancers_at(&self, ip: Ipv4Addr, ports: PortRange) -> impl Iterator<Item = RuleId> + '_ {
        self.balancers
            .range((ip, ports.start)..=(ip, ports.end))
            .flat_map(|(_, ids)| ids.iter().copied())
    }
}

/// Puts `value` (or nothing) at `id` in an id-sorted list; returns what was there.
fn put<T>(list: &mut Vec<T>, id: u64, key: impl Fn(&T) -> u64, value: Option<T>) -> Option<T> {
    match (list.binary_search_by_key(&id, &key), value) {
        (Ok(i), Some(v)) => Some(std::mem::replace(&mut list[i], v)),
        (Ok(i), None) => Some(list.remove(i)),
        (Err(i), Some(v)) => {
            list.insert(i, v);
            None
        }
        (Err(_), None) => None,
    }
}

fn find<T>(list: &[T], id: u64, key: impl Fn(&T) -> u64) -> Option<&T> {
    list.binary_search_by_key(&id, key).ok().map(|i| &list[i])
}

/// The rules of one kind a delta touches: the ids it upserts with their new wire form, and the
/// ids of this kind it removes.
struct KindPlan<'a, W> {
    upserts: BTreeMap<u64, &'a W>,
    removes: BTreeSet<u64>,
}

impl<'a, W> KindPlan<'a, W> {
    fn new(upserts: &'a [W], id: impl Fn(&W) -> u64, removes: BTreeSet<u64>) -> Self {
        KindPlan {
            upserts: upserts.iter().map(|r| (id(r), r)).collect(),
            removes,
        }
    }

    fn ids(&self) -> BTreeSet<u64> {
        self.upserts
            .keys()
            .copied()
            .chain(self.removes.iter().copied())
            .collect()
    }
}

impl ValidConfig {
    /// The kind of the rule with this id, if the config holds one.
    pub fn kind_of(&self, id: u64) -> Option<RuleKind> {
        let d = &self.document;
        if find(&d.firewall_rules, id, |r| r.id).is_some() {
            Some(RuleKind::Firewall)
        } else if find(&d.egress_rules, id, |r| r.id).is_some() {
            Some(RuleKind::Egress)
        } else if find(&d.port_forwards, id, |r| r.id).is_some() {
            Some(RuleKind::PortForward)
        } else if find(&d.load_balancers, id, |r| r.id).is_some() {
            Some(RuleKind::LoadBalancer)
        } else {
            None
        }
    }

    /// Whether `delta` fits this config: its schema, its base generation, and every rule it
    /// removes held here. Nothing is validated.
    ///
    /// # Errors
    /// The [`DeltaError`] [`ValidConfig::apply_delta`] would return.
    pub fn fits(&self, delta: &RouterDelta) -> Result<(), DeltaError> {
        if delta.schema != SCHEMA_VERSION {
            return Err(DeltaError::Schema(delta.schema));
        }
        if self.generation() != delta.base_generation {
            return Err(DeltaError::BaseMismatch {
                base: delta.base_generation,
                held: self.generation(),
            });
        }
        match delta.remove.iter().find(|id| self.kind_of(**id).is_none()) {
            Some(id) => Err(DeltaError::UnknownRule(*id)),
            None => Ok(()),
        }
    }

    /// Moves this config to the one `delta` describes, in place, and returns what changed.
    ///
    /// Only the rules the delta touches are checked (field checks, conflicts with their
    /// neighbours, ids), so the cost follows the delta's size, not the config's; a delta that
    /// changes a side, the egress policy or the DHCP service is validated whole.
    ///
    /// # Errors
    /// [`ApplyDeltaError::Delta`] when the delta does not fit this config,
    /// [`ApplyDeltaError::Invalid`] with every problem of the result (the same a whole
    /// validation of `delta.apply_to(self.document())` finds). The config is then unchanged.
    pub fn apply_delta(&mut self, delta: &RouterDelta) -> Result<ConfigChange, ApplyDeltaError> {
        if delta.schema != SCHEMA_VERSION {
            return Err(ApplyDeltaError::Delta(DeltaError::Schema(delta.schema)));
        }
        if self.generation() != delta.base_generation {
            return Err(ApplyDeltaError::Delta(DeltaError::BaseMismatch {
                base: delta.base_generation,
                held: self.generation(),
            }));
        }
        let mut removed_kinds: HashMap<u64, RuleKind> = HashMap::new();
        for id in &delta.remove {
            let kind = self
                .kind_of(*id)
                .ok_or(ApplyDeltaError::Delta(DeltaError::UnknownRule(*id)))?;
            removed_kinds.insert(*id, kind);
        }
        let sides_change = delta.public.is_some()
            || delta.guest.is_some()
            || delta.egress_default.is_some()
            || delta.dhcp.is_some()
            || delta.dhcp_off;
        if sides_change {
            return self.apply_whole(delta);
        }

        // Ids: unique across kinds, and never 0.
        let mut clean = true;
        let mut upserted: HashSet<u64> = HashSet::new();
        let upsert_ids = delta
            .upsert_firewall_rules
            .iter()
            .map(|r| (RuleKind::Firewall, r.id))
            .chain(
                delta
                    .upsert_egress_rules
                    .iter()
                    .map(|r| (RuleKind::Egress, r.id)),
            )
            .chain(
                delta
                    .upsert_port_forwards
                    .iter()
                    .map(|r| (RuleKind::PortForward, r.id)),
            )
            .chain(
                delta
                    .upsert_load_balancers
                    .iter()
                    .map(|r| (RuleKind::LoadBalancer, r.id)),
            );
        for (kind, id) in upsert_ids {
            if id == 0 || !upserted.insert(id) {
                clean = false;
            }
            match self.kind_of(id) {
                Some(held) if held != kind && !removed_kinds.contains_key(&id) => clean = false,
                _ => {}
            }
        }

        // Field checks of every upserted rule, in the context of the unchanged sides.
        let mut p = Problems(Vec::new());
        let ips = self.public_addresses.as_slice();
        let guest = Some(self.guest_cidr);
        let gateway = self.guest_gateway;
        let ingress: Vec<IngressRule> = delta
            .upsert_firewall_rules
            .iter()
            .filter_map(|r| validate_ingress(&mut p, r, ips))
            .collect();
        let egress: Vec<EgressRule> = delta
            .upsert_egress_rules
            .iter()
            .filter_map(|r| validate_egress(&mut p, r, guest))
            .collect();
        let forwards: Vec<PortForward> = delta
            .upsert_port_forwards
            .iter()
            .filter_map(|r| validate_forward(&mut p, r, ips, guest, gateway))
            .collect();
        let balancers: Vec<LoadBalancer> = delta
            .upsert_load_balancers
            .iter()
            .filter_map(|r| validate_lb(&mut p, r, ips, guest, gateway))
            .collect();
        check_static_nat_conflicts(&mut p, &self.static_nats, &forwards, &balancers);
        clean = clean && p.0.is_empty();

        // Conflicts of the upserted forwards and balancers with the rules that stay, and among
        // themselves.
        let gone = |id: RuleId| upserted.contains(&id.0) || removed_kinds.contains_key(&id.0);
        if clean {
            clean = !self.conflicts(&forwards, &balancers, &gone);
        }
        if !clean {
            return self.apply_whole(delta);
        }

        let plan_of = |kind: RuleKind| {
            removed_kinds
                .iter()
                .filter(move |(_, k)| **k == kind)
                .map(|(id, _)| *id)
                .collect::<BTreeSet<u64>>()
        };
        let fw = KindPlan::new(
            &delta.upsert_firewall_rules,
            |r| r.id,
            plan_of(RuleKind::Firewall),
        );
        let eg = KindPlan::new(
            &delta.upsert_egress_rules,
            |r| r.id,
            plan_of(RuleKind::Egress),
        );
        let pf = KindPlan::new(
            &delta.upsert_port_forwards,
            |r| r.id,
            plan_of(RuleKind::PortForward),
        );
        let lb = KindPlan::new(
            &delta.upsert_load_balancers,
            |r| r.id,
            plan_of(RuleKind::LoadBalancer),
        );
        let mut ingress: HashMap<u64, IngressRule> =
            ingress.into_iter().map(|r| (r.id.0, r)).collect();
        let mut egress: HashMap<u64, EgressRule> =
            egress.into_iter().map(|r| (r.id.0, r)).collect();
        let mut forwards: HashMap<u64, PortForward> =
            forwards.into_iter().map(|r| (r.id.0, r)).collect();
        let mut balancers: HashMap<u64, LoadBalancer> =
            balancers.into_iter().map(|r| (r.id.0, r)).collect();

        let mut change = ConfigChange {
            generation_before: self.generation(),
            generation_after: delta.generation,
            ingress: Vec::new(),
            egress: Vec::new(),
            port_forwards: Vec::new(),
            load_balancers: Vec::new(),
            wire: WireTouched::default(),
            previous: None,
        };
        for id in fw.ids() {
            let wire = fw.upserts.get(&id).map(|w| (*w).clone());
            let valid = ingress.remove(&id);
            change.ingress.push(Touched {
                id: RuleId(id),
                before: put(&mut self.ingress, id, |r| r.id.0, valid.clone()),
                after: valid,
            });
            change.wire.firewall.push(Touched {
                id: RuleId(id),
                before: put(
                    &mut self.document.firewall_rules,
                    id,
                    |r| r.id,
                    wire.clone(),
                ),
                after: wire,
            });
        }
        for id in eg.ids() {
            let wire = eg.upserts.get(&id).map(|w| (*w).clone());
            let valid = egress.remove(&id);
            change.egress.push(Touched {
                id: RuleId(id),
                before: put(&mut self.egress, id, |r| r.id.0, valid.clone()),
                after: valid,
            });
            change.wire.egress.push(Touched {
                id: RuleId(id),
                before: put(&mut self.document.egress_rules, id, |r| r.id, wire.clone()),
                after: wire,
            });
        }
        for id in pf.ids() {
            let wire = pf.upserts.get(&id).map(|w| (*w).clone());
            let valid = forwards.remove(&id);
            let before = put(&mut self.port_forwards, id, |r| r.id.0, valid.clone());
            if let Some(b) = &before {
                self.neighbours.remove_forward(b);
            }
            if let Some(a) = &valid {
                self.neighbours.add_forward(a);
            }
            change.port_forwards.push(Touched {
                id: RuleId(id),
                before,
                after: valid,
            });
            change.wire.forwards.push(Touched {
                id: RuleId(id),
                before: put(&mut self.document.port_forwards, id, |r| r.id, wire.clone()),
                after: wire,
            });
        }
        for id in lb.ids() {
            let wire = lb.upserts.get(&id).map(|w| {
                let mut w = (*w).clone();
                w.members.sort();
                w
            });
            let valid = balancers.remove(&id);
            let before = put(&mut self.load_balancers, id, |r| r.id.0, valid.clone());
            if let Some(b) = &before {
                self.neighbours.remove_balancer(b);
            }
            if let Some(a) = &valid {
                self.neighbours.add_balancer(a);
            }
            change.load_balancers.push(Touched {
                id: RuleId(id),
                before,
                after: valid,
            });
            change.wire.balancers.push(Touched {
                id: RuleId(id),
                before: put(
                    &mut self.document.load_balancers,
                    id,
                    |r| r.id,
                    wire.clone(),
                ),
                after: wire,
            });
        }
        self.document.generation = delta.generation;
        Ok(change)
    }

    /// Puts the config back to what it was before `change` (which this config's last
    /// [`ValidConfig::apply_delta`] returned).
    pub fn undo(&mut self, change: ConfigChange) {
        if let Some(previous) = change.previous {
            *self = *previous;
            return;
        }
        for t in change.ingress {
            put(&mut self.ingress, t.id.0, |r| r.id.0, t.before);
        }
        for t in change.egress {
            put(&mut self.egress, t.id.0, |r| r.id.0, t.before);
        }
        for t in change.port_forwards {
            if let Some(a) = &t.after {
                self.neighbours.remove_forward(a);
            }
            if let Some(b) = &t.before {
                self.neighbours.add_forward(b);
            }
            put(&mut self.port_forwards, t.id.0, |r| r.id.0, t.before);
        }
        for t in change.load_balancers {
            if let Some(a) = &t.after {
                self.neighbours.remove_balancer(a);
            }
            if let Some(b) = &t.before {
                self.neighbours.add_balancer(b);
            }
            put(&mut self.load_balancers, t.id.0, |r| r.id.0, t.before);
        }
        let d = &mut self.document;
        for t in change.wire.firewall {
            put(&mut d.firewall_rules, t.id.0, |r| r.id, t.before);
        }
        for t in change.wire.egress {
            put(&mut d.egress_rules, t.id.0, |r| r.id, t.before);
        }
        for t in change.wire.forwards {
            put(&mut d.port_forwards, t.id.0, |r| r.id, t.before);
        }
        for t in change.wire.balancers {
            put(&mut d.load_balancers, t.id.0, |r| r.id, t.before);
        }
        d.generation = change.generation_before;
    }

    /// The whole road: the result built and validated whole, swapped in on success.
    fn apply_whole(&mut self, delta: &RouterDelta) -> Result<ConfigChange, ApplyDeltaError> {
        let doc = delta
            .apply_to(&self.document)
            .map_err(ApplyDeltaError::Delta)?;
        let next = validate(doc).map_err(|problems| ApplyDeltaError::Invalid {
            generation: delta.generation,
            problems,
        })?;
        let previous = std::mem::replace(self, next);
        Ok(ConfigChange {
            generation_before: previous.generation(),
            generation_after: delta.generation,
            ingress: Vec::new(),
            egress: Vec::new(),
            port_forwards: Vec::new(),
            load_balancers: Vec::new(),
            wire: WireTouched::default(),
            previous: Some(Box::new(previous)),
        })
    }

    /// Whether the upserted forwards and balancers conflict with the rules that stay (those not
    /// `gone`) or among themselves, by the rules of `check_forward_conflicts` and
    /// `check_lb_conflicts`.
    fn conflicts(
        &self,
        forwards: &[PortForward],
        balancers: &[LoadBalancer],
        gone: &dyn Fn(RuleId) -> bool,
    ) -> bool {
        let n = &self.neighbours;
        let forward = |id: RuleId| find(&self.port_forwards, id.0, |f| f.id.0);
        for f in forwards {
            let clash = n
                .forwards_at(f.public_ip, Some(f.proto), f.public_ports)
                .filter(|id| !gone(*id))
                .filter_map(forward)
                .any(|o| cidrs_intersect(&o.sources, &f.sources));
            if clash
                || n.balancers_at(f.public_ip, f.public_ports)
                    .any(|id| !gone(id))
            {
                return true;
            }
        }
        let mut among = Problems(Vec::new());
        let mut sorted: Vec<PortForward> = forwards.to_vec();
        sorted.sort_by_key(|f| f.id);
        check_forward_conflicts(&mut among, &sorted);
        if !among.0.is_empty() {
            return true;
        }
        let mut seen: BTreeSet<(Ipv4Addr, u16)> = BTreeSet::new();
        for l in balancers {
            let port = PortRange {
                start: l.public_port,
                end: l.public_port,
            };
            if !seen.insert((l.public_ip, l.public_port))
                || n.balancers_at(l.public_ip, port).any(|id| !gone(id))
                || n.forwards_at(l.public_ip, None, port).any(|id| !gone(id))
                || forwards
                    .iter()
                    .any(|f| f.public_ip == l.public_ip && f.public_ports.contains(l.public_port))
            {
                return true;
            }
        }
        false
    }
}
