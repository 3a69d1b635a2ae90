//! nftables text: the complete table as one transaction, or the delta between two models.

use router_config::{RuleId, ValidConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{
    bucket_decl, bucket_set_name, dirty_partitions, exact_set, plan, plan_partitions, range_vmap,
    static_sets, Bucket, Element, Fragment, Ruleset,
};
use crate::TABLE;

/// Element operations grouped by set, in a deterministic order.
#[derive(Default)]
struct Elements(BTreeMap<String, Vec<String>>);

impl Elements {
    fn push(&mut self, set: &str, text: String) {
        self.0.entry(set.to_string()).or_default().push(text);
    }
    fn write(&self, out: &mut String, verb: &str) {
        for (set, elems) in &self.0 {
            // Chunks keep single lines reasonable; they are still one transaction.
            for chunk in elems.chunks(4096) {
                let _ = writeln!(
                    out,
                    "{verb} element ip {TABLE} {set} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
    }
}

fn element_text(key: &str, e: &Element) -> String {
    if e.value.is_empty() {
        key.to_string()
    } else {
        format!("{key} : {}", e.value)
    }
}

fn write_bucket_create(out: &mut String, adds: &mut Elements, name: &str, b: &Bucket) {
    let (set_decl, body) = bucket_decl(name);
    let set = bucket_set_name(name);
    let _ = writeln!(out, "add chain ip {TABLE} {name}");
    let _ = writeln!(
        out,
        "add {}",
        set_decl.replacen(' ', &format!(" ip {TABLE} "), 1)
    );
    let _ = writeln!(out, "add rule ip {TABLE} {name} {body}");
    for (k, e) in &b.elements {
        adds.push(&set, element_text(k, e));
    }
}

/// Renders the complete table: replaces whatever table of ours exists, in one transaction.
pub fn render_full(rs: &Ruleset) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = writeln!(out, "add table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "add table ip {TABLE}");
    for (_, decl) in static_sets() {
        let _ = writeln!(
            out,
            "add {}",
            decl.replacen(' ', &format!(" ip {TABLE} "), 1)
        );
    }
    let mut adds = Elements::default();
    for ip in &rs.skeleton.public_ips {
        adds.push("public_ips", ip.to_string());
    }
    for (key, frag) in &rs.parts {
        for (name, b) in &frag.buckets {
            write_bucket_create(&mut out, &mut adds, name, b);
            adds.push(
                &range_vmap(key.kind, b.prefix),
                format!("{} : jump {name}", b.vmap_key),
            );
        }
        for ((len, k), e) in &frag.exact {
            adds.push(&exact_set(key.kind, *len), element_text(k, e));
        }
    }
    for (name, chain) in &rs.skeleton.chains {
        match &chain.header {
            Some(h) => {
                let _ = writeln!(out, "add chain ip {TABLE} {name} {{ {h} }}");
            }
            None => {
                let _ = writeln!(out, "add chain ip {TABLE} {name}");
            }
        }
    }
    for (name, chain) in &rs.skeleton.chains {
        for r in &chain.rules {
            let _ = writeln!(out, "add rule ip {TABLE} {name} {r}");
        }
    }
    adds.write(&mut out, "add");
    out
}

/// The result of moving a model to a new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The nft script of the change: one transaction, empty when nothing changes.
    pub script: String,
    /// The same change as typed element operations, when it consists only of additions and
    /// deletions of elements in exact-key sets and maps (the common case: a rule added, removed
    /// or changed). It can then be committed as one netlink batch instead of through `nft`.
    /// Deletions come first.
    pub elements: Option<Vec<ElementChange>>,
    /// How many partitions were re-planned.
    pub partitions_replanned: usize,
}

/// One field of an element's key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// An IPv4 address.
    Ipv4(std::net::Ipv4Addr),
    /// An IP protocol number.
    Proto(u8),
    /// A port.
    Port(u16),
}

/// Elements added to or deleted from one exact-key set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    /// The set or map.
    pub set: String,
    /// Deleted (true) or added (false).
    pub delete: bool,
    /// Each element's key fields and, for maps, value fields.
    pub elements: Vec<(Vec<KeyField>, Option<Vec<KeyField>>)>,
}

/// Reads back the fields of an exact element this crate rendered (`a . tcp . 22 [: b . 80]`).
fn fields(text: &str) -> Option<Vec<KeyField>> {
    text.split(" . ")
        .map(|part| match part {
            "tcp" => Some(KeyField::Proto(6)),
            "udp" => Some(KeyField::Proto(17)),
            p if p.contains('.') => p.parse().ok().map(KeyField::Ipv4),
            p => p.parse().ok().map(KeyField::Port),
        })
        .collect()
}

fn is_exact_set(name: &str) -> bool {
    name.starts_with("in_x_") || name.starts_with("pf_x_") || name == "public_ips"
}

fn typed(dels: &Elements, adds: &Elements) -> Option<Vec<ElementChange>> {
    let mut out = Vec::new();
    for (delete, group) in [(true, dels), (false, adds)] {
        for (set, elems) in &group.0 {
            if !is_exact_set(set) {
                return None;
            }
            let mut elements = Vec::with_capacity(elems.len());
            for text in elems {
                let (key, value) = match text.split_once(" : ") {
                    Some((k, v)) => (fields(k)?, Some(fields(v)?)),
                    None => (fields(text)?, None),
                };
                elements.push((key, value));
            }
            out.push(ElementChange {
                set: set.clone(),
                delete,
                elements,
            });
        }
    }
    Some(out)
}

impl Ruleset {
    /// Plans the complete model of `cfg` (same as [`plan`]).
    pub fn new(cfg: &ValidConfig) -> Ruleset {
        plan(cfg)
    }

    /// Moves this model, which must be the model of `old`, to the model of `new`, and returns
    /// the nft script that makes the same change in the kernel.
    ///
    /// # Guarantees
    /// Afterwards `self == plan(new)`; only partitions whose rules changed are re-planned.
    ///
    /// # Assumptions
    /// `self` is the model of `old` and the kernel holds it.
    pub fn update(&mut self, old: &ValidConfig, new: &ValidConfig) -> Update {
        let mut out = String::new();
        let mut dels = Elements::default();
        let mut adds = Elements::default();
        let mut removed_buckets: Vec<String> = Vec::new();

        let dirty = dirty_partitions(old, new);
        let mut fresh = plan_partitions(new, &dirty);
        for key in &dirty {
            let old_frag = self.parts.remove(key).unwrap_or_default();
            let new_frag = fresh.remove(key).unwrap_or_default();
            diff_fragment(
                key.kind,
                &old_frag,
                &new_frag,
                &mut out,
                &mut dels,
                &mut adds,
                &mut removed_buckets,
            );
            if new_frag != Fragment::default() {
                self.parts.insert(*key, new_frag);
            }
        }

        let skeleton = crate::model::plan_skeleton(new);
        let skeleton_unused = std::mem::replace(&mut self.skeleton, skeleton);
        for (name, chain) in &self.skeleton.chains {
            if skeleton_unused.chains.get(name) != Some(chain) {
                let _ = writeln!(out, "flush chain ip {TABLE} {name}");
                for r in &chain.rules {
                    let _ = writeln!(out, "add rule ip {TABLE} {name} {r}");
                }
            }
        }
        for ip in skeleton_unused
            .public_ips
            .difference(&self.skeleton.public_ips)
        {
            dels.push("public_ips", ip.to_string());
        }
        for ip in self
            .skeleton
            .public_ips
            .difference(&skeleton_unused.public_ips)
        {
            adds.push("public_ips", ip.to_string());
        }

        let elements = if out.is_empty() && removed_buckets.is_empty() {
            typed(&dels, &adds)
        } else {
            None
        };
        dels.write(&mut out, "delete");
        adds.write(&mut out, "add");
        for name in &removed_buckets {
            let _ = writeln!(out, "flush chain ip {TABLE} {name}");
            let _ = writeln!(out, "delete chain ip {TABLE} {name}");
            let _ = writeln!(
                out,
                "delete {} ip {TABLE} {}",
                if name.starts_with("ib") { "set" } else { "map" },
                bucket_set_name(name)
            );
        }
        Update {
            script: out,
            elements,
            partitions_replanned: dirty.len(),
        }
    }

    /// Every counted element: `(set name, element key, owning rule)`.
    pub fn element_owners(&self) -> impl Iterator<Item = (String, &str, RuleId)> + '_ {
        self.parts.iter().flat_map(|(key, frag)| {
            let exact = frag
                .exact
                .iter()
                .map(move |((len, k), e)| (exact_set(key.kind, *len), k.as_str(), e.owner));
            let buckets = frag.buckets.iter().flat_map(|(name, b)| {
                let set = bucket_set_name(name);
                b.elements
                    .iter()
                    .map(move |(k, e)| (set.clone(), k.as_str(), e.owner))
            });
            exact.chain(buckets)
        })
    }

    /// Number of set and map elements the model holds (a cheap size figure).
    pub fn element_count(&self) -> usize {
        self.parts
            .values()
            .map(|f| {
                f.exact.len()
                    + f.buckets
                        .values()
                        .map(|b| b.elements.len() + 1)
                        .sum::<usize>()
            })
            .sum::<usize>()
            + self.skeleton.public_ips.len()
    }
}

#[allow(clippy::too_many_arguments)]
fn diff_fragment(
    kind: crate::model::PartKind,
    old: &Fragment,
    new: &Fragment,
    out: &mut String,
    dels: &mut Elements,
    adds: &mut Elements,
    removed_buckets: &mut Vec<String>,
) {
    for ((len, k), e) in &old.exact {
        match new.exact.get(&(*len, k.clone())) {
            Some(n) if n == e => {}
            _ => dels.push(&exact_set(kind, *len), k.clone()),
        }
    }
    for ((len, k), e) in &new.exact {
        match old.exact.get(&(*len, k.clone())) {
            Some(o) if o == e => {}
            _ => adds.push(&exact_set(kind, *len), element_text(k, e)),
        }
    }
    for (name, b) in &old.buckets {
        match new.buckets.get(name) {
            None => {
                dels.push(&range_vmap(kind, b.prefix), b.vmap_key.clone());
                removed_buckets.push(name.clone());
            }
            Some(nb) => {
                let set = bucket_set_name(name);
                for (k, e) in &b.elements {
                    match nb.elements.get(k) {
                        Some(n) if n == e => {}
                        _ => dels.push(&set, k.clone()),
                    }
                }
                for (k, e) in &nb.elements {
                    match b.elements.get(k) {
                        Some(o) if o == e => {}
                        _ => adds.push(&set, element_text(k, e)),
                    }
                }
            }
        }
    }
    for (name, b) in &new.buckets {
        if !old.buckets.contains_key(name) {
            write_bucket_create(out, adds, name, b);
            adds.push(
                &range_vmap(kind, b.prefix),
                format!("{} : jump {name}", b.vmap_key),
            );
        }
    }
}
