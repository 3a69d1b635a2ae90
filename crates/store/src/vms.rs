//! The VMs table: as the API lists, creates and destroys VMs, and as the job runner and the
//! hosts' labs need it.

use std::net::Ipv4Addr;

use domain::guest::{legacy_mac, MacAddr};
use domain::ids::{AccountId, JobId, NetworkId, VmId};
use domain::model::VmNic;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::Db;
use crate::error::StoreError;
use crate::filter::Filter;
use crate::owners::Owners;
use crate::rows::{get, parsed};

/// The VMs of a network: id and lab key.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn network_vms(
    tx: &mut Transaction<'_, Any>,
    network_id: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    sqlx::query("SELECT id, uuid FROM vms WHERE network_id = $1")
        .bind(network_id)
        .fetch_all(&mut **tx)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok((r.try_get("id")?, lab_key(&r.try_get::<String, _>("uuid")?))))
                .collect()
        })
        .map_err(StoreError::db("reading a network's VMs"))
}

/// The key of a VM in its host's lab: the 32 hex digits of its id. Names are unique only in an
/// account, so they cannot name namespaces; the lab finds a VM by its label
/// ([`LabVm`]'s name, account and network).
pub fn lab_key(vm_uuid: &str) -> String {
    vm_uuid.replace('-', "")
}

/// A VM as its host's lab knows it.
#[derive(Debug, Clone)]
pub struct LabVm {
    /// Its key ([`lab_key`]).
    pub key: String,
    /// Its guest address.
    pub ip: Ipv4Addr,
    /// Its name, by which (with its account and network) `guestnet lab exec vm:…` finds it.
    pub name: String,
    /// Its account's name.
    pub account: String,
    /// Its network's name.
    pub network: String,
    /// Its NIC's MAC.
    pub mac: MacAddr,
    /// Its network's VLAN.
    pub vlan: Option<u16>,
    /// Its service offering's CPUs.
    pub cpus: i64,
    /// Its service offering's memory (MiB).
    pub memory: i64,
    /// What its template boots, if the template names files.
    pub image: Option<crate::catalogue::TemplateImage>,
}

const LAB_VM_SELECT: &str = "SELECT v.uuid, v.name, v.ip, v.mac, n.vlan, a.name AS account, \
     n.name AS network, s.cpu_number, s.memory, t.image_path, t.format, t.initrd, t.cmdline \
     FROM vms v JOIN accounts a ON a.id = v.account_id JOIN networks n ON n.id = v.network_id \
     JOIN service_offerings s ON s.id = v.service_offering_id \
     JOIN templates t ON t.id = v.template_id";

/// A VM's stored MAC, or the one a VM made before MACs were stored shows.
fn mac(r: &AnyRow, ip: Ipv4Addr, what: &'static str) -> Result<MacAddr, StoreError> {
    match get::<Option<String>>(r, "mac", what)? {
        None => Ok(legacy_mac(ip)),
        Some(text) => text.parse().map_err(|_| StoreError::Corrupt {
            table: "vms",
            column: "mac",
            value: text,
        }),
    }
}

/// A network's stored VLAN.
fn vlan(r: &AnyRow, what: &'static str) -> Result<Option<u16>, StoreError> {
    get::<Option<i64>>(r, "vlan", what)?
        .map(|v| {
            u16::try_from(v).map_err(|_| StoreError::Corrupt {
                table: "networks",
                column: "vlan",
                value: v.to_string(),
            })
        })
        .transpose()
}

fn lab_vm(r: &sqlx::any::AnyRow) -> Result<LabVm, StoreError> {
    let uuid: String = r.try_get("uuid").map_err(StoreError::db("reading a VM"))?;
    let ip: Ipv4Addr = parsed(r, "vms", "ip", "reading a VM")?;
    Ok(LabVm {
        key: lab_key(&uuid),
        ip,
        mac: mac(r, ip, "reading a VM")?,
        vlan: vlan(r, "reading a VM")?,
        cpus: get(r, "cpu_number", "reading a VM")?,
        memory: get(r, "memory", "reading a VM")?,
        image: crate::catalogue::template_image(r, "reading a VM")?,
        name: r.try_get("name").map_err(StoreError::db("reading a VM"))?,
        account: r
            .try_get("account")
            .map_err(StoreError::db("reading a VM"))?,
        network: r
            .try_get("network")
            .map_err(StoreError::db("reading a VM"))?,
    })
}

/// A VM's lab key.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_lab_key(db: &Db, vm_id: VmId) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT uuid FROM vms WHERE id = $1")
        .bind(vm_id.get())
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a VM"))?;
    row.map(|r| {
        r.try_get::<String, _>("uuid")
            .map(|u| lab_key(&u))
            .map_err(StoreError::db("reading a VM"))
    })
    .transpose()
}

/// A VM to deploy, as its host's lab is to know it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_for_deploy(db: &Db, vm_id: VmId) -> Result<Option<LabVm>, StoreError> {
    let row = sqlx::query(&format!("{LAB_VM_SELECT} WHERE v.id = $1"))
        .bind(vm_id.get())
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a VM"))?;
    row.as_ref().map(lab_vm).transpose()
}

/// Sets a VM's state.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_vm_state(db: &Db, vm_id: VmId, state: &str) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query("UPDATE vms SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(vm_id.get())
        .execute(db.pool())
        .await
        .map_err(StoreError::db("setting a VM's state"))?;
    Ok(())
}

/// Removes a VM's row (its rules and memberships are gone by then).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_vm(db: &Db, vm_id: VmId) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    let mut tx = db
        .begin_write()
        .await
        .map_err(StoreError::db("removing a VM"))?;
    delete_vm_in(&mut tx, vm_id).await?;
    tx.commit().await.map_err(StoreError::db("removing a VM"))
}

/// Removes a VM's row inside a transaction.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_vm_in(tx: &mut Transaction<'_, Any>, vm_id: VmId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM lb_members WHERE vm_id = $1")
        .bind(vm_id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("UPDATE rules SET vm_id = NULL WHERE vm_id = $1")
        .bind(vm_id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    // Its static NATs went with its destruction's generation; none may outlive the VM.
    sqlx::query(
        "UPDATE public_ips SET nat_vm_id = NULL, nat_vm_ip = NULL, nat_state = NULL, \
         nat_applied = 0 WHERE nat_vm_id = $1",
    )
    .bind(vm_id.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("DELETE FROM resource_tags WHERE resource_type = 'UserVm' AND resource_id = $1")
        .bind(vm_id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("DELETE FROM nic_secondary_ips WHERE vm_id = $1")
        .bind(vm_id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    sqlx::query("DELETE FROM vms WHERE id = $1")
        .bind(vm_id.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("removing a VM"))?;
    Ok(())
}

/// The running VMs of a network, as their host's lab is to know them.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn running_vms(db: &Db, network_id: i64) -> Result<Vec<LabVm>, StoreError> {
    sqlx::query(&format!(
        "{LAB_VM_SELECT} WHERE v.network_id = $1 AND v.state = 'Running'"
    ))
    .bind(network_id)
    .fetch_all(db.pool())
    .await
    .map_err(StoreError::db("reading a network's VMs"))?
    .iter()
    .map(lab_vm)
    .collect()
}

/// A VM with what its API response shows: its network, offering and template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    /// Internal id.
    pub id: VmId,
    /// API id.
    pub uuid: String,
    /// Name (unique among its account's VMs).
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Owner.
    pub account_id: i64,
    /// Network.
    pub network_id: NetworkId,
    /// Its NIC's API id.
    pub nic_uuid: String,
    /// Its guest address.
    pub ip: Ipv4Addr,
    /// Its NIC's MAC.
    pub mac: MacAddr,
    /// Its network's VLAN.
    pub vlan: Option<u16>,
    /// Starting, Running, Expunging…
    pub state: String,
    /// Creation time (unix ms).
    pub created: i64,
    /// Its network's uuid.
    pub net_uuid: String,
    /// Its network's name.
    pub net_name: String,
    /// Its network's CIDR.
    pub cidr: ipnet::Ipv4Net,
    /// Its network's gateway.
    pub gateway: String,
    /// Its service offering's uuid.
    pub so_uuid: String,
    /// Its service offering's name.
    pub so_name: String,
    /// CPUs.
    pub cpu_number: i64,
    /// CPU speed (MHz).
    pub cpu_speed: i64,
    /// Memory (MiB).
    pub memory: i64,
    /// Its template's uuid.
    pub t_uuid: String,
    /// Its template's name.
    pub t_name: String,
    /// Its template's display text.
    pub t_display: String,
}

const VM_COLUMNS: &str = "v.id, v.uuid, v.name, v.display_name, v.account_id, \
     v.network_id, v.nic_uuid, v.ip, v.mac, n.vlan, v.state, v.created, n.uuid AS net_uuid, \
     n.name AS net_name, n.cidr, n.gateway, s.uuid AS so_uuid, s.name AS so_name, \
     s.cpu_number, s.cpu_speed, s.memory, t.uuid AS t_uuid, t.name AS t_name, \
     t.display_text AS t_display";

const VM_FROM: &str = "vms v JOIN networks n ON n.id = v.network_id \
     JOIN service_offerings s ON s.id = v.service_offering_id \
     JOIN templates t ON t.id = v.template_id";

fn record(r: &AnyRow) -> Result<VmRecord, StoreError> {
    const W: &str = "reading a VM";
    let ip = parsed(r, "vms", "ip", W)?;
    Ok(VmRecord {
        id: VmId::from(get::<i64>(r, "id", W)?),
        uuid: get(r, "uuid", W)?,
        name: get(r, "name", W)?,
        display_name: get(r, "display_name", W)?,
        account_id: get(r, "account_id", W)?,
        network_id: NetworkId::from(get::<i64>(r, "network_id", W)?),
        nic_uuid: get(r, "nic_uuid", W)?,
        ip,
        mac: mac(r, ip, W)?,
        vlan: vlan(r, W)?,
        state: get(r, "state", W)?,
        created: get(r, "created", W)?,
        net_uuid: get(r, "net_uuid", W)?,
        net_name: get(r, "net_name", W)?,
        cidr: parsed(r, "networks", "cidr", W)?,
        gateway: get(r, "gateway", W)?,
        so_uuid: get(r, "so_uuid", W)?,
        so_name: get(r, "so_name", W)?,
        cpu_number: get(r, "cpu_number", W)?,
        cpu_speed: get(r, "cpu_speed", W)?,
        memory: get(r, "memory", W)?,
        t_uuid: get(r, "t_uuid", W)?,
        t_name: get(r, "t_name", W)?,
        t_display: get(r, "t_display", W)?,
    })
}

/// What listVirtualMachines asks for.
#[derive(Debug, Clone)]
pub struct VmQuery<'a> {
    /// One VM by internal id.
    pub id: Option<VmId>,
    /// One VM by uuid.
    pub uuid: Option<&'a str>,
    /// By name.
    pub name: Option<&'a str>,
    /// The VMs of one network.
    pub network: Option<NetworkId>,
    /// Whose VMs.
    pub owners: Owners,
}

/// The VMs matching `q`, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an address that does not parse.
pub async fn list(db: &Db, q: &VmQuery<'_>) -> Result<Vec<VmRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(id) = q.id {
        f.and("v.id = $?", [id.get()]);
    }
    if let Some(uuid) = q.uuid {
        f.and("v.uuid = $?", [uuid]);
    }
    if let Some(name) = q.name {
        f.and("v.name = $?", [name]);
    }
    if let Some(n) = q.network {
        f.and("v.network_id = $?", [n.get()]);
    }
    q.owners.restrict(&mut f, "v.account_id");
    crate::filter::page(db, VM_COLUMNS, VM_FROM, &f, "v.id", None, 0)
        .await?
        .iter()
        .map(record)
        .collect()
}

/// A VM by internal id.
///
/// # Errors
/// As [`list`].
pub async fn by_id(db: &Db, id: VmId) -> Result<Option<VmRecord>, StoreError> {
    let q = VmQuery {
        id: Some(id),
        uuid: None,
        name: None,
        network: None,
        owners: Owners::Everyone,
    };
    Ok(list(db, &q).await?.into_iter().next())
}

/// A VM by uuid, whoever owns it.
///
/// # Errors
/// As [`list`].
pub async fn by_uuid(db: &Db, uuid: &str) -> Result<Option<VmRecord>, StoreError> {
    let q = VmQuery {
        id: None,
        uuid: Some(uuid),
        name: None,
        network: None,
        owners: Owners::Everyone,
    };
    Ok(list(db, &q).await?.into_iter().next())
}

/// The API id of the VM whose NIC has this API id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn vm_of_nic(db: &Db, nic_uuid: &str) -> Result<Option<String>, StoreError> {
    const W: &str = "reading a NIC's VM";
    sqlx::query("SELECT uuid FROM vms WHERE nic_uuid = $1")
        .bind(nic_uuid)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db(W))?
        .map(|r| get(&r, "uuid", W))
        .transpose()
}

/// Whether the account has a VM named `name`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn name_taken(
    tx: &mut Transaction<'_, Any>,
    account: AccountId,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT id FROM vms WHERE name = $1 AND account_id = $2")
            .bind(name)
            .bind(account.get())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::db("reading a VM's name"))?
            .is_some(),
    )
}

/// The guest addresses the network's VMs hold, their NICs' secondary addresses included.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an address that does not parse.
pub async fn guest_ips(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
) -> Result<Vec<Ipv4Addr>, StoreError> {
    const W: &str = "reading a network's VM addresses";
    sqlx::query(
        "SELECT ip FROM vms WHERE network_id = $1 \
         UNION ALL SELECT ip FROM nic_secondary_ips WHERE network_id = $1",
    )
    .bind(network.get())
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db(W))?
    .iter()
    .map(|r| parsed(r, "vms", "ip", W))
    .collect()
}

/// A VM to create.
#[derive(Debug, Clone)]
pub struct NewVm<'a> {
    /// Its API id.
    pub uuid: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its display name.
    pub display_name: &'a str,
    /// Its owner.
    pub account: AccountId,
    /// Its zone.
    pub zone_id: i64,
    /// Its network.
    pub network: NetworkId,
    /// Its service offering.
    pub service_offering_id: i64,
    /// Its template.
    pub template_id: i64,
    /// Its NIC's API id.
    pub nic_uuid: &'a str,
    /// Its guest address.
    pub ip: Ipv4Addr,
    /// Its NIC's MAC (unique in the zone: see [`mac_taken`]).
    pub mac: MacAddr,
    /// Creation time (unix ms).
    pub created: i64,
}

/// Whether a VM of the zone has a NIC with this MAC.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn mac_taken(
    tx: &mut Transaction<'_, Any>,
    zone_id: i64,
    mac: MacAddr,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT id FROM vms WHERE zone_id = $1 AND mac = $2")
            .bind(zone_id)
            .bind(mac.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::db("reading a NIC's MAC"))?
            .is_some(),
    )
}

/// Marks a VM with the job that deploys it.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_job(
    tx: &mut Transaction<'_, Any>,
    vm: VmId,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE vms SET job_id = $1 WHERE id = $2")
        .bind(job.get())
        .bind(vm.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("marking a VM with its job"))?;
    Ok(())
}

/// The NICs of a network's VMs: all of them (`jobs` = `None`), or those of VMs whose
/// `job_id` is one of `jobs`; by VM id.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`].
pub async fn nics(
    db: &Db,
    network: NetworkId,
    jobs: Option<&[JobId]>,
) -> Result<Vec<VmNic>, StoreError> {
    const W: &str = "reading a network's VM NICs";
    const COLUMNS: &str = "id, name, ip, mac, state, job_id";
    let rows = match jobs {
        None => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE network_id = $1 ORDER BY id"
        ))
        .bind(network.get())
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db(W))?,
        Some(jobs) => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vms WHERE job_id BETWEEN $1 AND $2 ORDER BY id"
        ))
        .bind(jobs.iter().map(|j| j.get()).min().unwrap_or(0))
        .bind(jobs.iter().map(|j| j.get()).max().unwrap_or(-1))
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db(W))?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let ip = parsed(r, "vms", "ip", W)?;
        let job_id = get::<Option<i64>>(r, "job_id", W)?.map(JobId::from);
        if jobs.is_some_and(|jobs| !job_id.is_some_and(|j| jobs.contains(&j))) {
            continue;
        }
        out.push(VmNic {
            vm_id: VmId::from(get::<i64>(r, "id", W)?),
            name: get(r, "name", W)?,
            ip,
            mac: mac(r, ip, W)?,
            state: get(r, "state", W)?,
            job_id,
        });
    }
    Ok(out)
}

/// Writes a VM in state Starting; returns its id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn insert(tx: &mut Transaction<'_, Any>, vm: &NewVm<'_>) -> Result<VmId, StoreError> {
    const W: &str = "inserting a VM";
    let row = sqlx::query(
        "INSERT INTO vms (uuid, name, display_name, account_id, zone_id, network_id, \
         service_offering_id, template_id, nic_uuid, ip, state, created, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'Starting', $11, $12) RETURNING id",
    )
    .bind(vm.uuid)
    .bind(vm.name)
    .bind(vm.display_name)
    .bind(vm.account.get())
    .bind(vm.zone_id)
    .bind(vm.network.get())
    .bind(vm.service_offering_id)
    .bind(vm.template_id)
    .bind(vm.nic_uuid)
    .bind(vm.ip.to_string())
    .bind(vm.created)
    .bind(vm.mac.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db(W))?;
    get::<i64>(&row, "id", W).map(VmId::from)
}

/// Schedules a VM's destruction by `job`: its forwards (with the firewall rules they opened)
/// and balancer memberships are revoked, and the VM set Expunging.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn schedule_destroy(
    tx: &mut Transaction<'_, Any>,
    vm: VmId,
    job: JobId,
) -> Result<(), StoreError> {
    const W: &str = "scheduling a VM's destruction";
    for sql in [
        "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE related_id IN \
         (SELECT id FROM rules WHERE purpose = 'PortForwarding' AND vm_id = $2)",
        "UPDATE rules SET state = 'Revoke', job_id = $1 \
         WHERE purpose = 'PortForwarding' AND vm_id = $2",
        "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE vm_id = $2",
    ] {
        sqlx::query(sql)
            .bind(job.get())
            .bind(vm.get())
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db(W))?;
    }
    crate::static_nat::disable_for_vm(tx, vm, job).await?;
    sqlx::query("UPDATE vms SET state = 'Expunging', job_id = $1 WHERE id = $2")
        .bind(job.get())
        .bind(vm.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db(W))?;
    Ok(())
}
