//! The one renderer of a firewall rule's and a forwarding rule's API object, as SQL over the
//! rule's row, so that the database builds thousands of objects for a listing as one text
//! column per row.
//!
//! An object has a stable part (everything the rule's own writes fix) and a volatile part
//! (its state, for administrators `fordisplay`, and its tags). The stable part is rendered once, when
//! the rule's stable fields are written, and kept in `rules.json` ([`store_json`]); a listing
//! adds the volatile part to it ([`listed_object`]), and a single rule is rendered whole
//! ([`object_json`]).

use domain::ids::RuleId;
use domain::model::Purpose;
use serde_json::Value;
use sqlx::{Any, Executor, Row};

use crate::db::{Dialect, J};
use crate::error::StoreError;

/// The `FROM` clause the object expressions read: the rule `r`, its network `n`, its public
/// IP `p` and its target VM `v`.
pub const OBJECT_FROM: &str = "rules r JOIN networks n ON n.id = r.network_id \
     LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id";

/// The JSON object of a firewall rule (CloudStack's FirewallResponse: ports as numbers) or a
/// forwarding rule (FirewallRuleResponse: ports as strings), rendered whole, as an SQL
/// expression over [`OBJECT_FROM`].
pub fn object_sql(d: Dialect, purpose: Purpose, admin: bool) -> String {
    with_volatile(&stable_json(d, purpose), admin)
}

/// The object of a rule from its stored stable part (rendered again if it is missing), as an
/// SQL expression over [`OBJECT_FROM`]: what a listing shows.
pub fn listed_object(d: Dialect, purpose: Purpose, admin: bool) -> String {
    with_volatile(
        &format!("COALESCE(r.json, {})", stable_json(d, purpose)),
        admin,
    )
}

/// The object of a rule from `members` (the stable members' JSON text, without braces) and
/// the fields that change while a rule lives: its state, for administrators `fordisplay`, and
/// its tags (`rules.tags`, rendered by `crate::tags` whenever they change). `concat` over stored texts is the cheapest way both databases know.
fn with_volatile(members: &str, admin: bool) -> String {
    let display = if admin {
        ", ',\"fordisplay\":', CASE WHEN r.display <> 0 THEN 'true' ELSE 'false' END"
    } else {
        ""
    };
    format!(
        "concat('{{', {members}, ',\"state\":\"', \
         CASE r.state WHEN 'Revoke' THEN 'Deleting' ELSE r.state END, '\"'{display}, \
         ',\"tags\":', COALESCE(r.tags, '[]'), '}}')"
    )
}

/// The members of a rule's object that stay as written (everything but state and
/// `fordisplay`), without braces, over [`OBJECT_FROM`].
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
            ("vmguestip", J::Text("r.vm_ip")),
            ("networkid", J::Text("n.uuid")),
        ],
        // CloudStack's IpForwardingRuleResponse.
        Purpose::StaticNat => vec![
            ("id", J::Text("r.uuid")),
            ("protocol", J::Text("r.protocol")),
            ("virtualmachineid", J::Text("v.uuid")),
            ("virtualmachinename", J::Text("v.name")),
            (
                "virtualmachinedisplayname",
                J::Text("COALESCE(v.display_name, v.name)"),
            ),
            ("ipaddressid", J::Text("p.uuid")),
            ("ipaddress", J::Text("p.address")),
            ("startport", J::Int("r.start_port")),
            ("endport", J::Int("r.end_port")),
            ("vmguestip", J::Text("r.vm_ip")),
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
            ("destcidrlist", J::Text("r.dest_cidrs")),
            (
                "traffictype",
                J::Text("COALESCE(r.traffic_type, 'Ingress')"),
            ),
        ],
    };
    d.json_fields(&f)
}

/// Renders and stores the stable part of a firewall or forwarding rule's object (a balancer's
/// is rendered elsewhere: nothing is written for one). Call it in the transaction that writes
/// the rule's stable fields, or right after its commit.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn store_json<'e>(
    to: impl Executor<'e, Database = Any>,
    d: Dialect,
    rule: RuleId,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE rules SET json = (SELECT CASE r.purpose WHEN 'PortForwarding' THEN {} \
         WHEN 'StaticNat' THEN {} ELSE {} END \
         FROM {OBJECT_FROM} WHERE r.id = $1) WHERE id = $1 AND purpose <> 'LoadBalancing'",
        stable_json(d, Purpose::PortForwarding),
        stable_json(d, Purpose::StaticNat),
        stable_json(d, Purpose::Firewall)
    );
    sqlx::query(&sql)
        .bind(rule.get())
        .execute(to)
        .await
        .map_err(StoreError::db("storing a rule's object"))?;
    Ok(())
}

/// One firewall or forwarding rule's object as the API shows it, with the administrators'
/// fields, through any executor: a pool, or a transaction that sees its own writes.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::NotFound`] when there is no such rule;
/// [`StoreError::Corrupt`] when the rendered object is not JSON.
pub async fn object_json<'e>(
    exec: impl Executor<'e, Database = Any>,
    d: Dialect,
    rule: RuleId,
    purpose: Purpose,
) -> Result<Value, StoreError> {
    const W: &str = "rendering a rule's object";
    let sql = format!(
        "SELECT {} AS j FROM {OBJECT_FROM} WHERE r.id = $1",
        object_sql(d, purpose, true)
    );
    let text: String = sqlx::query(&sql)
        .bind(rule.get())
        .fetch_optional(exec)
        .await
        .map_err(StoreError::db(W))?
        .ok_or(StoreError::NotFound {
            what: "rule",
            id: rule.get(),
        })?
        .try_get("j")
        .map_err(StoreError::db(W))?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt {
        table: "rules",
        column: "json",
        value: text,
    })
}
