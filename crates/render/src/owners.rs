//! Lowest-id attribution over port ranges.
//!
//! Overlapping rules are legal, and every packet must be counted to exactly one rule: the one
//! with the lowest id among those that match it. The functions here compute, for a set of
//! atoms (a port range and the rule it belongs to), the piecewise-constant function
//! `port -> lowest id covering it`, as sorted, disjoint segments.

use router_config::{PortRange, RuleId};

/// A run of ports `[start, end]` owned by one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Seg {
    pub(crate) start: u16,
    pub(crate) end: u16,
    pub(crate) owner: RuleId,
}

/// Sorted, disjoint windows covering exactly the union of `ranges`.
pub(crate) fn union(ranges: impl IntoIterator<Item = PortRange>) -> Vec<PortRange> {
    let mut v: Vec<PortRange> = ranges.into_iter().collect();
    v.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if u32::from(r.start) <= u32::from(last.end) + 1 => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Overlays `own` atoms on `base` segments (already lowest-id within themselves) and returns the
/// lowest-id segments inside `windows` only, merged where neighbours share an owner.
///
/// `base` is sorted and disjoint; `windows` is sorted and disjoint (see [`union`]).
pub(crate) fn overlay(
    base: &[Seg],
    own: &[(PortRange, RuleId)],
    windows: &[PortRange],
) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    let mut own_sorted: Vec<(PortRange, RuleId)> = own.to_vec();
    own_sorted.sort();
    // Atoms that started at or before the current window and may still reach into it.
    let mut next_atom = 0usize;
    let mut live: Vec<(PortRange, RuleId)> = Vec::new();
    let mut base_cuts: Vec<u32> = Vec::new();
    let mut own_cuts: Vec<u32> = Vec::new();
    let mut cuts: Vec<u32> = Vec::new();
    for w in windows {
        // Base segments that touch the window: a contiguous slice.
        let first = base.partition_point(|s| s.end < w.start);
        let mut last = first;
        while last < base.len() && base[last].start <= w.end {
            last += 1;
        }
        let base_in = &base[first..last];
        // Own atoms that touch the window (windows are sorted and disjoint, so one pass).
        while next_atom < own_sorted.len() && own_sorted[next_atom].0.start <= w.end {
            live.push(own_sorted[next_atom]);
            next_atom += 1;
        }
        live.retain(|(r, _)| r.end >= w.start);
        let own_in: Vec<(PortRange, RuleId)> = live
            .iter()
            .copied()
            .filter(|(r, _)| r.intersects(w))
            .collect();
        // Boundaries of elementary intervals (as u32, so 65536 can close the last one). The base
        // segments are sorted and disjoint, so their boundaries come sorted; only the own ones
        // need sorting before the two are merged.
        base_cuts.clear();
        for s in base_in {
            base_cuts.push(u32::from(s.start.max(w.start)));
            base_cuts.push(u32::from(s.end.min(w.end)) + 1);
        }
        own_cuts.clear();
        own_cuts.push(u32::from(w.start));
        own_cuts.push(u32::from(w.end) + 1);
        for (r, _) in &own_in {
            own_cuts.push(u32::from(r.start.max(w.start)));
            own_cuts.push(u32::from(r.end.min(w.end)) + 1);
        }
        own_cuts.sort_unstable();
        cuts.clear();
        let (mut i, mut j) = (0, 0);
        while i < base_cuts.len() || j < own_cuts.len() {
            let next = match (base_cuts.get(i), own_cuts.get(j)) {
                (Some(a), Some(b)) if a <= b => {
                    i += 1;
                    *a
                }
                (_, Some(b)) => {
                    j += 1;
                    *b
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (None, None) => break,
            };
            if cuts.last() != Some(&next) {
                cuts.push(next);
            }
        }
        // Sweep. Own atoms enter by start; a min-heap of (id, end) finds the lowest live id.
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(RuleId, u32)>> =
            std::collections::BinaryHeap::new();
        let mut next_own = 0usize;
        let mut bi = 0usize;
        for pair in cuts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            while next_own < own_in.len() && u32::from(own_in[next_own].0.start) <= a {
                let (r, id) = own_in[next_own];
                heap.push(std::cmp::Reverse((id, u32::from(r.end))));
                next_own += 1;
            }
            while let Some(std::cmp::Reverse((_, end))) = heap.peek() {
                if *end < a {
                    heap.pop();
                } else {
                    break;
                }
            }
            while bi < base_in.len() && u32::from(base_in[bi].end) < a {
                bi += 1;
            }
            let base_owner = base_in
                .get(bi)
                .filter(|s| u32::from(s.start) <= a)
                .map(|s| s.owner);
            let own_owner = heap.peek().map(|std::cmp::Reverse((id, _))| *id);
            let owner = match (own_owner, base_owner) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            let Some(owner) = owner else { continue };
            // Both bounds lie inside the window, which is within u16.
            let (Ok(start), Ok(end)) = (u16::try_from(a), u16::try_from(b - 1)) else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.owner == owner && u32::from(last.end) + 1 == a => last.end = end,
                _ => out.push(Seg { start, end, owner }),
            }
        }
    }
    out
}

/// The owner of `port` in sorted, disjoint segments.
pub(crate) fn owner_at(segs: &[Seg], port: u16) -> Option<RuleId> {
    let i = segs.partition_point(|s| s.end < port);
    segs.get(i).filter(|s| s.start <= port).map(|s| s.owner)
}
