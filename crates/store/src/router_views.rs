//! Routers as the API lists them (listRouters): each with its network, its host and its
//! source-NAT address. The job runner's statements about routers are in [`crate::routers`].

use domain::ids::NetworkId;
use domain::model::RouterState;
use sqlx::any::AnyRow;

use crate::db::Db;
use crate::error::StoreError;
use crate::filter::Filter;
use crate::owners::Owners;
use crate::rows::{get, parsed};

/// A router with what listRouters shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterRecord {
    /// API id.
    pub uuid: String,
    /// Name (`r-<network id>-VM`).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its state.
    pub state: RouterState,
    /// The newest generation taken for it.
    pub desired_generation: i64,
    /// The newest generation it confirmed.
    pub applied_generation: i64,
    /// When it confirmed that (unix ms).
    pub applied_at: Option<i64>,
    /// Why it did not take its last config.
    pub last_error: Option<String>,
    /// Creation time (unix ms).
    pub created: i64,
    /// Its network's uuid.
    pub net_uuid: String,
    /// Its network's name.
    pub net_name: String,
    /// Its network's gateway (the router's guest address).
    pub gateway: String,
    /// Its network's CIDR.
    pub cidr: ipnet::Ipv4Net,
    /// Its network's owner.
    pub account_id: i64,
    /// The network's source-NAT address, when it has one.
    pub public_ip: Option<String>,
    /// That address's uuid.
    pub public_ip_uuid: Option<String>,
    /// The host's uuid, when the host is registered.
    pub host_uuid: Option<String>,
    /// The host's driver (`lab`, `dry-run`), when the host is registered.
    pub host_driver: Option<String>,
}

const ROUTER_COLUMNS: &str = "r.uuid, r.name, r.host, r.state, r.desired_generation, \
     r.applied_generation, r.applied_at, r.last_error, r.created, n.uuid AS net_uuid, \
     n.name AS net_name, n.gateway, n.cidr, n.account_id, p.address AS public_ip, \
     p.uuid AS public_ip_uuid, h.uuid AS host_uuid, h.driver AS host_driver";

const ROUTER_FROM: &str = "routers r JOIN networks n ON n.id = r.network_id \
     LEFT JOIN hosts h ON h.name = r.host \
     LEFT JOIN public_ips p ON p.network_id = n.id AND p.source_nat = 1";

fn record(r: &AnyRow) -> Result<RouterRecord, StoreError> {
    const W: &str = "reading a router";
    Ok(RouterRecord {
        uuid: get(r, "uuid", W)?,
        name: get(r, "name", W)?,
        host: get(r, "host", W)?,
        state: get::<String>(r, "state", W)?
            .parse()
            .map_err(StoreError::corrupt("routers", "state"))?,
        desired_generation: get(r, "desired_generation", W)?,
        applied_generation: get(r, "applied_generation", W)?,
        applied_at: get(r, "applied_at", W)?,
        last_error: get(r, "last_error", W)?,
        created: get(r, "created", W)?,
        net_uuid: get(r, "net_uuid", W)?,
        net_name: get(r, "net_name", W)?,
        gateway: get(r, "gateway", W)?,
        cidr: parsed(r, "networks", "cidr", W)?,
        account_id: get(r, "account_id", W)?,
        public_ip: get(r, "public_ip", W)?,
        public_ip_uuid: get(r, "public_ip_uuid", W)?,
        host_uuid: get(r, "host_uuid", W)?,
        host_driver: get(r, "host_driver", W)?,
    })
}

/// What listRouters asks for.
#[derive(Debug, Clone)]
pub struct RouterQuery<'a> {
    /// One router by uuid.
    pub uuid: Option<&'a str>,
    /// By name.
    pub name: Option<&'a str>,
    /// The router of one network.
    pub network: Option<NetworkId>,
    /// Whose networks' routers.
    pub owners: Owners,
}

/// The routers matching `q`, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for a state or CIDR this program does not know.
pub async fn list(db: &Db, q: &RouterQuery<'_>) -> Result<Vec<RouterRecord>, StoreError> {
    let mut f = Filter::new();
    if let Some(uuid) = q.uuid {
        f.and("r.uuid = $?", [uuid]);
    }
    if let Some(name) = q.name {
        f.and("r.name = $?", [name]);
    }
    if let Some(n) = q.network {
        f.and("r.network_id = $?", [n.get()]);
    }
    q.owners.restrict(&mut f, "n.account_id");
    crate::filter::page(db, ROUTER_COLUMNS, ROUTER_FROM, &f, "r.id", None, 0)
        .await?
        .iter()
        .map(record)
        .collect()
}
