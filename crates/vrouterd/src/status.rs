//! Per-rule counters read back from the kernel's listing of our table.

use render::Ruleset;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// Counters by rule id, plus the table's own (refused ingress, egress default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Rule id → count. Ingress and port-forward counters count the packets that opened a
    /// connection; egress counters likewise (established traffic is accepted before the rules).
    pub rules: BTreeMap<u64, Count>,
    /// New connections to a public IP that no rule opened.
    pub ingress_refused: Count,
    /// Egress traffic that no egress rule matched (given the default policy).
    pub egress_default: Count,
}

fn count_of(v: &Value) -> Option<Count> {
    let c = v.get("counter")?;
    Some(Count {
        packets: c.get("packets")?.as_u64()?,
        bytes: c.get("bytes")?.as_u64()?,
    })
}

/// The text form of an element key as the renderer writes it, from nft's JSON.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => {
            if let Some(Value::Array(parts)) = o.get("concat") {
                let texts: Option<Vec<String>> = parts.iter().map(key_text).collect();
                return texts.map(|t| t.join(" . "));
            }
            if let Some(Value::Array(r)) = o.get("range") {
                let (a, b) = (key_text(r.first()?)?, key_text(r.get(1)?)?);
                return Some(format!("{a}-{b}"));
            }
            None
        }
        _ => None,
    }
}

impl Counters {
    /// Reads `nft -j list table` output, attributing element counters through the model.
    pub fn from_listing(json: &[u8], model: Option<&Ruleset>) -> Counters {
        let mut out = Counters::default();
        let Ok(doc) = serde_json::from_slice::<Value>(json) else {
            return out;
        };
        let owners: HashMap<(String, String), u64> = model
            .map(|m| {
                m.element_owners()
                    .map(|(set, key, owner)| ((set, key), owner.0))
                    .collect()
            })
            .unwrap_or_default();
        for item in doc
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(set) = item.get("set").or_else(|| item.get("map")) {
                let Some(name) = set.get("name").and_then(Value::as_str) else {
                    continue;
                };
                for e in set
                    .get("elem")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    // Sets: {"elem": {...}}; maps: [{"elem": {...}}, value].
                    let elem = e
                        .get("elem")
                        .or_else(|| e.get(0).and_then(|x| x.get("elem")));
                    let Some(elem) = elem else { continue };
                    let (Some(key), Some(count)) =
                        (elem.get("val").and_then(key_text), count_of(elem))
                    else {
                        continue;
                    };
                    if let Some(owner) = owners.get(&(name.to_string(), key)) {
                        out.rules.entry(*owner).or_default().add(count);
                    }
                }
            }
            if let Some(rule) = item.get("rule") {
                let comment = rule.get("comment").and_then(Value::as_str);
                let count = rule
                    .get("expr")
                    .and_then(Value::as_array)
                    .and_then(|exprs| exprs.iter().find_map(count_of));
                let chain = rule.get("chain").and_then(Value::as_str);
                match (comment, count, chain) {
                    (Some(c), Some(n), _) if c.starts_with("rule ") => {
                        if let Ok(id) = c["rule ".len()..].parse::<u64>() {
                            out.rules.entry(id).or_default().add(n);
                        }
                    }
                    (Some("egress default"), Some(n), _) => out.egress_default.add(n),
                    (None, Some(n), Some("ingress")) => out.ingress_refused.add(n),
                    _ => {}
                }
            }
        }
        if let Some(m) = model {
            // Rules with nothing counted yet still appear, with zeros.
            for (_, _, owner) in m.element_owners() {
                out.rules.entry(owner.0).or_default();
            }
        }
        out
    }
}
