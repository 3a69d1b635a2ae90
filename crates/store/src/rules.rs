//! The rules table and the rows a router's config is built from: how they are read (the
//! columns and the decoding of [`Rule`], [`MemberRow`], [`PolicyRow`], [`IpRow`] and
//! [`NetworkRow`]), and the statements a rule-creating handler makes.
//!
//! A stored value this program does not know (a state, a purpose, an address) is
//! [`StoreError::Corrupt`], never a default.
//!
//! The API objects of firewall and forwarding rules are rendered here too, in SQL ([`json`]),
//! as are their listings ([`list`]) and the reads and writes of a change to an existing rule
//! ([`forwards`]).

pub mod forwards;
pub mod json;
pub mod list;

pub use json::{object_json, store_json};

/// The transaction a change's statements run in (what [`crate::ChangeTx::conn`] gives), named
/// so that callers need not name the database library.
pub type Tx<'c> = Transaction<'c, Any>;

use std::net::Ipv4Addr;
use std::str::FromStr;

use domain::checks::{self, Candidate};
use domain::ids::{IpId, JobId, NetworkId, RuleId, VmId};
use domain::model::{split_list, IpRow, MemberRow, NetworkRow, NewRule, PolicyRow, Rule, Traffic};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::now_ms;
use crate::error::StoreError;

/// The columns [`rule`] reads, from [`RULE_FROM`].
pub const RULE_COLUMNS: &str = "r.id, r.uuid, r.purpose, r.traffic_type, r.network_id, r.ip_id, \
     p.address AS ip_address, r.account_id, r.protocol, r.start_port, r.end_port, r.icmp_type, \
     r.icmp_code, r.source_cidrs, r.dest_cidrs, r.state, r.applied, r.job_id, r.related_id, \
     r.display, r.vm_id, r.vm_ip, r.private_start, r.private_end, r.name, r.description, \
     r.algorithm, r.lb_protocol, r.created, n.uuid AS network_uuid, p.uuid AS ip_uuid, \
     v.uuid AS vm_uuid, v.name AS vm_name, v.display_name AS vm_display";

/// The `FROM` clause for [`RULE_COLUMNS`].
pub const RULE_FROM: &str = "rules r JOIN networks n ON n.id = r.network_id \
     LEFT JOIN public_ips p ON p.id = r.ip_id LEFT JOIN vms v ON v.id = r.vm_id";

/// Columns for [`policy`].
pub const POLICY_COLUMNS: &str =
    "id, uuid, lb_id, kind, name, description, method, params, state, applied, job_id, display";

/// Columns for [`ip`].
pub const IP_COLUMNS: &str = "id, uuid, address, state, account_id, network_id, source_nat, \
     job_id, applied, allocated, vlan_range_id, zone_id, nat_vm_id, nat_vm_ip, nat_state, \
     nat_applied";

/// Columns for [`network`], for `networks n JOIN network_offerings o`.
pub const NETWORK_COLUMNS: &str = "n.id, n.uuid, n.name, n.display_text, n.account_id, \
     n.zone_id, n.offering_id, n.cidr, n.gateway, n.state, o.egress_default_allow, n.created, \
     n.vlan, n.network_domain";

/// A column read as `T`, or a database error while reading `what`.
fn get<'r, T>(row: &'r AnyRow, col: &str, what: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(col).map_err(StoreError::db(what))
}

/// An id column.
fn id<T: From<i64>>(row: &AnyRow, col: &str, what: &'static str) -> Result<T, StoreError> {
    get::<i64>(row, col, what).map(T::from)
}

/// A nullable id column.
fn id_opt<T: From<i64>>(
    row: &AnyRow,
    col: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    Ok(get::<Option<i64>>(row, col, what)?.map(T::from))
}

/// A 0/1 column as a boolean.
fn flag(row: &AnyRow, col: &str, what: &'static str) -> Result<bool, StoreError> {
    Ok(get::<i64>(row, col, what)? != 0)
}

/// A text column parsed as `T`; anything unknown is [`StoreError::Corrupt`].
fn parsed<T>(
    row: &AnyRow,
    table: &'static str,
    col: &'static str,
    what: &'static str,
) -> Result<T, StoreError>
where
    T: FromStr,
{
    let text: String = get(row, col, what)?;
    text.parse().map_err(|_| StoreError::Corrupt {
        table,
        column: col,
        value: text,
    })
}

/// An optional text column parsed as `T`.
fn parsed_opt<T>(
    row: &AnyRow,
    table: &'static str,
    col: &'static str,
    what: &'static str,
) -> Result<Option<T>, StoreError>
where
    T: FromStr,
{
    let Some(text) = get::<Option<String>>(row, col, what)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| StoreError::Corrupt {
        table,
        column: col,
        value: text,
    })
}

fn state_of(
    row: &AnyRow,
    table: &'static str,
    what: &'static str,
) -> Result<domain::model::State, StoreError> {
    parsed(row, table, "state", what)
}

/// Reads a row selected with [`RULE_COLUMNS`].
///
/// # Errors
/// [`StoreError::Db`] for a missing column; [`StoreError::Corrupt`] for an unknown value.
pub fn rule(row: &AnyRow) -> Result<Rule, StoreError> {
    const W: &str = "reading a rule";
    Ok(Rule {
        id: id(row, "id", W)?,
        uuid: get(row, "uuid", W)?,
        purpose: parsed(row, "rules", "purpose", W)?,
        traffic: parsed_opt::<Traffic>(row, "rules", "traffic_type", W)?,
        network_id: id(row, "network_id", W)?,
        ip_id: id_opt(row, "ip_id", W)?,
        ip: parsed_opt::<Ipv4Addr>(row, "public_ips", "ip_address", W)?,
        account_id: id(row, "account_id", W)?,
        protocol: get(row, "protocol", W)?,
        start_port: get(row, "start_port", W)?,
        end_port: get(row, "end_port", W)?,
        icmp_type: get(row, "icmp_type", W)?,
        icmp_code: get(row, "icmp_code", W)?,
        source_cidrs: split_list(&get::<String>(row, "source_cidrs", W)?),
        dest_cidrs: split_list(&get::<String>(row, "dest_cidrs", W)?),
        state: state_of(row, "rules", W)?,
        applied: flag(row, "applied", W)?,
        job_id: id_opt(row, "job_id", W)?,
        related_id: id_opt(row, "related_id", W)?,
        display: flag(row, "display", W)?,
        vm_id: id_opt(row, "vm_id", W)?,
        vm_ip: parsed_opt::<Ipv4Addr>(row, "rules", "vm_ip", W)?,
        private_start: get(row, "private_start", W)?,
        private_end: get(row, "private_end", W)?,
        name: get(row, "name", W)?,
        description: get(row, "description", W)?,
        algorithm: get(row, "algorithm", W)?,
        lb_protocol: get(row, "lb_protocol", W)?,
        created: get(row, "created", W)?,
        network_uuid: get(row, "network_uuid", W)?,
        ip_uuid: get(row, "ip_uuid", W)?,
        vm_uuid: get(row, "vm_uuid", W)?,
        vm_name: get(row, "vm_name", W)?,
        vm_display: get(row, "vm_display", W)?,
    })
}

/// Reads `SELECT id, lb_id, vm_id, vm_ip, state, applied, job_id FROM lb_members`.
///
/// # Errors
/// As [`rule`].
pub fn member(row: &AnyRow) -> Result<MemberRow, StoreError> {
    const W: &str = "reading a balancer member";
    Ok(MemberRow {
        id: id(row, "id", W)?,
        lb_id: id(row, "lb_id", W)?,
        vm_id: id(row, "vm_id", W)?,
        vm_ip: parsed(row, "lb_members", "vm_ip", W)?,
        state: state_of(row, "lb_members", W)?,
        applied: flag(row, "applied", W)?,
        job_id: id_opt(row, "job_id", W)?,
    })
}

/// Reads a row selected with [`POLICY_COLUMNS`].
///
/// # Errors
/// As [`rule`].
pub fn policy(row: &AnyRow) -> Result<PolicyRow, StoreError> {
    const W: &str = "reading a balancer policy";
    Ok(PolicyRow {
        id: id(row, "id", W)?,
        uuid: get(row, "uuid", W)?,
        lb_id: id(row, "lb_id", W)?,
        kind: parsed(row, "lb_policies", "kind", W)?,
        name: get(row, "name", W)?,
        description: get(row, "description", W)?,
        method: get(row, "method", W)?,
        params: get(row, "params", W)?,
        state: state_of(row, "lb_policies", W)?,
        applied: flag(row, "applied", W)?,
        job_id: id_opt(row, "job_id", W)?,
        display: flag(row, "display", W)?,
    })
}

/// Reads a row selected with [`IP_COLUMNS`].
///
/// # Errors
/// As [`rule`].
pub fn ip(row: &AnyRow) -> Result<IpRow, StoreError> {
    const W: &str = "reading a public IP";
    Ok(IpRow {
        id: id(row, "id", W)?,
        uuid: get(row, "uuid", W)?,
        address: parsed(row, "public_ips", "address", W)?,
        state: get(row, "state", W)?,
        account_id: id_opt(row, "account_id", W)?,
        network_id: id_opt(row, "network_id", W)?,
        source_nat: flag(row, "source_nat", W)?,
        job_id: id_opt(row, "job_id", W)?,
        applied: flag(row, "applied", W)?,
        allocated: get(row, "allocated", W)?,
        vlan_range_id: id(row, "vlan_range_id", W)?,
        zone_id: id(row, "zone_id", W)?,
        nat: match id_opt(row, "nat_vm_id", W)? {
            None => None,
            Some(vm_id) => Some(domain::model::IpNat {
                vm_id,
                vm_ip: parsed(row, "public_ips", "nat_vm_ip", W)?,
                state: parsed(row, "public_ips", "nat_state", W)?,
                applied: flag(row, "nat_applied", W)?,
            }),
        },
    })
}

/// Reads a row selected with [`NETWORK_COLUMNS`].
///
/// # Errors
/// As [`rule`].
pub fn network(row: &AnyRow) -> Result<NetworkRow, StoreError> {
    const W: &str = "reading a network";
    Ok(NetworkRow {
        id: id(row, "id", W)?,
        uuid: get(row, "uuid", W)?,
        name: get(row, "name", W)?,
        display_text: get(row, "display_text", W)?,
        account_id: id(row, "account_id", W)?,
        zone_id: id(row, "zone_id", W)?,
        offering_id: get(row, "offering_id", W)?,
        cidr: parsed(row, "networks", "cidr", W)?,
        gateway: parsed(row, "networks", "gateway", W)?,
        state: get(row, "state", W)?,
        egress_allow: flag(row, "egress_default_allow", W)?,
        created: get(row, "created", W)?,
        vlan: get::<Option<i64>>(row, "vlan", W)?
            .map(|v| {
                u16::try_from(v).map_err(|_| StoreError::Corrupt {
                    table: "networks",
                    column: "vlan",
                    value: v.to_string(),
                })
            })
            .transpose()?,
        network_domain: get::<Option<String>>(row, "network_domain", W)?.unwrap_or_else(|| {
            domain::guest::default_network_domain(get(row, "account_id", W).unwrap_or(0))
        }),
    })
}

/// Writes a new rule in state Add, changed by `job`; returns its id (one row of
/// [`insert_many`]).
///
/// # Errors
/// As [`insert_many`].
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    r: &NewRule,
    job: Option<JobId>,
) -> Result<RuleId, StoreError> {
    let ids = insert_many(tx, &[(r, job)]).await?;
    ids.into_iter().next().ok_or_else(|| StoreError::Corrupt {
        table: "rules",
        column: "uuid",
        value: r.uuid.clone(),
    })
}

/// Writes new rules in state Add, each changed by its job, in as few statements as
/// [`crate::db::ROWS_PER_STATEMENT`] allows; returns their ids in the order given.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] when the database does not return a row
/// written.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    rules: &[(&NewRule, Option<JobId>)],
) -> Result<Vec<RuleId>, StoreError> {
    let mut out = Vec::with_capacity(rules.len());
    for chunk in rules.chunks(crate::db::ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO rules (uuid, purpose, traffic_type, network_id, ip_id, account_id, \
             protocol, start_port, end_port, icmp_type, icmp_code, source_cidrs, dest_cidrs, \
             state, applied, job_id, related_id, rule_type, display, vm_id, vm_ip, \
             private_start, private_end, name, description, algorithm, lb_protocol, created) \
             VALUES {} RETURNING id, uuid",
            crate::db::values_rows(
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'Add', 0, ?, ?, 'User', ?, ?, ?, ?, ?, \
                 ?, ?, ?, ?, ?)",
                chunk.len()
            )
        );
        let now = now_ms();
        let mut query = sqlx::query(&sql);
        for (r, job) in chunk {
            query = query
                .bind(r.uuid.clone())
                .bind(r.purpose.as_str())
                .bind(r.traffic.map(Traffic::as_str))
                .bind(r.network_id.get())
                .bind(r.ip_id.map(IpId::get))
                .bind(r.account_id.get())
                .bind(r.protocol.clone())
                .bind(r.ports.map(|p| p.0))
                .bind(r.ports.map(|p| p.1))
                .bind(r.icmp.map(|i| i.0))
                .bind(r.icmp.map(|i| i.1))
                .bind(checks::join_cidrs(&r.sources))
                .bind(checks::join_cidrs(&r.dests))
                .bind(job.map(JobId::get))
                .bind(r.related_id.map(RuleId::get))
                .bind(i64::from(r.display))
                .bind(r.vm_id.map(VmId::get))
                .bind(r.vm_ip.clone())
                .bind(r.private.map(|p| p.0))
                .bind(r.private.map(|p| p.1))
                .bind(r.name.clone())
                .bind(r.description.clone())
                .bind(r.algorithm.clone())
                .bind(r.lb_protocol.clone())
                .bind(now);
        }
        let rows = query
            .fetch_all(&mut **tx)
            .await
            .map_err(StoreError::db("inserting rules"))?;
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row
                .try_get("id")
                .map_err(StoreError::db("inserting rules"))?;
            let uuid: String = row
                .try_get("uuid")
                .map_err(StoreError::db("inserting rules"))?;
            ids.insert(uuid, id);
        }
        for (r, _) in chunk {
            let id = ids
                .get(&r.uuid)
                .copied()
                .ok_or_else(|| StoreError::Corrupt {
                    table: "rules",
                    column: "uuid",
                    value: r.uuid.clone(),
                })?;
            out.push(RuleId::from(id));
        }
    }
    Ok(out)
}

/// The SQL selecting the live rules on IP parameter `$ip` that a rule with ports `$s..=$e`
/// could meet: the port-less ones, and those whose end reaches `s` and whose start lies between
/// `s` − the widest range of any rule on the IP (none starting below that reaches `s`) and `e`.
/// The widest range is one step down the `rules_ip_width` index and each branch a range of the
/// `(ip_id, start_port)` index, so the read costs the rules found, not the rules on the IP. Two
/// branches, not one `OR`: SQLite without statistics plans an `OR` as a walk of every rule on
/// the IP.
fn meeting_ports(ip: usize, e: usize, s: usize) -> String {
    format!(
        "{} UNION ALL SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.state <> 'Revoke' \
         AND r.ip_id = ${ip} AND r.end_port >= ${s} AND r.start_port <= ${e} \
         AND r.start_port >= ${s} - COALESCE((SELECT max(w.end_port - w.start_port) \
         FROM rules w WHERE w.ip_id = ${ip}), 0)",
        portless(ip)
    )
}

/// The SQL selecting the live port-less rules on IP parameter `$ip`.
fn portless(ip: usize) -> String {
    format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.state <> 'Revoke' AND r.ip_id = ${ip} \
         AND r.start_port IS NULL"
    )
}

/// The live rules a new rule on a public IP could conflict with: same IP, and ports that
/// intersect `ports` (or no ports).
///
/// # Errors
/// As [`rule`].
pub async fn ip_neighbours(
    tx: &mut Transaction<'_, Any>,
    ip: IpId,
    ports: Option<(i64, i64)>,
) -> Result<Vec<Candidate>, StoreError> {
    let rows = match ports {
        Some((s, e)) => {
            sqlx::query(&meeting_ports(1, 2, 3))
                .bind(ip.get())
                .bind(e)
                .bind(s)
                .fetch_all(&mut **tx)
                .await
        }
        None => {
            sqlx::query(&portless(1))
                .bind(ip.get())
                .fetch_all(&mut **tx)
                .await
        }
    }
    .map_err(StoreError::db("reading an IP's rules"))?;
    rows.iter()
        .map(|r| rule(r).map(|r| Candidate::of(&r)))
        .collect()
}

/// A live rule as the conflict checks of a group of creations see it: the candidate, with the
/// IP and ports that [`ip_neighbours`] selects by.
#[derive(Debug, Clone)]
pub struct Neighbour {
    /// The rule's public IP.
    pub ip_id: Option<IpId>,
    start_port: Option<i64>,
    end_port: Option<i64>,
    /// What the checks compare.
    pub candidate: Candidate,
}

impl Neighbour {
    fn of(r: &Rule) -> Neighbour {
        Neighbour {
            ip_id: r.ip_id,
            start_port: r.start_port,
            end_port: r.end_port,
            candidate: Candidate::of(r),
        }
    }

    /// The rule `r` will be once [`insert`] has written it, as [`ip_neighbours`] and
    /// [`egress_neighbours_of`] would read it back.
    pub fn of_new(r: &NewRule) -> Neighbour {
        let mut candidate = r.candidate();
        candidate.icmp = (r.protocol == "icmp").then(|| r.icmp.unwrap_or((-1, -1)));
        Neighbour {
            ip_id: r.ip_id,
            start_port: r.ports.map(|p| p.0),
            end_port: r.ports.map(|p| p.1),
            candidate,
        }
    }

    /// Whether [`ip_neighbours`] with `ip` and `ports` selects this rule.
    pub fn meets(&self, ip: IpId, ports: Option<(i64, i64)>) -> bool {
        if self.ip_id != Some(ip) {
            return false;
        }
        match ports {
            None => self.start_port.is_none(),
            Some((s, e)) => match (self.start_port, self.end_port) {
                (None, _) => true,
                (Some(start), Some(end)) => start <= e && end >= s,
                (Some(_), None) => false,
            },
        }
    }
}

/// The live rules any of `wanted` (a public IP and the ports of a new rule on it) could
/// conflict with, in one statement: the union of what [`ip_neighbours`] reads for each, which
/// [`Neighbour::meets`] sorts out again.
///
/// # Errors
/// As [`rule`].
pub async fn ips_neighbours(
    tx: &mut Transaction<'_, Any>,
    wanted: &[(IpId, Option<(i64, i64)>)],
) -> Result<Vec<Neighbour>, StoreError> {
    let mut distinct: Vec<(IpId, Option<(i64, i64)>)> = Vec::new();
    for w in wanted {
        if !distinct.contains(w) {
            distinct.push(*w);
        }
    }
    if distinct.is_empty() {
        return Ok(Vec::new());
    }
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let branches: Vec<String> = distinct
        .iter()
        .map(|(_, ports)| match ports {
            Some(_) => {
                let (ip, e, s) = (next(), next(), next());
                meeting_ports(ip, e, s)
            }
            None => portless(next()),
        })
        .collect();
    let sql = branches.join(" UNION ALL ");
    let mut query = sqlx::query(&sql);
    for (ip, ports) in &distinct {
        query = query.bind(ip.get());
        if let Some((s, e)) = ports {
            query = query.bind(*e).bind(*s);
        }
    }
    let rows = query
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db("reading the rules of public IPs"))?;
    // Two asks on one IP may find the same rule.
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .map(|r| rule(r).map(|r| Neighbour::of(&r)))
        .filter(|n| {
            n.as_ref()
                .map_or(true, |n| seen.insert(n.candidate.uuid.clone()))
        })
        .collect()
}

/// The live egress rules of a network (what a new egress rule could conflict with), as
/// [`Neighbour`]s.
///
/// # Errors
/// As [`rule`].
pub async fn egress_neighbours_of(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
) -> Result<Vec<Neighbour>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE r.network_id = $1 AND r.purpose = 'Firewall' \
         AND r.traffic_type = 'Egress' AND r.state <> 'Revoke'"
    ))
    .bind(network.get())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db("reading a network's egress rules"))?;
    rows.iter()
        .map(|r| rule(r).map(|r| Neighbour::of(&r)))
        .collect()
}

/// Marks a rule Revoke, with the firewall rules it opened and its balancer's members and
/// policies, as changed by `job`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn revoke(
    tx: &mut Transaction<'_, Any>,
    rule: RuleId,
    job: JobId,
) -> Result<(), StoreError> {
    for sql in [
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE id = $2 OR related_id = $2",
        "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE lb_id = $2",
        "UPDATE lb_policies SET state = 'Revoke', job_id = $1 WHERE lb_id = $2",
    ] {
        sqlx::query(sql)
            .bind(job.get())
            .bind(rule.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("revoking a rule"))?;
    }
    Ok(())
}

/// Sets what a rule shows without changing what a router enforces: `fordisplay`, a name, a
/// description; each only when given.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_metadata(
    tx: &mut Transaction<'_, Any>,
    rule: RuleId,
    display: Option<bool>,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<(), StoreError> {
    let e = StoreError::db("updating a rule's metadata");
    if let Some(d) = display {
        sqlx::query("UPDATE rules SET display = $1 WHERE id = $2")
            .bind(i64::from(d))
            .bind(rule.get())
            .execute(&mut **tx)
            .await
            .map_err(e)?;
    }
    if let Some(n) = name {
        sqlx::query("UPDATE rules SET name = $1 WHERE id = $2")
            .bind(n)
            .bind(rule.get())
            .execute(&mut **tx)
            .await
            .map_err(e)?;
    }
    if let Some(d) = description {
        sqlx::query("UPDATE rules SET description = $1 WHERE id = $2")
            .bind(d)
            .bind(rule.get())
            .execute(&mut **tx)
            .await
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
