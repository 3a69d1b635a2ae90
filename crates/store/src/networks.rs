//! The networks table and what hangs off a network.

use crate::db::Db;
use crate::error::StoreError;

/// Removes a deleted network's rows: its rules, VMs, router; its IPs go back to Free.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete_network(db: &Db, network_id: i64) -> Result<(), StoreError> {
    let _writer = db.writer().await;
    let mut tx = db
        .begin_write()
        .await
        .map_err(StoreError::db("removing a network"))?;
    for sql in [
        "DELETE FROM lb_members WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "DELETE FROM lb_policies WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $1)",
        "UPDATE rules SET related_id = NULL WHERE network_id = $1",
        "DELETE FROM rules WHERE network_id = $1",
        "DELETE FROM lb_members WHERE vm_id IN (SELECT id FROM vms WHERE network_id = $1)",
        "DELETE FROM vms WHERE network_id = $1",
        "UPDATE public_ips SET state = 'Free', applied = 0, account_id = NULL, network_id = NULL, \
         source_nat = 0, job_id = NULL, allocated = NULL WHERE network_id = $1",
        "DELETE FROM routers WHERE network_id = $1",
        "DELETE FROM networks WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(network_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("removing a network"))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::db("removing a network"))
}
