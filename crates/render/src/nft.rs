//! nftables text: the complete table as one transaction, or the delta between two models.

use router_config::{RuleId, ValidConfig};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{
    bucket_decl, bucket_set_name, dirty_partitions, exact_key, exact_set, plan, plan_partitions,
    port_text, range_vmap, static_sets, value_text, vmap_key, Bucket, ElemValue, Element, ExactKey,
    Fragment, PartKey, Ruleset,
};
use crate::TABLE;

/// Element operations grouped by set, in a deterministic order.
#[derive(Default)]
pub(crate) struct Elements(BTreeMap<String, Vec<String>>);

/// What a change found to do, before the skeleton is compared: bucket creations, element
/// deletions and additions, and buckets to remove.
#[derive(Default)]
pub(crate) struct Pieces {
    pub(crate) create: String,
    pub(crate) dels: Elements,
    pub(crate) adds: Elements,
    pub(crate) removed_buckets: Vec<String>,
}

impl Elements {
    pub(crate) fn push(&mut self, set: &str, text: String) {
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

pub(crate) fn element_text(key: &str, e: &Element) -> String {
    match e.value {
        ElemValue::None => key.to_string(),
        v => format!("{key} : {}", value_text(v)),
    }
}

pub(crate) fn exact_text(part: PartKey, k: &ExactKey) -> String {
    exact_key(part, k.port, k.net)
}

pub(crate) fn write_bucket_create(out: &mut String, adds: &mut Elements, name: &str, b: &Bucket) {
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
        adds.push(&set, element_text(&port_text(*k), e));
    }
}

/// Renders the complete table: replaces whatever table of ours exists, in one transaction.
pub fn render_full(rs: &Ruleset) -> String {
    let (mut out, adds) = full_pieces(rs);
    adds.write(&mut out, "add");
    out
}

/// A load into a namespace that holds no table of ours, as two transactions: the
/// [`skeleton`](StagedLoad::skeleton) script makes the table with every chain, rule, set and
/// bucket, and the public IPs' set filled; one netlink batch then adds every other element
/// ([`elements`](StagedLoad::elements)).
///
/// # Guarantees
/// Between the two the table is closed, never open: the only set the skeleton's rules match
/// negatively is `public_ips`, which the skeleton fills; every other set and map only accepts or
/// translates, so while they are empty, traffic to a public IP meets the ingress chain's final
/// drop and nothing is forwarded to a VM. After both, the kernel holds exactly what
/// [`render_full`] makes, element for element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedLoad {
    /// nft script replacing the table, its sets empty but `public_ips`.
    pub skeleton: String,
    /// Every other element, additions only, one batch.
    pub elements: Vec<ElementChange>,
}

/// The set the skeleton fills, as the only one its rules match negatively (see [`StagedLoad`]).
pub(crate) const FILLED_BY_SKELETON: &str = "public_ips";

/// Renders `rs` as a [`StagedLoad`]; `None` when an element cannot be put in netlink's typed
/// form (then [`render_full`] is the way).
pub fn render_staged(rs: &Ruleset) -> Option<StagedLoad> {
    let (mut skeleton, mut adds) = full_pieces(rs);
    if let Some(ips) = adds.0.remove(FILLED_BY_SKELETON) {
        Elements(BTreeMap::from([(FILLED_BY_SKELETON.to_string(), ips)]))
            .write(&mut skeleton, "add");
    }
    let elements = typed(&Elements::default(), &adds)?;
    Some(StagedLoad { skeleton, elements })
}

/// The complete table's script without its elements, and the elements.
fn full_pieces(rs: &Ruleset) -> (String, Elements) {
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
        adds.push(FILLED_BY_SKELETON, ip.to_string());
    }
    for (key, frag) in &rs.parts {
        for (name, b) in &frag.buckets {
            write_bucket_create(&mut out, &mut adds, name, b);
            adds.push(
                &range_vmap(key.kind, b.net.prefix_len()),
                format!("{} : jump {name}", vmap_key(*key, b.net)),
            );
        }
        for (k, e) in &frag.exact {
            adds.push(
                &exact_set(key.kind, k.net.prefix_len()),
                element_text(&exact_text(*key, k), e),
            );
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
    (out, adds)
}

/// The result of moving a model to a new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The nft script of the change: one transaction, empty when nothing changes.
    pub script: String,
    /// The same change in a form that avoids `nft` for everything but creating objects, when
    /// the skeleton is unchanged (the common case: rules added, removed or changed).
    pub fast: Option<FastUpdate>,
    /// How many partitions were re-planned.
    pub partitions_replanned: usize,
}

/// A change as (1) an add-only nft script that creates new, empty bucket chains and sets, which
/// nothing references yet, and (2) one batch of element additions and deletions (exact and
/// interval sets, maps and verdict maps) followed by the removal of buckets nothing references
/// any more. Only (2) changes what packets meet, and it is one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastUpdate {
    /// nft script creating new, empty buckets; empty when there are none. Their elements are in
    /// `elements` (nft reads every element of the table back when a script touches an interval
    /// set's elements).
    pub create: String,
    /// Element changes, deletions first.
    pub elements: Vec<ElementChange>,
    /// Buckets to remove after the element changes: `(chain, set)`.
    pub remove: Vec<(String, String)>,
}

/// One field of an element's key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyField {
    /// An IPv4 address.
    Ipv4(std::net::Ipv4Addr),
    /// An IP protocol number.
    Proto(u8),
    /// A port.
    Port(u16),
    /// A port range (interval sets only).
    PortRange(u16, u16),
    /// A jump to a chain (verdict map values only).
    Jump(String),
}

/// Elements added to or deleted from one set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    /// The set or map.
    pub set: String,
    /// Whether the set is an interval set.
    pub interval: bool,
    /// Deleted (true) or added (false).
    pub delete: bool,
    /// Each element's key fields and, for maps, value fields.
    pub elements: Vec<(Vec<KeyField>, Option<Vec<KeyField>>)>,
}

/// Reads back the fields of an element this crate rendered (`a . tcp . 22`, `80-90`, `jump x`).
fn fields(text: &str) -> Option<Vec<KeyField>> {
    if let Some(chain) = text.strip_prefix("jump ") {
        return Some(vec![KeyField::Jump(chain.to_string())]);
    }
    text.split(" . ")
        .map(|part| match part {
            "tcp" => Some(KeyField::Proto(6)),
            "udp" => Some(KeyField::Proto(17)),
            p if p.contains('.') => p.parse().ok().map(KeyField::Ipv4),
            p => match p.split_once('-') {
                Some((a, b)) => Some(KeyField::PortRange(a.parse().ok()?, b.parse().ok()?)),
                None => p.parse().ok().map(KeyField::Port),
            },
        })
        .collect()
}

fn is_interval_set(name: &str) -> bool {
    name.starts_with("ibs_") || name.starts_with("pbs_")
}

fn typed(dels: &Elements, adds: &Elements) -> Option<Vec<ElementChange>> {
    let mut out = Vec::new();
    for (delete, group) in [(true, dels), (false, adds)] {
        for (set, elems) in &group.0 {
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
                interval: is_interval_set(set),
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
        let mut create = String::new();
        let mut dels = Elements::default();
        let mut adds = Elements::default();
        let mut removed_buckets: Vec<String> = Vec::new();

        let dirty = dirty_partitions(old, new);
        let mut fresh = plan_partitions(new, &dirty);
        for key in &dirty {
            let old_frag = self.parts.remove(key).unwrap_or_default();
            let (new_frag, atoms) = fresh.remove(key).unwrap_or_default();
            match atoms {
                Some(a) => {
                    self.atoms.insert(*key, a);
                }
                None => {
                    self.atoms.remove(key);
                }
            }
            let mut diff = FragmentDiff {
                create: &mut create,
                dels: &mut dels,
                adds: &mut adds,
                removed_buckets: &mut removed_buckets,
            };
            diff.run(*key, &old_frag, &new_frag);
            if new_frag != Fragment::default() {
                self.parts.insert(*key, new_frag);
            }
        }

        let skeleton = crate::model::plan_skeleton(new);
        self.finish(
            Pieces {
                create,
                dels,
                adds,
                removed_buckets,
            },
            Some(skeleton),
            dirty.len(),
        )
    }

    /// Puts a change's pieces together: the skeleton (when it was re-planned), the fast form
    /// when the skeleton is unchanged, and the same change as one nft script.
    pub(crate) fn finish(
        &mut self,
        pieces: Pieces,
        skeleton: Option<crate::model::Skeleton>,
        partitions_replanned: usize,
    ) -> Update {
        let Pieces {
            create,
            mut dels,
            mut adds,
            removed_buckets,
        } = pieces;
        let mut skeleton_changes = String::new();
        if let Some(skeleton) = skeleton {
            let previous = std::mem::replace(&mut self.skeleton, skeleton);
            for (name, chain) in &self.skeleton.chains {
                if previous.chains.get(name) != Some(chain) {
                    let _ = writeln!(skeleton_changes, "flush chain ip {TABLE} {name}");
                    for r in &chain.rules {
                        let _ = writeln!(skeleton_changes, "add rule ip {TABLE} {name} {r}");
                    }
                }
            }
            for ip in previous.public_ips.difference(&self.skeleton.public_ips) {
                dels.push("public_ips", ip.to_string());
            }
            for ip in self.skeleton.public_ips.difference(&previous.public_ips) {
                adds.push("public_ips", ip.to_string());
            }
        }
        let removals: Vec<(String, String)> = removed_buckets
            .iter()
            .map(|name| (name.clone(), bucket_set_name(name)))
            .collect();
        let created = create.clone();
        let fast = if skeleton_changes.is_empty() {
            typed(&dels, &adds).map(|elements| FastUpdate {
                create: created.clone(),
                elements,
                remove: removals,
            })
        } else {
            None
        };

        // The same change as one nft transaction.
        let mut out = created;
        out.push_str(&skeleton_changes);
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
            fast,
            partitions_replanned,
        }
    }

    /// Every counted element: `(set name, element key as nft prints it, owning rule)`.
    pub fn element_owners(&self) -> impl Iterator<Item = (String, String, RuleId)> + '_ {
        self.parts.iter().flat_map(|(key, frag)| {
            let exact = frag.exact.iter().map(move |(k, e)| {
                (
                    exact_set(key.kind, k.net.prefix_len()),
                    exact_text(*key, k),
                    e.owner,
                )
            });
            let buckets = frag.buckets.iter().flat_map(|(name, b)| {
                let set = bucket_set_name(name);
                b.elements
                    .iter()
                    .map(move |(k, e)| (set.clone(), port_text(*k), e.owner))
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

/// Where the differences between two fragments go.
struct FragmentDiff<'a> {
    create: &'a mut String,
    dels: &'a mut Elements,
    adds: &'a mut Elements,
    removed_buckets: &'a mut Vec<String>,
}

/// What a merge walk over two sorted maps found for one key.
enum Side<'a, V> {
    Old(&'a V),
    New(&'a V),
    Both(&'a V, &'a V),
}

/// Walks two sorted maps together: linear, no lookups, no key clones.
fn merge<'a, K: Ord, V>(
    old: &'a std::collections::BTreeMap<K, V>,
    new: &'a std::collections::BTreeMap<K, V>,
    mut f: impl FnMut(&'a K, Side<'a, V>),
) {
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    f(ka, Side::Old(va));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    f(kb, Side::New(vb));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    f(ka, Side::Both(va, vb));
                    a.next();
                    b.next();
                }
            },
            (Some((ka, va)), None) => {
                f(ka, Side::Old(va));
                a.next();
            }
            (None, Some((kb, vb))) => {
                f(kb, Side::New(vb));
                b.next();
            }
            (None, None) => break,
        }
    }
}

impl FragmentDiff<'_> {
    fn run(&mut self, part: PartKey, old: &Fragment, new: &Fragment) {
        let kind = part.kind;
        merge(&old.exact, &new.exact, |k, side| {
            let set = || exact_set(kind, k.net.prefix_len());
            match side {
                Side::Both(o, n) if o == n => {}
                Side::Both(_, n) => {
                    self.dels.push(&set(), exact_text(part, k));
                    self.adds
                        .push(&set(), element_text(&exact_text(part, k), n));
                }
                Side::Old(_) => self.dels.push(&set(), exact_text(part, k)),
                Side::New(n) => self
                    .adds
                    .push(&set(), element_text(&exact_text(part, k), n)),
            }
        });
        merge(&old.buckets, &new.buckets, |name, side| match side {
            Side::Both(o, n) if o == n => {}
            Side::Both(o, n) => {
                let set = bucket_set_name(name);
                merge(&o.elements, &n.elements, |k, side| match side {
                    Side::Both(x, y) if x == y => {}
                    Side::Both(_, y) => {
                        self.dels.push(&set, port_text(*k));
                        self.adds.push(&set, element_text(&port_text(*k), y));
                    }
                    Side::Old(_) => self.dels.push(&set, port_text(*k)),
                    Side::New(y) => self.adds.push(&set, element_text(&port_text(*k), y)),
                });
            }
            Side::Old(o) => {
                self.dels
                    .push(&range_vmap(kind, o.net.prefix_len()), vmap_key(part, o.net));
                self.removed_buckets.push(name.clone());
            }
            Side::New(n) => {
                write_bucket_create(self.create, self.adds, name, n);
                self.adds.push(
                    &range_vmap(kind, n.net.prefix_len()),
                    format!("{} : jump {name}", vmap_key(part, n.net)),
                );
            }
        });
    }
}
