//! The routers table: generations taken and confirmed, failures, and what a confirmed
//! generation moves to Active or removes.

use domain::ids::NetworkId;
use domain::model::RouterState;
use domain::plan::Commit;
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;

/// A generation number taken for a network's router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenGeneration {
    /// The router's name.
    pub router: String,
    /// Its host.
    pub host: String,
    /// The number.
    pub generation: u64,
    /// Whether the router is stopped: nothing is sent to it, and the generation is recorded
    /// without it (see [`set_applied`]).
    pub stopped: bool,
}

/// Takes the router's next generation number.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::NotFound`] for a network without a router;
/// [`StoreError::Corrupt`] for a state this program does not know.
pub async fn next_generation(db: &Db, network: NetworkId) -> Result<TakenGeneration, StoreError> {
    const W: &str = "taking a router generation";
    let _writer = db.writer().await;
    let row = sqlx::query(
        "UPDATE routers SET desired_generation = desired_generation + 1 WHERE network_id = $1 \
         RETURNING name, host, desired_generation, state",
    )
    .bind(network.get())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db(W))?
    .ok_or(StoreError::NotFound {
        what: "router of network",
        id: network.get(),
    })?;
    let state: RouterState = row
        .try_get::<String, _>("state")
        .map_err(StoreError::db(W))?
        .parse()
        .map_err(StoreError::corrupt("routers", "state"))?;
    let g: i64 = row
        .try_get("desired_generation")
        .map_err(StoreError::db(W))?;
    Ok(TakenGeneration {
        router: row.try_get("name").map_err(StoreError::db(W))?,
        host: row.try_get("host").map_err(StoreError::db(W))?,
        generation: u64::try_from(g).unwrap_or(0),
        stopped: state == RouterState::Stopped,
    })
}

/// Sets a router's state (stopRouter, and a stopped router's start), in the caller's
/// transaction.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_state(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
    state: RouterState,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE routers SET state = $1 WHERE network_id = $2")
        .bind(state.as_str())
        .bind(network.get())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("setting a router's state"))?;
    Ok(())
}

/// Records the generation the router confirmed (never moving backwards), in the transaction
/// that records what it carried.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_applied(
    tx: &mut Transaction<'_, Any>,
    network: NetworkId,
    generation: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE routers SET applied_generation = $1, applied_at = $2, last_error = NULL, \
         state = 'Running' WHERE network_id = $3 AND applied_generation <= $1",
    )
    .bind(i64::try_from(generation).unwrap_or(i64::MAX))
    .bind(now_ms())
    .bind(network.get())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::db("recording an applied generation"))?;
    Ok(())
}

/// Records why the router did not take its last config.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn record_failure(db: &Db, network: NetworkId, reason: &str) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query("UPDATE routers SET last_error = $1 WHERE network_id = $2")
        .bind(reason)
        .bind(network.get())
        .execute(db.pool())
        .await
        .map_err(StoreError::db("recording a router failure"))?;
    Ok(())
}

/// Marks a router that could not start (createNetwork then removes its network).
///
/// # Errors
/// [`StoreError::Db`].
pub async fn set_router_error(db: &Db, network: NetworkId, reason: &str) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query("UPDATE routers SET state = 'Error', last_error = $1 WHERE network_id = $2")
        .bind(reason)
        .bind(network.get())
        .execute(db.pool())
        .await
        .map_err(StoreError::db("marking a router failed"))?;
    Ok(())
}

/// Moves the generation counter past what a router already holds.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn bump_generation(db: &Db, network: NetworkId, held: u64) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    sqlx::query(
        "UPDATE routers SET desired_generation = $1 WHERE network_id = $2 AND desired_generation < $1",
    )
    .bind(i64::try_from(held).unwrap_or(i64::MAX))
    .bind(network.get())
    .execute(db.pool())
    .await
    .map_err(StoreError::db("moving a generation counter"))?;
    Ok(())
}

async fn each<T: Copy + Into<i64>>(
    tx: &mut Transaction<'_, Any>,
    sql: &str,
    ids: &[T],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let list = chunk
            .iter()
            .map(|&i| Into::<i64>::into(i).to_string())
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(&sql.replace("{ids}", &list))
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("recording a generation"))?;
    }
    Ok(())
}

/// Records what a router generation now holds.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn apply_commit(tx: &mut Transaction<'_, Any>, c: &Commit) -> Result<(), StoreError> {
    each(
        tx,
        "UPDATE rules SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_rules,
    )
    .await?;
    each(
        tx,
        "UPDATE rules SET state = 'Add', applied = 0 WHERE id IN ({ids}) AND state = 'Active'",
        &c.demote_rules,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_members WHERE lb_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_policies WHERE lb_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(
        tx,
        "UPDATE rules SET related_id = NULL WHERE related_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(
        tx,
        "DELETE FROM resource_tags WHERE resource_type IN ('FirewallRule', \
         'PortForwardingRule', 'LoadBalancer') AND resource_id IN ({ids})",
        &c.delete_rules,
    )
    .await?;
    each(tx, "DELETE FROM rules WHERE id IN ({ids})", &c.delete_rules).await?;
    each(
        tx,
        "UPDATE lb_members SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_members,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_members WHERE id IN ({ids})",
        &c.delete_members,
    )
    .await?;
    each(
        tx,
        "UPDATE lb_policies SET state = 'Active', applied = 1 WHERE id IN ({ids}) AND state = 'Add'",
        &c.activate_policies,
    )
    .await?;
    each(
        tx,
        "DELETE FROM lb_policies WHERE id IN ({ids})",
        &c.delete_policies,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET state = 'Allocated', applied = 1 WHERE id IN ({ids}) AND state = 'Allocating'",
        &c.allocate_ips,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET nat_state = 'Active', nat_applied = 1 WHERE id IN ({ids}) \
         AND nat_state = 'Add'",
        &c.activate_nats,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET nat_vm_id = NULL, nat_vm_ip = NULL, nat_state = NULL, \
         nat_applied = 0 WHERE id IN ({ids}) AND nat_state = 'Revoke'",
        &c.clear_nats,
    )
    .await?;
    each(
        tx,
        "DELETE FROM resource_tags WHERE resource_type = 'PublicIpAddress' \
         AND resource_id IN ({ids})",
        &c.free_ips,
    )
    .await?;
    each(
        tx,
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         source_nat = 0, job_id = NULL, allocated = NULL, nat_vm_id = NULL, nat_vm_ip = NULL, \
         nat_state = NULL, nat_applied = 0 WHERE id IN ({ids}) AND state = 'Releasing'",
        &c.free_ips,
    )
    .await?;
    Ok(())
}

/// The name of the network's router.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn router_name_of(db: &Db, network: NetworkId) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT name FROM routers WHERE network_id = $1")
        .bind(network.get())
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a router"))?;
    row.map(|r| {
        r.try_get::<String, _>("name")
            .map_err(StoreError::db("reading a router"))
    })
    .transpose()
}

/// A network's router as the job runner sees it.
#[derive(Debug, Clone)]
pub struct RouterRow {
    /// Its name.
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// `Starting`, `Running` or `Error`.
    pub state: RouterState,
    /// The generation it last confirmed.
    pub applied: i64,
    /// Why its last apply failed, if it did.
    pub last_error: Option<String>,
}

/// A network's router.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn router_of(db: &Db, network: NetworkId) -> Result<Option<RouterRow>, StoreError> {
    let row = sqlx::query(
        "SELECT name, host, state, applied_generation, last_error FROM routers \
         WHERE network_id = $1",
    )
    .bind(network.get())
    .fetch_optional(db.pool())
    .await
    .map_err(StoreError::db("reading a router"))?;
    row.map(|r| {
        Ok(RouterRow {
            name: r
                .try_get("name")
                .map_err(StoreError::db("reading a router"))?,
            host: r
                .try_get("host")
                .map_err(StoreError::db("reading a router"))?,
            state: r
                .try_get::<String, _>("state")
                .map_err(StoreError::db("reading a router"))?
                .parse()
                .map_err(StoreError::corrupt("routers", "state"))?,
            applied: r
                .try_get("applied_generation")
                .map_err(StoreError::db("reading a router"))?,
            last_error: r
                .try_get("last_error")
                .map_err(StoreError::db("reading a router"))?,
        })
    })
    .transpose()
}

/// The networks whose routers run on `host`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn networks_on(db: &Db, host: &str) -> Result<Vec<NetworkId>, StoreError> {
    sqlx::query("SELECT network_id FROM routers WHERE host = $1 ORDER BY network_id")
        .bind(host)
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db("reading a host's routers"))?
        .iter()
        .map(|r| {
            r.try_get::<i64, _>("network_id")
                .map(NetworkId::from)
                .map_err(StoreError::db("reading a host's routers"))
        })
        .collect()
}

/// A router as `guestnet verify` compares it: what the database says, and where its host's
/// agent is connected.
#[derive(Debug, Clone)]
pub struct RouterOverview {
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its network.
    pub network: domain::ids::NetworkId,
    /// Its state.
    pub state: RouterState,
    /// The generation it last confirmed.
    pub applied: i64,
    /// Why its last apply failed, if it did.
    pub last_error: Option<String>,
    /// Whether its host's agent is connected (`None`: no host row).
    pub connected: Option<bool>,
    /// The address of the server holding the host.
    pub server_address: Option<String>,
    /// That server's last heartbeat (unix ms).
    pub server_heartbeat: Option<i64>,
}

/// Every router, oldest first.
///
/// # Errors
/// [`StoreError::Db`]; [`StoreError::Corrupt`] for an unknown state.
pub async fn overview(db: &Db) -> Result<Vec<RouterOverview>, StoreError> {
    let e = StoreError::db("reading the routers");
    sqlx::query(
        "SELECT r.name, r.host, r.network_id, r.state, r.applied_generation, r.last_error, \
         h.connected, s.address, s.heartbeat FROM routers r \
         LEFT JOIN hosts h ON h.name = r.host LEFT JOIN servers s ON s.id = h.server_id \
         ORDER BY r.id",
    )
    .fetch_all(db.pool())
    .await
    .map_err(e)?
    .iter()
    .map(|r| {
        Ok(RouterOverview {
            name: r.try_get("name").map_err(e)?,
            host: r.try_get("host").map_err(e)?,
            network: r.try_get::<i64, _>("network_id").map_err(e)?.into(),
            state: r
                .try_get::<String, _>("state")
                .map_err(e)?
                .parse()
                .map_err(StoreError::corrupt("routers", "state"))?,
            applied: r.try_get("applied_generation").map_err(e)?,
            last_error: r.try_get("last_error").map_err(e)?,
            connected: r
                .try_get::<Option<i64>, _>("connected")
                .map_err(e)?
                .map(|c| c == 1),
            server_address: r.try_get("address").map_err(e)?,
            server_heartbeat: r.try_get("heartbeat").map_err(e)?,
        })
    })
    .collect()
}
