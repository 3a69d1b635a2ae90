//! Firewall and forwarding rules' answers. Their objects are rendered by the database (the
//! store's `rules::json`), so that a listing of thousands costs one text per rule; this module
//! puts CloudStack's envelope around them.

/// CloudStack's list answer as text: `{"count":total,"key":[items]}`, where `items` are the
/// page's objects already joined with `,`; `{}` when nothing matches, as CloudStack answers.
pub fn list_text(key: &str, total: u64, items: &str) -> String {
    if total == 0 {
        return "{}".to_string();
    }
    let mut out = String::with_capacity(items.len() + key.len() + 32);
    out.push_str("{\"count\":");
    out.push_str(&total.to_string());
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":[");
    out.push_str(items);
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests;
