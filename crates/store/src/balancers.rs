//! Balancers as the API reads and writes them: rules with purpose LoadBalancing, their
//! members (`lb_members`, one row per VM address balanced to) and their stickiness and
//! health-check policies (`lb_policies`). Every row a write touches carries the job that
//! brings the change to the router.
//!
//! The router's side of the same tables (what a generation applied) is in [`crate::routers`].

use std::net::Ipv4Addr;

use domain::ids::{AccountId, DomainId, JobId, NetworkId, PolicyId, RuleId, VmId};
use domain::model::{PolicyKind, PolicyRow, Purpose, Rule, State};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;
use crate::filter::{self, Filter};
use crate::rules::{policy, rule, POLICY_COLUMNS, RULE_COLUMNS, RULE_FROM};

// ------------------------------------------------------------------------------------------
// Balancer rules.

/// What listLoadBalancerRules filters on; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct BalancerFilter<'a> {
    /// The balancer's uuid.
    pub uuid: Option<&'a str>,
    /// Its name, exactly.
    pub name: Option<&'a str>,
    /// The uuid of its public IP.
    pub ip_uuid: Option<&'a str>,
    /// The uuid of its network.
    pub network_uuid: Option<&'a str>,
    /// The uuid of its network's zone.
    pub zone_uuid: Option<&'a str>,
    /// The uuid of a VM it balances to (a member not being removed).
    pub vm_uuid: Option<&'a str>,
    /// Shown or hidden.
    pub display: Option<bool>,
    /// Its owner.
    pub account: Option<AccountId>,
    /// The domains its owner may be in (none matches nothing).
    pub domains: Option<&'a [DomainId]>,
}

impl BalancerFilter<'_> {
    fn to_filter(&self) -> Filter {
        let mut f = Filter::new();
        f.and("r.purpose = $?", [Purpose::LoadBalancing.as_str()]);
        if let Some(v) = self.uuid {
            f.and("r.uuid = $?", [v]);
        }
        if let Some(v) = self.name {
            f.and("r.name = $?", [v]);
        }
        if let Some(v) = self.ip_uuid {
            f.and("p.uuid = $?", [v]);
        }
        if let Some(v) = self.network_uuid {
            f.and("n.uuid = $?", [v]);
        }
        if let Some(v) = self.zone_uuid {
            f.and(
                "n.zone_id IN (SELECT z.id FROM zones z WHERE z.uuid = $?)",
                [v],
            );
        }
        if let Some(v) = self.vm_uuid {
            f.and(
                "EXISTS (SELECT 1 FROM lb_members m JOIN vms mv ON mv.id = m.vm_id \
                 WHERE m.lb_id = r.id AND m.state <> 'Revoke' AND mv.uuid = $?)",
                [v],
            );
        }
        if let Some(d) = self.display {
            f.and("r.display = $?", [i64::from(d)]);
        }
        if let Some(a) = self.account {
            f.and("r.account_id = $?", [a.get()]);
        }
        if let Some(domains) = self.domains {
            if domains.is_empty() {
                f.and("1 = 0", std::iter::empty::<i64>());
            } else {
                let marks = vec!["$?"; domains.len()].join(", ");
                f.and(
                    &format!(
                        "r.account_id IN (SELECT a.id FROM accounts a WHERE a.domain_id IN \
                         ({marks}))"
                    ),
                    domains.iter().map(|d| d.get()),
                );
            }
        }
        f
    }
}

/// The balancers matching `filter`, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a row that does not read.
pub async fn list(db: &Db, filter: &BalancerFilter<'_>) -> Result<Vec<Rule>, StoreError> {
    let rows = filter::page(
        db,
        RULE_COLUMNS,
        RULE_FROM,
        &filter.to_filter(),
        "r.id ASC",
        None,
        0,
    )
    .await?;
    rows.iter().map(rule).collect()
}

/// What updateLoadBalancerRule writes: the values the router uses and the balancer's own.
#[derive(Debug, Clone)]
pub struct BalancerUpdate<'a> {
    /// The algorithm.
    pub algorithm: &'a str,
    /// The protocol as the API gave it.
    pub lb_protocol: &'a str,
    /// The source CIDRs, comma-joined.
    pub sources: &'a str,
    /// The name.
    pub name: Option<&'a str>,
    /// The description.
    pub description: Option<&'a str>,
    /// Shown or hidden.
    pub display: bool,
}

/// Rewrites a balancer's values, marked with the update's `job` so that the network's runner
/// reads the new ones.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn update(
    tx: &mut Transaction<'_, Any>,
    lb: RuleId,
    u: &BalancerUpdate<'_>,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rules SET algorithm = $1, lb_protocol = $2, source_cidrs = $3, name = $4, \
         description = $5, display = $6, job_id = $7 WHERE id = $8",
    )
    .bind(u.algorithm)
    .bind(u.lb_protocol)
    .bind(u.sources)
    .bind(u.name)
    .bind(u.description)
    .bind(i64::from(u.display))
    .bind(job.get())
    .bind(lb.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("updating a balancer"))?;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Members.

/// A VM as the balancer commands see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberVm {
    /// Its id.
    pub id: VmId,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Owner.
    pub account_id: AccountId,
    /// Its network.
    pub network_id: NetworkId,
    /// Its guest address, as stored.
    pub ip: String,
    /// Its state, as stored.
    pub state: String,
    /// Its NIC's uuid.
    pub nic_uuid: String,
    /// Creation time (unix ms).
    pub created: i64,
}

impl MemberVm {
    /// Whether the VM is going or gone: it cannot be a member, and listings skip it.
    pub fn is_gone(&self) -> bool {
        matches!(
            self.state.as_str(),
            "Destroyed" | "Expunging" | "Error" | "Unknown"
        )
    }
}

const VM_COLUMNS: &str = "v.id, v.uuid, v.name, v.display_name, v.account_id, v.network_id, \
     v.ip, v.state, v.nic_uuid, v.created";

fn member_vm(row: &AnyRow) -> Result<MemberVm, StoreError> {
    const W: &str = "reading a VM";
    let e = StoreError::db(W);
    Ok(MemberVm {
        id: VmId::from(row.try_get::<i64, _>("id").map_err(e)?),
        uuid: row.try_get("uuid").map_err(e)?,
        name: row.try_get("name").map_err(e)?,
        display_name: row.try_get("display_name").map_err(e)?,
        account_id: AccountId::from(row.try_get::<i64, _>("account_id").map_err(e)?),
        network_id: NetworkId::from(row.try_get::<i64, _>("network_id").map_err(e)?),
        ip: row.try_get("ip").map_err(e)?,
        state: row.try_get("state").map_err(e)?,
        nic_uuid: row.try_get("nic_uuid").map_err(e)?,
        created: row.try_get("created").map_err(e)?,
    })
}

/// The VM with API id `uuid`, whoever owns it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_by_uuid(db: &Db, uuid: &str) -> Result<Option<MemberVm>, StoreError> {
    let row = sqlx::query(&format!("SELECT {VM_COLUMNS} FROM vms v WHERE v.uuid = $1"))
        .bind(uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a VM"))?;
    row.as_ref().map(member_vm).transpose()
}

/// One member row of a balancer with its VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The VM.
    pub vm: MemberVm,
    /// The address balanced to, as stored.
    pub ip: String,
    /// The member's state.
    pub state: State,
}

/// The members of balancer `lb` not being removed, by VM and then by member.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an unknown state.
pub async fn members(db: &Db, lb: RuleId) -> Result<Vec<Member>, StoreError> {
    const W: &str = "reading a balancer's members";
    let rows = sqlx::query(&format!(
        "SELECT {VM_COLUMNS}, m.vm_ip AS member_ip, m.state AS member_state \
         FROM lb_members m JOIN vms v ON v.id = m.vm_id \
         WHERE m.lb_id = $1 AND m.state <> 'Revoke' ORDER BY v.id, m.id"
    ))
    .bind(lb.get())
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db(W))?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("member_state").map_err(StoreError::db(W))?;
            Ok(Member {
                vm: member_vm(row)?,
                ip: row.try_get("member_ip").map_err(StoreError::db(W))?,
                state: state
                    .parse()
                    .map_err(StoreError::corrupt("lb_members", "state"))?,
            })
        })
        .collect()
}

/// Maps `vm`'s address `ip` to balancer `lb` (state Add, changed by `job`): a new row, or the
/// row of a removal still pending, which comes back. False, and nothing written, when the
/// address is already mapped.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an unknown state.
pub async fn add_member(
    tx: &mut Transaction<'_, Any>,
    lb: RuleId,
    vm: VmId,
    ip: &str,
    job: JobId,
) -> Result<bool, StoreError> {
    const W: &str = "adding a balancer member";
    let existing = sqlx::query(
        "SELECT id, state FROM lb_members WHERE lb_id = $1 AND vm_id = $2 AND vm_ip = $3",
    )
    .bind(lb.get())
    .bind(vm.get())
    .bind(ip)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    match existing {
        Some(row) => {
            let state: String = row.try_get("state").map_err(StoreError::db(W))?;
            let state: State = state
                .parse()
                .map_err(StoreError::corrupt("lb_members", "state"))?;
            if state != State::Revoke {
                return Ok(false);
            }
            let id: i64 = row.try_get("id").map_err(StoreError::db(W))?;
            sqlx::query("UPDATE lb_members SET state = 'Add', job_id = $1 WHERE id = $2")
                .bind(job.get())
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::db(W))?;
        }
        None => {
            sqlx::query(
                "INSERT INTO lb_members (lb_id, vm_id, vm_ip, state, applied, job_id) \
                 VALUES ($1, $2, $3, 'Add', 0, $4)",
            )
            .bind(lb.get())
            .bind(vm.get())
            .bind(ip)
            .bind(job.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(W))?;
        }
    }
    Ok(true)
}

/// Revokes `vm`'s live members of balancer `lb` (only the one with address `ip`, when given),
/// as changed by `job`; returns how many there were.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn remove_members(
    tx: &mut Transaction<'_, Any>,
    lb: RuleId,
    vm: VmId,
    ip: Option<Ipv4Addr>,
    job: JobId,
) -> Result<u64, StoreError> {
    match ip {
        Some(ip) => sqlx::query(
            "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE lb_id = $2 \
             AND vm_id = $3 AND vm_ip = $4 AND state <> 'Revoke'",
        )
        .bind(job.get())
        .bind(lb.get())
        .bind(vm.get())
        .bind(ip.to_string()),
        None => sqlx::query(
            "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE lb_id = $2 \
             AND vm_id = $3 AND state <> 'Revoke'",
        )
        .bind(job.get())
        .bind(lb.get())
        .bind(vm.get()),
    }
    .execute(&mut **tx)
    .await
    .map(|done| done.rows_affected())
    .map_err(StoreError::db("removing a balancer member"))
}

// ------------------------------------------------------------------------------------------
// Policies.

/// A new policy row.
#[derive(Debug, Clone)]
pub struct NewPolicy<'a> {
    /// Its API id.
    pub uuid: &'a str,
    /// Its balancer.
    pub lb: RuleId,
    /// Its kind.
    pub kind: PolicyKind,
    /// Name (stickiness).
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Stickiness method, or the health check's ping path.
    pub method: &'a str,
    /// JSON: stickiness params, or the health check's numbers.
    pub params: &'a str,
    /// Shown or hidden.
    pub display: bool,
}

/// How many policies of `kind` balancer `lb` has that are not being deleted.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn live_policies(
    tx: &mut Transaction<'_, Any>,
    lb: RuleId,
    kind: PolicyKind,
) -> Result<i64, StoreError> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM lb_policies WHERE lb_id = $1 AND kind = $2 \
         AND state <> 'Revoke'",
    )
    .bind(lb.get())
    .bind(kind.as_str())
    .fetch_one(&mut **tx)
    .await
    .and_then(|row| row.try_get("n"))
    .map_err(StoreError::db("counting a balancer's policies"))
}

/// Writes a policy in state Add, changed by `job`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert_policy(
    tx: &mut Transaction<'_, Any>,
    p: &NewPolicy<'_>,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO lb_policies (uuid, lb_id, kind, name, description, method, params, \
         state, applied, job_id, display, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'Add', 0, $8, $9, $10)",
    )
    .bind(p.uuid)
    .bind(p.lb.get())
    .bind(p.kind.as_str())
    .bind(p.name)
    .bind(p.description)
    .bind(p.method)
    .bind(p.params)
    .bind(job.get())
    .bind(i64::from(p.display))
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("inserting a balancer policy"))?;
    Ok(())
}

/// The policy of `kind` with API id `uuid`.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a row that does not read.
pub async fn policy_by_uuid(
    db: &Db,
    uuid: &str,
    kind: PolicyKind,
) -> Result<Option<PolicyRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {POLICY_COLUMNS} FROM lb_policies WHERE uuid = $1 AND kind = $2"
    ))
    .bind(uuid)
    .bind(kind.as_str())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a balancer policy"))?;
    row.as_ref().map(policy).transpose()
}

/// Balancer `lb`'s policies of `kind`, oldest first, whatever their state.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a row that does not read.
pub async fn policies(db: &Db, lb: RuleId, kind: PolicyKind) -> Result<Vec<PolicyRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {POLICY_COLUMNS} FROM lb_policies WHERE lb_id = $1 AND kind = $2 ORDER BY id"
    ))
    .bind(lb.get())
    .bind(kind.as_str())
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading a balancer's policies"))?;
    rows.iter().map(policy).collect()
}

/// Marks a policy Revoke, as changed by `job`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn revoke_policy(
    tx: &mut Transaction<'_, Any>,
    id: PolicyId,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE lb_policies SET state = 'Revoke', job_id = $1 WHERE id = $2")
        .bind(job.get())
        .bind(id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("revoking a balancer policy"))?;
    Ok(())
}

/// Sets whether a policy is shown (`fordisplay`): nothing a router holds, so the policy keeps
/// the job that last changed what the router holds.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_policy_display(
    tx: &mut Transaction<'_, Any>,
    id: PolicyId,
    display: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE lb_policies SET display = $1 WHERE id = $2")
        .bind(i64::from(display))
        .bind(id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("updating a balancer policy"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Arg;

    #[test]
    fn no_filter_lists_every_balancer() {
        let f = BalancerFilter::default().to_filter();
        assert_eq!(f.where_clause(), "WHERE 1 = 1 AND (r.purpose = $1)");
        assert_eq!(f.args(), &[Arg::Text("LoadBalancing".into())]);
    }

    #[test]
    fn every_filter_is_an_argument_in_order() {
        let domains = [DomainId::from(3), DomainId::from(4)];
        let f = BalancerFilter {
            uuid: Some("u"),
            name: Some("web"),
            vm_uuid: Some("v"),
            display: Some(false),
            account: Some(AccountId::from(9)),
            domains: Some(&domains),
            ..BalancerFilter::default()
        }
        .to_filter();
        assert_eq!(
            f.where_clause(),
            "WHERE 1 = 1 AND (r.purpose = $1) AND (r.uuid = $2) AND (r.name = $3) AND (EXISTS \
             (SELECT 1 FROM lb_members m JOIN vms mv ON mv.id = m.vm_id WHERE m.lb_id = r.id \
             AND m.state <> 'Revoke' AND mv.uuid = $4)) AND (r.display = $5) AND \
             (r.account_id = $6) AND (r.account_id IN (SELECT a.id FROM accounts a WHERE \
             a.domain_id IN ($7, $8)))"
        );
        assert_eq!(
            f.args(),
            &[
                Arg::Text("LoadBalancing".into()),
                Arg::Text("u".into()),
                Arg::Text("web".into()),
                Arg::Text("v".into()),
                Arg::Int(0),
                Arg::Int(9),
                Arg::Int(3),
                Arg::Int(4),
            ]
        );
    }

    #[test]
    fn no_domain_matches_nothing() {
        let f = BalancerFilter {
            domains: Some(&[]),
            ..BalancerFilter::default()
        }
        .to_filter();
        assert_eq!(
            f.where_clause(),
            "WHERE 1 = 1 AND (r.purpose = $1) AND (1 = 0)"
        );
    }
}
