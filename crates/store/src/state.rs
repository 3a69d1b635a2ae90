//! What a network's router config is built from, as the job runner reads it: everything, or
//! only the rows some jobs last wrote.

use domain::ids::{JobId, NetworkId};
use domain::model::{IpRow, MemberRow, PolicyRow, Rule, VmNic};
use domain::plan::{NetworkState, PublicSegment};

use crate::db::Db;
use crate::error::StoreError;
use crate::rules::{IP_COLUMNS, POLICY_COLUMNS, RULE_COLUMNS, RULE_FROM};

/// Rows of a network: all of them, or those last changed by some jobs.
#[derive(Debug, Default)]
pub struct Rows {
    /// Public addresses.
    pub ips: Vec<IpRow>,
    /// Rules.
    pub rules: Vec<Rule>,
    /// Balancer members.
    pub members: Vec<MemberRow>,
    /// Balancer policies.
    pub policies: Vec<PolicyRow>,
    /// VM NICs.
    pub vms: Vec<VmNic>,
}

/// Everything the network's router config is built from (no network: a state without one).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn read(db: &Db, network_id: NetworkId) -> Result<NetworkState, StoreError> {
    let network = crate::networks::by_id(db, network_id).await?;
    let rows = rows(db, network_id, None).await?;
    let segment = match rows.ips.first() {
        Some(ip) => crate::addresses::segment(db, ip.vlan_range_id).await?,
        None => None,
    };
    let dns = match &network {
        Some(n) => crate::zones::dns(db, n.zone_id.get()).await?,
        None => Vec::new(),
    };
    Ok(NetworkState {
        network,
        vms: rows.vms,
        dns,
        segment: segment.or(Some(PublicSegment {
            prefix_len: 24,
            gateway: None,
        })),
        ips: rows.ips,
        rules: rows.rules,
        members: rows.members,
        policies: rows.policies,
    })
}

/// The network's rows: all of them (`jobs` = `None`), or those whose `job_id` is one of
/// `jobs` (rows of a network's jobs are that network's rows).
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn rows(
    db: &Db,
    network_id: NetworkId,
    jobs: Option<&[JobId]>,
) -> Result<Rows, StoreError> {
    let pool = db.pool();
    let e = StoreError::db("reading a network's rows");
    // The texts stay the same whatever the jobs, so the databases reuse their plans: the rows
    // of a range of job ids (by the job-id indexes), kept when their job is one of ours.
    let (ips_where, rules_where, members_where, policies_where, binds) = match jobs {
        None => (
            "network_id = $1",
            "r.network_id = $1",
            "r.network_id = $1",
            "r.network_id = $1",
            vec![network_id.get()],
        ),
        Some(jobs) => (
            "job_id BETWEEN $1 AND $2",
            "r.job_id BETWEEN $1 AND $2",
            "m.job_id BETWEEN $1 AND $2",
            "p.job_id BETWEEN $1 AND $2",
            vec![
                jobs.iter().map(|j| j.get()).min().unwrap_or(0),
                jobs.iter().map(|j| j.get()).max().unwrap_or(-1),
            ],
        ),
    };
    let ours = |job: Option<JobId>| match jobs {
        None => true,
        Some(jobs) => job.is_some_and(|j| jobs.contains(&j)),
    };
    let fetch = |sql: String| {
        let binds = binds.clone();
        async move {
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            q.fetch_all(pool).await.map_err(e)
        }
    };
    let mut ips: Vec<IpRow> = fetch(format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE {ips_where} ORDER BY id"
    ))
    .await?
    .iter()
    .map(crate::rules::ip)
    .collect::<Result<_, _>>()?;
    ips.retain(|r| ours(r.job_id));
    let mut rules: Vec<Rule> = fetch(format!(
        "SELECT {RULE_COLUMNS} FROM {RULE_FROM} WHERE {rules_where} ORDER BY r.id"
    ))
    .await?
    .iter()
    .map(crate::rules::rule)
    .collect::<Result<_, _>>()?;
    rules.retain(|r| ours(r.job_id));
    let mut members: Vec<MemberRow> = fetch(format!(
        "SELECT m.id, m.lb_id, m.vm_id, m.vm_ip, m.state, m.applied, m.job_id \
         FROM lb_members m JOIN rules r ON r.id = m.lb_id WHERE {members_where} ORDER BY m.id"
    ))
    .await?
    .iter()
    .map(crate::rules::member)
    .collect::<Result<_, _>>()?;
    members.retain(|r| ours(r.job_id));
    let cols = POLICY_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut policies: Vec<PolicyRow> = fetch(format!(
        "SELECT {cols} FROM lb_policies p JOIN rules r ON r.id = p.lb_id \
         WHERE {policies_where} ORDER BY p.id"
    ))
    .await?
    .iter()
    .map(crate::rules::policy)
    .collect::<Result<_, _>>()?;
    policies.retain(|r| ours(r.job_id));
    let vms = crate::vms::nics(db, network_id, jobs).await?;
    Ok(Rows {
        ips,
        rules,
        members,
        policies,
        vms,
    })
}
