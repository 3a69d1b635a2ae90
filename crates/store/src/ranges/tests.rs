//! A range's rows on SQLite: one Free address per address of it, found again by the listings
//! and by the taking of a free address.

use std::net::Ipv4Addr;

use domain::ids::VlanRangeId;

use super::*;
use crate::addresses::{self, IpQuery};
use crate::owners::Owners;

async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let db = Db::connect(&url).await.unwrap();
    (dir, db)
}

async fn zone(db: &Db) -> i64 {
    let mut change = db.change(None).await.unwrap();
    let id: i64 = sqlx::query(
        "INSERT INTO zones (uuid, name, created) VALUES ('z-1', 'zone1', 0) RETURNING id",
    )
    .fetch_one(&mut **change.conn())
    .await
    .and_then(|r| sqlx::Row::try_get(&r, "id"))
    .unwrap();
    let _ = change.commit().await.unwrap();
    id
}

fn range(start: u8, end: u8) -> PublicRange {
    PublicRange {
        vlan: "untagged".into(),
        gateway: Ipv4Addr::new(198, 51, 100, 1),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        start: Ipv4Addr::new(198, 51, 100, start),
        end: Ipv4Addr::new(198, 51, 100, end),
    }
}

#[tokio::test]
async fn a_range_is_stored_with_one_free_address_each() {
    let (_dir, db) = db().await;
    let zone_id = zone(&db).await;
    let mut change = db.change(None).await.unwrap();
    let (id, uuid) = insert(change.conn(), zone_id, &range(10, 20))
        .await
        .unwrap();
    assert_eq!(
        bounds(change.conn()).await.unwrap(),
        vec![(
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(198, 51, 100, 20)
        )]
    );
    let _ = change.commit().await.unwrap();

    let stored = by_id(&db, id).await.unwrap().unwrap();
    assert_eq!(stored.uuid, uuid);
    assert_eq!(stored.range, range(10, 20));
    assert_eq!(
        first_of_zone(&db, zone_id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(list(&db).await.unwrap(), vec![stored]);
    assert_eq!(
        by_id(&db, VlanRangeId::from(id.get() + 1)).await.unwrap(),
        None
    );

    let all = IpQuery {
        owners: Some(Owners::Everyone),
        ..IpQuery::default()
    };
    let listed = addresses::list(&db, &all).await.unwrap();
    assert_eq!(listed.len(), 11);
    assert!(listed.iter().all(|l| l.ip.state == "Free" && !l.has_rules));
    assert!(listed
        .iter()
        .all(|l| l.vlan_uuid == uuid && l.network.is_none()));
    let allocated = IpQuery {
        allocated_only: true,
        ..IpQuery::default()
    };
    assert!(addresses::list(&db, &allocated).await.unwrap().is_empty());
    let one = IpQuery {
        address: Some("198.51.100.15"),
        ..IpQuery::default()
    };
    assert_eq!(addresses::list(&db, &one).await.unwrap().len(), 1);

    let mut change = db.change(None).await.unwrap();
    let lowest = addresses::lowest_free(&mut change, zone_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lowest.address, Ipv4Addr::new(198, 51, 100, 10));
    let wanted = Ipv4Addr::new(198, 51, 100, 17);
    let named = addresses::for_taking(&mut change, zone_id, wanted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named.address, wanted);
    let outside = Ipv4Addr::new(198, 51, 100, 30);
    assert!(addresses::for_taking(&mut change, zone_id, outside)
        .await
        .unwrap()
        .is_none());
}
