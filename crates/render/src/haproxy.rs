//! RouterConfig → `haproxy.cfg`, and what a change between two configs needs from haproxy.
//!
//! One `listen` section per load-balancer rule, named `lb_<id>`, with one `server` per member,
//! named from its address so that the same member always has the same name (`m_10_1_1_11_80`).
//! The `global` section is rendered here too; what it takes from the running router (the path of
//! the runtime API's socket, how long old workers may drain) comes in as a [`Global`].

use router_config::{
    Algorithm, CookieMode, LbMode, LoadBalancer, Member, ProxyProtocol, RuleId, Stickiness,
    ValidConfig,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The `maxconn` of the `global` section.
pub const MAXCONN: u32 = 4096;

/// What the `global` section takes from the running router rather than from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The admin runtime API socket (`stats socket`), which also hands the listeners over to
    /// the new worker on a reload.
    ///
    /// # Assumptions
    /// No whitespace in the path (it is one word of the configuration).
    pub stats_socket: PathBuf,
    /// `hard-stop-after`: the longest an old worker may keep draining connections after a
    /// reload or stop (written in milliseconds, at least 1).
    pub hard_stop_after: Duration,
}

/// The body of the `global` section (indented lines, without the `global` keyword):
/// master-worker mode, the admin socket that hands the listeners over on reload, a `maxconn` of
/// [`MAXCONN`] and `hard-stop-after`.
///
/// There is no `pidfile` line: the process that starts haproxy passes `-p`, and haproxy 2.6
/// alerts ("'pidfile' already specified") when both are given.
pub fn render_global(global: &Global) -> String {
    format!(
        "    master-worker\n    stats socket {} mode 600 level admin expose-fd listeners\n    \
         maxconn {MAXCONN}\n    hard-stop-after {}ms\n",
        global.stats_socket.display(),
        global.hard_stop_after.as_millis().max(1),
    )
}

/// The name of a rule's `listen` section (also its backend name on the runtime API).
pub fn listen_name(id: RuleId) -> String {
    format!("lb_{id}")
}

/// The name of a member's `server` line.
pub fn server_name(m: &Member) -> String {
    format!("m_{}_{}", m.vm_ip.to_string().replace('.', "_"), m.port)
}

/// The options that follow a member's address on its `server` line (and in `add server`).
pub fn server_options(lb: &LoadBalancer, m: &Member) -> String {
    let mut opts = String::new();
    if let Some(h) = &lb.health_check {
        let _ = write!(
            opts,
            " check inter {}s fall {} rise {}",
            h.interval_s, h.unhealthy, h.healthy
        );
    }
    match lb.proxy {
        None => {}
        // Health checks speak it too: a member that expects the header refuses one without.
        Some(ProxyProtocol::V1) => opts.push_str(" send-proxy"),
        Some(ProxyProtocol::V2) => opts.push_str(" send-proxy-v2"),
    }
    if lb.proxy.is_some() && lb.health_check.is_some() {
        opts.push_str(" check-send-proxy");
    }
    if matches!(lb.stickiness, Some(Stickiness::LbCookie { .. })) {
        let _ = write!(opts, " cookie {}", server_name(m));
    }
    opts
}

/// Renders the whole `haproxy.cfg`, or `None` when the config has no load-balancer rule.
pub fn render_haproxy(cfg: &ValidConfig, global: &Global) -> Option<String> {
    if cfg.load_balancers.is_empty() {
        return None;
    }
    let mut out = String::new();
    out.push_str(
        "# Rendered by guestnet from the router's config; changes here are overwritten.\n",
    );
    out.push_str("global\n");
    out.push_str(&render_global(global));
    out.push_str(
        "\ndefaults\n    mode tcp\n    option dontlognull\n    option redispatch\n    retries 3\n    \
         timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n    timeout check 5s\n",
    );
    for lb in &cfg.load_balancers {
        out.push('\n');
        render_listen(&mut out, lb);
    }
    Some(out)
}

fn render_listen(out: &mut String, lb: &LoadBalancer) {
    let _ = writeln!(out, "listen {}", listen_name(lb.id));
    let _ = writeln!(out, "    bind {}:{}", lb.public_ip, lb.public_port);
    let _ = writeln!(
        out,
        "    mode {}",
        if lb.mode == LbMode::Http {
            "http"
        } else {
            "tcp"
        }
    );
    if lb.mode == LbMode::Http {
        // As CloudStack's router: members see each client's address in X-Forwarded-For.
        out.push_str("    option forwardfor\n");
    }
    let _ = writeln!(out, "    balance {}", lb.algorithm.name());
    if lb.algorithm == Algorithm::Source {
        // Consistent hashing lets haproxy add and remove servers at run time.
        out.push_str("    hash-type consistent\n");
    }
    if !lb.sources.iter().any(|n| n.prefix_len() == 0) {
        let list: Vec<String> = lb.sources.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "    tcp-request connection reject if !{{ src {} }}",
            list.join(" ")
        );
    }
    match &lb.stickiness {
        None => {}
        Some(Stickiness::LbCookie {
            name,
            mode,
            nocache,
            indirect,
            postonly,
            domains,
        }) => {
            let mode = match mode {
                CookieMode::Insert => "insert",
                CookieMode::Rewrite => "rewrite",
                CookieMode::Prefix => "prefix",
            };
            let mut line = format!("    cookie {name} {mode}");
            for (on, word) in [
                (*indirect, "indirect"),
                (*nocache, "nocache"),
                (*postonly, "postonly"),
            ] {
                if on {
                    line.push(' ');
                    line.push_str(word);
                }
            }
            for d in domains {
                let _ = write!(line, " domain {d}");
            }
            let _ = writeln!(out, "{line}");
        }
        Some(Stickiness::AppCookie {
            name,
            length,
            holdtime,
            request_learn,
        }) => {
            let _ = writeln!(
                out,
                "    stick-table type string len {length} size 200k expire {holdtime}"
            );
            let _ = writeln!(out, "    stick on req.cook({name})");
            let _ = writeln!(out, "    stick store-response res.cook({name})");
            if *request_learn {
                let _ = writeln!(out, "    stick store-request req.cook({name})");
            }
        }
        Some(Stickiness::SourceBased { table_size, expire }) => {
            let _ = writeln!(
                out,
                "    stick-table type ip size {table_size} expire {expire}"
            );
            out.push_str("    stick on src\n");
        }
    }
    if let Some(h) = &lb.health_check {
        if let Some(path) = &h.ping_path {
            let _ = writeln!(out, "    option httpchk GET {path}");
        }
        let _ = writeln!(out, "    timeout check {}s", h.timeout_s);
    }
    for m in &lb.members {
        let _ = writeln!(
            out,
            "    server {} {}:{}{}",
            server_name(m),
            m.vm_ip,
            m.port,
            server_options(lb, m)
        );
    }
}

/// What haproxy needs for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbChange {
    /// Nothing.
    None,
    /// Only members changed, all where the runtime API can do it.
    Members(Vec<MemberChange>),
    /// Start haproxy (the first rule) or reload it (anything structural).
    Reload,
    /// Stop haproxy: no load-balancer rule is left.
    Stop,
}

/// A member added to or removed from a running `listen` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// The section (backend) name.
    pub backend: String,
    /// The server name.
    pub server: String,
    /// Added (with address and options) or removed.
    pub add: Option<(String, String)>,
    /// Whether the server has health checks to enable.
    pub checked: bool,
}

/// Decides how to move haproxy from `old` to `new`: runtime changes where haproxy 2.6 allows
/// them (members of rules whose structure is unchanged and that name no member in a cookie),
/// a reload for anything else.
pub fn plan_lb_change(old: &ValidConfig, new: &ValidConfig) -> LbChange {
    plan_balancers_change(&old.load_balancers, &new.load_balancers)
}

/// [`plan_lb_change`] from the two lists of load balancers alone.
pub fn plan_balancers_change(old: &[LoadBalancer], new: &[LoadBalancer]) -> LbChange {
    if old == new {
        return LbChange::None;
    }
    if new.is_empty() {
        return LbChange::Stop;
    }
    let before: BTreeMap<RuleId, &LoadBalancer> = old.iter().map(|l| (l.id, l)).collect();
    let after: BTreeMap<RuleId, &LoadBalancer> = new.iter().map(|l| (l.id, l)).collect();
    if before.keys().ne(after.keys()) {
        return LbChange::Reload;
    }
    let mut changes = Vec::new();
    for (id, a) in &after {
        let b = before[id];
        if a == &b {
            continue;
        }
        let structure_same = LoadBalancer {
            members: Vec::new(),
            ..(*a).clone()
        } == LoadBalancer {
            members: Vec::new(),
            ..b.clone()
        };
        if !structure_same || matches!(a.stickiness, Some(Stickiness::LbCookie { .. })) {
            return LbChange::Reload;
        }
        let backend = listen_name(*id);
        for m in &b.members {
            if !a.members.contains(m) {
                changes.push(MemberChange {
                    backend: backend.clone(),
                    server: server_name(m),
                    add: None,
                    checked: false,
                });
            }
        }
        for m in &a.members {
            if !b.members.contains(m) {
                changes.push(MemberChange {
                    backend: backend.clone(),
                    server: server_name(m),
                    add: Some((format!("{}:{}", m.vm_ip, m.port), server_options(a, m))),
                    checked: a.health_check.is_some(),
                });
            }
        }
    }
    LbChange::Members(changes)
}
