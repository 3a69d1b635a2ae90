//! Ingress and egress firewall rules and port forwarding.

use api_types::error::ApiError;
use api_types::params::Params;
use ipnet::Ipv4Net;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use super::limits::{self, Resource};
use super::{accepted, network_by_id, queued, required, rule_param, scope, unknown};
use crate::app::{internal, store_error, ApiResult, App};
use domain::actor::Caller;
use domain::checks::{self, Candidate};
use domain::ids::{IpId, NetworkId, RuleId};
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload, Undo};
use domain::model::{IpRow, NetworkRow, NewRule, Purpose, Rule, State, Traffic};
use store::db::{Dialect, J};
use store::Scheduled;

/// The public IP for a rule: it must be the caller's and associated with a network.
pub(crate) async fn rule_ip(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
) -> ApiResult<(IpRow, NetworkRow)> {
    let ip = super::ip_param(app, caller, p, param).await?;
    if ip.state == "Releasing" || ip.state == "Free" {
        return Err(ApiError::invalid_parameter(format!(
            "Ip address id={} not ready for firewall rules yet",
            ip.uuid
        )));
    }
    let Some(network_id) = ip.network_id else {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to create firewall rule; ip id={} is not associated with any network",
            ip.uuid
        )));
    };
    let net = network_by_id(app, network_id).await?;
    Ok((ip, net))
}

fn protocol(p: &Params, allowed: &[&str], zone: &str) -> ApiResult<String> {
    protocol_of(required(p, "protocol")?, allowed, zone)
}

/// A rule's protocol, trimmed and lowercased, if the rule kind allows it.
pub(crate) fn protocol_of(raw: &str, allowed: &[&str], zone: &str) -> ApiResult<String> {
    let proto = raw.trim().to_ascii_lowercase();
    if allowed.contains(&proto.as_str()) {
        Ok(proto)
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Protocol {proto} is not supported in zone {zone} (supported: {})",
            allowed.join(", ")
        )))
    }
}

/// Port range and ICMP type/code of a firewall rule.
type L4 = (Option<(i64, i64)>, Option<(i64, i64)>);

fn l4(p: &Params, proto: &str) -> ApiResult<L4> {
    l4_of(
        proto,
        p.int("startport"),
        p.int("endport"),
        p.int("icmptype"),
        p.int("icmpcode"),
    )
}

/// Ports and ICMP match of a firewall rule, checked as CloudStack does (and as the router
/// needs: ports 1-65535, ICMP values -1 or 0-255).
pub(crate) fn l4_of(
    proto: &str,
    start: Option<i64>,
    end: Option<i64>,
    icmp_type: Option<i64>,
    icmp_code: Option<i64>,
) -> ApiResult<L4> {
    let has_icmp = icmp_type.is_some() || icmp_code.is_some();
    if proto == "icmp" {
        if start.is_some() || end.is_some() {
            return Err(ApiError::invalid_parameter(
                "Can't specify start/end port when protocol is ICMP",
            ));
        }
        return Ok((None, Some(checks::icmp(icmp_type, icmp_code)?)));
    }
    if has_icmp {
        return Err(ApiError::invalid_parameter(
            "Can specify icmpCode and icmpType for ICMP protocol only",
        ));
    }
    if proto == "all" && (start.is_some() || end.is_some()) {
        return Err(ApiError::invalid_parameter(
            "Can't specify start/end port when protocol is ALL",
        ));
    }
    Ok((
        checks::port_range("startport", start, "endport", end)?,
        None,
    ))
}

/// An egress rule's sources: inside the guest CIDR, `0.0.0.0/0` meaning the guest CIDR (as
/// CloudStack rewrites it), none meaning the guest CIDR.
pub(crate) fn egress_sources(list: &[String], guest: Ipv4Net) -> ApiResult<Vec<Ipv4Net>> {
    let mut sources = Vec::new();
    for s in checks::cidr_list("cidrlist", list)? {
        let s = if s == Ipv4Net::default() { guest } else { s };
        if !guest.contains(&s) {
            return Err(ApiError::invalid_parameter(format!(
                "Source cidr {s} is not within the guest CIDR {guest}"
            )));
        }
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    if sources.is_empty() {
        sources.push(guest);
    }
    Ok(sources)
}

/// Writes a new rule (and its job, and an opened firewall rule) in one transaction, after
/// checking conflicts under the network's lock; rings the runner.
pub(crate) async fn create_rule(
    app: &App,
    caller: &Caller,
    command: &str,
    rule: NewRule,
    open_firewall: bool,
    payload: Payload,
) -> ApiResult<Value> {
    let uuid = rule.uuid.clone();
    let mut payload = payload;
    if let Outcome::Rule { id: 0, object } = &payload.outcome {
        payload.outcome = Outcome::Created {
            uuid: uuid.clone(),
            object: object.clone(),
        };
    }
    let network = NetworkId::from(rule.network_id);
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    // The job and its event first: the network's lock is held only for the conflict check,
    // the rule's rows and the commit.
    let description = format!("{command} for rule {uuid}");
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&uuid),
            },
            Some(Scheduled {
                event_type: event_type(command),
                description: &description,
                resource_uuid: Some(&uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let existing = match (rule.traffic, rule.ip_id) {
        (Some(Traffic::Egress), _) => store::rules::egress_neighbours(change.conn(), network)
            .await
            .map_err(store_error)?,
        (_, Some(ip)) => store::rules::ip_neighbours(change.conn(), IpId::from(ip), rule.ports)
            .await
            .map_err(store_error)?,
        _ => Vec::new(),
    };
    checks::conflicts(&rule.candidate(), &existing)?;
    // openfirewall: an identical firewall rule is reused, another one is checked as a rule.
    let opened = if open_firewall {
        let fw = NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::Firewall,
            traffic: Some(Traffic::Ingress),
            protocol: rule.protocol.clone(),
            icmp: None,
            sources: vec![Ipv4Net::default()],
            dests: Vec::new(),
            related_id: None,
            vm_id: None,
            vm_ip: None,
            private: None,
            name: None,
            description: None,
            algorithm: None,
            lb_protocol: None,
            ..rule.clone()
        };
        let identical = existing.iter().any(|c| {
            c.purpose == Purpose::Firewall
                && c.protocol == fw.protocol
                && c.ports == fw.ports
                && c.sources == fw.sources
        });
        if identical {
            None
        } else {
            checks::conflicts(&fw.candidate(), &existing)?;
            Some(fw)
        }
    } else {
        None
    };
    let rules = 1 + i64::from(opened.is_some());
    limits::take(
        app,
        change.conn(),
        rule.account_id,
        &[(Resource::NetworkRule, rules)],
    )
    .await?;
    let mut written = vec![store::rules::insert(change.conn(), &rule, Some(job_id))
        .await
        .map_err(store_error)?];
    if let Some(mut fw) = opened {
        fw.related_id = Some(written[0].get());
        written.push(
            store::rules::insert(change.conn(), &fw, Some(job_id))
                .await
                .map_err(store_error)?,
        );
    }
    // The rendered objects: in the transaction on SQLite (one writer anyway); after the
    // commit on PostgreSQL, outside the network's lock (until then a listing renders the
    // rule itself).
    let dialect = change.dialect();
    if dialect == Dialect::Sqlite {
        for id in &written {
            store_json(&mut **change.conn(), dialect, id.get())
                .await
                .map_err(internal)?;
        }
    }
    let receipt = change.commit().await.map_err(store_error)?;
    if dialect == Dialect::Postgres {
        for id in &written {
            // The rule is accepted: a failure here only leaves the listing to render it.
            if let Err(e) = store_json(app.db.pool(), dialect, id.get()).await {
                tracing::warn!(rule = %id, error = %e, "storing a rule's rendered object failed");
            }
        }
    }
    app.doorbell.ring(receipt);
    Ok(accepted(&uuid, &job_uuid))
}

/// CloudStack's event type for a command.
pub(crate) fn event_type(command: &str) -> &'static str {
    super::table::event_type(command)
}

/// createFirewallRule.
pub(crate) async fn create_ingress(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let (ip, net) = rule_ip(app, caller, p, "ipaddressid").await?;
    let proto = protocol(p, &["tcp", "udp", "icmp"], &app.site.zone_name)?;
    let (ports, icmp) = l4(p, &proto)?;
    let mut sources = checks::cidr_list("cidrlist", &p.list("cidrlist").unwrap_or_default())?;
    if sources.is_empty() {
        sources.push(Ipv4Net::default());
    }
    let rule = NewRule {
        uuid: uuid::Uuid::new_v4().to_string(),
        purpose: Purpose::Firewall,
        traffic: Some(Traffic::Ingress),
        network_id: net.id,
        ip_id: Some(ip.id),
        account_id: ip.account_id.unwrap_or(net.account_id),
        protocol: proto,
        ports,
        icmp,
        sources,
        dests: Vec::new(),
        related_id: None,
        display: p.bool("fordisplay").unwrap_or(true),
        vm_id: None,
        vm_ip: None,
        private: None,
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
    };
    let what = format!("creating firewall rule on {}", ip.address);
    let payload = Payload::new(
        Outcome::Rule {
            id: 0,
            object: "firewallrule".into(),
        },
        "FIREWALL.OPEN",
        what,
        "Failed to create firewall rule",
    );
    create_rule(app, caller, "createFirewallRule", rule, false, payload).await
}

/// createEgressFirewallRule.
pub(crate) async fn create_egress(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let net = super::network_param(app, caller, p, "networkid").await?;
    let proto = protocol(p, &["tcp", "udp", "icmp", "all"], &app.site.zone_name)?;
    let (ports, icmp) = l4(p, &proto)?;
    let sources = egress_sources(&p.list("cidrlist").unwrap_or_default(), net.cidr)?;
    let dests = checks::cidr_list("destcidrlist", &p.list("destcidrlist").unwrap_or_default())?;
    let rule = NewRule {
        uuid: uuid::Uuid::new_v4().to_string(),
        purpose: Purpose::Firewall,
        traffic: Some(Traffic::Egress),
        network_id: net.id,
        ip_id: None,
        account_id: net.account_id,
        protocol: proto,
        ports,
        icmp,
        sources,
        dests,
        related_id: None,
        display: p.bool("fordisplay").unwrap_or(true),
        vm_id: None,
        vm_ip: None,
        private: None,
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
    };
    let payload = Payload::new(
        Outcome::Rule {
            id: 0,
            object: "firewallrule".into(),
        },
        "FIREWALL.EGRESS.OPEN",
        format!("creating egress firewall rule on network {}", net.uuid),
        "Failed to create firewall rule",
    );
    create_rule(
        app,
        caller,
        "createEgressFirewallRule",
        rule,
        false,
        payload,
    )
    .await
}

/// Marks a rule (and the firewall rules it opened) Revoke, with a job that pushes the change.
pub(crate) async fn revoke(
    app: &App,
    caller: &Caller,
    command: &str,
    rule: &Rule,
    failure: &str,
) -> ApiResult<Value> {
    let network = NetworkId::from(rule.network_id);
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let description = format!("{command} for rule {}", rule.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Success,
                    event_type(command),
                    format!("deleting rule {}", rule.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: event_type(command),
                description: &description,
                resource_uuid: Some(&rule.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::rules::revoke(change.conn(), RuleId::from(rule.id), job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

fn is_egress(r: &Rule) -> bool {
    r.traffic == Some(Traffic::Egress)
}

/// deleteFirewallRule / deleteEgressFirewallRule.
pub(crate) async fn delete(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::Firewall || is_egress(&rule) != egress {
        return Err(unknown(p, "id"));
    }
    let (command, failure) = if egress {
        (
            "deleteEgressFirewallRule",
            "Failed to delete egress firewall rule",
        )
    } else {
        ("deleteFirewallRule", "Failed to delete firewall rule")
    };
    revoke(app, caller, command, &rule, failure).await
}

/// Lists rules of one purpose (and direction) as CloudStack's list answer, built as JSON text
/// by the database: a 10k-rule listing is one text column per row, not thirty values.
async fn list_rules(
    app: &App,
    caller: &Caller,
    p: &Params,
    purpose: Purpose,
    traffic: Option<Traffic>,
    key: &str,
) -> ApiResult<String> {
    super::visible_filter(app, caller, p, "id", "rules").await?;
    super::visible_filter(app, caller, p, "ipaddressid", "public_ips").await?;
    super::visible_filter(app, caller, p, "networkid", "networks").await?;
    let mut cond = format!("r.purpose = '{}'", purpose.as_str());
    if let Some(t) = traffic {
        cond.push_str(&format!(" AND r.traffic_type = '{}'", t.as_str()));
    }
    let mut binds: Vec<String> = Vec::new();
    let mut eq = |cond: &mut String, col: &str, v: &str| {
        binds.push(v.to_string());
        cond.push_str(&format!(" AND {col} = ${}", binds.len()));
    };
    if let Some(id) = p.str("id") {
        eq(&mut cond, "r.uuid", id);
    }
    for (param, col) in [("ipaddressid", "p.uuid"), ("networkid", "n.uuid")] {
        if p.spec().param(param).is_some() {
            if let Some(v) = p.str(param) {
                eq(&mut cond, col, v);
            }
        }
    }
    if let Some(account) = scope(app, caller, p).await? {
        cond.push_str(&format!(" AND r.account_id = {account}"));
    }
    if p.spec().param("fordisplay").is_some() {
        if let Some(d) = p.bool("fordisplay") {
            cond.push_str(&format!(" AND r.display = {}", i64::from(d)));
        }
    }
    if let Some(k) = p.str("keyword").filter(|k| !k.is_empty()) {
        let pattern = format!("%{}%", k.to_ascii_lowercase());
        binds.push(pattern);
        let n = binds.len();
        cond.push_str(&format!(
            " AND (LOWER(r.protocol) LIKE ${n} OR LOWER(r.uuid) LIKE ${n} \
             OR LOWER(COALESCE(r.name, '')) LIKE ${n})"
        ));
    }
    let object = rule_json_stored(app.db.dialect(), purpose, caller.admin);
    let from = "rules r JOIN networks n ON n.id = r.network_id \
                LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id";
    let paging = p.paging();
    // A page needs the rows in order before it is cut; the whole list is ordered once, by
    // the aggregate.
    let limit = match paging.size {
        Some(n) => format!(" ORDER BY r.id DESC LIMIT {n} OFFSET {}", paging.start),
        None => String::new(),
    };
    // CloudStack lists firewall and forwarding rules newest first.
    // One row: the page's objects joined by the database, and how many there are.
    let sql = format!(
        "SELECT string_agg(j, ',' ORDER BY id DESC) AS items, COUNT(*) AS n FROM \
         (SELECT r.id AS id, {object} AS j FROM {from} WHERE {cond}{limit}) page"
    );
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let row = q.fetch_one(app.db.pool()).await.map_err(internal)?;
    let items: Option<String> = row.try_get("items").map_err(internal)?;
    let n = usize::try_from(row.try_get::<i64, _>("n").map_err(internal)?).unwrap_or(0);
    let total = if paging.start == 0 && paging.size.is_none_or(|size| n < size) {
        n
    } else {
        let count = format!("SELECT COUNT(*) AS c FROM {from} WHERE {cond}");
        let mut q = sqlx::query(&count);
        for b in &binds {
            q = q.bind(b.clone());
        }
        let c: i64 = q
            .fetch_one(app.db.pool())
            .await
            .map_err(internal)?
            .try_get("c")
            .map_err(internal)?;
        usize::try_from(c).unwrap_or(0)
    };
    if total == 0 {
        return Ok("{}".to_string());
    }
    let items = items.unwrap_or_default();
    let mut out = String::with_capacity(items.len() + 64);
    out.push_str(&format!("{{\"count\":{total},\"{key}\":["));
    out.push_str(&items);
    out.push_str("]}");
    Ok(out)
}

/// One firewall or forwarding rule as the API shows it (with the administrators' fields).
pub(crate) async fn rule_value(app: &App, id: i64, purpose: Purpose) -> ApiResult<Value> {
    rule_value_in(app.db.pool(), app.db.dialect(), id, purpose)
        .await
        .map_err(internal)
}

/// [`rule_value`] through any executor: a pool, or a transaction that sees its own writes.
///
/// # Errors
/// The query's error, or a stored object that is not JSON.
pub(crate) async fn rule_value_in<'e, E>(
    exec: E,
    dialect: Dialect,
    id: i64,
    purpose: Purpose,
) -> Result<Value, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let object = rule_json(dialect, purpose, true);
    let sql = format!(
        "SELECT {object} AS j FROM rules r JOIN networks n ON n.id = r.network_id \
         LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id \
         WHERE r.id = $1"
    );
    let text: String = sqlx::query(&sql)
        .bind(id)
        .fetch_one(exec)
        .await?
        .try_get("j")?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The JSON object of a firewall rule (CloudStack's FirewallResponse: ports as numbers) or a
/// forwarding rule (FirewallRuleResponse: ports as strings), as an SQL expression over `r`,
/// `n`, `p` and `v`, so that lists of thousands are built by the database. The one renderer of
/// these two objects.
fn rule_json(d: Dialect, purpose: Purpose, admin: bool) -> String {
    with_volatile(&stable_json(d, purpose), admin)
}

/// The object of a rule with its stored stable part (rendered again if it is missing).
fn rule_json_stored(d: Dialect, purpose: Purpose, admin: bool) -> String {
    with_volatile(
        &format!("COALESCE(r.json, {})", stable_json(d, purpose)),
        admin,
    )
}

/// The object of a rule from `members` (the stable members' JSON text, without braces) and
/// the fields that change while a rule lives: its state and, for administrators,
/// `fordisplay`. `concat` over stored texts is the cheapest way both databases know.
fn with_volatile(members: &str, admin: bool) -> String {
    let display = if admin {
        ", ',\"fordisplay\":', CASE WHEN r.display <> 0 THEN 'true' ELSE 'false' END"
    } else {
        ""
    };
    format!(
        "concat('{{', {members}, ',\"state\":\"', \
         CASE r.state WHEN 'Revoke' THEN 'Deleting' ELSE r.state END, '\"'{display}, '}}')"
    )
}

/// The members of a rule's object that stay as written (everything but state and
/// `fordisplay`), without braces, over `r`, `n`, `p` and `v`.
fn stable_json(d: Dialect, purpose: Purpose) -> String {
    let f: Vec<(&str, J<'_>)> = match purpose {
        Purpose::PortForwarding => vec![
            ("id", J::Text("r.uuid")),
            ("privateport", J::IntText("r.private_start")),
            ("privateendport", J::IntText("r.private_end")),
            ("publicport", J::IntText("r.start_port")),
            ("publicendport", J::IntText("r.end_port")),
            ("protocol", J::Text("r.protocol")),
            ("virtualmachineid", J::Text("v.uuid")),
            ("virtualmachinename", J::Text("v.name")),
            (
                "virtualmachinedisplayname",
                J::Text("COALESCE(v.display_name, v.name)"),
            ),
            ("ipaddressid", J::Text("p.uuid")),
            ("ipaddress", J::Text("p.address")),
            ("cidrlist", J::Text("r.source_cidrs")),
            ("tags", J::EmptyArray),
            ("vmguestip", J::Text("r.vm_ip")),
            ("networkid", J::Text("n.uuid")),
        ],
        _ => vec![
            ("id", J::Text("r.uuid")),
            ("protocol", J::Text("r.protocol")),
            ("startport", J::Int("r.start_port")),
            ("endport", J::Int("r.end_port")),
            ("ipaddressid", J::Text("p.uuid")),
            ("ipaddress", J::Text("p.address")),
            ("networkid", J::Text("n.uuid")),
            ("cidrlist", J::Text("r.source_cidrs")),
            ("icmptype", J::Int("r.icmp_type")),
            ("icmpcode", J::Int("r.icmp_code")),
            ("tags", J::EmptyArray),
            ("destcidrlist", J::Text("r.dest_cidrs")),
            (
                "traffictype",
                J::Text("COALESCE(r.traffic_type, 'Ingress')"),
            ),
        ],
    };
    d.json_fields(&f)
}

/// Renders and stores the stable part of a firewall or forwarding rule's object; called in
/// the transaction that writes the rule's stable fields.
pub(crate) async fn store_json<'e>(
    to: impl sqlx::Executor<'e, Database = Any>,
    d: Dialect,
    id: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE rules SET json = (SELECT CASE r.purpose WHEN 'PortForwarding' THEN {} ELSE {} END \
         FROM rules r JOIN networks n ON n.id = r.network_id \
         LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id \
         WHERE r.id = $1) WHERE id = $1 AND purpose <> 'LoadBalancing'",
        stable_json(d, Purpose::PortForwarding),
        stable_json(d, Purpose::Firewall)
    );
    sqlx::query(&sql).bind(id).execute(to).await?;
    Ok(())
}

/// listFirewallRules / listEgressFirewallRules, as JSON text.
pub(crate) async fn list(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<String> {
    let traffic = if egress {
        Traffic::Egress
    } else {
        Traffic::Ingress
    };
    list_rules(
        app,
        caller,
        p,
        Purpose::Firewall,
        Some(traffic),
        "firewallrule",
    )
    .await
}

/// updateFirewallRule / updateEgressFirewallRule: only `fordisplay` (and `customid`) change;
/// nothing goes to the router, so the job ends at once.
pub(crate) async fn update_display(
    app: &App,
    caller: &Caller,
    p: &Params,
    egress: bool,
) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::Firewall || is_egress(&rule) != egress {
        return Err(unknown(p, "id"));
    }
    let command = if egress {
        "updateEgressFirewallRule"
    } else {
        "updateFirewallRule"
    };
    metadata_update(app, caller, p, command, &rule, "firewallrule", None).await
}

/// Refuses to rewrite a rule while a pending job still carries it (its creation, or an
/// earlier update): a row carries one job at a time, the one whose generation brings its
/// values to the router, and a second change would take the row from under that job.
///
/// # Errors
/// 431 naming the job, or 530 when the database fails.
pub(crate) async fn refuse_if_in_flight(
    tx: &mut Transaction<'_, Any>,
    rule: &Rule,
) -> ApiResult<()> {
    let busy = sqlx::query(
        "SELECT j.uuid FROM rules r JOIN jobs j ON j.id = r.job_id \
         WHERE r.id = $1 AND j.status = 0",
    )
    .bind(rule.id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(internal)?;
    match busy {
        Some(row) => {
            let job: String = row.try_get("uuid").map_err(internal)?;
            Err(ApiError::invalid_parameter(format!(
                "Unable to update the rule {}: job {job} is still applying an earlier change \
                 of it; try again when that job ends",
                rule.uuid
            )))
        }
        None => Ok(()),
    }
}

/// An update that touches no router state: rows change and the job is written already ended,
/// so no generation is made. The fields it writes (name, description, display flag) are not
/// part of any router config, so the rule keeps the job that last changed what the router
/// holds: marking it with this job would let the rule reach the router without the job that
/// brings it (a creation still pending), and a refused creation would then leave it behind.
pub(crate) async fn metadata_update(
    app: &App,
    caller: &Caller,
    p: &Params,
    command: &str,
    rule: &Rule,
    object: &str,
    name_desc: Option<(Option<&str>, Option<&str>)>,
) -> ApiResult<Value> {
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let (name, description) = name_desc.unwrap_or((None, None));
    store::rules::set_metadata(
        change.conn(),
        RuleId::from(rule.id),
        p.bool("fordisplay"),
        name,
        description,
    )
    .await
    .map_err(store_error)?;
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: None,
                payload: Payload::new(
                    Outcome::Rule {
                        id: rule.id,
                        object: object.into(),
                    },
                    event_type(command),
                    format!("updating rule {}", rule.uuid),
                    "Failed to update rule",
                ),
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&rule.uuid),
            },
            None,
        )
        .await
        .map_err(store_error)?;
    // Nothing for a router: the receipt names no network.
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    // Read back and end the job in place.
    let result = super::rule_object(app, rule.id, object).await?;
    let mut change = app.db.change(None).await.map_err(store_error)?;
    store::jobs::finish(change.conn(), job_id, JobStatus::Succeeded, 0, &result)
        .await
        .map_err(store_error)?;
    store::events::event(
        change.conn(),
        caller.account_id,
        caller.user_id,
        event_type(command),
        "INFO",
        "Completed",
        &format!("Successfully completed updating rule {}", rule.uuid),
        Some(&rule.uuid),
        Some(&job_uuid),
    )
    .await
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// createPortForwardingRule.
pub(crate) async fn create_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let (ip, net) = rule_ip(app, caller, p, "ipaddressid").await?;
    // Every address here is associated already, so `networkid` adds nothing; an id naming no
    // network the caller may see is still refused as CloudStack refuses an unknown id.
    if p.str("networkid").is_some_and(|s| !s.is_empty()) {
        super::network_param(app, caller, p, "networkid").await?;
    }
    let proto = protocol(p, &["tcp", "udp"], &app.site.zone_name)?;
    let public = checks::port_range(
        "publicport",
        p.int("publicport"),
        "publicendport",
        p.int("publicendport"),
    )?
    .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "publicport"))?;
    let private = checks::port_range(
        "privateport",
        p.int("privateport"),
        "privateendport",
        p.int("privateendport"),
    )?
    .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "privateport"))?;
    check_forward_ranges(public, private)?;
    let (vm_id, vm_ip) = forward_target(app, caller, p, &net).await?;
    let sources = checks::cidr_list("cidrlist", &p.list("cidrlist").unwrap_or_default())?;
    let rule = NewRule {
        uuid: uuid::Uuid::new_v4().to_string(),
        purpose: Purpose::PortForwarding,
        traffic: None,
        network_id: net.id,
        ip_id: Some(ip.id),
        account_id: ip.account_id.unwrap_or(net.account_id),
        protocol: proto,
        ports: Some(public),
        icmp: None,
        sources,
        dests: Vec::new(),
        related_id: None,
        display: p.bool("fordisplay").unwrap_or(true),
        vm_id: Some(vm_id),
        vm_ip: Some(vm_ip),
        private: Some(private),
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
    };
    let payload = Payload::new(
        Outcome::Rule {
            id: 0,
            object: "portforwardingrule".into(),
        },
        "NET.RULEADD",
        format!("creating port forwarding rule on {}", ip.address),
        "Failed to apply port forwarding rule",
    );
    let open = p.bool("openfirewall").unwrap_or(true);
    create_rule(app, caller, "createPortForwardingRule", rule, open, payload).await
}

/// CloudStack's range rules: private start ≤ end (checked by the parser), both ranges the same
/// size, and a real range is not shifted (public equals private).
pub(crate) fn check_forward_ranges(public: (i64, i64), private: (i64, i64)) -> ApiResult<()> {
    if public.1 - public.0 != private.1 - private.0 {
        return Err(ApiError::invalid_parameter(
            "Private port range and public port range must be of the same size",
        ));
    }
    if public.0 != public.1 && public != private {
        return Err(ApiError::invalid_parameter(
            "Port ranges can only be forwarded to the same ports: public start must equal private start and public end must equal private end",
        ));
    }
    Ok(())
}

/// The VM and address a forward sends to: a VM of the rule's network, and its address
/// (`vmguestip`, when given, must be that address).
async fn forward_target(
    app: &App,
    caller: &Caller,
    p: &Params,
    net: &NetworkRow,
) -> ApiResult<(i64, String)> {
    let vm_uuid = required(p, "virtualmachineid")?;
    let row = sqlx::query("SELECT id, ip, network_id, account_id, state FROM vms WHERE uuid = $1")
        .bind(vm_uuid)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "virtualmachineid"))?;
    let account: i64 = row.try_get("account_id").map_err(internal)?;
    if !caller.may_touch(account) {
        return Err(unknown(p, "virtualmachineid"));
    }
    let network_id: i64 = row.try_get("network_id").map_err(internal)?;
    let ip: String = row.try_get("ip").map_err(internal)?;
    if network_id != net.id {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to create port forwarding rule: vm {vm_uuid} has no nic in network {}",
            net.uuid
        )));
    }
    if let Some(g) = p.str("vmguestip").filter(|g| !g.is_empty()) {
        if g != ip {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid vm guest ip {g}: vm {vm_uuid} has address {ip}"
            )));
        }
    }
    Ok((row.try_get("id").map_err(internal)?, ip))
}

/// deletePortForwardingRule.
pub(crate) async fn delete_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::PortForwarding {
        return Err(unknown(p, "id"));
    }
    revoke(
        app,
        caller,
        "deletePortForwardingRule",
        &rule,
        "Failed to delete port forwarding rule",
    )
    .await
}

/// listPortForwardingRules.
pub(crate) async fn list_forwards(app: &App, caller: &Caller, p: &Params) -> ApiResult<String> {
    list_rules(
        app,
        caller,
        p,
        Purpose::PortForwarding,
        None,
        "portforwardingrule",
    )
    .await
}

/// updatePortForwardingRule: a new target or private ports go to the router on their own
/// generation; if the router refuses, the old values come back.
pub(crate) async fn update_forward(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let rule = rule_param(app, caller, p, "id").await?;
    if rule.purpose != Purpose::PortForwarding {
        return Err(unknown(p, "id"));
    }
    if rule.state == State::Revoke {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to update the rule {}: it is being deleted",
            rule.uuid
        )));
    }
    let net = network_by_id(app, rule.network_id).await?;
    let public = (
        rule.start_port.unwrap_or(0),
        rule.end_port.unwrap_or(rule.start_port.unwrap_or(0)),
    );
    let old_private = (
        rule.private_start.unwrap_or(0),
        rule.private_end.unwrap_or(0),
    );
    let private = match (p.int("privateport"), p.int("privateendport")) {
        (None, None) => old_private,
        (Some(s), e) => {
            checks::port_range("privateport", Some(s), "privateendport", e)?.unwrap_or(old_private)
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_parameter(
                "privateendport needs privateport",
            ))
        }
    };
    check_forward_ranges(public, private)?;
    let (vm_id, vm_ip) = if p.str("virtualmachineid").is_some() {
        let (id, ip) = forward_target(app, caller, p, &net).await?;
        (Some(id), Some(ip))
    } else {
        if p.str("vmguestip").is_some() {
            return Err(ApiError::invalid_parameter(
                "vmguestip needs virtualmachineid",
            ));
        }
        (rule.vm_id, rule.vm_ip.map(|ip| ip.to_string()))
    };
    let sources = match p.list("cidrlist") {
        Some(l) => checks::cidr_list("cidrlist", &l)?,
        None => rule
            .source_cidrs
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    };
    let changed = private != old_private
        || vm_id != rule.vm_id
        || vm_ip != rule.vm_ip.map(|ip| ip.to_string())
        || checks::join_cidrs(&sources) != rule.source_cidrs.join(",");
    if !changed {
        return metadata_update(
            app,
            caller,
            p,
            "updatePortForwardingRule",
            &rule,
            "portforwardingrule",
            None,
        )
        .await;
    }
    // The new values must not clash with the other forwards of the IP.
    let network = NetworkId::from(rule.network_id);
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    refuse_if_in_flight(change.conn(), &rule).await?;
    if let Some(ip_id) = rule.ip_id {
        let mut me = Candidate::of(&rule);
        me.sources = sources.clone();
        let others = store::rules::ip_neighbours(change.conn(), ip_id.into(), Some(public))
            .await
            .map_err(store_error)?;
        let others: Vec<Candidate> = others.into_iter().filter(|c| c.uuid != rule.uuid).collect();
        checks::conflicts(&me, &others)?;
    }
    let undo = Undo {
        rule_id: rule.id,
        algorithm: rule.algorithm.clone(),
        source_cidrs: rule.source_cidrs.join(","),
        vm_id: rule.vm_id,
        vm_ip: rule.vm_ip.map(|ip| ip.to_string()),
        private_start: rule.private_start,
        private_end: rule.private_end,
    };
    let mut pl = Payload::new(
        Outcome::Rule {
            id: rule.id,
            object: "portforwardingrule".into(),
        },
        "NET.RULEMODIFY",
        format!("updating port forwarding rule {}", rule.uuid),
        "Failed to apply the new port forwarding rule",
    );
    pl.undo = Some(undo);
    // CloudStack records no scheduled event for this command.
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command: "updatePortForwardingRule",
                kind: Kind::Update,
                network_id: Some(network),
                payload: pl,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&rule.uuid),
            },
            None,
        )
        .await
        .map_err(store_error)?;
    // The row carries the update's job, as every write a router sees does: the network's
    // worker reads the rows of the jobs it takes, so its copy gets the new values.
    sqlx::query(
        "UPDATE rules SET private_start = $1, private_end = $2, vm_id = $3, vm_ip = $4, \
         source_cidrs = $5, display = $6, job_id = $7 WHERE id = $8",
    )
    .bind(private.0)
    .bind(private.1)
    .bind(vm_id)
    .bind(vm_ip)
    .bind(checks::join_cidrs(&sources))
    .bind(i64::from(p.bool("fordisplay").unwrap_or(rule.display)))
    .bind(job_id.get())
    .bind(rule.id)
    .execute(&mut **change.conn())
    .await
    .map_err(internal)?;
    store_json(&mut **change.conn(), app.db.dialect(), rule.id)
        .await
        .map_err(internal)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

#[cfg(test)]
mod tests {
    use super::check_forward_ranges;

    #[test]
    fn forward_ranges_follow_cloudstack() {
        assert!(check_forward_ranges((2222, 2222), (22, 22)).is_ok());
        assert!(check_forward_ranges((8000, 8010), (8000, 8010)).is_ok());
        assert!(check_forward_ranges((8000, 8010), (9000, 9010)).is_err());
        assert!(check_forward_ranges((8000, 8010), (8000, 8011)).is_err());
    }
}
