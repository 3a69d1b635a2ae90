//! A model moved by a [`ConfigChange`]: the cost follows the change, not the config.
//!
//! An ingress element's owner depends on the rules of its own source CIDR and of every CIDR of
//! its partition that contains it, and only at its ports. So a rule changed from ports `P` to
//! `Q` on source `S` changes elements only at ports `P ∪ Q`, and only in `S` and the CIDRs
//! nested under `S` that hold rules at those ports: those ports (the *windows*) of those CIDRs
//! are planned again from the rules of the CIDR and its ancestors there ([`PartAtoms`] keeps
//! each partition's rules by CIDR and port), and spliced into the elements around them. Port
//! forwards never overlap, so theirs are removed and added rule by rule. The skeleton is
//! planned again only when ICMP ingress rules or egress rules changed. The element changes
//! come from comparing each touched region before and after, so the script is the one
//! [`Ruleset::update`] would give, and the model equals `plan` of the new config (property
//! tests check both).

use ipnet::Ipv4Net;
use router_config::{
    ConfigChange, IngressMatch, IngressRule, PortForward, PortRange, RuleId, ValidConfig,
};
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    bucket_name, bucket_set_name, exact_set, forward_key, ingress_key, plan_skeleton, port_text,
    range_vmap, vmap_key, Bucket, ElemValue, Element, ExactKey, Fragment, PartKey, PartKind,
    Ruleset,
};
use crate::nft::{element_text, exact_text, write_bucket_create, Pieces, Update};
use crate::owners;

/// The rules of one source CIDR in an ingress partition, as port ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Atoms {
    /// (first port, rule) → last port.
    ranges: BTreeMap<(u16, RuleId), u16>,
    /// How many ranges have each width (last - first): the widest bounds a search.
    widths: BTreeMap<u16, usize>,
}

impl Atoms {
    fn insert(&mut self, ports: PortRange, id: RuleId) {
        if self.ranges.insert((ports.start, id), ports.end).is_none() {
            *self.widths.entry(ports.end - ports.start).or_default() += 1;
        }
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

    /// The ranges sharing a port with `w`.
    fn within(&self, w: PortRange) -> impl Iterator<Item = (PortRange, RuleId)> + '_ {
        let widest = self.widths.keys().next_back().copied().unwrap_or(0);
        let low = w.start.saturating_sub(widest);
        self.ranges
            .range((low, RuleId(0))..=(w.end, RuleId(u64::MAX)))
            .filter(move |(_, end)| **end >= w.start)
            .map(|((start, id), end)| {
                (
                    PortRange {
                        start: *start,
                        end: *end,
                    },
                    *id,
                )
            })
    }
}

/// An ingress partition's rules by source CIDR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartAtoms {
    cidrs: BTreeMap<Ipv4Net, Atoms>,
}

impl PartAtoms {
    pub(crate) fn of(rules: &[&IngressRule]) -> PartAtoms {
        let mut out = PartAtoms::default();
        for r in rules {
            out.add(r);
        }
        out
    }

    fn add(&mut self, r: &IngressRule) {
        if let IngressMatch::Ports { ports, .. } = r.matcher {
            for net in &r.sources {
                self.cidrs.entry(*net).or_default().insert(ports, r.id);
            }
        }
    }

    fn remove(&mut self, r: &IngressRule) {
        if let IngressMatch::Ports { ports, .. } = r.matcher {
            for net in &r.sources {
                if let Some(a) = self.cidrs.get_mut(net) {
                    a.remove(ports, r.id);
                    if a.ranges.is_empty() {
                        self.cidrs.remove(net);
                    }
                }
            }
        }
    }

    /// `net` and the CIDRs under it that hold a rule sharing a port with one of `windows`.
    fn under(&self, net: Ipv4Net, windows: &[PortRange]) -> Vec<Ipv4Net> {
        let low = Ipv4Net::new(net.network(), 0).unwrap_or_default();
        let high = Ipv4Net::new(net.broadcast(), 32).unwrap_or(net);
        let mut out = vec![net];
        for (n, atoms) in self.cidrs.range(low..=high) {
            if *n != net
                && net.contains(n)
                && windows.iter().any(|w| atoms.within(*w).next().is_some())
            {
                out.push(*n);
            }
        }
        out
    }

    /// Every range of `net` and of the CIDRs containing it that shares a port with a window.
    fn covering(&self, net: Ipv4Net, windows: &[PortRange]) -> Vec<(PortRange, RuleId)> {
        let mut out = Vec::new();
        for len in 0..=net.prefix_len() {
            let Ok(n) = Ipv4Net::new(net.network(), len).map(|n| n.trunc()) else {
                continue;
            };
            if let Some(atoms) = self.cidrs.get(&n) {
                for w in windows {
                    out.extend(atoms.within(*w));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// One past and one before a window, so the elements that may merge with its edges are seen.
fn widened(w: PortRange) -> PortRange {
    PortRange {
        start: w.start.saturating_sub(1),
        end: w.end.saturating_add(1),
    }
}

/// The bucket elements sharing a port with `w`.
fn touching(elements: &BTreeMap<PortRange, Element>, w: PortRange) -> Vec<PortRange> {
    let first = elements
        .range(
            ..=PortRange {
                start: w.start,
                end: u16::MAX,
            },
        )
        .next_back()
        .filter(|(k, _)| k.end >= w.start)
        .map(|(k, _)| *k);
    let rest = elements
        .range(
            PortRange {
                start: w.start,
                end: 0,
            }..=PortRange {
                start: w.end,
                end: u16::MAX,
            },
        )
        .map(|(k, _)| *k);
    first.into_iter().chain(rest).collect()
}

/// What one (partition, CIDR) holds around some windows: its bucket's existence, the bucket's
/// elements touching the widened windows, and the exact elements at the windows' ports.
#[derive(Default)]
struct Snapshot {
    bucket: Option<BTreeMap<PortRange, Element>>,
    exact: BTreeMap<u16, Element>,
}

fn snapshot(
    frag: Option<&Fragment>,
    key: PartKey,
    net: Ipv4Net,
    windows: &[PortRange],
) -> Snapshot {
    let Some(frag) = frag else {
        return Snapshot::default();
    };
    let bucket = frag.buckets.get(&bucket_name(key, net)).map(|b| {
        let mut out = BTreeMap::new();
        for w in windows {
            for k in touching(&b.elements, widened(*w)) {
                out.insert(k, b.elements[&k]);
            }
        }
        out
    });
    let mut exact = BTreeMap::new();
    for w in windows {
        let from = ExactKey { net, port: w.start };
        let to = ExactKey { net, port: w.end };
        for (k, e) in frag.exact.range(from..=to) {
            exact.insert(k.port, *e);
        }
    }
    Snapshot { bucket, exact }
}

/// Sets the elements of a bucket at the ports of `w` to `segs` (which lie inside `w`), keeping
/// what lies outside `w`, and merges neighbours of one owner at the window's edges.
fn splice(
    elements: &mut BTreeMap<PortRange, Element>,
    w: PortRange,
    segs: &[(PortRange, Element)],
) {
    for k in touching(elements, w) {
        let Some(e) = elements.remove(&k) else {
            continue;
        };
        if k.start < w.start {
            elements.insert(
                PortRange {
                    start: k.start,
                    end: w.start - 1,
                },
                e,
            );
        }
        if k.end > w.end {
            elements.insert(
                PortRange {
                    start: w.end + 1,
                    end: k.end,
                },
                e,
            );
        }
    }
    for (k, e) in segs {
        elements.insert(*k, *e);
    }
    for edge in [Some(w.start), w.end.checked_add(1)].into_iter().flatten() {
        let Some(before) = edge.checked_sub(1) else {
            continue;
        };
        let left = touching(
            elements,
            PortRange {
                start: before,
                end: before,
            },
        )
        .first()
        .copied();
        let right = elements
            .range(
                PortRange {
                    start: edge,
                    end: 0,
                }..=PortRange {
                    start: edge,
                    end: u16::MAX,
                },
            )
            .next()
            .map(|(k, _)| *k);
        if let (Some(l), Some(r)) = (left, right) {
            if l.end == before && elements.get(&l) == elements.get(&r) {
                if let Some(e) = elements.remove(&l) {
                    elements.remove(&r);
                    elements.insert(
                        PortRange {
                            start: l.start,
                            end: r.end,
                        },
                        e,
                    );
                }
            }
        }
    }
}

fn clip(a: PortRange, w: PortRange) -> Option<PortRange> {
    let start = a.start.max(w.start);
    let end = a.end.min(w.end);
    (start <= end).then_some(PortRange { start, end })
}

/// Plans one CIDR of an ingress partition again at the ports of `windows`.
fn replan_ingress(
    frag: &mut Fragment,
    atoms: &PartAtoms,
    key: PartKey,
    net: Ipv4Net,
    windows: &[PortRange],
) {
    let all = atoms.covering(net, windows);
    let own: Vec<(PortRange, RuleId)> = atoms
        .cidrs
        .get(&net)
        .map(|a| {
            let mut v: Vec<_> = windows.iter().flat_map(|w| a.within(*w)).collect();
            v.sort();
            v.dedup();
            v
        })
        .unwrap_or_default();
    // Exact single ports.
    for w in windows {
        let from = ExactKey { net, port: w.start };
        let to = ExactKey { net, port: w.end };
        let stale: Vec<ExactKey> = frag.exact.range(from..=to).map(|(k, _)| *k).collect();
        for k in stale {
            frag.exact.remove(&k);
        }
    }
    let singles: BTreeSet<u16> = own
        .iter()
        .filter(|(r, _)| r.is_single())
        .map(|(r, _)| r.start)
        .filter(|p| windows.iter().any(|w| w.contains(*p)))
        .collect();
    if !singles.is_empty() {
        let single_windows =
            owners::union(singles.iter().map(|p| PortRange { start: *p, end: *p }));
        let segs = owners::overlay(&[], &all, &single_windows);
        for p in &singles {
            if let Some(owner) = owners::owner_at(&segs, *p) {
                frag.exact.insert(
                    ExactKey { net, port: *p },
                    Element {
                        value: ElemValue::None,
                        owner,
                    },
                );
            }
        }
    }
    // Port ranges: the bucket.
    let name = bucket_name(key, net);
    let ranges: Vec<PortRange> = own
        .iter()
        .filter(|(r, _)| !r.is_single())
        .flat_map(|(r, _)| windows.iter().filter_map(|w| clip(*r, *w)))
        .collect();
    let range_windows = owners::union(ranges);
    let segs = owners::overlay(&[], &all, &range_windows);
    let bucket = frag.buckets.entry(name.clone()).or_insert_with(|| Bucket {
        net,
        elements: BTreeMap::new(),
    });
    for w in windows {
        let inside: Vec<(PortRange, Element)> = segs
            .iter()
            .filter(|s| w.contains(s.start))
            .map(|s| {
                (
                    PortRange {
                        start: s.start,
                        end: s.end,
                    },
                    Element {
                        value: ElemValue::None,
                        owner: s.owner,
                    },
                )
            })
            .collect();
        splice(&mut bucket.elements, *w, &inside);
    }
    if bucket.elements.is_empty() {
        frag.buckets.remove(&name);
    }
}

/// Where a forward's elements live: its exact key or its bucket's port range.
fn forward_elements(f: &PortForward) -> impl Iterator<Item = (Ipv4Net, Element)> + '_ {
    let value = if f.public_ports.is_single() {
        ElemValue::AddrPort(f.vm_ip, f.private_ports.start)
    } else {
        ElemValue::Addr(f.vm_ip)
    };
    f.sources
        .iter()
        .map(move |net| (*net, Element { value, owner: f.id }))
}

fn forward_out(frag: &mut Fragment, key: PartKey, f: &PortForward) {
    for (net, _) in forward_elements(f) {
        if f.public_ports.is_single() {
            frag.exact.remove(&ExactKey {
                net,
                port: f.public_ports.start,
            });
        } else {
            let name = bucket_name(key, net);
            if let Some(b) = frag.buckets.get_mut(&name) {
                b.elements.remove(&f.public_ports);
                if b.elements.is_empty() {
                    frag.buckets.remove(&name);
                }
            }
        }
    }
}

fn forward_in(frag: &mut Fragment, key: PartKey, f: &PortForward) {
    for (net, e) in forward_elements(f) {
        if f.public_ports.is_single() {
            frag.exact.insert(
                ExactKey {
                    net,
                    port: f.public_ports.start,
                },
                e,
            );
        } else {
            frag.buckets
                .entry(bucket_name(key, net))
                .or_insert_with(|| Bucket {
                    net,
                    elements: BTreeMap::new(),
                })
                .elements
                .insert(f.public_ports, e);
        }
    }
}

/// Writes the difference of one region before and after into `pieces`.
fn diff(
    pieces: &mut Pieces,
    key: PartKey,
    net: Ipv4Net,
    old: &Snapshot,
    new: &Snapshot,
    frag: Option<&Fragment>,
) {
    let set = exact_set(key.kind, net.prefix_len());
    for (port, e) in &old.exact {
        let k = ExactKey { net, port: *port };
        match new.exact.get(port) {
            Some(n) if n == e => {}
            _ => pieces.dels.push(&set, exact_text(key, &k)),
        }
    }
    for (port, e) in &new.exact {
        let k = ExactKey { net, port: *port };
        if old.exact.get(port) != Some(e) {
            pieces
                .adds
                .push(&set, element_text(&exact_text(key, &k), e));
        }
    }
    let name = bucket_name(key, net);
    match (&old.bucket, &new.bucket) {
        (None, None) => {}
        (Some(_), None) => {
            pieces
                .dels
                .push(&range_vmap(key.kind, net.prefix_len()), vmap_key(key, net));
            pieces.removed_buckets.push(name);
        }
        (None, Some(_)) => {
            if let Some(b) = frag.and_then(|f| f.buckets.get(&name)) {
                write_bucket_create(&mut pieces.create, &mut pieces.adds, &name, b);
                pieces.adds.push(
                    &range_vmap(key.kind, net.prefix_len()),
                    format!("{} : jump {name}", vmap_key(key, net)),
                );
            }
        }
        (Some(o), Some(n)) => {
            let set = bucket_set_name(&name);
            for (k, e) in o {
                if n.get(k) != Some(e) {
                    pieces.dels.push(&set, port_text(*k));
                }
            }
            for (k, e) in n {
                if o.get(k) != Some(e) {
                    pieces.adds.push(&set, element_text(&port_text(*k), e));
                }
            }
        }
    }
}

impl Ruleset {
    /// Moves this model, which must be the model of the config before `change`, to the model of
    /// `new` (the config after it), and returns the nft script of the same change, as
    /// [`Ruleset::update`] would. Only the source CIDRs and ports the change touches are planned
    /// again; a change that was not rule by rule ([`ConfigChange::previous`]) takes
    /// [`Ruleset::update`].
    ///
    /// # Guarantees
    /// Afterwards `self == plan(new)`.
    pub fn apply_change(&mut self, new: &ValidConfig, change: &ConfigChange) -> Update {
        if let Some(previous) = change.previous() {
            return self.update(previous, new);
        }
        let mut skeleton = change.egress.iter().any(|t| t.before != t.after);
        // Regions: (partition, CIDR) → the ports whose elements may change.
        let mut regions: BTreeMap<(PartKey, Ipv4Net), Vec<PortRange>> = BTreeMap::new();
        let mut ingress_changes: Vec<(&IngressRule, bool)> = Vec::new();
        for t in change.ingress.iter().filter(|t| t.before != t.after) {
            for (rule, added) in [(&t.before, false), (&t.after, true)] {
                let Some(r) = rule else { continue };
                match (r.matcher, ingress_key(r)) {
                    (IngressMatch::Ports { ports, .. }, Some(key)) => {
                        for net in &r.sources {
                            regions.entry((key, *net)).or_default().push(ports);
                        }
                        ingress_changes.push((r, added));
                    }
                    _ => skeleton = true,
                }
            }
        }
        let mut forward_changes: Vec<(&PortForward, bool)> = Vec::new();
        for t in change.port_forwards.iter().filter(|t| t.before != t.after) {
            for (rule, added) in [(&t.before, false), (&t.after, true)] {
                let Some(f) = rule else { continue };
                for net in &f.sources {
                    regions
                        .entry((forward_key(f), *net))
                        .or_default()
                        .push(f.public_ports);
                }
                forward_changes.push((f, added));
            }
        }
        // The atoms move first: a region is planned from the rules of the new config.
        for (r, added) in &ingress_changes {
            let Some(key) = ingress_key(r) else { continue };
            let atoms = self.atoms.entry(key).or_default();
            if *added {
                atoms.add(r);
            } else {
                atoms.remove(r);
            }
        }
        // Every CIDR an ingress region reaches, with its windows.
        let mut reached: BTreeMap<(PartKey, Ipv4Net), Vec<PortRange>> = BTreeMap::new();
        for ((key, net), ports) in &regions {
            let windows = owners::union(ports.iter().copied());
            match (key.kind, self.atoms.get(key)) {
                (PartKind::Ingress, Some(atoms)) => {
                    for n in atoms.under(*net, &windows) {
                        reached.entry((*key, n)).or_default().extend(&windows);
                    }
                }
                _ => reached.entry((*key, *net)).or_default().extend(&windows),
            }
        }
        let reached: Vec<((PartKey, Ipv4Net), Vec<PortRange>)> = reached
            .into_iter()
            .map(|(k, w)| (k, owners::union(w)))
            .collect();
        let before: Vec<Snapshot> = reached
            .iter()
            .map(|((key, net), w)| snapshot(self.parts.get(key), *key, *net, w))
            .collect();

        // Forwards: out, then in (they never overlap, so no attribution).
        for (f, _) in forward_changes.iter().filter(|(_, a)| !a) {
            let key = forward_key(f);
            if let Some(frag) = self.parts.get_mut(&key) {
                forward_out(frag, key, f);
            }
        }
        for (f, _) in forward_changes.iter().filter(|(_, a)| *a) {
            let key = forward_key(f);
            forward_in(self.parts.entry(key).or_default(), key, f);
        }
        // Ingress: each reached CIDR planned again at its windows.
        let none = PartAtoms::default();
        for ((key, net), windows) in &reached {
            if key.kind != PartKind::Ingress {
                continue;
            }
            let atoms = self.atoms.get(key).unwrap_or(&none);
            let frag = self.parts.entry(*key).or_default();
            replan_ingress(frag, atoms, *key, *net, windows);
        }

        let mut pieces = Pieces::default();
        let mut partitions = BTreeSet::new();
        for (((key, net), windows), old) in reached.iter().zip(&before) {
            partitions.insert(*key);
            let frag = self.parts.get(key);
            let new = snapshot(frag, *key, *net, windows);
            diff(&mut pieces, *key, *net, old, &new, frag);
        }
        for key in &partitions {
            if self
                .parts
                .get(key)
                .is_some_and(|f| f == &Fragment::default())
            {
                self.parts.remove(key);
            }
            if self.atoms.get(key).is_some_and(|a| a.cidrs.is_empty()) {
                self.atoms.remove(key);
            }
        }
        let skeleton = skeleton.then(|| plan_skeleton(new));
        self.finish(pieces, skeleton, partitions.len())
    }
}
