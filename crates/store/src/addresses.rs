//! Public addresses and their ranges.

use std::net::Ipv4Addr;

use domain::plan::PublicSegment;
use sqlx::Row;

use crate::db::Db;
use crate::error::StoreError;

/// Prefix length and gateway of a public range.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn segment(db: &Db, vlan_range_id: i64) -> Result<Option<PublicSegment>, StoreError> {
    let row = sqlx::query("SELECT gateway, netmask FROM vlan_ranges WHERE id = $1")
        .bind(vlan_range_id)
        .fetch_optional(db.pool())
        .await
        .map_err(StoreError::db("reading a public range"))?;
    Ok(row.and_then(|r| {
        let gateway: String = r.try_get("gateway").ok()?;
        let netmask: String = r.try_get("netmask").ok()?;
        let mask: Ipv4Addr = netmask.parse().ok()?;
        let prefix_len = u8::try_from(u32::from(mask).count_ones()).ok()?;
        Some(PublicSegment {
            prefix_len,
            gateway: gateway.parse().ok(),
        })
    }))
}
