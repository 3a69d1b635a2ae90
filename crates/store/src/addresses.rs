//! Public addresses: reading them (one, or a listing), taking a free one for a network, and
//! releasing one.

use std::net::Ipv4Addr;

use domain::ids::{AccountId, IpId, JobId, NetworkId, VlanRangeId};
use domain::model::IpRow;
use domain::plan::PublicSegment;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db, Dialect};
use crate::error::StoreError;
use crate::filter::Filter;
use crate::owners::Owners;
use crate::rows::get;
use crate::rules::IP_COLUMNS;
use crate::work::ChangeTx;

/// Prefix length and gateway of a public range.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn segment(
    db: &Db,
    vlan_range_id: VlanRangeId,
) -> Result<Option<PublicSegment>, StoreError> {
    let row = sqlx::query("SELECT gateway, netmask FROM vlan_ranges WHERE id = $1")
        .bind(vlan_range_id.get())
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a public range"))?;
    Ok(row.and_then(|r| {
        let gateway: String = r.try_get("gateway").ok()?;
        let netmask: String = r.try_get("netmask").ok()?;
        let mask: Ipv4Addr = netmask.parse().ok()?;
        let prefix_len = ipnet::ipv4_mask_to_prefix(mask).ok()?;
        Some(PublicSegment {
            prefix_len,
            gateway: gateway.parse().ok(),
        })
    }))
}

/// The `FROM` clause of a listing's addresses (`p`), with their range (`v`) and network (`n`).
const LISTING_FROM: &str = "public_ips p JOIN vlan_ranges v ON v.id = p.vlan_range_id \
     LEFT JOIN networks n ON n.id = p.network_id";

/// An address as listPublicIpAddresses shows it.
#[derive(Debug, Clone)]
pub struct IpListing {
    /// The address.
    pub ip: IpRow,
    /// Its range's uuid.
    pub vlan_uuid: String,
    /// Its range's VLAN.
    pub vlan_name: String,
    /// Its network's uuid and name, when it has one.
    pub network: Option<(String, String)>,
    /// Whether rules (not being revoked) use it.
    pub has_rules: bool,
}

/// What listPublicIpAddresses asks for.
#[derive(Debug, Clone, Default)]
pub struct IpQuery<'a> {
    /// One address by internal id.
    pub id: Option<IpId>,
    /// One address by uuid.
    pub uuid: Option<&'a str>,
    /// The dotted address.
    pub address: Option<&'a str>,
    /// Networks the address must be associated with (each one a condition).
    pub networks: Vec<NetworkId>,
    /// Only addresses that are not Free.
    pub allocated_only: bool,
    /// Source-NAT addresses, or the others.
    pub source_nat: Option<bool>,
    /// The range's uuid.
    pub vlan_uuid: Option<&'a str>,
    /// The state, spelled as stored.
    pub state: Option<&'a str>,
    /// Whose addresses (`None`: everyone's).
    pub owners: Option<Owners>,
    /// With `owners`: Free addresses too (a root admin listing beyond allocated ones).
    pub or_free: bool,
}

fn listing(r: &AnyRow) -> Result<IpListing, StoreError> {
    const W: &str = "reading a public IP";
    let net_uuid: Option<String> = get(r, "net_uuid", W)?;
    let net_name: Option<String> = get(r, "net_name", W)?;
    Ok(IpListing {
        ip: crate::rules::ip(r)?,
        vlan_uuid: get(r, "vlan_uuid", W)?,
        vlan_name: get(r, "vlan_name", W)?,
        network: net_uuid.zip(net_name),
        has_rules: get::<i64>(r, "rule_count", W)? > 0,
    })
}

/// The addresses matching `q`, in id order.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an address that does not parse.
pub async fn list(db: &Db, q: &IpQuery<'_>) -> Result<Vec<IpListing>, StoreError> {
    let mut f = Filter::new();
    if let Some(id) = q.id {
        f.and("p.id = $?", [id.get()]);
    }
    if let Some(uuid) = q.uuid {
        f.and("p.uuid = $?", [uuid]);
    }
    if let Some(a) = q.address {
        f.and("p.address = $?", [a]);
    }
    for n in &q.networks {
        f.and("p.network_id = $?", [n.get()]);
    }
    if q.allocated_only {
        f.and("p.state <> 'Free'", [0_i64; 0]);
    }
    if let Some(snat) = q.source_nat {
        f.and("p.source_nat = $?", [i64::from(snat)]);
    }
    if let Some(v) = q.vlan_uuid {
        f.and("v.uuid = $?", [v]);
    }
    if let Some(s) = q.state {
        f.and("p.state = $?", [s]);
    }
    if let Some((cond, args)) = q.owners.as_ref().and_then(|o| o.condition("p.account_id")) {
        if q.or_free {
            f.and(&format!("{cond} OR p.state = 'Free'"), args);
        } else {
            f.and(&cond, args);
        }
    }
    let cols = IP_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    crate::filter::page(
        db,
        &format!(
            "{cols}, v.uuid AS vlan_uuid, v.vlan AS vlan_name, n.uuid AS net_uuid, \
             n.name AS net_name, (SELECT COUNT(*) FROM rules r WHERE r.ip_id = p.id \
             AND r.state <> 'Revoke') AS rule_count"
        ),
        LISTING_FROM,
        &f,
        "p.id",
        None,
        0,
    )
    .await?
    .iter()
    .map(listing)
    .collect()
}

/// An address by its dotted text.
///
/// # Errors
/// As [`list`].
pub async fn by_address(db: &Db, address: &str) -> Result<Option<IpRow>, StoreError> {
    sqlx::query(&format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE address = $1"
    ))
    .bind(address)
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a public IP"))?
    .as_ref()
    .map(crate::rules::ip)
    .transpose()
}

/// `FOR UPDATE` (and `SKIP LOCKED`) on PostgreSQL, where concurrent takers lock (or skip)
/// rows; nothing on SQLite, which has one writer anyway.
fn row_lock(dialect: Dialect) -> (&'static str, &'static str) {
    match dialect {
        Dialect::Postgres => (" FOR UPDATE", " SKIP LOCKED"),
        Dialect::Sqlite => ("", ""),
    }
}

/// The address `ip` of the zone, locked for the change, whatever its state.
///
/// # Errors
/// As [`list`].
pub async fn for_taking(
    change: &mut ChangeTx,
    zone_id: i64,
    ip: Ipv4Addr,
) -> Result<Option<IpRow>, StoreError> {
    let (lock, _) = row_lock(change.dialect());
    sqlx::query(&format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE address = $1 AND zone_id = $2{lock}"
    ))
    .bind(ip.to_string())
    .bind(zone_id)
    .fetch_optional(&mut **change.conn())
    .await
    .map_err(StoreError::db("reading a public IP"))?
    .as_ref()
    .map(crate::rules::ip)
    .transpose()
}

/// The lowest Free address of the zone, locked for the change (on PostgreSQL skipping those
/// another change holds).
///
/// # Errors
/// As [`list`].
pub async fn lowest_free(change: &mut ChangeTx, zone_id: i64) -> Result<Option<IpRow>, StoreError> {
    let (lock, skip) = row_lock(change.dialect());
    sqlx::query(&format!(
        "SELECT {IP_COLUMNS} FROM public_ips WHERE zone_id = $1 AND state = 'Free' \
         ORDER BY address_num LIMIT 1{lock}{skip}"
    ))
    .bind(zone_id)
    .fetch_optional(&mut **change.conn())
    .await
    .map_err(StoreError::db("reading a free public IP"))?
    .as_ref()
    .map(crate::rules::ip)
    .transpose()
}

/// What a taken address becomes.
#[derive(Debug, Clone, Copy)]
pub struct Allocation {
    /// Allocated (a network's source-NAT address) or Allocating (until its job ends).
    pub state: &'static str,
    /// Its owner.
    pub account: AccountId,
    /// Its network.
    pub network: NetworkId,
    /// Whether it is the network's source-NAT address.
    pub source_nat: bool,
    /// The job that takes it.
    pub job: Option<JobId>,
}

/// Takes a Free address; false when it is not Free any more (a concurrent change took it).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn allocate(
    tx: &mut Transaction<'_, Any>,
    ip: IpId,
    a: &Allocation,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE public_ips SET state = $1, account_id = $2, network_id = $3, source_nat = $4, \
         job_id = $5, applied = 0, allocated = $6 WHERE id = $7 AND state = 'Free'",
    )
    .bind(a.state)
    .bind(a.account.get())
    .bind(a.network.get())
    .bind(i64::from(a.source_nat))
    .bind(a.job.map(JobId::get))
    .bind(now_ms())
    .bind(ip.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("taking a public IP"))?
    .rows_affected();
    Ok(done == 1)
}

/// Schedules an address's release by `job`: the rules on it (with their members and
/// policies) are revoked and the address set Releasing.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn schedule_release(
    tx: &mut Transaction<'_, Any>,
    ip: IpId,
    job: JobId,
) -> Result<(), StoreError> {
    for sql in [
        "UPDATE lb_members SET state = 'Revoke', job_id = $1 \
         WHERE lb_id IN (SELECT id FROM rules WHERE ip_id = $2)",
        "UPDATE lb_policies SET state = 'Revoke', job_id = $1 \
         WHERE lb_id IN (SELECT id FROM rules WHERE ip_id = $2)",
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE ip_id = $2",
        "UPDATE public_ips SET state = 'Releasing', job_id = $1 WHERE id = $2",
    ] {
        sqlx::query(sql)
            .bind(job.get())
            .bind(ip.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("scheduling an address's release"))?;
    }
    Ok(())
}

/// The public IPs that carry a load balancer not being deleted (listPublicIpAddresses'
/// `forloadbalancing`).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn balanced(db: &Db) -> Result<std::collections::HashSet<IpId>, StoreError> {
    const W: &str = "reading the addresses that carry load balancers";
    sqlx::query(
        "SELECT DISTINCT ip_id FROM rules \
         WHERE purpose = 'LoadBalancing' AND state <> 'Revoke' AND ip_id IS NOT NULL",
    )
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db(W))?
    .iter()
    .map(|r| get::<i64>(r, "ip_id", W).map(IpId::from))
    .collect()
}
